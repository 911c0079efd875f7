//! The losses with a parameter matrix (ArcFace, CosFace, SubCenterArcFace, ProxyAnchor):
//! their gradients, embeddings and parameters, against central differences (f64); setting
//! and reading the parameters; the typed errors of bad configs and calls.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight,
    Workspace,
};
use metric_loss_pml::{
    ArcFaceLossConfig, ContrastiveLoss, CosFaceLossConfig, LpDistance, MeanReducer,
    ProxyAnchorLossConfig, SubCenterArcFaceLossConfig, SumReducer,
};
use metric_loss_testkit::{check_gradient, values, GradientPoint};

const LABELS: [i64; 7] = [0, 1, 2, 0, 1, 3, 0];
const DIMS: usize = 4;
const CLASSES: usize = 5;

fn rows() -> Vec<f64> {
    values(LABELS.len() * DIMS, 11)
}

fn check(loss: &dyn MetricLoss, weights: Option<&[f64]>) {
    let x = rows();
    let mut point = GradientPoint::new(&LABELS, &x, DIMS);
    if let Some(w) = weights {
        point = point.with_weights(w);
    }
    check_gradient(loss, point, 1e-6, 1e-6).unwrap();
}

#[test]
fn classifier_gradients_match_finite_differences() {
    let weights = [1.0, 0.5, 2.0, 0.0, 1.5, 1.0, -0.5];
    // Scales that keep the softmax unsaturated; margins on both ArcFace branches
    // (170° puts every target angle beyond π − m).
    for margin in [28.6, 10.0, 170.0] {
        let loss = ArcFaceLossConfig::new(CLASSES, DIMS)
            .margin(margin)
            .scale(3.0)
            .seed(1)
            .build()
            .unwrap();
        check(&loss, None);
        check(&loss, Some(&weights));
    }
    let cosface = CosFaceLossConfig::new(CLASSES, DIMS)
        .scale(5.0)
        .reducer(SumReducer {})
        .build()
        .unwrap();
    check(&cosface, Some(&weights));
    for sub_centers in [1, 3] {
        let loss = SubCenterArcFaceLossConfig::new(CLASSES, DIMS)
            .sub_centers(sub_centers)
            .scale(2.0)
            .seed(5)
            .build()
            .unwrap();
        check(&loss, None);
    }
}

#[test]
fn proxy_anchor_gradients_match_finite_differences() {
    let cosine = ProxyAnchorLossConfig::new(CLASSES, DIMS)
        .alpha(4.0)
        .build()
        .unwrap();
    check(&cosine, None);
    let euclidean = ProxyAnchorLossConfig::new(CLASSES, DIMS)
        .alpha(3.0)
        .margin(0.3)
        .distance(LpDistance::default())
        .reducer(MeanReducer {})
        .seed(9)
        .build()
        .unwrap();
    check(&euclidean, None);
}

#[test]
fn parameters_are_set_read_and_checked() {
    let loss = ArcFaceLossConfig::new(3, 2).seed(4).build().unwrap();
    let shape = loss.parameter_shape().unwrap();
    assert_eq!((shape.name, shape.rows, shape.cols), ("W", 2, 3));
    let mut w = vec![0.0; 6];
    loss.read_parameters(&mut w).unwrap();
    // PML's N(0, 1), drawn from the seed: the same seed, the same matrix.
    let mut again = vec![0.0; 6];
    ArcFaceLossConfig::new(3, 2)
        .seed(4)
        .build()
        .unwrap()
        .read_parameters(&mut again)
        .unwrap();
    assert_eq!(w, again);
    let set = [1.0, 0.0, -1.0, 0.0, 1.0, 0.0];
    loss.set_parameters(&set).unwrap();
    loss.read_parameters(&mut w).unwrap();
    assert_eq!(w, set);
    assert!(matches!(
        loss.set_parameters(&[1.0; 5]),
        Err(LossError::BufferLength {
            what: "W",
            got: 5,
            expected: 6,
            ..
        })
    ));
    assert!(matches!(
        loss.set_parameters(&[1.0, 0.0, f64::NAN, 0.0, 1.0, 0.0]),
        Err(LossError::NonFiniteParameter {
            name: "W",
            index: 2,
            ..
        })
    ));
    assert!(matches!(
        loss.read_parameters(&mut [0.0; 7]),
        Err(LossError::BufferLength { .. })
    ));
    // ProxyAnchor's proxies: num_classes x embedding_size, std √(2 / num_classes).
    let proxies = ProxyAnchorLossConfig::new(200, 50).build().unwrap();
    let shape = proxies.parameter_shape().unwrap();
    assert_eq!((shape.name, shape.rows, shape.cols), ("proxies", 200, 50));
    let mut p = vec![0.0; shape.len()];
    proxies.read_parameters(&mut p).unwrap();
    let std = (p.iter().map(|v| v * v).sum::<f64>() / p.len() as f64).sqrt();
    assert!((std - 0.1).abs() < 0.005, "{std}");
    // A loss without parameters says so.
    let plain = ContrastiveLoss::new();
    assert!(plain.parameter_shape().is_none());
    assert!(matches!(
        plain.set_parameters(&[]),
        Err(LossError::NoParameters { .. })
    ));
}

