//! Every invalid input gives a typed error that names what was wrong; an empty batch gives
//! a zero loss.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, MetricLossExt, SampleWeight, StrategyRole,
};
use metric_loss_triplet::{TripletLoss, TripletLossConfig};

fn x4() -> Vec<f32> {
    vec![1.0, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8]
}

#[test]
fn construction_errors_name_the_argument() {
    let cases: [(TripletLossConfig, &str); 6] = [
        (
            TripletLossConfig::default().positive_mining_strategy("semi-hard"),
            "invalid positive mining strategy \"semi-hard\"",
        ),
        (
            TripletLossConfig::default().negative_mining_strategy("medium"),
            "invalid negative mining strategy \"medium\"",
        ),
        (
            TripletLossConfig::default().distance("chebyshev"),
            "unknown distance \"chebyshev\"",
        ),
        (
            TripletLossConfig::default().soft_margin(true).margin(0.2),
            "margin value is not used when soft_margin is set",
        ),
        (
            TripletLossConfig::default().margin(f64::NAN),
            "invalid value NaN for margin",
        ),
        (
            TripletLossConfig::default().reduction_name("mean"),
            "unknown reduction \"mean\"",
        ),
    ];
    for (config, message) in cases {
        let err = config.build().unwrap_err();
        assert!(err.to_string().contains(message), "{err}");
    }
    // TF's check order: the distance first.
    let both = TripletLossConfig::default()
        .distance("nope")
        .positive_mining_strategy("nope")
        .build();
    assert!(matches!(both, Err(LossError::UnknownDistance { .. })));
    let pos_first = TripletLossConfig::default()
        .positive_mining_strategy("x")
        .negative_mining_strategy("y")
        .build();
    assert!(matches!(
        pos_first,
        Err(LossError::InvalidStrategy {
            role: StrategyRole::Positive,
            ..
        })
    ));
    // soft_margin with margin 1.0 (the default) is accepted, as in TF Similarity 0.16.
    assert!(TripletLossConfig::default()
        .soft_margin(true)
        .build()
        .is_ok());
}

trait ReductionName {
    fn reduction_name(self, name: &str) -> Self;
}

impl ReductionName for TripletLossConfig {
    fn reduction_name(mut self, name: &str) -> Self {
        self.reduction = name.into();
        self
    }
}

