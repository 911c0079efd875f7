//! pytorch-metric-learning's losses read from configs with PML's keywords, distances and
//! reducers named as PML's classes, written back and read again to the same numbers.

use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt};
use metric_loss_registry::{from_str, Format};

const CONFIGS: [&str; 3] = [
    r#"{"class_name": "ContrastiveLoss", "config": {"pos_margin": 0.2, "neg_margin": 0.8,
        "distance": {"class_name": "LpDistance", "config": {"normalize_embeddings": false, "power": 2}},
        "reducer": {"class_name": "MeanReducer", "config": {}}}}"#,
    r#"{"class_name": "NTXentLoss", "config": {"temperature": 0.1,
        "distance": {"class_name": "DotProductSimilarity", "config": {"normalize_embeddings": false}},
        "reducer": {"class_name": "ThresholdReducer", "config": {"low": 0.5}}}}"#,
    r#"{"class_name": "SupConLoss", "config": {"temperature": 0.07}}"#,
];

#[test]
fn pml_configs_round_trip_to_the_same_numbers() {
    let x = [
        0.3f64, -0.2, 0.9, 0.1, -0.5, 0.4, 0.2, 0.8, -0.7, -0.3, 0.6, -0.1,
    ];
    let labels = [0, 1, 0, 1, 2, 2];
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 6, 2).unwrap()).unwrap();
    let input = LossInput::new(batch);
    for text in CONFIGS {
        let loss = from_str(text, Format::Json).unwrap();
        let written = loss.to_config_string(Format::Toml).unwrap();
        let again = from_str(&written, Format::Toml).unwrap();
        let (a, b) = (
            loss.compute(&input).unwrap(),
            again.compute(&input).unwrap(),
        );
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{written}");
        assert_eq!(a.grad_queries, b.grad_queries);
        assert!(a.loss > 0.0, "{text}");
    }
}

#[test]
fn shipped_pml_configs_are_the_defaults_built_in_code() {
    use metric_loss_pml::{ArcFaceLoss, ContrastiveLoss, NTXentLoss, SupConLoss};
    use metric_loss_registry::load;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs");
    let x = [
        0.3f32, -0.2, 0.9, 0.1, -0.5, 0.4, 0.2, 0.8, -0.7, -0.3, 0.6, -0.1,
    ];
    let labels = [0, 1, 0, 1, 2, 2];
    // (file, the loss built in code, the embedding width it takes)
    let defaults: [(&str, Box<dyn metric_loss_registry::RegisteredLoss>, usize); 4] = [
        ("supcon.yaml", Box::new(SupConLoss::default()), 2),
        (
            "arcface.yaml",
            Box::new(ArcFaceLoss::new(10, 128).unwrap()),
            128,
        ),
        ("ntxent.yaml", Box::new(NTXentLoss::default()), 2),
        ("contrastive.json", Box::new(ContrastiveLoss::default()), 2),
    ];
    for (file, in_code, dims) in defaults {
        let x: Vec<f32> = x
            .iter()
            .copied()
            .cycle()
            .take(labels.len() * dims)
            .collect();
        let loaded = load(dir.join(file)).unwrap();
        assert_eq!(
            loaded.get_config().unwrap(),
            in_code.get_config().unwrap(),
            "{file}"
        );
        let (a, b) = (
            loaded.evaluate(&labels, &x, dims).unwrap(),
            in_code.evaluate(&labels, &x, dims).unwrap(),
        );
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{file}");
    }
}

/// The losses with a parameter matrix: config → loss → config, the same seed giving the
/// same initial matrix and so the same numbers; the values set on one loss are its own.
#[test]
fn learnable_configs_round_trip_with_their_seed() {
    use metric_loss_core::MetricLoss;
    let configs = [
        r#"{"class_name": "ArcFaceLoss", "config": {"num_classes": 3, "embedding_size": 2,
            "margin": 10.0, "scale": 4.0, "seed": 7}}"#,
        r#"{"class_name": "CosFaceLoss", "config": {"num_classes": 3, "embedding_size": 2,
            "reducer": {"class_name": "SumReducer", "config": {}}}}"#,
        r#"{"class_name": "SubCenterArcFaceLoss", "config": {"num_classes": 3,
            "embedding_size": 2, "sub_centers": 2, "scale": 2.0}}"#,
        r#"{"class_name": "ProxyAnchorLoss", "config": {"num_classes": 3, "embedding_size": 2,
            "distance": {"class_name": "LpDistance", "config": {}}, "seed": 3}}"#,
    ];
    let x = [
        0.3f64, -0.2, 0.9, 0.1, -0.5, 0.4, 0.2, 0.8, -0.7, -0.3, 0.6, -0.1,
    ];
    let labels = [0, 1, 0, 1, 2, 2];
    for text in configs {
        let loss = from_str(text, Format::Json).unwrap();
        let written = loss.to_config_string(Format::Yaml).unwrap();
        let again = from_str(&written, Format::Yaml).unwrap();
        assert_eq!(loss.get_config().unwrap(), again.get_config().unwrap());
        let shape = loss.parameter_shape().unwrap();
        let (mut a, mut b) = (vec![0.0; shape.len()], vec![0.0; shape.len()]);
        loss.read_parameters(&mut a).unwrap();
        again.read_parameters(&mut b).unwrap();
        assert_eq!(a, b, "{written}");
        let (out_a, out_b) = (
            loss.evaluate(&labels, &x, 2).unwrap(),
            again.evaluate(&labels, &x, 2).unwrap(),
        );
        assert_eq!(out_a.loss.to_bits(), out_b.loss.to_bits(), "{written}");
        assert_eq!(out_a.grad_parameters, out_b.grad_parameters);
        assert!(out_a.grad_parameters.iter().any(|g| *g != 0.0), "{text}");
        // Setting one loss's parameters leaves the other's alone.
        again.set_parameters(&vec![0.5; shape.len()]).unwrap();
        loss.read_parameters(&mut b).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn learnable_configs_without_their_sizes_are_typed_errors() {
    use metric_loss_core::LossError;
    for class in [
        "ArcFaceLoss",
        "CosFaceLoss",
        "SubCenterArcFaceLoss",
        "ProxyAnchorLoss",
    ] {
        let text = format!(r#"{{"class_name": "{class}", "config": {{"embedding_size": 4}}}}"#);
        let err = from_str(&text, Format::Json).unwrap_err();
        assert!(
            matches!(
                err.loss_error(),
                Some(LossError::MissingArgument {
                    name: "num_classes",
                    ..
                })
            ),
            "{class}: {err:?}"
        );
    }
}
