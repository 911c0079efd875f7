//! The pair and classifier losses' rows give the same bits from their AVX2 copy as from the baseline one
//! (vacuous on a CPU without AVX2). Its own test binary: the switch is process-wide.

use metric_loss_core::{MetricLoss, MetricLossExt};
use metric_loss_distances::wide::set_avx2_enabled;
use metric_loss_pml::{ArcFaceLoss, ContrastiveLoss, NTXentLoss, SubCenterArcFaceLoss, SupConLoss};
use metric_loss_testkit::{bits, values};

#[test]
fn the_avx2_rows_give_the_baseline_bits() {
    let (n, dims) = (203, 16);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 23).collect();
    let x: Vec<f32> = values(n * dims, 5).into_iter().map(|v| v as f32).collect();
    for loss in [
        Box::new(NTXentLoss::default()) as Box<dyn MetricLoss>,
        Box::new(SupConLoss::default()),
        Box::new(ContrastiveLoss::default()),
        Box::new(ArcFaceLoss::new(23, dims).unwrap()),
        Box::new(SubCenterArcFaceLoss::new(23, dims).unwrap()),
    ] {
        set_avx2_enabled(false);
        let baseline = bits(&loss.evaluate(&labels, &x, dims).unwrap());
        set_avx2_enabled(true);
        let wide = bits(&loss.evaluate(&labels, &x, dims).unwrap());
        assert_eq!(wide, baseline, "{}", loss.name());
    }
}
