//! The parts compose: PML's distances and reducers in the workspace's other losses, TF
//! Similarity's distances in PML's losses, per-example shares, and typed errors.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, MetricLoss, MetricLossExt, SampleWeight,
};
use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, SoftNearestNeighborLoss};
use metric_loss_pml::{
    ContrastiveLoss, ContrastiveLossConfig, CosineSimilarity, LpDistance, NTXentLossConfig,
    SumReducer, SupConLoss, SupConLossConfig, ThresholdReducer,
};
use metric_loss_triplet::{DenseParts, MinedParts, TripletLoss};

const X: [f64; 12] = [
    1.0, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8, 0.3, -0.9, -1.0, 0.2,
];
const LABELS: [i64; 6] = [0, 0, 1, 1, 2, 2];

fn input(weights: Option<&[f64]>) -> LossInput<'_, f64> {
    let batch = Batch::new(&LABELS, Embeddings::from_row_major(&X, 6, 2).unwrap()).unwrap();
    let input = LossInput::new(batch);
    match weights {
        Some(w) => input.with_sample_weight(SampleWeight::PerExample(w)),
        None => input,
    }
}

#[test]
fn per_example_shares_sum_to_the_loss() {
    let losses: Vec<Box<dyn MetricLoss>> = vec![
        Box::new(ContrastiveLoss::new()),
        Box::new(NTXentLossConfig::default().build().unwrap()),
        Box::new(SupConLoss::new()),
    ];
    for loss in losses {
        let out = loss.compute(&input(None)).unwrap();
        let sum: f64 = out.per_example.iter().sum();
        assert!(
            (sum - out.loss).abs() < 1e-12,
            "{loss:?}: {sum} vs {}",
            out.loss
        );
        assert!(out.loss > 0.0);
    }
}

#[test]
fn a_weight_multiplies_its_anchors_elements() {
    // With SumReducer, weighting every anchor by 2 doubles the loss; weighting one anchor
    // by 0 removes exactly its share.
    let loss = SupConLossConfig::default()
        .reducer(SumReducer {})
        .build()
        .unwrap();
    let plain = loss.compute(&input(None)).unwrap();
    let doubled = loss.compute(&input(Some(&[2.0; 6]))).unwrap();
    assert!((doubled.loss - 2.0 * plain.loss).abs() < 1e-12);
    let w = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
    let dropped = loss.compute(&input(Some(&w))).unwrap();
    assert!((dropped.loss - (plain.loss - plain.per_example[2])).abs() < 1e-12);
    assert!(dropped.grad_queries.iter().all(|g| g.is_finite()));
}

#[test]
fn tf_distances_and_pml_parts_mix() {
    // A TF Similarity distance in a PML loss, by its config name.
    let tf = ContrastiveLossConfig::default()
        .distance("squared_euclidean")
        .build()
        .unwrap();
    assert!(tf.compute(&input(None)).unwrap().loss > 0.0);
    // A PML distance and reducer in TF Similarity's TripletLoss.
    let parts = MinedParts::default()
        .distance(LpDistance::default())
        .reducer(ThresholdReducer::new(Some(0.0), None).unwrap());
    let triplet = TripletLoss::builder().parts(parts).build().unwrap();
    let out = triplet.compute(&input(None)).unwrap();
    assert!(out.loss.is_finite() && out.loss > 0.0);
    // A similarity where a loss mines distances is a typed error, not silently inverted.
    let similarity = TripletLoss::builder()
        .parts(MinedParts::default().distance(CosineSimilarity::default()))
        .build()
        .unwrap();
    let e = similarity.compute(&input(None)).unwrap_err();
    assert!(
        matches!(&e, LossError::Unsupported { message, .. } if message.contains("similarity")),
        "{e:?}"
    );
}

