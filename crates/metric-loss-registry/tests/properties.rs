//! Property tests: config text is untrusted input. Any string or byte sequence, in any
//! format, gives a loss or a typed `RegistryError`, never a panic; an accepted config
//! round-trips through every format; size and nesting are bounded.
//!
//! Case counts are modest for CI; raise them with `PROPTEST_CASES=N`.

use metric_loss_core::MetricLossExt;
use metric_loss_registry::{from_str, from_value, Format, RegistryError, MAX_CONFIG_BYTES};
use metric_loss_testkit::cases;
use proptest::prelude::*;
use serde_json::{json, Value};

fn format() -> impl Strategy<Value = Format> {
    prop::sample::select(Format::ALL.to_vec())
}

/// Values a config key may be given.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop_oneof![
            -3.0..3.0f64,
            Just(0.0),
            Just(1e308),
            Just(-1e308),
            Just(5e-324)
        ]
        .prop_map(Value::from),
        prop::sample::select(vec![
            "cosine",
            "l2",
            "sql2",
            "ip",
            "snr",
            "manhattan",
            "CosineDistance",
            "hard",
            "easy",
            "semi-hard",
            "auto",
            "sum",
            "none",
            "sum_over_batch_size",
            "",
            "Hard",
            "TripletLoss",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("class_name".to_string()),
                    Just("config".to_string()),
                    "[a-z_]{1,8}"
                ],
                inner,
                0..3
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KEYS: [&str; 10] = [
    "distance",
    "positive_mining_strategy",
    "negative_mining_strategy",
    "soft_margin",
    "margin",
    "name",
    "reduction",
    "exclude_degenerate_anchors",
    "stable_soft_margin",
    "unknown_key",
];

/// Keras-shaped configs: a class name and a config of known (and one unknown) keys.
fn keras_config() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "TripletLoss",
            "Similarity>TripletLoss",
            "PNLoss",
            "XBM",
            "MultiSimilarityLoss",
            "CircleLoss",
            "SoftNearestNeighborLoss",
            "NoSuchLoss",
        ]),
        prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), json_value(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(class, config, with_config)| {
            let config: serde_json::Map<String, Value> = config
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if with_config {
                json!({"class_name": class, "config": config})
            } else {
                json!({"class_name": class})
            }
        })
}

/// An accepted config: written in every format and read back, it is the same config;
/// the loss evaluates a small batch to a number or a typed error.
fn check_accepted(
    loss: &(dyn metric_loss_registry::RegisteredLoss + 'static),
) -> Result<(), TestCaseError> {
    let config = loss
        .get_config()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for format in Format::ALL {
        let text = loss
            .to_config_string(format)
            .map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
        let again = from_str(&text, format).map_err(|e| {
            TestCaseError::fail(format!("{format}: re-reading failed: {e}\n{text}"))
        })?;
        prop_assert_eq!(&again.get_config().unwrap(), &config, "{}", format);
    }
    let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    if let Ok(out) = loss.evaluate(&[0, 0, 1, 2], &x, 2) {
        prop_assert!(!out.loss.is_nan(), "NaN loss for {config}");
    }
    Ok(())
}

fn error_is_typed(e: &RegistryError) -> Result<(), TestCaseError> {
    prop_assert!(!e.to_string().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text in every format: a loss or a typed error, never a panic.
    #[test]
    fn arbitrary_text_is_a_loss_or_an_error(text in ".{0,200}", f in format()) {
        match from_str(&text, f) {
            Ok(loss) => check_accepted(loss.as_ref())?,
            Err(e) => error_is_typed(&e)?,
        }
    }

    /// Arbitrary bytes (lossily decoded, as a file reader would refuse or replace them).
    #[test]
    fn arbitrary_bytes_are_a_loss_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..300), f in format()) {
        let text = String::from_utf8_lossy(&bytes);
        match from_str(&text, f) {
            Ok(loss) => check_accepted(loss.as_ref())?,
            Err(e) => error_is_typed(&e)?,
        }
    }

    /// Keras-shaped configs with arbitrary values for the known keys, written in every
    /// format: the same verdict in each, and accepted ones round-trip.
    #[test]
    fn keras_configs_agree_across_formats(value in keras_config()) {
        let direct = from_value(&value);
        if let Ok(loss) = &direct {
            check_accepted(loss.as_ref())?;
        }
        let json_text = serde_json::to_string(&value).unwrap();
        let via_json = from_str(&json_text, Format::Json);
        prop_assert_eq!(direct.is_ok(), via_json.is_ok(), "{}", json_text);
        if let Err(e) = &via_json {
            error_is_typed(e)?;
        }
    }
}

