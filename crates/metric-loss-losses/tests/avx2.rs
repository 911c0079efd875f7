//! The dense losses give the same bits from their AVX2 row copy as from the baseline one
//! (on a CPU without AVX2 both runs take the baseline copy and the test is vacuous: it
//! says so). Its own test binary: the switch is process-wide.

use metric_loss_core::{LossOutput, MetricLoss, MetricLossExt};
use metric_loss_distances::wide::{avx2_active, set_avx2_enabled};
use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, SoftNearestNeighborLoss};
use metric_loss_testkit::bits;

#[test]
fn the_avx2_rows_give_the_baseline_bits() {
    if !avx2_active() {
        eprintln!("this CPU has no AVX2 (or METRIC_LOSS_NO_AVX2 is set): nothing to compare");
    }
    let (n, dims) = (203, 16);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 23).collect();
    let x32: Vec<f32> = (0..n * dims)
        .map(|t| (t as f32 * 0.731).sin() * 0.4)
        .collect();
    let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v) * 1.1).collect();
    for loss in [
        Box::new(MultiSimilarityLoss::default()) as Box<dyn MetricLoss>,
        Box::new(CircleLoss::default()),
        Box::new(SoftNearestNeighborLoss::default()),
    ] {
        let mut runs = Vec::new();
        for enabled in [true, false] {
            set_avx2_enabled(enabled);
            runs.push((
                bits(&loss.evaluate(&labels, &x32, dims).unwrap()),
                bits64(&loss.evaluate(&labels, &x64, dims).unwrap()),
            ));
        }
        set_avx2_enabled(true);
        assert_eq!(runs[0], runs[1], "{}", loss.name());
    }
}

fn bits64(out: &LossOutput<f64>) -> Vec<u64> {
    std::iter::once(out.loss)
        .chain(out.per_example.iter().copied())
        .chain(out.grad_queries.iter().copied())
        .map(f64::to_bits)
        .collect()
}
