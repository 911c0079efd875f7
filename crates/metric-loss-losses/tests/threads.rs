//! The dense losses give the same bits on 1, 2 and 3 threads (400 rows: three chunks'
//! worth of `MIN_ROWS_PER_THREAD`).

use metric_loss_core::{MetricLoss, MetricLossExt};
use metric_loss_distances::parallel::set_max_threads;
use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, SoftNearestNeighborLoss};
use metric_loss_testkit::bits;

#[test]
fn every_thread_count_gives_the_same_bits() {
    let (n, dims) = (400, 16);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 37).collect();
    let x: Vec<f32> = (0..n * dims)
        .map(|t| (t as f32 * 0.731).sin() * 0.3)
        .collect();
    for loss in [
        Box::new(MultiSimilarityLoss::default()) as Box<dyn MetricLoss>,
        Box::new(CircleLoss::default()),
        Box::new(SoftNearestNeighborLoss::default()),
    ] {
        // Three first: the helper threads are sized by the first parallel call's cap.
        let mut runs = Vec::new();
        for threads in [3, 2, 1] {
            set_max_threads(Some(threads));
            runs.push(bits(&loss.evaluate(&labels, &x, dims).unwrap()));
        }
        set_max_threads(None);
        assert_eq!(runs[0], runs[2], "{}: 3 threads", loss.name());
        assert_eq!(runs[1], runs[2], "{}: 2 threads", loss.name());
    }
}
