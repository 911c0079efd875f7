//! Proofs: config → loss → get_config → loss is the identity, in every format, and a loss
//! read from a config computes the same numbers as the same loss built in code.

mod common;

use common::{assert_same, examples_dir, run};
use metric_loss_core::{MetricLoss, NegativeStrategy, PositiveStrategy, Reduction};
use metric_loss_distances::DistanceKind;
use metric_loss_registry::{from_str, from_value, load, ConfigExt, Format, RegisteredLoss};
use metric_loss_triplet::{TripletLoss, TripletLossConfig};
use serde_json::json;

/// How the margin is written.
#[derive(Debug, Clone, Copy)]
enum MarginCase {
    Hinge(f64),
    /// `soft_margin = true`.
    Soft,
    /// `margin = null` (JSON and YAML only; TOML falls back to `soft_margin = true`).
    Null,
    /// Soft margin, stable form.
    SoftStable,
}

struct Case {
    distance: &'static str,
    positive: &'static str,
    negative: &'static str,
    margin: MarginCase,
    reduction: &'static str,
    exclude: bool,
}

fn cases() -> Vec<Case> {
    // Names and aliases alternate so that both are read.
    let distances: Vec<&'static str> = DistanceKind::ALL
        .iter()
        .flat_map(|k| {
            std::iter::once(k.name())
                .chain(k.aliases().first().copied())
                .chain([k.class_name()])
        })
        .collect();
    let margins = [
        MarginCase::Hinge(1.0),
        MarginCase::Hinge(0.2),
        MarginCase::Hinge(0.0),
        MarginCase::Hinge(-0.5),
        MarginCase::Soft,
        MarginCase::Null,
        MarginCase::SoftStable,
    ];
    let mut out = Vec::new();
    let mut k = 0usize;
    for distance in &distances {
        for positive in PositiveStrategy::NAMES {
            for negative in NegativeStrategy::NAMES {
                for margin in margins {
                    // Reductions and the extension flag rotate rather than multiply.
                    let reduction = Reduction::NAMES[k % 4];
                    let exclude = matches!(k % 3, 0);
                    k += 1;
                    out.push(Case {
                        distance,
                        positive,
                        negative,
                        margin,
                        reduction,
                        exclude,
                    });
                }
            }
        }
    }
    out
}

fn in_code(case: &Case) -> TripletLoss {
    let mut config = TripletLossConfig::default()
        .distance(case.distance)
        .positive_mining_strategy(case.positive)
        .negative_mining_strategy(case.negative)
        .reduction(case.reduction.parse::<Reduction>().unwrap())
        .exclude_degenerate_anchors(case.exclude)
        .name("case");
    config = match case.margin {
        MarginCase::Hinge(m) => config.margin(m),
        MarginCase::Soft => config.soft_margin(true),
        MarginCase::Null => TripletLossConfig {
            margin: None,
            ..config
        },
        MarginCase::SoftStable => config.soft_margin(true).stable_soft_margin(true),
    };
    config.build().expect("valid case")
}

fn text(case: &Case, format: Format) -> String {
    let margin_lines: Vec<(&str, String)> = match (case.margin, format) {
        (MarginCase::Hinge(m), _) => vec![("margin", format!("{m:?}"))],
        (MarginCase::Soft, _) | (MarginCase::Null, Format::Toml) => {
            vec![("soft_margin", "true".into())]
        }
        (MarginCase::Null, _) => vec![("margin", "null".into())],
        (MarginCase::SoftStable, _) => vec![
            ("soft_margin", "true".into()),
            ("stable_soft_margin", "true".into()),
        ],
    };
    let mut pairs: Vec<(&str, String)> = vec![
        ("distance", format!("{:?}", case.distance)),
        ("positive_mining_strategy", format!("{:?}", case.positive)),
        ("negative_mining_strategy", format!("{:?}", case.negative)),
        ("reduction", format!("{:?}", case.reduction)),
        ("exclude_degenerate_anchors", case.exclude.to_string()),
        ("name", "\"case\"".into()),
    ];
    pairs.extend(margin_lines);
    match format {
        Format::Json => {
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("    \"{k}\": {v}"))
                .collect();
            format!(
                "{{\n  \"class_name\": \"TripletLoss\",\n  \"config\": {{\n{}\n  }}\n}}\n",
                body.join(",\n")
            )
        }
        Format::Toml => {
            let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!(
                "# case\nclass_name = \"TripletLoss\"\n\n[config]\n{}\n",
                body.join("\n")
            )
        }
        _ => {
            let body: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("  {k}: {v}  # comment"))
                .collect();
            format!(
                "# case\nclass_name: TripletLoss\nconfig:\n{}\n",
                body.join("\n")
            )
        }
    }
}

