//! The dense losses (MultiSimilarity, Circle, SoftNearestNeighbor) on any distance and any
//! reducer: a distance written by hand gives the built-in's numbers, reducers that are not
//! Keras's work, and the gradient through a user part matches finite differences.

use metric_loss_core::{
    Float, LossError, LossOutput, MeanOverNonZero, MetricLoss, MetricLossExt, Reduction, Threshold,
};
use metric_loss_distances::DistanceKind;
use metric_loss_losses::{
    CircleLoss, CircleLossConfig, MultiSimilarityLoss, MultiSimilarityLossConfig,
    SoftNearestNeighborLoss, XBM,
};
use metric_loss_testkit::{check_gradient, GradientPoint, HandSquaredL2};
use metric_loss_triplet::DenseParts;

const DIMS: usize = 4;
const LABELS: [i64; 12] = [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 3, 0];

/// A fixed batch of 12 rows with entries in [−0.4, 0.4): squared distances well inside
/// the losses' smooth regions.
fn batch() -> Vec<f64> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..LABELS.len() * DIMS)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.8
        })
        .collect()
}

fn losses(parts: DenseParts) -> Vec<Box<dyn MetricLoss>> {
    vec![
        Box::new(MultiSimilarityLoss::default().with_parts(parts.clone())),
        Box::new(CircleLoss::default().with_parts(parts.clone())),
        Box::new(SoftNearestNeighborLoss::default().with_parts(parts)),
    ]
}

fn assert_close<T: Float>(what: &str, got: &[T], want: &[T], rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        assert!(
            (g - w).abs() <= rel * (1.0 + w.abs()),
            "{what}[{t}]: {g} against {w}"
        );
    }
}

fn assert_same_output<T: Float>(name: &str, got: &LossOutput<T>, want: &LossOutput<T>) {
    let (loss_tol, grad_tol) = if T::DTYPE == "f32" {
        (1e-5, 1e-4)
    } else {
        (1e-10, 1e-9)
    };
    assert_close(name, &[got.loss], &[want.loss], loss_tol);
    assert_close(name, &got.per_example, &want.per_example, loss_tol);
    assert_close(name, &got.grad_queries, &want.grad_queries, grad_tol);
}

#[test]
fn a_hand_written_distance_gives_the_built_in_numbers() {
    let x = batch();
    let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let hand = losses(DenseParts::default().distance(HandSquaredL2));
    let built_in = losses(DenseParts::default().distance(DistanceKind::SquaredEuclidean));
    for (h, b) in hand.iter().zip(&built_in) {
        let (got, want) = (
            h.evaluate(&LABELS, &x, DIMS).unwrap(),
            b.evaluate(&LABELS, &x, DIMS).unwrap(),
        );
        assert!(
            want.loss > 0.0,
            "{}: a batch that teaches nothing",
            b.name()
        );
        assert_same_output(b.name(), &got, &want);
        let (got, want) = (
            h.evaluate(&LABELS, &x32, DIMS).unwrap(),
            b.evaluate(&LABELS, &x32, DIMS).unwrap(),
        );
        assert_same_output(b.name(), &got, &want);
    }
}

#[test]
fn mean_over_non_zero_averages_the_anchors_that_have_a_loss() {
    let x = batch();
    for (mean, per) in losses(DenseParts::default().reducer(MeanOverNonZero))
        .iter()
        .zip(losses(DenseParts::default().reducer(Reduction::Sum)))
    {
        let (got, sum) = (
            mean.evaluate(&LABELS, &x, DIMS).unwrap(),
            per.evaluate(&LABELS, &x, DIMS).unwrap(),
        );
        let count = sum.per_example.iter().filter(|v| **v != 0.0).count();
        assert!(count > 0, "{}", per.name());
        assert_close(per.name(), &[got.loss], &[sum.loss / count as f64], 1e-12);
        // Anchors with ℓᵢ = 0 have a zero gradient in these losses, so averaging over
        // the others scales the summed gradient by 1/count.
        let scaled: Vec<f64> = sum.grad_queries.iter().map(|g| g / count as f64).collect();
        assert_close(per.name(), &got.grad_queries, &scaled, 1e-12);
        assert_eq!(mean.reduction(), Reduction::Auto);
        assert_eq!(mean.keras_reduction(), None);
    }
}

#[test]
fn a_threshold_reducer_keeps_only_the_hard_anchors() {
    let x = batch();
    let all = CircleLoss::default().with_parts(DenseParts::default().reducer(Reduction::None));
    let per = all.evaluate(&LABELS, &x, DIMS).unwrap().per_example;
    let mut sorted = per.clone();
    sorted.sort_by(f64::total_cmp);
    let low = sorted[sorted.len() / 2];
    let hard = CircleLoss::default()
        .with_parts(DenseParts::default().reducer(Threshold::new(Some(low), None).unwrap()));
    let kept: Vec<f64> = per.iter().copied().filter(|v| *v > low).collect();
    let want = kept.iter().sum::<f64>() / kept.len() as f64;
    assert_close(
        "threshold",
        &[hard.evaluate(&LABELS, &x, DIMS).unwrap().loss],
        &[want],
        1e-12,
    );
}

#[test]
fn the_gradient_through_user_parts_matches_finite_differences() {
    let x = batch();
    let w: Vec<f64> = (0..LABELS.len()).map(|i| 0.5 + 0.1 * i as f64).collect();
    let parts = DenseParts::default()
        .distance(HandSquaredL2)
        .reducer(MeanOverNonZero);
    for loss in losses(parts) {
        let point = GradientPoint::new(&LABELS, &x, DIMS).with_weights(&w);
        check_gradient(loss.as_ref(), point, 1e-6, 1e-6).unwrap();
    }
}

#[test]
fn configs_name_built_in_parts_and_refuse_unnamed_ones() {
    let loss = MultiSimilarityLossConfig::default()
        .distance(DistanceKind::Euclidean)
        .reduction("mean_over_non_zero")
        .build()
        .unwrap();
    let config = loss.config().unwrap();
    assert_eq!(config.distance, "euclidean".into());
    assert_eq!(config.reduction, "mean_over_non_zero".into());
    assert_eq!(config.build().unwrap(), loss);

    // A user distance that is not registered has no config-file spelling.
    let err = loss
        .with_parts(DenseParts::default().distance(HandSquaredL2))
        .config()
        .unwrap_err()
        .to_string();
    assert!(err.contains("hand_squared_l2"), "{err}");

    let err = CircleLossConfig::default()
        .reduction("mean")
        .build()
        .unwrap_err();
    assert!(matches!(err, LossError::UnknownReduction { .. }), "{err}");
}

#[test]
fn xbm_refuses_a_dense_loss_with_a_non_keras_reducer() {
    let inner = SoftNearestNeighborLoss::default()
        .with_parts(DenseParts::default().reducer(MeanOverNonZero));
    let err = XBM::new(Box::new(inner), 16, 0).unwrap_err().to_string();
    assert!(err.contains("Keras"), "{err}");
}