#[test]
fn pml_parts_in_the_losses_over_whole_rows() {
    let lp = DenseParts::default()
        .distance(LpDistance::default())
        .reducer(ThresholdReducer::new(Some(0.0), None).unwrap());
    let similarity = DenseParts::default().distance(CosineSimilarity::default());
    let losses: Vec<(Box<dyn MetricLoss>, Box<dyn MetricLoss>)> = vec![
        (
            Box::new(MultiSimilarityLoss::default().with_parts(lp.clone())),
            Box::new(MultiSimilarityLoss::default().with_parts(similarity.clone())),
        ),
        (
            Box::new(CircleLoss::default().with_parts(lp.clone())),
            Box::new(CircleLoss::default().with_parts(similarity.clone())),
        ),
        (
            Box::new(SoftNearestNeighborLoss::default().with_parts(lp)),
            Box::new(SoftNearestNeighborLoss::default().with_parts(similarity)),
        ),
    ];
    for (distance, similarity) in losses {
        let out = distance.compute(&input(None)).unwrap();
        assert!(out.loss.is_finite() && out.grad_queries.iter().all(|g| g.is_finite()));
        // Their formulas compare distances: a similarity is a typed error, not silently
        // read as a distance.
        let e = similarity.compute(&input(None)).unwrap_err();
        assert!(
            matches!(&e, LossError::Unsupported { message, .. } if message.contains("similarity")),
            "{e:?}"
        );
    }
}

#[test]
fn bad_arguments_are_typed_errors() {
    let e = NTXentLossConfig::default()
        .temperature(f64::NAN)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            e,
            LossError::InvalidParameter {
                name: "temperature",
                ..
            }
        ),
        "{e:?}"
    );
    let e = ContrastiveLossConfig::default()
        .neg_margin(f64::INFINITY)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            e,
            LossError::InvalidParameter {
                name: "neg_margin",
                ..
            }
        ),
        "{e:?}"
    );
    let e = ContrastiveLossConfig::default()
        .distance("chebyshev")
        .build()
        .unwrap_err();
    assert!(matches!(e, LossError::UnknownDistance { .. }), "{e:?}");
    let e = serde_json::from_str::<ContrastiveLossConfig>(r#"{"margin": 0.5}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `margin`"), "{e}");
    let e = serde_json::from_str::<SupConLossConfig>(
        r#"{"reducer": {"class_name": "ThresholdReducer", "config": {}}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least one of low or high"), "{e}");
}

#[test]
fn bad_input_is_a_typed_error() {
    let x = [1.0, f64::NAN, 0.0, 1.0];
    let batch = Batch::new(&[0, 1], Embeddings::from_row_major(&x, 2, 2).unwrap()).unwrap();
    let e = ContrastiveLoss::new()
        .compute(&LossInput::new(batch))
        .unwrap_err();
    assert!(matches!(e, LossError::NonFiniteEmbedding { .. }), "{e:?}");
    // Embeddings so large that the squared distance overflows f32.
    let big = [3e38f32, 0.0, -3e38, 0.0, 3e38, 1.0];
    let batch = Batch::new(&[0, 1, 0], Embeddings::from_row_major(&big, 3, 2).unwrap()).unwrap();
    let loss = ContrastiveLossConfig::default()
        .distance(LpDistance::new(false, 2, 2).unwrap())
        .build()
        .unwrap();
    assert!(loss.compute(&LossInput::new(batch)).is_err());
}

/// A user formula declaring three sub-losses (the driver runs one or two).
#[derive(Debug, Default)]
struct ThreeSubLosses {
    parts: DenseParts,
}

impl metric_loss_pml::PairFormula for ThreeSubLosses {
    const SUB_LOSSES: usize = 3;

    fn forward<T: metric_loss_distances::lanes::DenseFloat>(
        &self,
        _: &metric_loss_pml::Scores<'_, T>,
        _: &mut [metric_loss_pml::Elements<T>],
    ) -> bool {
        true
    }

    fn backward<T: metric_loss_distances::lanes::DenseFloat>(
        &self,
        _: &metric_loss_pml::Scores<'_, T>,
        _: &[metric_loss_pml::Elements<T>],
        _: &mut [T],
    ) {
    }
}

impl metric_loss_pml::PairLoss for ThreeSubLosses {
    fn name(&self) -> &str {
        "three_sub_losses"
    }

    fn parts(&self) -> &DenseParts {
        &self.parts
    }
}

metric_loss_pml::pair_metric_loss!(ThreeSubLosses);

#[test]
fn a_user_formula_with_too_many_sub_losses_is_a_typed_error() {
    let e = ThreeSubLosses::default().compute(&input(None)).unwrap_err();
    assert!(
        matches!(&e, LossError::Unsupported { loss, message }
            if loss == "three_sub_losses" && message.contains("1 or 2")),
        "{e:?}"
    );
}
