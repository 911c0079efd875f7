//! Constructors, configs, errors, degenerate inputs and XBM's state.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, MetricLoss, MetricLossExt, Reduction, SampleWeight,
    StrategyRole,
};
use metric_loss_losses::{
    CircleLoss, CircleLossConfig, MultiSimilarityLoss, MultiSimilarityLossConfig, PNLoss,
    PNLossConfig, SoftNearestNeighborLoss, SoftNearestNeighborLossConfig, WrappedLossConfig,
    XBMConfig, XBM,
};
use metric_loss_triplet::TripletLossConfig;

const X: [f32; 8] = [1.0, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];

#[test]
fn defaults_are_tf_similarity_0_17_1() {
    let pn = PNLoss::default().config().unwrap();
    assert_eq!(
        (
            pn.distance.name().unwrap(),
            pn.positive_mining_strategy.as_str(),
            pn.negative_mining_strategy.as_str(),
            pn.margin,
            pn.name.as_str()
        ),
        ("cosine", "hard", "semi-hard", None, "PNLoss")
    );
    let ms = MultiSimilarityLoss::default().config().unwrap();
    assert_eq!(
        (
            ms.alpha,
            ms.beta,
            ms.epsilon,
            ms.lmda,
            ms.center,
            ms.name.as_str()
        ),
        (2.0, 40.0, 0.1, 0.5, 1.0, "MultiSimilarityLoss")
    );
    let c = CircleLoss::default().config().unwrap();
    assert_eq!(
        (c.gamma, c.margin, c.name.as_str()),
        (80.0, 0.4, "CircleLoss")
    );
    let s = SoftNearestNeighborLoss::default().config().unwrap();
    assert_eq!(
        (s.distance.name().unwrap(), s.temperature, s.name.as_str()),
        ("squared_euclidean", 1.0, "SoftNearestNeighborLoss")
    );
    for loss in [
        Box::new(PNLoss::default()) as Box<dyn MetricLoss>,
        Box::new(MultiSimilarityLoss::default()),
        Box::new(CircleLoss::default()),
        Box::new(SoftNearestNeighborLoss::default()),
    ] {
        assert_eq!(loss.reduction(), Reduction::Auto);
    }
}

