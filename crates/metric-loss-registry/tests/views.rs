//! TF Similarity's two-view losses read from configs, written back and read again to the
//! same numbers; the shipped example config against the in-code defaults; and the
//! input-kind rule between every registered loss and the two kinds of input.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, MetricLoss, MetricLossExt, SampleWeight,
};
use metric_loss_registry::{from_str, load, registered_names, Format, RegisteredLoss};

const CONFIGS: [&str; 5] = [
    r#"{"class_name": "MultiNegativesRankLoss", "config": {"scale": 5, "reduction": "sum"}}"#,
    r#"{"class_name": "SimCLRLoss", "config": {"temperature": 0.5, "name": "simclr"}}"#,
    r#"{"class_name": "SimSiamLoss", "config": {"projection_type": "angular_distance", "margin": 0.0}}"#,
    r#"{"class_name": "Barlow", "config": {"lambda_": 0.05}}"#,
    r#"{"class_name": "VicReg", "config": {"lambda_": 1, "mu": 2, "nu": 3, "reduction": "auto"}}"#,
];

const A: [f64; 8] = [0.3, -0.2, 0.9, 0.1, -0.5, 0.4, 0.2, 0.8];
const B: [f64; 8] = [0.1, -0.3, 0.7, 0.4, -0.6, 0.1, 0.5, 0.6];

fn views() -> LossInput<'static, f64> {
    LossInput::views(
        Embeddings::from_row_major(&A, 4, 2).unwrap(),
        Embeddings::from_row_major(&B, 4, 2).unwrap(),
    )
}

#[test]
fn view_configs_round_trip_to_the_same_numbers() {
    for text in CONFIGS {
        let loss = from_str(text, Format::Json).unwrap();
        for format in [Format::Toml, Format::Yaml, Format::Json] {
            let written = loss.to_config_string(format).unwrap();
            let again = from_str(&written, format).unwrap();
            assert_eq!(again.get_config().unwrap(), loss.get_config().unwrap());
            let (a, b) = (
                loss.compute(&views()).unwrap(),
                again.compute(&views()).unwrap(),
            );
            assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{written}");
            assert_eq!((a.grad_queries, a.grad_keys), (b.grad_queries, b.grad_keys));
        }
    }
    // TF's own spellings are errors where TF raises: an unknown keyword, a bad reduction.
    for bad in [
        r#"{"class_name": "SimCLRLoss", "config": {"temp": 0.5}}"#,
        r#"{"class_name": "Barlow", "config": {"reduction": "mean"}}"#,
        r#"{"class_name": "MultiNegativesRankLoss", "config": {"distance": "cosine"}}"#,
    ] {
        assert!(from_str(bad, Format::Json).is_err(), "{bad}");
    }
}

#[test]
fn shipped_simclr_config_is_the_default_built_in_code() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs/simclr.yaml");
    let loaded = load(path).unwrap();
    let in_code: Box<dyn RegisteredLoss> = Box::new(metric_loss_views::SimCLRLoss::default());
    assert_eq!(loaded.get_config().unwrap(), in_code.get_config().unwrap());
    let (a, b) = (
        loaded.compute(&views()).unwrap(),
        in_code.compute(&views()).unwrap(),
    );
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
}

const VIEW_CLASSES: [&str; 5] = [
    "Barlow",
    "MultiNegativesRankLoss",
    "SimCLRLoss",
    "SimSiamLoss",
    "VicReg",
];

/// Every registered loss with its default arguments (XBM and the losses with a parameter
/// matrix need their two required ones).
fn every_registered_loss() -> Vec<(&'static str, Box<dyn RegisteredLoss>)> {
    registered_names()
        .into_iter()
        .map(|name| {
            let config = match name {
                "XBM" => r#"{"memory_size": 8, "loss": {"class_name": "TripletLoss"}}"#,
                "ArcFaceLoss" | "CosFaceLoss" | "SubCenterArcFaceLoss" | "ProxyAnchorLoss" => {
                    r#"{"num_classes": 2, "embedding_size": 2}"#
                }
                _ => "{}",
            };
            let text = format!(r#"{{"class_name": "{name}", "config": {config}}}"#);
            (name, from_str(&text, Format::Json).unwrap())
        })
        .collect()
}

#[test]
fn each_loss_refuses_the_other_kind_of_input_with_a_typed_error() {
    let labels = [0, 0, 1, 1];
    let labelled =
        LossInput::new(Batch::new(&labels, Embeddings::from_row_major(&A, 4, 2).unwrap()).unwrap())
            .with_sample_weight(SampleWeight::None);
    let losses = every_registered_loss();
    assert_eq!(losses.len(), 18);
    for (name, loss) in losses {
        let loss: &dyn MetricLoss = loss.as_ref();
        let (wrong, right) = if VIEW_CLASSES.contains(&name) {
            (labelled, views())
        } else {
            (views(), labelled)
        };
        let err = loss.compute(&wrong).unwrap_err();
        assert!(matches!(err, LossError::InputKind { .. }), "{name}: {err}");
        assert!(loss.compute(&right).is_ok(), "{name}");
    }
}