#[test]
fn every_setting_round_trips_in_every_format_and_matches_code() {
    let cases = cases();
    assert!(cases.len() > 700, "{}", cases.len());
    let mut checked = 0;
    for case in &cases {
        let built = in_code(case);
        let expected = run(&built);
        for format in Format::ALL {
            let source = text(case, format);
            let what = format!("{format} {source}");
            let loaded = from_str(&source, format).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_same(&run(&*loaded), &expected, &what);

            // get_config → text → loss again: identical config, identical numbers.
            let config = loaded.get_config().unwrap();
            assert_eq!(config, built.get_config().unwrap(), "{what}");
            let written = loaded.to_config_string(format).unwrap();
            let again = from_str(&written, format)
                .unwrap_or_else(|e| panic!("{what}\nwritten:\n{written}\n{e}"));
            assert_eq!(again.get_config().unwrap(), config, "{what}");
            assert_same(&run(&*again), &expected, &what);
            let from_val = from_value(&config).unwrap();
            assert_same(&run(&*from_val), &expected, &what);
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len() * 3);
}

#[test]
fn written_configs_have_keras_shape() {
    let loss = TripletLossConfig::default()
        .distance("sql2")
        .margin(0.25)
        .build()
        .unwrap();
    let config = loss.get_config().unwrap();
    assert_eq!(
        config,
        json!({
            "class_name": "TripletLoss",
            "config": {
                "distance": "squared_euclidean",
                "positive_mining_strategy": "hard",
                "negative_mining_strategy": "semi-hard",
                "soft_margin": false,
                "margin": 0.25,
                "name": "TripletLoss",
                "reduction": "auto",
                "exclude_degenerate_anchors": false,
                "stable_soft_margin": false
            }
        })
    );
    let toml = loss.to_config_string(Format::Toml).unwrap();
    assert!(toml.starts_with("class_name = \"TripletLoss\"\n"), "{toml}");
    assert!(toml.contains("[config]\n"), "{toml}");
    let yaml = loss.to_config_string(Format::Yaml).unwrap();
    assert!(
        yaml.starts_with("class_name: TripletLoss\nconfig:\n"),
        "{yaml}"
    );
}

#[test]
fn save_and_load_each_format() {
    let dir =
        std::env::temp_dir().join(format!("metric-loss-registry-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let loss = TripletLossConfig::default()
        .distance("manhattan")
        .soft_margin(true)
        .build()
        .unwrap();
    for ext in ["json", "toml", "yaml", "yml"] {
        let path = dir.join(format!("loss.{ext}"));
        loss.save(&path).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(
            back.get_config().unwrap(),
            loss.get_config().unwrap(),
            "{ext}"
        );
        assert_same(&run(&*back), &run(&loss), ext);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shipped_example_configs_load() {
    let default = load(examples_dir().join("triplet_default.toml")).unwrap();
    assert_same(
        &run(&*default),
        &run(&TripletLoss::default()),
        "triplet_default.toml",
    );
    assert_eq!(
        default.get_config().unwrap(),
        TripletLoss::default().get_config().unwrap()
    );
    let json = load(examples_dir().join("triplet_default.json")).unwrap();
    assert_eq!(json.get_config().unwrap(), default.get_config().unwrap());

    let soft = load(examples_dir().join("triplet_soft_l2.yaml")).unwrap();
    let expected = TripletLossConfig::default()
        .distance("euclidean")
        .negative_mining_strategy("hard")
        .soft_margin(true)
        .stable_soft_margin(true)
        .name("triplet_soft_l2")
        .reduction(Reduction::SumOverBatchSize)
        .build()
        .unwrap();
    assert_eq!(soft.get_config().unwrap(), expected.get_config().unwrap());
    assert_same(&run(&*soft), &run(&expected), "triplet_soft_l2.yaml");

    let hard = load(examples_dir().join("triplet_hard_l2.json")).unwrap();
    assert_eq!(hard.name(), "triplet_hard_l2");
    assert_eq!(hard.reduction(), Reduction::Sum);
}

#[test]
fn tf_similarity_configs_are_read() {
    // As `tf.keras.losses.serialize` writes a master TripletLoss (TF 2.13+ format).
    let keras = json!({
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
    });
    let loss = from_value(&keras).unwrap();
    let expected = TripletLossConfig::default()
        .soft_margin(true)
        .name("triplet_loss")
        .build()
        .unwrap();
    assert_eq!(loss.get_config().unwrap(), expected.get_config().unwrap());
    assert_same(&run(&*loss), &run(&expected), "keras");

    // 0.17.1's distance config: {"name", "aliases"}, without a class name.
    let old = json!({"class_name": "TripletLoss", "config": {
        "distance": {"config": {"name": "euclidean", "aliases": ["l2", "pythagorean"]}}, "margin": 1}});
    let loss = from_value(&old).unwrap();
    assert_eq!(
        loss.get_config().unwrap()["config"]["distance"],
        "euclidean"
    );
    assert_eq!(loss.get_config().unwrap()["config"]["margin"], 1.0);

    // A missing config is all defaults; the distance's class name alone works.
    let bare = from_str("class_name = \"TripletLoss\"\n", Format::Toml).unwrap();
    assert_eq!(
        bare.get_config().unwrap(),
        TripletLoss::default().get_config().unwrap()
    );
    let by_class = from_str(
        "class_name: TripletLoss\nconfig: {distance: SNRDistance}\n",
        Format::Yaml,
    )
    .unwrap();
    assert_eq!(by_class.get_config().unwrap()["config"]["distance"], "snr");
}

#[test]
fn a_registered_loss_is_a_metric_loss() {
    let loss: Box<dyn RegisteredLoss> = Box::new(TripletLoss::default());
    let plain: Box<dyn MetricLoss> = loss.into_metric_loss();
    assert_same(
        &run(&*plain),
        &run(&TripletLoss::default()),
        "into_metric_loss",
    );
}

mod random {
    use super::*;
    use metric_loss_core::MetricLossExt;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any finite margin (including ugly ones such as 0.1 + 0.2 or 1e-300) and any
        /// combination of settings survives get_config → text → loss in every format, bit
        /// for bit.
        #[test]
        fn random_settings_round_trip(
            margin in prop_oneof![any::<f64>().prop_filter("finite", |m| m.is_finite()), -2.0f64..2.0],
            soft in any::<bool>(),
            stable in any::<bool>(),
            exclude in any::<bool>(),
            distance in 0usize..6,
            positive in 0usize..2,
            negative in 0usize..3,
            reduction in 0usize..4,
            name in "[a-zA-Z0-9_ \\-'\"#:=\\[\\]{}]{0,12}",
        ) {
            let mut config = TripletLossConfig::default()
                .distance(DistanceKind::ALL[distance].name())
                .positive_mining_strategy(PositiveStrategy::NAMES[positive])
                .negative_mining_strategy(NegativeStrategy::NAMES[negative])
                .reduction(Reduction::NAMES[reduction].parse::<Reduction>().unwrap())
                .exclude_degenerate_anchors(exclude)
                .stable_soft_margin(stable)
                .name(name);
            config = if soft { config.soft_margin(true) } else { config.margin(margin) };
            let built = config.build().unwrap();
            // Huge margins overflow f32: compare whole results, errors included (Debug
            // prints floats exactly).
            let outcome = |loss: &dyn MetricLoss| {
                let x64 = common::embeddings();
                let x32: Vec<f32> = x64.iter().map(|v| *v as f32).collect();
                format!(
                    "{:?}\n{:?}",
                    loss.evaluate(&common::LABELS, &x32, common::DIMS),
                    loss.evaluate(&common::LABELS, &x64, common::DIMS)
                )
            };
            let expected = outcome(&built);
            for format in Format::ALL {
                let text = built.to_config_string(format).unwrap();
                let back = from_str(&text, format).map_err(|e| TestCaseError::fail(format!("{text}\n{e}")))?;
                prop_assert_eq!(back.get_config().unwrap(), built.get_config().unwrap(), "{}", text);
                prop_assert_eq!(&outcome(back.into_metric_loss().as_ref()), &expected, "{}", text);
            }
        }
    }
}

#[test]
fn floats_are_read_back_exactly() {
    // serde_json's default float parser is off by one ulp here; the crate enables
    // `float_roundtrip` (found by `random_settings_round_trip`).
    for margin in [
        -1.711_007_309_945_181_5,
        0.1 + 0.2,
        1e-300,
        f64::MAX,
        -f64::MIN_POSITIVE,
    ] {
        let loss = TripletLossConfig::default().margin(margin).build().unwrap();
        for format in Format::ALL {
            let text = loss.to_config_string(format).unwrap();
            let back = from_str(&text, format).unwrap().get_config().unwrap();
            let got = back["config"]["margin"].as_f64().unwrap();
            assert_eq!(got.to_bits(), margin.to_bits(), "{format}: {text}");
        }
    }
}