#[test]
fn configs_use_tf_keys_and_reject_unknown_ones() {
    let pn: PNLossConfig = serde_json::from_str(
        r#"{"distance": "L2", "positive_mining_strategy": "easy", "margin": null}"#,
    )
    .unwrap();
    assert_eq!(
        pn.build().unwrap().config().unwrap().distance.name(),
        Some("euclidean")
    );
    assert!(serde_json::from_str::<PNLossConfig>(r#"{"soft_margin": true}"#).is_err());
    let ms: MultiSimilarityLossConfig =
        serde_json::from_str(r#"{"alpha": 1, "beta": 20, "lmda": 0.7}"#).unwrap();
    assert_eq!(
        (ms.alpha, ms.beta, ms.lmda, ms.epsilon),
        (1.0, 20.0, 0.7, 0.1)
    );
    assert!(serde_json::from_str::<MultiSimilarityLossConfig>(r#"{"lambda_": 0.5}"#).is_err());
    assert!(serde_json::from_str::<CircleLossConfig>(r#"{"gama": 32}"#).is_err());
    let s: SoftNearestNeighborLossConfig = serde_json::from_str(r#"{"temperature": 1}"#).unwrap();
    assert_eq!(s.temperature, 1.0);
    assert!(serde_json::from_str::<SoftNearestNeighborLossConfig>(r#"{"temp": 0.5}"#).is_err());
}

#[test]
fn get_config_round_trips() {
    let pn = PNLossConfig::default()
        .distance("sql2")
        .margin(0.2)
        .name("pn")
        .reduction(Reduction::Sum);
    let built = pn.build().unwrap();
    assert_eq!(built.config().unwrap().build().unwrap(), built);
    let json = serde_json::to_string(&built.config().unwrap()).unwrap();
    let back: PNLossConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.build().unwrap(), built);
    assert!(!json.contains("remove_diagonal"), "{json}");

    let ms = MultiSimilarityLossConfig::default()
        .beta(-40.0)
        .remove_diagonal(false)
        .build()
        .unwrap();
    let json = serde_json::to_string(&ms.config().unwrap()).unwrap();
    assert!(json.contains("\"remove_diagonal\":false"), "{json}");
    assert_eq!(
        serde_json::from_str::<MultiSimilarityLossConfig>(&json)
            .unwrap()
            .build()
            .unwrap(),
        ms
    );
    let c = CircleLossConfig::default()
        .gamma(0.0)
        .margin(-0.2)
        .build()
        .unwrap();
    assert_eq!(c.config().unwrap().build().unwrap(), c);
    let s = SoftNearestNeighborLossConfig::default()
        .temperature(-1.0)
        .build()
        .unwrap();
    assert_eq!(s.config().unwrap().build().unwrap(), s);
}

#[test]
fn constructor_errors() {
    let err = PNLossConfig::default()
        .positive_mining_strategy("semi-hard")
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        LossError::InvalidStrategy {
            role: StrategyRole::Positive,
            ..
        }
    ));
    let err = PNLossConfig::default()
        .negative_mining_strategy("medium")
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        LossError::InvalidStrategy {
            role: StrategyRole::Negative,
            ..
        }
    ));
    // The distance is checked first, as in TF Similarity.
    let err = PNLossConfig::default()
        .distance("chebyshev")
        .positive_mining_strategy("x")
        .build()
        .unwrap_err();
    assert!(matches!(err, LossError::UnknownDistance { .. }));
    for err in [
        PNLossConfig::default()
            .margin(f64::NAN)
            .build()
            .unwrap_err(),
        MultiSimilarityLossConfig::default()
            .alpha(0.0)
            .build()
            .unwrap_err(),
        MultiSimilarityLossConfig::default()
            .beta(0.0)
            .build()
            .unwrap_err(),
        MultiSimilarityLossConfig::default()
            .epsilon(f64::INFINITY)
            .build()
            .unwrap_err(),
        MultiSimilarityLossConfig::default()
            .center(f64::NAN)
            .build()
            .unwrap_err(),
        CircleLossConfig::default()
            .gamma(f64::INFINITY)
            .build()
            .unwrap_err(),
        SoftNearestNeighborLossConfig::default()
            .temperature(0.0)
            .build()
            .unwrap_err(),
        SoftNearestNeighborLossConfig::default()
            .temperature(f64::NAN)
            .build()
            .unwrap_err(),
    ] {
        assert!(matches!(err, LossError::InvalidParameter { .. }), "{err}");
    }
    assert!(matches!(
        CircleLossConfig {
            reduction: "mean".into(),
            ..Default::default()
        }
        .build(),
        Err(LossError::UnknownReduction { .. })
    ));
}

#[test]
fn losses_are_finite_where_tf_is_not() {
    // MultiSimilarity on unnormalised rows with squared euclidean: TF gives -inf / NaN.
    let big: Vec<f32> = X.iter().map(|v| v * 30.0).collect();
    let ms = MultiSimilarityLossConfig::default()
        .distance("sql2")
        .build()
        .unwrap();
    let out = ms.evaluate(&[0, 1, 0, 1], &big, 2).unwrap();
    assert!(out.loss.is_finite() && out.grad_queries.iter().all(|v| v.is_finite()));
    // SoftNN: a batch of one, and rows whose exponentials all underflow.
    let s = SoftNearestNeighborLoss::default();
    let out = s.evaluate(&[3], &X[..2], 2).unwrap();
    assert_eq!((out.per_example[0], out.loss), (0.0, 0.0));
    let out = SoftNearestNeighborLossConfig::default()
        .temperature(0.5)
        .build()
        .unwrap()
        .evaluate(&[0, 1, 0, 1], &big, 2)
        .unwrap();
    assert!(
        out.per_example.iter().all(|v| v.is_finite() && *v >= 0.0),
        "{:?}",
        out.per_example
    );
    assert!(out.grad_queries.iter().all(|v| v.is_finite()));
    // PN's soft margin for z far below 0: TF gives +inf.
    let pn = PNLossConfig::default()
        .distance("sql2")
        .negative_mining_strategy("easy")
        .build()
        .unwrap();
    let huge: Vec<f32> = X.iter().map(|v| v * 100.0).collect();
    let out = pn.evaluate(&[0, 1, 2, 3], &huge, 2).unwrap();
    assert!(out.loss.is_finite(), "{:?}", out.per_example);
}

#[test]
fn sample_weights_and_reductions() {
    let w = [1.0f32, 2.0, 0.0, 1.0];
    let e = Embeddings::from_row_major(&X, 4, 2).unwrap();
    let labels = [0, 1, 0, 1];
    for config in [Reduction::Auto, Reduction::Sum, Reduction::None] {
        let loss = CircleLossConfig::default()
            .reduction(config)
            .build()
            .unwrap();
        let input = LossInput::new(Batch::new(&labels, e).unwrap())
            .with_sample_weight(SampleWeight::PerExample(&w));
        let out = loss.compute(&input).unwrap();
        let sum: f32 = out.per_example.iter().zip(&w).map(|(l, w)| l * w).sum();
        let want = if config == Reduction::Auto {
            sum / 4.0
        } else {
            sum
        };
        assert!(
            (out.loss - want).abs() <= 1e-5 * want.abs(),
            "{config}: {} vs {want}",
            out.loss
        );
        // Anchor 2 has weight 0: its own row gets gradient only through the others.
        let unweighted = loss.evaluate(&labels, &X, 2).unwrap();
        assert_eq!(out.per_example, unweighted.per_example);
    }
}

#[test]
fn f64_matches_f32() {
    let x64: Vec<f64> = X.iter().map(|v| f64::from(*v)).collect();
    for loss in [
        Box::new(PNLoss::default()) as Box<dyn MetricLoss>,
        Box::new(MultiSimilarityLoss::default()),
        Box::new(CircleLoss::default()),
        Box::new(SoftNearestNeighborLoss::default()),
    ] {
        let a = loss.evaluate(&[0, 1, 0, 1], &X, 2).unwrap();
        let b = loss.evaluate(&[0, 1, 0, 1], &x64, 2).unwrap();
        assert!(
            (f64::from(a.loss) - b.loss).abs() <= 1e-4 * (1.0 + b.loss.abs()),
            "{}",
            loss.name()
        );
        for (g32, g64) in a.grad_queries.iter().zip(&b.grad_queries) {
            assert!(
                (f64::from(*g32) - g64).abs() <= 1e-3 * (1.0 + g64.abs()),
                "{}",
                loss.name()
            );
        }
    }
}

fn triplet_xbm(memory: usize, warmup: u64) -> XBM {
    XBMConfig::new(
        WrappedLossConfig::TripletLoss(
            TripletLossConfig::default()
                .negative_mining_strategy("hard")
                .margin(1.0),
        ),
        memory,
    )
    .warmup_steps(warmup)
    .build()
    .unwrap()
}

#[test]
fn xbm_warm_up_truncation_and_reset() {
    let xbm = triplet_xbm(5, 1);
    xbm.evaluate(&[0, 1], &X[..4], 2).unwrap();
    assert!(xbm.memory_labels().is_empty(), "warm-up stores nothing");
    xbm.evaluate(&[2, 3], &X[4..], 2).unwrap();
    assert_eq!(xbm.memory_labels(), [2, 3]);
    xbm.evaluate(&[4, 5, 6], &X[..6], 2).unwrap();
    assert_eq!(xbm.memory_labels(), [4, 5, 6, 2, 3]);
    xbm.evaluate(&[7, 8], &X[..4], 2).unwrap();
    assert_eq!(xbm.memory_labels(), [7, 8, 4, 5, 6], "oldest rows fall off");
    assert_eq!(xbm.steps(), 4);
    xbm.reset_state();
    assert_eq!((xbm.steps(), xbm.memory_labels().len()), (0, 0));
}

#[test]
fn xbm_errors_leave_the_state_alone() {
    let xbm = triplet_xbm(2, 0);
    let err = xbm.evaluate(&[0, 1, 0], &X[..6], 2).unwrap_err();
    assert!(matches!(err, LossError::Unsupported { .. }), "{err}");
    assert_eq!(xbm.steps(), 0);
    xbm.evaluate(&[0, 1], &X[..4], 2).unwrap();
    let x64: Vec<f64> = X[..4].iter().map(|v| f64::from(*v)).collect();
    assert!(matches!(
        xbm.evaluate(&[0, 1], &x64, 2),
        Err(LossError::Unsupported { .. })
    ));
    assert!(matches!(
        xbm.evaluate(&[0], &X[..3], 3),
        Err(LossError::Unsupported { .. })
    ));
    assert_eq!((xbm.steps(), xbm.memory_labels()), (1, vec![0, 1]));
    xbm.reset_state();
    xbm.evaluate(&[0, 1], &x64, 2).unwrap();
    // Separate keys are XBM's own business.
    let e = Embeddings::from_row_major(&X[..4], 2, 2).unwrap();
    let b = Batch::new(&[0, 1], e).unwrap();
    assert!(xbm.compute(&LossInput::new(b).with_keys(b)).is_err());
    assert!(XBM::new(Box::new(PNLoss::default()), 0, 0).is_err());
}

#[test]
fn xbm_config_parses_the_fixture_form_and_is_shareable() {
    let json = r#"{"memory_size": 24, "warmup_steps": 1, "loss": {"class_name": "TripletLoss",
        "distance": "cosine", "positive_mining_strategy": "hard",
        "negative_mining_strategy": "semi-hard", "soft_margin": true, "margin": null}}"#;
    let config: XBMConfig = serde_json::from_str(json).unwrap();
    let xbm = config.build().unwrap();
    assert_eq!(xbm.config().unwrap(), config);
    let back: XBMConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    let json = r#"{"memory_size": 8, "loss": {"class_name": "CircleLoss", "gamma": 32}}"#;
    assert!(serde_json::from_str::<XBMConfig>(json)
        .unwrap()
        .build()
        .is_ok());
    assert!(serde_json::from_str::<XBMConfig>(
        r#"{"memory_size": 8, "loss": {"class_name": "CircleLoss", "gama": 32}}"#
    )
    .is_err());

    fn shareable<T: Send + Sync>(_: &T) {}
    shareable(&xbm);
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let xbm = &xbm;
            s.spawn(move || xbm.evaluate(&[t, t + 1], &X[..4], 2).unwrap());
        }
    });
    assert_eq!(xbm.steps(), 4);
    // Whichever call came first was the warm-up step; the other three were stored.
    assert_eq!(xbm.memory_labels().len(), 6);
}