/// A config larger than `MAX_CONFIG_BYTES` is refused before it is parsed.
#[test]
fn oversized_configs_are_refused_in_every_format() {
    let big = format!(
        "{{\"class_name\": \"TripletLoss\", \"config\": {{\"name\": \"{}\"}}}}",
        "x".repeat(MAX_CONFIG_BYTES as usize)
    );
    for f in Format::ALL {
        let err = from_str(&big, f).expect_err("refused");
        assert!(matches!(err, RegistryError::TooLarge { .. }), "{f}: {err}");
    }
}

/// Deep nesting (up to the size limit) is an error, not a stack overflow; nor minutes of
/// parsing. Finding (`cargo xtask fuzz --target config-yaml`): YAML parsing is quadratic in
/// flow nesting (a 200 KB config of nested `[` took 219 s); the registry now refuses flow
/// nesting deeper than 128 before parsing.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for depth in [1_000, 100_000, 500_000] {
        let nest =
            |open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let inputs = [
            (
                Format::Json,
                format!(
                    "{{\"class_name\": \"TripletLoss\", \"config\": {{\"name\": {}}}}}",
                    nest("[", "]")
                ),
            ),
            (
                Format::Toml,
                format!(
                    "class_name = \"TripletLoss\"\n[config]\nname = {}\n",
                    nest("[", "]")
                ),
            ),
            (
                Format::Yaml,
                format!(
                    "class_name: TripletLoss\nconfig:\n  name: {}\n",
                    nest("[", "]")
                ),
            ),
            (
                Format::Yaml,
                format!(
                    "class_name: TripletLoss\nconfig:\n  name: {}\n",
                    nest("{a: ", "}")
                ),
            ),
        ];
        for (f, text) in inputs {
            let start = std::time::Instant::now();
            assert!(from_str(&text, f).is_err(), "{f} at depth {depth}");
            assert!(
                start.elapsed().as_secs() < 5,
                "{f} at depth {depth}: {:?}",
                start.elapsed()
            );
        }
    }
}

/// YAML alias expansion ("billion laughs") is bounded: an error, quickly.
#[test]
fn yaml_alias_bombs_are_bounded() {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    s.push_str("class_name: TripletLoss\nconfig:\n  name: *a8\n");
    let start = std::time::Instant::now();
    assert!(from_str(&s, Format::Yaml).is_err());
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
}

/// Brackets inside quoted scalars and comments do not count as nesting; a config with a
/// little flow nesting still loads.
#[test]
fn yaml_flow_depth_check_ignores_quotes_and_comments() {
    let deep = "[".repeat(300);
    let text = format!(
        "# {deep}\nclass_name: TripletLoss\nconfig:\n  name: \"{deep}\"\n  distance: {{class_name: CosineDistance, config: {{name: cosine}}}}\n"
    );
    let loss = from_str(&text, Format::Yaml).unwrap();
    assert_eq!(loss.get_config().unwrap()["config"]["name"], deep.as_str());
    let sneaky = format!(
        "class_name: TripletLoss\nconfig:\n  name: [it's, {deep}1{}]\n",
        "]".repeat(300)
    );
    assert!(from_str(&sneaky, Format::Yaml).is_err());
}
