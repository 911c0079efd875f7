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
    use metric_loss_pml::{ContrastiveLoss, NTXentLoss, SupConLoss};
    use metric_loss_registry::load;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs");
    let x = [
        0.3f32, -0.2, 0.9, 0.1, -0.5, 0.4, 0.2, 0.8, -0.7, -0.3, 0.6, -0.1,
    ];
    let labels = [0, 1, 0, 1, 2, 2];
    let defaults: [(&str, Box<dyn metric_loss_registry::RegisteredLoss>); 3] = [
        ("supcon.yaml", Box::new(SupConLoss::default())),
        ("ntxent.yaml", Box::new(NTXentLoss::default())),
        ("contrastive.json", Box::new(ContrastiveLoss::default())),
    ];
    for (file, in_code) in defaults {
        let loaded = load(dir.join(file)).unwrap();
        assert_eq!(
            loaded.get_config().unwrap(),
            in_code.get_config().unwrap(),
            "{file}"
        );
        let (a, b) = (
            loaded.evaluate(&labels, &x, 2).unwrap(),
            in_code.evaluate(&labels, &x, 2).unwrap(),
        );
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "{file}");
    }
}
