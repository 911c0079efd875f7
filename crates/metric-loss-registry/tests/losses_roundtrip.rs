//! The losses of `metric-loss-losses` (PNLoss, MultiSimilarityLoss, CircleLoss,
//! SoftNearestNeighborLoss, XBM) through the registry: config text → loss → get_config →
//! loss is the identity in every format, and a loss read from a config computes the same
//! numbers (per-example losses, loss, gradients, f32 and f64) as the same loss built in
//! code. XBM is stateful: fresh instances are compared over a three-step sequence.

mod common;

use common::{assert_same, examples_dir, run};
use metric_loss_core::{LossOutput, MetricLoss, MetricLossExt, Reduction};
use metric_loss_losses::{
    CircleLoss, CircleLossConfig, MultiSimilarityLoss, MultiSimilarityLossConfig, PNLoss,
    PNLossConfig, SoftNearestNeighborLoss, SoftNearestNeighborLossConfig, WrappedLossConfig,
    XBMConfig, XBM,
};
use metric_loss_registry::{
    from_str, from_value, load, ConfigExt, Format, RegisteredLoss, RegistryError,
};
use metric_loss_triplet::{TripletLoss, TripletLossConfig};
use serde_json::{json, Value};

/// A JSON value as a TOML value (inline tables for objects); `None` for `null`, which TOML
/// cannot write (the key is left out).
fn toml_value(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .filter_map(toml_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .filter_map(|(k, v)| Some(format!("{k} = {}", toml_value(v)?)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// A JSON value as a YAML flow value.
fn yaml_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(yaml_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}: {}", yaml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Config text written by hand (not by the registry's writer): `class_name` and the
/// `config` keys in `format`, with comments where the format has them.
fn text(class_name: &str, config: &Value, format: Format) -> String {
    let map = config.as_object().expect("an object");
    match format {
        Format::Json => serde_json::to_string_pretty(&json!({
            "class_name": class_name,
            "config": config,
        }))
        .unwrap(),
        Format::Toml => {
            let mut out = format!("# {class_name}\nclass_name = \"{class_name}\"\n\n[config]\n");
            for (k, v) in map {
                if let Some(v) = toml_value(v) {
                    out.push_str(&format!("{k} = {v}  # {k}\n"));
                }
            }
            out
        }
        _ => {
            let mut out = format!("# {class_name}\nclass_name: {class_name}\nconfig:\n");
            for (k, v) in map {
                out.push_str(&format!("  {k}: {}  # {k}\n", yaml_value(v)));
            }
            out
        }
    }
}

/// Reads `config` as `class_name` in every format and checks it against `built`: the same
/// numbers, the same `get_config`, and the same again after get_config → text → loss and
/// after `from_value(get_config)`. `numbers` runs a loss (fresh instances only).
fn check_every_format<O: PartialEq + std::fmt::Debug>(
    class_name: &str,
    config: &Value,
    built: &(dyn RegisteredLoss + 'static),
    numbers: impl Fn(&dyn MetricLoss) -> O,
    same: impl Fn(&O, &O, &str),
) -> usize {
    let expected = numbers(built);
    let expected_config = built.get_config().unwrap();
    assert_eq!(expected_config["class_name"], class_name);
    let mut checked = 0;
    for format in Format::ALL {
        let source = text(class_name, config, format);
        let what = format!("{format}:\n{source}");
        let loaded = from_str(&source, format).unwrap_or_else(|e| panic!("{what}\n{e}"));
        same(&numbers(&*loaded), &expected, &what);
        let got = loaded.get_config().unwrap();
        assert_eq!(got, expected_config, "{what}");

        let written = loaded.to_config_string(format).unwrap();
        let again = from_str(&written, format)
            .unwrap_or_else(|e| panic!("{what}\nwritten:\n{written}\n{e}"));
        assert_eq!(again.get_config().unwrap(), expected_config, "{written}");
        same(&numbers(&*again), &expected, &written);

        let from_val = from_value(&got).unwrap();
        same(&numbers(&*from_val), &expected, &what);
        checked += 1;
    }
    checked
}

fn stateless(class_name: &str, config: Value, built: &(dyn RegisteredLoss + 'static)) -> usize {
    check_every_format(class_name, &config, built, |l| run(l), assert_same)
}

#[test]
fn pn_loss_settings_round_trip_in_every_format() {
    let cases: Vec<(Value, PNLossConfig)> = vec![
        (json!({}), PNLossConfig::default()),
        (
            json!({"margin": null, "distance": "sqeuclidean"}),
            PNLossConfig::default().distance("sqeuclidean"),
        ),
        (
            json!({"distance": "l2", "positive_mining_strategy": "easy",
                   "negative_mining_strategy": "hard", "margin": 0.5,
                   "reduction": "sum", "name": "pn"}),
            PNLossConfig::default()
                .distance("l2")
                .positive_mining_strategy("easy")
                .negative_mining_strategy("hard")
                .margin(0.5)
                .reduction(Reduction::Sum)
                .name("pn"),
        ),
        (
            json!({"distance": {"class_name": "Similarity>ManhattanDistance", "config": {}},
                   "negative_mining_strategy": "easy", "margin": -0.25,
                   "reduction": "none", "remove_diagonal": false}),
            PNLossConfig::default()
                .distance("manhattan")
                .negative_mining_strategy("easy")
                .margin(-0.25)
                .reduction(Reduction::None)
                .remove_diagonal(false),
        ),
    ];
    let mut checked = 0;
    for (config, in_code) in cases {
        let built: PNLoss = in_code.build().unwrap();
        checked += stateless("PNLoss", config, &built);
    }
    assert_eq!(checked, 12);
}

#[test]
fn multi_similarity_loss_settings_round_trip_in_every_format() {
    let cases: Vec<(Value, MultiSimilarityLossConfig)> = vec![
        (json!({}), MultiSimilarityLossConfig::default()),
        (
            json!({"alpha": 1, "beta": 20, "lmda": 0.7}),
            MultiSimilarityLossConfig::default()
                .alpha(1.0)
                .beta(20.0)
                .lmda(0.7),
        ),
        (
            json!({"distance": "euclidean", "epsilon": 1.0, "center": 0.5,
                   "reduction": "sum", "name": "ms"}),
            MultiSimilarityLossConfig::default()
                .distance("euclidean")
                .epsilon(1.0)
                .center(0.5)
                .reduction(Reduction::Sum)
                .name("ms"),
        ),
        (
            json!({"beta": -40.0, "remove_diagonal": false, "distance": "CosineDistance"}),
            MultiSimilarityLossConfig::default()
                .beta(-40.0)
                .remove_diagonal(false),
        ),
    ];
    let mut checked = 0;
    for (config, in_code) in cases {
        let built: MultiSimilarityLoss = in_code.build().unwrap();
        checked += stateless("MultiSimilarityLoss", config, &built);
    }
    assert_eq!(checked, 12);
}

#[test]
fn circle_loss_settings_round_trip_in_every_format() {
    let cases: Vec<(Value, CircleLossConfig)> = vec![
        (json!({}), CircleLossConfig::default()),
        (
            json!({"gamma": 32, "margin": 0.25}),
            CircleLossConfig::default().gamma(32.0).margin(0.25),
        ),
        (
            json!({"distance": "l2", "gamma": 256.0, "margin": -0.1,
                   "reduction": "sum_over_batch_size", "name": "circle"}),
            CircleLossConfig::default()
                .distance("l2")
                .gamma(256.0)
                .margin(-0.1)
                .reduction(Reduction::SumOverBatchSize)
                .name("circle"),
        ),
        (
            json!({"gamma": 0.0, "remove_diagonal": false, "reduction": "none"}),
            CircleLossConfig::default()
                .gamma(0.0)
                .remove_diagonal(false)
                .reduction(Reduction::None),
        ),
    ];
    let mut checked = 0;
    for (config, in_code) in cases {
        let built: CircleLoss = in_code.build().unwrap();
        checked += stateless("CircleLoss", config, &built);
    }
    assert_eq!(checked, 12);
}

#[test]
fn soft_nearest_neighbor_loss_settings_round_trip_in_every_format() {
    let cases: Vec<(Value, SoftNearestNeighborLossConfig)> = vec![
        (json!({}), SoftNearestNeighborLossConfig::default()),
        (
            json!({"temperature": 0.5, "distance": "cosine"}),
            SoftNearestNeighborLossConfig::default()
                .temperature(0.5)
                .distance("cosine"),
        ),
        (
            json!({"temperature": -2, "distance": "sql2", "remove_diagonal": false}),
            SoftNearestNeighborLossConfig::default()
                .temperature(-2.0)
                .remove_diagonal(false),
        ),
        (
            json!({"temperature": 100.0, "reduction": "none", "name": "snn",
                   "distance": {"class_name": "EuclideanDistance"}}),
            SoftNearestNeighborLossConfig::default()
                .temperature(100.0)
                .distance("euclidean")
                .reduction(Reduction::None)
                .name("snn"),
        ),
    ];
    let mut checked = 0;
    for (config, in_code) in cases {
        let built: SoftNearestNeighborLoss = in_code.build().unwrap();
        checked += stateless("SoftNearestNeighborLoss", config, &built);
    }
    assert_eq!(checked, 12);
}

/// Three batches of 8 rows (3 dims), different labels and embeddings each.
fn xbm_batches() -> Vec<(Vec<i64>, Vec<f64>)> {
    let labels = [
        vec![0, 0, 1, 1, 2, 0, 1, 3],
        vec![1, 2, 2, 0, 3, 3, 1, 0],
        vec![4, 0, 1, 4, 2, 2, 0, 1],
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    labels
        .into_iter()
        .map(|l| {
            let x = (0..l.len() * common::DIMS)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
                })
                .collect();
            (l, x)
        })
        .collect()
}

type Sequence = (Vec<LossOutput<f32>>, Vec<LossOutput<f64>>);

/// The three steps in f64 from the loss's current state, then (after `reset_state`) in f32.
fn xbm_sequence(loss: &dyn MetricLoss) -> Sequence {
    let batches = xbm_batches();
    let b: Vec<LossOutput<f64>> = batches
        .iter()
        .map(|(l, x)| loss.evaluate(l, x, common::DIMS).expect("f64 step"))
        .collect();
    loss.reset_state();
    let a: Vec<LossOutput<f32>> = batches
        .iter()
        .map(|(l, x)| {
            let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
            loss.evaluate(l, &x32, common::DIMS).expect("f32 step")
        })
        .collect();
    (a, b)
}

fn assert_same_sequence(a: &Sequence, b: &Sequence, what: &str) {
    assert_eq!(a.0.len(), b.0.len());
    for (step, ((a32, a64), (b32, b64))) in
        a.0.iter().zip(&a.1).zip(b.0.iter().zip(&b.1)).enumerate()
    {
        assert_same(
            &(a32.clone(), a64.clone()),
            &(b32.clone(), b64.clone()),
            &format!("step {step}: {what}"),
        );
    }
}

#[test]
fn xbm_settings_round_trip_in_every_format_over_a_three_step_sequence() {
    let triplet = |c: TripletLossConfig| WrappedLossConfig::TripletLoss(c);
    let cases: Vec<(Value, XBMConfig)> = vec![
        // The flat form (the losses crate's own), defaults elsewhere.
        (
            json!({"memory_size": 16, "loss": {"class_name": "TripletLoss"}}),
            XBMConfig::new(triplet(TripletLossConfig::default()), 16),
        ),
        // The Keras form of the wrapped loss, as tf.keras.losses.serialize writes it.
        (
            json!({"memory_size": 24, "warmup_steps": 1, "name": "xbm", "reduction": "sum",
                   "loss": {"class_name": "Similarity>TripletLoss",
                            "config": {"distance": "l2", "negative_mining_strategy": "hard",
                                       "margin": 0.5}}}),
            XBMConfig::new(
                triplet(
                    TripletLossConfig::default()
                        .distance("euclidean")
                        .negative_mining_strategy("hard")
                        .margin(0.5),
                ),
                24,
            )
            .warmup_steps(1)
            .name("xbm")
            .reduction(Reduction::Sum),
        ),
        // PN's soft margin written as TF Similarity does (null; TOML leaves the key out);
        // the wrapped remove_diagonal = false is forced to true.
        (
            json!({"memory_size": 20, "warmup_steps": 2,
                   "loss": {"class_name": "PNLoss", "remove_diagonal": false,
                            "margin": null}}),
            XBMConfig::new(WrappedLossConfig::PNLoss(PNLossConfig::default()), 20).warmup_steps(2),
        ),
        (
            json!({"memory_size": 16,
                   "loss": {"class_name": "MultiSimilarityLoss",
                            "config": {"epsilon": 1.0, "distance": "cosine"}}}),
            XBMConfig::new(
                WrappedLossConfig::MultiSimilarityLoss(
                    MultiSimilarityLossConfig::default().epsilon(1.0),
                ),
                16,
            ),
        ),
        (
            json!({"memory_size": 16, "reduction": "none",
                   "loss": {"class_name": "CircleLoss", "gamma": 32}}),
            XBMConfig::new(
                WrappedLossConfig::CircleLoss(CircleLossConfig::default().gamma(32.0)),
                16,
            )
            .reduction(Reduction::None),
        ),
        (
            json!({"memory_size": 24, "warmup_steps": 1,
                   "loss": {"class_name": "SoftNearestNeighborLoss",
                            "config": {"temperature": 0.5,
                                       "distance": {"class_name": "Similarity>SquaredEuclideanDistance",
                                                    "config": {}}}}}),
            XBMConfig::new(
                WrappedLossConfig::SoftNearestNeighborLoss(
                    SoftNearestNeighborLossConfig::default().temperature(0.5),
                ),
                24,
            )
            .warmup_steps(1),
        ),
    ];
    let mut checked = 0;
    for (config, in_code) in cases {
        let built: XBM = in_code.build().unwrap();
        // Every instance compared (built, loaded, written and read again, from_value) is
        // fresh, used for this one sequence.
        checked += check_every_format("XBM", &config, &built, xbm_sequence, assert_same_sequence);
        // The memory really is used: the steps differ from a memoryless run of step 2.
        let seq = xbm_sequence(&in_code.build().unwrap());
        let memoryless = in_code.build().unwrap();
        let (l, x) = &xbm_batches()[2];
        let alone = memoryless.evaluate(l, x, common::DIMS).unwrap();
        if in_code.warmup_steps < 2 {
            assert_ne!(seq.1[2].per_example, alone.per_example, "{in_code:?}");
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn tf_similarity_shaped_configs_are_read() {
    // As TF 2.13+ writes an XBM around a soft-margin TripletLoss: prefixes, module and
    // registered_name keys, a distance object, `margin: null`, XBM's unset `name: null`.
    let keras = json!({
        "module": "tensorflow_similarity.losses",
        "class_name": "Similarity>XBM",
        "registered_name": "Similarity>XBM",
        "config": {
            "name": null,
            "reduction": "auto",
            "memory_size": 24,
            "warmup_steps": 1,
            "loss": {
                "module": "tensorflow_similarity.losses",
                "class_name": "Similarity>TripletLoss",
                "registered_name": "Similarity>TripletLoss",
                "config": {
                    "reduction": "auto",
                    "name": "triplet_loss",
                    "distance": {
                        "module": "tensorflow_similarity.distances",
                        "class_name": "Similarity>CosineDistance",
                        "config": {"name": "cosine"},
                        "registered_name": "Similarity>CosineDistance"
                    },
                    "positive_mining_strategy": "hard",
                    "negative_mining_strategy": "semi-hard",
                    "margin": null
                }
            }
        }
    });
    let loaded = from_value(&keras).unwrap();
    let expected = XBMConfig::new(
        WrappedLossConfig::TripletLoss(
            TripletLossConfig::default()
                .soft_margin(true)
                .name("triplet_loss"),
        ),
        24,
    )
    .warmup_steps(1)
    .build()
    .unwrap();
    assert_eq!(loaded.name(), "XBM");
    assert_eq!(loaded.get_config().unwrap(), expected.get_config().unwrap());
    let fresh = from_value(&keras).unwrap();
    assert_same_sequence(
        &xbm_sequence(&*loaded),
        &xbm_sequence(&expected),
        "keras XBM",
    );
    assert_same_sequence(
        &xbm_sequence(&*fresh),
        &xbm_sequence(
            &XBMConfig::new(
                WrappedLossConfig::TripletLoss(TripletLossConfig::default().soft_margin(true)),
                24,
            )
            .warmup_steps(1)
            .build()
            .unwrap(),
        ),
        "keras XBM (the wrapped name does not matter)",
    );

    let pn = json!({
        "class_name": "Similarity>PNLoss",
        "config": {
            "distance": {"class_name": "Similarity>EuclideanDistance", "config": {}},
            "positive_mining_strategy": "hard",
            "negative_mining_strategy": "semi-hard",
            "margin": null,
            "name": "pn_loss",
            "reduction": "auto"
        }
    });
    let loaded = from_value(&pn).unwrap();
    let expected = PNLoss::builder()
        .distance("euclidean")
        .name("pn_loss")
        .build()
        .unwrap();
    assert_eq!(loaded.get_config().unwrap(), expected.get_config().unwrap());
    assert_same(&run(&*loaded), &run(&expected), "keras PNLoss");

    for (class, expected) in [
        (
            "Similarity>MultiSimilarityLoss",
            MultiSimilarityLoss::default().get_config().unwrap(),
        ),
        (
            "Similarity>CircleLoss",
            CircleLoss::default().get_config().unwrap(),
        ),
        (
            "Similarity>SoftNearestNeighborLoss",
            SoftNearestNeighborLoss::default().get_config().unwrap(),
        ),
    ] {
        let loss = from_value(&json!({"class_name": class, "config": {}})).unwrap();
        assert_eq!(loss.get_config().unwrap(), expected, "{class}");
        // A missing config is all defaults too.
        let bare = from_value(&json!({ "class_name": class })).unwrap();
        assert_eq!(bare.get_config().unwrap(), expected, "{class}");
    }
}

#[test]
fn written_configs_have_keras_shape() {
    assert_eq!(
        PNLoss::default().get_config().unwrap(),
        json!({"class_name": "PNLoss", "config": {
            "distance": "cosine",
            "positive_mining_strategy": "hard",
            "negative_mining_strategy": "semi-hard",
            "name": "PNLoss",
            "reduction": "auto"
        }})
    );
    assert_eq!(
        MultiSimilarityLoss::default().get_config().unwrap(),
        json!({"class_name": "MultiSimilarityLoss", "config": {
            "distance": "cosine", "alpha": 2.0, "beta": 40.0, "epsilon": 0.1, "lmda": 0.5,
            "center": 1.0, "name": "MultiSimilarityLoss", "reduction": "auto"
        }})
    );
    assert_eq!(
        CircleLoss::builder()
            .remove_diagonal(false)
            .build()
            .unwrap()
            .get_config()
            .unwrap(),
        json!({"class_name": "CircleLoss", "config": {
            "distance": "cosine", "gamma": 80.0, "margin": 0.4, "name": "CircleLoss",
            "reduction": "auto", "remove_diagonal": false
        }})
    );
    assert_eq!(
        SoftNearestNeighborLoss::default().get_config().unwrap(),
        json!({"class_name": "SoftNearestNeighborLoss", "config": {
            "distance": "squared_euclidean", "temperature": 1.0,
            "name": "SoftNearestNeighborLoss", "reduction": "auto"
        }})
    );
    // XBM writes its wrapped loss in the flat form, canonical (the triplet's soft margin as
    // soft_margin = true, distance names resolved).
    let xbm = XBMConfig::new(
        WrappedLossConfig::TripletLoss(TripletLossConfig {
            margin: None,
            distance: "L2".into(),
            ..TripletLossConfig::default()
        }),
        32,
    )
    .build()
    .unwrap();
    assert_eq!(
        xbm.get_config().unwrap(),
        json!({"class_name": "XBM", "config": {
            "loss": {
                "class_name": "TripletLoss",
                "distance": "euclidean",
                "positive_mining_strategy": "hard",
                "negative_mining_strategy": "semi-hard",
                "soft_margin": true,
                "margin": 1.0,
                "name": "TripletLoss",
                "reduction": "auto",
                "exclude_degenerate_anchors": false,
                "stable_soft_margin": false
            },
            "memory_size": 32,
            "warmup_steps": 0,
            "name": "XBM",
            "reduction": "auto"
        }})
    );
    let toml = xbm.to_config_string(Format::Toml).unwrap();
    assert!(toml.starts_with("class_name = \"XBM\"\n"), "{toml}");
    assert!(toml.contains("[config.loss]\n"), "{toml}");
    let yaml = PNLoss::default().to_config_string(Format::Yaml).unwrap();
    assert!(yaml.starts_with("class_name: PNLoss\nconfig:\n"), "{yaml}");
    assert!(!yaml.contains("margin"), "{yaml}");
}

#[test]
fn an_xbm_without_a_config_is_a_write_error_not_a_panic() {
    let xbm = XBM::new(Box::new(TripletLoss::default()), 8, 0).unwrap();
    let e = xbm.get_config().unwrap_err();
    assert!(
        matches!(&e, RegistryError::Write { format: Format::Json, message } if message.contains("XBM::new")),
        "{e:?}"
    );
    for format in Format::ALL {
        assert!(matches!(
            xbm.to_config_string(format),
            Err(RegistryError::Write { .. })
        ));
    }
    let path = std::env::temp_dir().join(format!("xbm-new-{}.toml", std::process::id()));
    assert!(matches!(xbm.save(&path), Err(RegistryError::Write { .. })));
    assert!(!path.exists());
    // Through the trait object too, and serde_json directly.
    let boxed: Box<dyn RegisteredLoss> =
        Box::new(XBM::new(Box::new(PNLoss::default()), 8, 0).unwrap());
    assert!(boxed.get_config().is_err());
    assert!(serde_json::to_value(&xbm).is_err());
    // It still computes.
    assert!(xbm.evaluate(&[0, 1], &[1.0f32, 0.0, 0.0, 1.0], 2).is_ok());
}

#[test]
fn shipped_example_configs_compute_as_the_same_loss_built_in_code() {
    let pn = load(examples_dir().join("pn_default.yaml")).unwrap();
    assert_eq!(
        pn.get_config().unwrap(),
        PNLoss::default().get_config().unwrap()
    );
    assert_same(&run(&*pn), &run(&PNLoss::default()), "pn_default.yaml");

    let ms = load(examples_dir().join("multisim.json")).unwrap();
    let expected = MultiSimilarityLoss::builder()
        .epsilon(0.2)
        .name("multisim")
        .build()
        .unwrap();
    assert_eq!(ms.get_config().unwrap(), expected.get_config().unwrap());
    assert_same(&run(&*ms), &run(&expected), "multisim.json");

    let circle = load(examples_dir().join("circle.toml")).unwrap();
    let expected = CircleLoss::builder()
        .gamma(32.0)
        .margin(0.25)
        .name("circle")
        .build()
        .unwrap();
    assert_eq!(circle.get_config().unwrap(), expected.get_config().unwrap());
    assert_same(&run(&*circle), &run(&expected), "circle.toml");

    let softnn = load(examples_dir().join("softnn.toml")).unwrap();
    let expected = SoftNearestNeighborLoss::builder()
        .temperature(0.5)
        .name("softnn")
        .reduction(Reduction::Sum)
        .build()
        .unwrap();
    assert_eq!(softnn.get_config().unwrap(), expected.get_config().unwrap());
    assert_same(&run(&*softnn), &run(&expected), "softnn.toml");

    let xbm = load(examples_dir().join("xbm_triplet.toml")).unwrap();
    let expected = XBMConfig::new(
        WrappedLossConfig::TripletLoss(
            TripletLossConfig::default()
                .negative_mining_strategy("hard")
                .margin(0.5),
        ),
        64,
    )
    .warmup_steps(1)
    .name("xbm")
    .build()
    .unwrap();
    assert_eq!(xbm.get_config().unwrap(), expected.get_config().unwrap());
    assert_same_sequence(
        &xbm_sequence(&*xbm),
        &xbm_sequence(&expected),
        "xbm_triplet.toml",
    );

    // Each shipped file, written back in every format and read again, is the same loss.
    for file in [
        "pn_default.yaml",
        "multisim.json",
        "circle.toml",
        "softnn.toml",
        "xbm_triplet.toml",
    ] {
        let loss = load(examples_dir().join(file)).unwrap();
        for format in Format::ALL {
            let text = loss.to_config_string(format).unwrap();
            let back = from_str(&text, format).unwrap();
            assert_eq!(
                back.get_config().unwrap(),
                loss.get_config().unwrap(),
                "{file} as {format}"
            );
        }
    }
}

#[test]
fn save_and_load_each_format() {
    let dir = std::env::temp_dir().join(format!(
        "metric-loss-registry-losses-save-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let losses: Vec<Box<dyn RegisteredLoss>> = vec![
        Box::new(PNLoss::builder().margin(0.3).build().unwrap()),
        Box::new(MultiSimilarityLoss::default()),
        Box::new(CircleLoss::builder().distance("l2").build().unwrap()),
        Box::new(SoftNearestNeighborLoss::default()),
        Box::new(
            XBMConfig::new(WrappedLossConfig::PNLoss(PNLossConfig::default()), 12)
                .build()
                .unwrap(),
        ),
    ];
    for loss in &losses {
        for ext in ["json", "toml", "yaml", "yml"] {
            let path = dir.join(format!("loss.{ext}"));
            loss.save(&path).unwrap();
            let back = load(&path).unwrap();
            assert_eq!(
                back.get_config().unwrap(),
                loss.get_config().unwrap(),
                "{ext}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