#[test]
fn xbm_forces_remove_diagonal_on_the_wrapped_loss() {
    let wrapped = WrappedLossConfig::CircleLoss(CircleLossConfig::default().remove_diagonal(false));
    let xbm = XBMConfig::new(wrapped, 8).build().unwrap();
    match xbm.config().unwrap().loss {
        WrappedLossConfig::CircleLoss(c) => assert!(c.remove_diagonal),
        other => panic!("{other:?}"),
    }
}

#[test]
fn overflow_is_an_error_not_a_nan() {
    // Circle's scores are γ(D² − m²): D ≈ 3e18 overflows f32.
    let huge: Vec<f32> = X.iter().map(|v| v * 3e18).collect();
    let circle = CircleLossConfig::default().distance("l2").build().unwrap();
    let err = circle.evaluate(&[0, 1, 0, 1], &huge, 2).unwrap_err();
    assert!(matches!(err, LossError::Unsupported { .. }), "{err}");
    // α = 1e-50 is finite and non-zero in f64 but 0 in f32.
    let ms = MultiSimilarityLossConfig::default()
        .alpha(1e-50)
        .build()
        .unwrap();
    assert!(ms.evaluate(&[0, 1, 0, 1], &X, 2).is_err());
    let x64: Vec<f64> = X.iter().map(|v| f64::from(*v)).collect();
    assert!(ms
        .evaluate(&[0, 1, 0, 1], &x64, 2)
        .unwrap()
        .loss
        .is_finite());
}
