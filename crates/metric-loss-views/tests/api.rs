//! The two-view losses' contract: TF's golden values, typed errors for the wrong kind of
//! input and for bad shapes, config round trips.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight,
};
use metric_loss_views::{
    Barlow, BarlowConfig, MultiNegativesRankLoss, MultiNegativesRankLossConfig, SimCLRLoss,
    SimCLRLossConfig, SimSiamLoss, SimSiamLossConfig, VicReg, VicRegConfig,
};

/// za = (e0, e1, e2), zb = (e1, e2, e3): the spec's golden inputs.
const ZA: [f32; 6] = [1.0, 0.0, 0.8, 0.6, 0.0, 1.0];
const ZB: [f32; 6] = [0.8, 0.6, 0.0, 1.0, -0.6, -0.8];

fn run(
    loss: &dyn MetricLoss,
    weights: SampleWeight<'_, f32>,
) -> Result<LossOutput<f32>, LossError> {
    let input = LossInput::views(
        Embeddings::from_row_major(&ZA, 3, 2)?,
        Embeddings::from_row_major(&ZB, 3, 2)?,
    )
    .with_sample_weight(weights);
    loss.compute(&input)
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

fn all() -> Vec<Box<dyn MetricLoss>> {
    vec![
        Box::new(MultiNegativesRankLoss::default()),
        Box::new(SimCLRLoss::default()),
        Box::new(SimSiamLoss::default()),
        Box::new(Barlow::default()),
        Box::new(VicReg::default()),
    ]
}

#[test]
fn golden_values_are_tf_similarity_s() {
    let mnrl = run(&MultiNegativesRankLoss::default(), SampleWeight::None).unwrap();
    close(&[mnrl.loss], &[14.66689]);
    close(
        &mnrl.per_example,
        &[
            0.0, 4.0, 32.0, 4.000336, 8.000336, 36.000336, 4.000336, 8.000336, 36.000336,
        ],
    );
    let scale1 = MultiNegativesRankLossConfig::default()
        .scale(1.0)
        .build()
        .unwrap();
    close(
        &[run(&scale1, SampleWeight::None).unwrap().loss],
        &[1.5107323],
    );
    // Weights of shape [n] weight rows: with w = (1, 0, 2) TF gives the unweighted value.
    let w = [1.0f32, 0.0, 2.0];
    let weighted = run(
        &MultiNegativesRankLoss::default(),
        SampleWeight::PerExample(&w),
    )
    .unwrap();
    close(&[weighted.loss], &[14.66689]);

    let simclr = run(&SimCLRLoss::default(), SampleWeight::None).unwrap();
    close(&simclr.per_example, &[4.7119555, 16.019478, 40.038086]);
    close(&[simclr.loss], &[20.256506]);
    let t1 = SimCLRLossConfig::default()
        .temperature(1.0)
        .build()
        .unwrap();
    close(&[run(&t1, SampleWeight::None).unwrap().loss], &[3.3465421]);

    for (projection, per_example, loss) in [
        (
            "negative_cosine_sim",
            [-0.39900002, -0.29900002, 0.401],
            -0.09900003,
        ),
        (
            "cosine_distance",
            [0.100999996, 0.20099999, 0.90099996],
            0.401,
        ),
        (
            "angular_distance",
            [0.10341638, 0.14858362, 0.39858362],
            0.2168612,
        ),
    ] {
        let simsiam = SimSiamLossConfig::default()
            .projection_type(projection)
            .build()
            .unwrap();
        let out = run(&simsiam, SampleWeight::None).unwrap();
        close(&out.per_example, &per_example);
        close(&[out.loss], &[loss]);
    }

    close(
        &[run(&Barlow::default(), SampleWeight::None).unwrap().loss],
        &[2.767597],
    );
    let lambda1 = BarlowConfig::default().lambda_(1.0).build().unwrap();
    close(
        &[run(&lambda1, SampleWeight::None).unwrap().loss],
        &[4.6032543],
    );

    let vicreg = run(&VicReg::default(), SampleWeight::None).unwrap();
    close(&vicreg.per_example, &[16.584295, 21.584295, 56.584293]);
    close(&vicreg.grad_queries[..2], &[-0.4008266, -7.179331]);
    let auto = VicRegConfig::default().reduction("auto").build().unwrap();
    let out = run(&auto, SampleWeight::None).unwrap();
    close(&[out.loss], &[31.584295]);
    close(&out.grad_queries[..2], &[-0.13360858, -2.3931105]);
}

#[test]
fn a_labelled_input_is_a_typed_error() {
    let labels = [0, 0, 1];
    let input = LossInput::new(
        Batch::new(&labels, Embeddings::from_row_major(&ZA, 3, 2).unwrap()).unwrap(),
    );
    for loss in all() {
        let err = loss.compute(&input).unwrap_err();
        assert!(
            matches!(err, LossError::InputKind { .. }),
            "{}: {err}",
            loss.name()
        );
    }
}

#[test]
fn bad_shapes_and_values_are_typed_errors() {
    let a = Embeddings::from_row_major(&ZA, 3, 2).unwrap();
    let narrow = Embeddings::from_row_major(&ZB, 2, 3).unwrap();
    let short = Embeddings::from_row_major(&ZB[..4], 2, 2).unwrap();
    let nan = [f32::NAN, 0.0, 1.0, 0.0, 0.0, 1.0];
    let bad = Embeddings::from_row_major(&nan, 3, 2).unwrap();
    let empty = Embeddings::<f32>::from_row_major(&[], 0, 2).unwrap();
    let w = [1.0f32; 2];
    for loss in all() {
        let name = loss.name().to_owned();
        let err = |input: LossInput<'_, f32>| loss.compute(&input).unwrap_err();
        assert!(
            matches!(
                err(LossInput::views(a, narrow)),
                LossError::DimensionMismatch { .. }
            ),
            "{name}"
        );
        assert!(
            matches!(
                err(LossInput::views(bad, a)),
                LossError::NonFiniteEmbedding { .. }
            ),
            "{name}"
        );
        assert!(
            matches!(
                err(LossInput::views(a, bad)),
                LossError::NonFiniteEmbedding { .. }
            ),
            "{name}"
        );
        let weights = LossInput::views(a, a).with_sample_weight(SampleWeight::PerExample(&w));
        assert!(
            matches!(err(weights), LossError::LengthMismatch { .. }),
            "{name}"
        );
        let _ = loss.compute(&LossInput::views(a, short));
        let _ = loss.compute(&LossInput::views(empty, empty));
    }
    // Barlow takes one weight (or a scalar), not one per example.
    let barlow = Barlow::default();
    let three = [1.0f32; 3];
    let per_example = LossInput::views(a, a).with_sample_weight(SampleWeight::PerExample(&three));
    assert!(matches!(
        barlow.compute(&per_example),
        Err(LossError::LengthMismatch { .. })
    ));
    // VicReg needs two rows.
    let one = Embeddings::from_row_major(&ZA[..2], 1, 2).unwrap();
    assert!(matches!(
        VicReg::default().compute(&LossInput::views(one, one)),
        Err(LossError::Unsupported { .. })
    ));
    // SimSiam broadcasts one row, but not two against three.
    let simsiam = SimSiamLoss::default();
    assert_eq!(
        simsiam
            .compute(&LossInput::views(one, a))
            .unwrap()
            .grad_queries
            .len(),
        2
    );
    assert!(matches!(
        simsiam.compute(&LossInput::views(a, short)),
        Err(LossError::LengthMismatch { .. })
    ));
    // SimCLR needs as many rows in both views, and at least one.
    let simclr = SimCLRLoss::default();
    assert!(matches!(
        simclr.compute(&LossInput::views(a, short)),
        Err(LossError::LengthMismatch { .. })
    ));
    assert!(matches!(
        simclr.compute(&LossInput::views(empty, empty)),
        Err(LossError::Unsupported { .. })
    ));
    // MultiNegativesRank takes fewer keys, and an empty batch is 0.
    let mnrl = MultiNegativesRankLoss::default();
    assert!(mnrl.compute(&LossInput::views(a, short)).is_ok());
    assert_eq!(
        mnrl.compute(&LossInput::views(empty, empty)).unwrap().loss,
        0.0
    );
}

#[test]
fn configs_round_trip_with_tf_keys() {
    let mnrl = MultiNegativesRankLossConfig::default()
        .scale(5.0)
        .build()
        .unwrap();
    let json = serde_json::to_value(&mnrl).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"reduction": "auto", "name": "MultipleNegativesRankingLoss",
                           "distance": "inner_product", "scale": 5.0})
    );
    assert_eq!(
        serde_json::from_value::<MultiNegativesRankLoss>(json).unwrap(),
        mnrl
    );
    let simclr: SimCLRLoss =
        serde_json::from_str(r#"{"temperature": 0.5, "reduction": "sum"}"#).unwrap();
    assert_eq!(simclr.config().temperature, 0.5);
    assert!(serde_json::from_str::<SimCLRLoss>(r#"{"temp": 0.5}"#).is_err());
    assert!(serde_json::from_str::<SimCLRLoss>(r#"{"reduction": "mean"}"#).is_err());
    assert!(
        serde_json::from_str::<MultiNegativesRankLoss>(r#"{"distance": "chebyshev"}"#).is_err()
    );
}