#[test]
fn shape_errors() {
    let x = x4();
    let labels = [0i64, 0, 1];
    let e = Embeddings::from_row_major(&x, 4, 2).unwrap();
    let err = Batch::new(&labels, e).unwrap_err();
    assert_eq!(
        err.to_string(),
        "labels has 3 entries but embeddings has 4; they must have one entry per example"
    );
    assert!(matches!(
        Embeddings::from_row_major(&x, 3, 2),
        Err(LossError::BufferLength { .. })
    ));
    let loss = TripletLoss::default();
    let zero_width: [f32; 0] = [];
    let err = loss
        .compute(&LossInput::new(
            Batch::new(
                &[1, 2],
                Embeddings::from_row_major(&zero_width, 2, 0).unwrap(),
            )
            .unwrap(),
        ))
        .unwrap_err();
    assert!(matches!(err, LossError::ZeroWidth { rows: 2, .. }), "{err}");
    let keys = Batch::new(
        &[0],
        Embeddings::from_row_major(&[1.0f32, 2.0, 3.0], 1, 3).unwrap(),
    )
    .unwrap();
    let q = Batch::new(&[0, 0, 1, 1], Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
    let err = loss
        .compute(&LossInput::new(q).with_keys(keys))
        .unwrap_err();
    assert!(
        matches!(
            err,
            LossError::DimensionMismatch {
                queries: 2,
                keys: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn non_finite_values_are_errors_not_nans() {
    let loss = TripletLoss::default();
    let labels = [0i64, 0, 1, 1];
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = x4();
        x[5] = bad;
        let q = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
        let err = loss.compute(&LossInput::new(q)).unwrap_err();
        assert!(
            matches!(err, LossError::NonFiniteEmbedding { row: 2, col: 1, .. }),
            "{err}"
        );
    }
    let x = x4();
    let q = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
    let w = [1.0f32, f32::NAN, 1.0, 1.0];
    let err = loss
        .compute(&LossInput::new(q).with_sample_weight(SampleWeight::PerExample(&w)))
        .unwrap_err();
    assert!(
        matches!(err, LossError::NonFiniteWeight { index: 1, .. }),
        "{err}"
    );
    let err = loss
        .compute(&LossInput::new(q).with_sample_weight(SampleWeight::PerExample(&w[..3])))
        .unwrap_err();
    assert!(
        matches!(
            err,
            LossError::LengthMismatch {
                what: "sample_weight",
                got: 3,
                expected: 4,
                ..
            }
        ),
        "{err}"
    );
    let err = loss
        .compute(&LossInput::new(q).with_sample_weight(SampleWeight::Scalar(f32::INFINITY)))
        .unwrap_err();
    assert!(matches!(err, LossError::NonFiniteWeight { .. }), "{err}");
}

#[test]
fn overflowing_distances_and_constant_snr_rows_are_errors() {
    let labels = [0i64, 0, 1, 1];
    let huge = [1e30f32, 0.0, 1e30, 1.0, -1e30, 0.0, 0.0, 1e30];
    let q = Batch::new(&labels, Embeddings::from_row_major(&huge, 4, 2).unwrap()).unwrap();
    let err = TripletLoss::default()
        .compute(&LossInput::new(q))
        .unwrap_err();
    assert!(
        matches!(
            err,
            LossError::NonFiniteDistance {
                distance: "cosine",
                dtype: "f32",
                ..
            }
        ),
        "{err}"
    );

    let constant = [
        1.0f64, 1.0, 1.0, 0.2, 0.5, 0.9, 0.1, 0.3, 0.8, 0.7, 0.1, 0.4,
    ];
    let q = Batch::new(
        &labels,
        Embeddings::from_row_major(&constant, 4, 3).unwrap(),
    )
    .unwrap();
    let snr = TripletLossConfig::default()
        .distance("snr")
        .build()
        .unwrap();
    let err = snr.compute(&LossInput::new(q)).unwrap_err();
    assert_eq!(err, LossError::ZeroVariance { row: 0 });
}

#[test]
fn an_empty_batch_is_zero_with_an_empty_gradient() {
    let empty: [f64; 0] = [];
    let q = Batch::new(&[], Embeddings::from_row_major(&empty, 0, 8).unwrap()).unwrap();
    let out = TripletLoss::default().compute(&LossInput::new(q)).unwrap();
    assert_eq!(
        (out.loss, out.per_example.len(), out.grad_queries.len()),
        (0.0, 0, 0)
    );
}

#[test]
fn soft_margin_overflow_is_documented_and_the_stable_option_avoids_it() {
    // Squared euclidean at ×50 scale: x = p − q ≪ −88.7 for easy negatives, where TF's
    // soft-plus is +inf (TF Similarity's ln(e^−x + 1) + x overflows).
    let labels = [0i64, 0, 1, 1];
    let x: Vec<f32> = x4().iter().map(|v| v * 50.0).collect();
    let q = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
    let reference = TripletLossConfig::default()
        .distance("sqeuclidean")
        .negative_mining_strategy("easy")
        .soft_margin(true);
    let out = reference
        .clone()
        .build()
        .unwrap()
        .compute(&LossInput::new(q))
        .unwrap();
    assert!(out.loss.is_infinite());
    assert!(out.grad_queries.iter().all(|g| g.is_finite()));
    let stable = reference.stable_soft_margin(true).build().unwrap();
    let out = stable.compute(&LossInput::new(q)).unwrap();
    assert!(out.loss.is_finite() && out.per_example.iter().all(|v| v.is_finite()));
}