#[test]
fn f32_and_f64_agree_and_the_steady_state_reuses_its_buffers() {
    let loss = SubCenterArcFaceLossConfig::new(CLASSES, DIMS)
        .scale(2.0)
        .build()
        .unwrap();
    let x = rows();
    let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
    let (a, b) = (
        loss.evaluate(&LABELS, &x, DIMS).unwrap(),
        loss.evaluate(&LABELS, &x32, DIMS).unwrap(),
    );
    assert!((a.loss - f64::from(b.loss)).abs() < 1e-5);
    for (g, h) in a.grad_parameters.iter().zip(&b.grad_parameters) {
        assert!((g - f64::from(*h)).abs() < 1e-4);
    }
    // The per-example shares add up to the loss.
    assert!((a.per_example.iter().sum::<f64>() - a.loss).abs() < 1e-12);
    let mut ws = Workspace::new();
    let mut out = LossOutput::new();
    let batch = Batch::new(
        &LABELS,
        Embeddings::from_row_major(&x, LABELS.len(), DIMS).unwrap(),
    )
    .unwrap();
    loss.compute_into(&LossInput::new(batch), &mut ws, &mut out)
        .unwrap();
    let capacity = out.grad_parameters.capacity();
    loss.compute_into(&LossInput::new(batch), &mut ws, &mut out)
        .unwrap();
    assert_eq!(out.grad_parameters, a.grad_parameters);
    assert_eq!(out.grad_parameters.capacity(), capacity);
    let without = loss
        .compute(&LossInput::new(batch).without_gradient())
        .unwrap();
    assert!(without.grad_parameters.is_empty());
}

#[test]
fn bad_configs_are_typed_errors() {
    let missing = ArcFaceLossConfig::default().embedding_size(4).build();
    assert!(matches!(
        missing,
        Err(LossError::MissingArgument {
            loss: "ArcFaceLoss",
            name: "num_classes",
            ..
        })
    ));
    let missing = ProxyAnchorLossConfig::default().num_classes(4).build();
    assert!(matches!(
        missing,
        Err(LossError::MissingArgument {
            name: "embedding_size",
            ..
        })
    ));
    let euclidean = CosFaceLossConfig::new(3, 2)
        .distance(LpDistance::default())
        .build();
    assert!(matches!(
        euclidean,
        Err(LossError::UnsupportedDistance {
            loss: "CosFaceLoss",
            expected: "CosineSimilarity",
            ..
        })
    ));
    let tf_cosine = SubCenterArcFaceLossConfig::new(3, 2)
        .distance("cosine")
        .build();
    assert!(matches!(
        tf_cosine,
        Err(LossError::UnsupportedDistance { .. })
    ));
    assert!(SubCenterArcFaceLossConfig::new(3, 2)
        .sub_centers(0)
        .build()
        .is_err());
    assert!(ArcFaceLossConfig::new(3, 2)
        .scale(f64::NAN)
        .build()
        .is_err());
    assert!(ProxyAnchorLossConfig::new(3, 2)
        .alpha(f64::INFINITY)
        .build()
        .is_err());
    // Sizes from an untrusted config: refused before anything is allocated.
    let huge = SubCenterArcFaceLossConfig::new(usize::MAX / 2, 1 << 20)
        .sub_centers(4)
        .build();
    assert!(matches!(
        huge,
        Err(LossError::TooLarge {
            what: "the parameter matrix",
            ..
        })
    ));
    let huge = ProxyAnchorLossConfig::new(1 << 40, 1 << 40).build();
    assert!(matches!(huge, Err(LossError::TooLarge { .. })));
}

#[test]
fn bad_calls_are_typed_errors() {
    let losses: [Box<dyn MetricLoss>; 4] = [
        Box::new(ArcFaceLossConfig::new(3, 2).build().unwrap()),
        Box::new(CosFaceLossConfig::new(3, 2).build().unwrap()),
        Box::new(SubCenterArcFaceLossConfig::new(3, 2).build().unwrap()),
        Box::new(ProxyAnchorLossConfig::new(3, 2).build().unwrap()),
    ];
    let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    for loss in &losses {
        let name = loss.name();
        let err = loss.evaluate(&[0, 1, 3, 2], &x, 2).unwrap_err();
        assert!(
            matches!(
                err,
                LossError::LabelOutOfRange {
                    index: 2,
                    label: 3,
                    num_classes: 3
                }
            ),
            "{name}: {err}"
        );
        let err = loss.evaluate(&[0, -1, 1, 2], &x, 2).unwrap_err();
        assert!(
            matches!(err, LossError::LabelOutOfRange { index: 1, .. }),
            "{name}"
        );
        let err = loss.evaluate(&[0, 1], &x, 4).unwrap_err();
        assert!(
            matches!(
                err,
                LossError::EmbeddingSize {
                    got: 4,
                    expected: 2
                }
            ),
            "{name}: {err}"
        );
        let labels = [0, 1, 1, 2];
        let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
        let with_keys = LossInput::new(batch).with_keys(batch);
        let err = loss.compute(&with_keys).unwrap_err();
        assert!(
            matches!(err, LossError::Unsupported { .. }),
            "{name}: {err}"
        );
        let views = LossInput::views(
            Embeddings::from_row_major(&x, 4, 2).unwrap(),
            Embeddings::from_row_major(&x, 4, 2).unwrap(),
        );
        let err = loss.compute(&views).unwrap_err();
        assert!(matches!(err, LossError::InputKind { .. }), "{name}: {err}");
        let mut bad = x;
        bad[3] = f64::NAN;
        assert!(loss.evaluate(&labels, &bad, 2).is_err(), "{name}");
    }
    let weights = [1.0, 2.0, 1.0, 1.0];
    let labels = [0, 1, 1, 2];
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
    let weighted = LossInput::new(batch).with_sample_weight(SampleWeight::PerExample(&weights));
    assert!(matches!(
        losses[3].compute(&weighted),
        Err(LossError::Unsupported { .. })
    ));
    assert!(losses[0].compute(&weighted).is_ok());
}
