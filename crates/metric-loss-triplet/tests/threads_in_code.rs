//! The thread cap set in code, and a call made inside the caller's own rayon pool, give the
//! same numbers bit for bit as one thread (with the `threads` feature the rows really are
//! split: 2048 rows are 16 chunks' worth of `MIN_ROWS_PER_THREAD`).

use metric_loss_core::{MetricLossExt, NegativeStrategy};
use metric_loss_distances::parallel::{max_threads, set_max_threads};
use metric_loss_distances::DistanceKind;
use metric_loss_testkit::bits;
use metric_loss_triplet::TripletLoss;

fn batch(n: usize, dims: usize) -> (Vec<i64>, Vec<f32>) {
    let labels = (0..n as i64).map(|i| i / 4).collect();
    let x = (0..n * dims).map(|t| (t as f32 * 0.731).sin()).collect();
    (labels, x)
}

#[test]
fn every_thread_setting_gives_the_same_bits() {
    let (labels, x) = batch(2048, 16);
    for loss in [
        TripletLoss::default(),
        TripletLoss::builder()
            .distance(DistanceKind::Euclidean)
            .negative_mining(NegativeStrategy::Hard)
            .build()
            .unwrap(),
    ] {
        set_max_threads(Some(1));
        assert_eq!(max_threads(), 1);
        let one = bits(&loss.evaluate(&labels, &x, 16).unwrap());
        for threads in [2, 3] {
            set_max_threads(Some(threads));
            assert_eq!(
                bits(&loss.evaluate(&labels, &x, 16).unwrap()),
                one,
                "{threads} threads"
            );
        }
        set_max_threads(None);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let inside = pool.install(|| {
            assert!(max_threads() <= 3);
            bits(&loss.evaluate(&labels, &x, 16).unwrap())
        });
        assert_eq!(inside, one, "inside the caller's pool");
    }
}
