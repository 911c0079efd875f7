//! Bad configs of PNLoss, MultiSimilarityLoss, CircleLoss, SoftNearestNeighborLoss and XBM
//! give typed errors (the loss's own `LossError` for invalid values), in every format.

use metric_loss_core::{LossError, StrategyRole};
use metric_loss_registry::{from_str, from_value, Format, RegistryError};
use serde_json::json;

fn err(text: &str, format: Format) -> RegistryError {
    match from_str(text, format) {
        Ok(loss) => panic!("accepted {text:?} as {loss:?}"),
        Err(e) => e,
    }
}

/// One config (class name and a `key = value` line) in all three formats.
fn in_every_format(class_name: &str, key: &str, value: &str) -> [(String, Format); 3] {
    [
        (
            format!("class_name = \"{class_name}\"\n[config]\n{key} = {value}\n"),
            Format::Toml,
        ),
        (
            format!("{{\"class_name\": \"{class_name}\", \"config\": {{\"{key}\": {value}}}}}"),
            Format::Json,
        ),
        (
            format!("class_name: {class_name}\nconfig:\n  {key}: {value}  # comment\n"),
            Format::Yaml,
        ),
    ]
}

#[test]
fn unknown_keys_are_named_for_every_loss() {
    for (class_name, key, near) in [
        // TF Similarity 0.17.1's PNLoss has no soft_margin either.
        ("PNLoss", "soft_margin", "margin"),
        ("MultiSimilarityLoss", "lambda_", "lmda"),
        ("CircleLoss", "gama", "gamma"),
        ("SoftNearestNeighborLoss", "temp", "temperature"),
        ("XBM", "memory", "memory_size"),
    ] {
        for (text, format) in in_every_format(class_name, key, "1") {
            let e = err(&text, format);
            let RegistryError::UnknownKey {
                key: got,
                expected,
                section,
                ..
            } = &e
            else {
                panic!("{text}: {e:?}")
            };
            assert_eq!(got, key, "{text}");
            assert!(expected.contains(&near.to_owned()), "{expected:?}");
            assert_eq!(section, &format!("the config of {class_name}"), "{text}");
            assert!(e.to_string().contains(&format!("{key:?}")), "{e}");
        }
    }
}

#[test]
fn unknown_keys_of_the_loss_xbm_wraps_are_named() {
    // The flat form.
    let e = err(
        "class_name = \"XBM\"\n[config]\nmemory_size = 8\n[config.loss]\nclass_name = \"CircleLoss\"\ngama = 32\n",
        Format::Toml,
    );
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, expected, .. }
            if key == "gama" && expected.contains(&"gamma".to_owned())),
        "{e:?}"
    );
    assert!(e.to_string().contains("config.loss"), "{e}");
    // The Keras form: a key of the wrapped config, and a key of the wrapper.
    let e = err(
        "class_name: XBM\nconfig:\n  memory_size: 8\n  loss:\n    class_name: TripletLoss\n    config: {marign: 0.5}\n",
        Format::Yaml,
    );
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, expected, .. }
            if key == "marign" && expected.contains(&"margin".to_owned())),
        "{e:?}"
    );
    let e = err(
        r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": {"class_name": "TripletLoss", "config": {}, "margin": 0.5}}}"#,
        Format::Json,
    );
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, section, .. }
            if key == "margin" && section == "the wrapped loss at config.loss"),
        "{e:?}"
    );
    let e = err(
        r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": {"class_name": "TripletLoss", "config": {"class_name": "PNLoss"}}}}"#,
        Format::Json,
    );
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, expected, .. }
            if key == "class_name" && expected.contains(&"negative_mining_strategy".to_owned())),
        "{e:?}"
    );
    // TripletLoss has no remove_diagonal key (it is a property of the input).
    let e = err(
        "class_name = \"XBM\"\n[config]\nmemory_size = 8\nloss = { class_name = \"TripletLoss\", remove_diagonal = true }\n",
        Format::Toml,
    );
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, .. } if key == "remove_diagonal"),
        "{e:?}"
    );
}

/// The typed error behind an invalid value, checked in every format.
fn invalid(class_name: &str, key: &str, value: &str, check: impl Fn(&LossError) -> bool) {
    for (text, format) in in_every_format(class_name, key, value) {
        let e = err(&text, format);
        assert!(
            matches!(&e, RegistryError::InvalidValue { class_name: c, .. } if c == class_name),
            "{text}: {e:?}"
        );
        let source = e.loss_error().unwrap_or_else(|| panic!("{text}: {e:?}"));
        assert!(check(source), "{text}: {source:?}");
        assert!(
            e.to_string()
                .contains(&format!("invalid {class_name} config: {source}")),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some(), "{e:?}");
    }
}

#[test]
fn invalid_values_wrap_the_loss_error_for_every_loss() {
    invalid("PNLoss", "negative_mining_strategy", "\"medium\"", |e| {
        matches!(
            e,
            LossError::InvalidStrategy {
                role: StrategyRole::Negative,
                ..
            }
        )
    });
    invalid("PNLoss", "positive_mining_strategy", "\"semi-hard\"", |e| {
        matches!(
            e,
            LossError::InvalidStrategy {
                role: StrategyRole::Positive,
                ..
            }
        )
    });
    invalid("PNLoss", "distance", "\"chebyshev\"", |e| {
        matches!(e, LossError::UnknownDistance { .. })
    });
    invalid("MultiSimilarityLoss", "alpha", "0", |e| {
        matches!(e, LossError::InvalidParameter { name: "alpha", .. })
    });
    invalid("MultiSimilarityLoss", "beta", "0.0", |e| {
        matches!(e, LossError::InvalidParameter { name: "beta", .. })
    });
    invalid("CircleLoss", "reduction", "\"mean\"", |e| {
        matches!(e, LossError::UnknownReduction { .. })
    });
    invalid("CircleLoss", "distance", "\"chebyshev\"", |e| {
        matches!(e, LossError::UnknownDistance { .. })
    });
    invalid("SoftNearestNeighborLoss", "temperature", "0", |e| {
        matches!(
            e,
            LossError::InvalidParameter {
                name: "temperature",
                ..
            }
        )
    });
}

#[test]
fn invalid_xbm_values_wrap_the_loss_error() {
    let texts = [
        (
            "class_name = \"XBM\"\n[config]\nmemory_size = 0\n[config.loss]\nclass_name = \"TripletLoss\"\n",
            Format::Toml,
        ),
        (
            r#"{"class_name": "XBM", "config": {"memory_size": 0, "loss": {"class_name": "TripletLoss"}}}"#,
            Format::Json,
        ),
        (
            "class_name: XBM\nconfig:\n  memory_size: 0\n  loss: {class_name: TripletLoss}\n",
            Format::Yaml,
        ),
    ];
    for (text, format) in texts {
        let e = err(text, format);
        assert!(
            matches!(
                e.loss_error(),
                Some(LossError::InvalidParameter {
                    name: "memory_size",
                    ..
                })
            ),
            "{text}: {e:?}"
        );
    }
    let e = err(
        "class_name: XBM\nconfig: {memory_size: 8, reduction: mean, loss: {class_name: CircleLoss}}\n",
        Format::Yaml,
    );
    assert!(
        matches!(e.loss_error(), Some(LossError::UnknownReduction { .. })),
        "{e:?}"
    );
    // A negative memory size is not a usize: serde's invalid value, named by its path.
    let e = err(
        "class_name = \"XBM\"\n[config]\nmemory_size = -1\nloss = { class_name = \"TripletLoss\" }\n",
        Format::Toml,
    );
    assert!(
        matches!(&e, RegistryError::InvalidValue { message, .. } if message.contains("config.memory_size")),
        "{e:?}"
    );
    // The wrapped loss's own errors, in both forms.
    for loss in [
        json!({"class_name": "PNLoss", "positive_mining_strategy": "semi-hard"}),
        json!({"class_name": "Similarity>PNLoss", "config": {"positive_mining_strategy": "semi-hard"}}),
    ] {
        let e =
            from_value(&json!({"class_name": "XBM", "config": {"memory_size": 8, "loss": loss}}))
                .unwrap_err();
        assert!(
            matches!(
                e.loss_error(),
                Some(LossError::InvalidStrategy {
                    role: StrategyRole::Positive,
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(
            matches!(&e, RegistryError::InvalidValue { class_name, .. } if class_name == "XBM"),
            "{e:?}"
        );
    }
    let e = from_value(&json!({"class_name": "XBM", "config": {"memory_size": 8,
        "loss": {"class_name": "TripletLoss", "config": {"soft_margin": true, "margin": 0.2}}}}))
    .unwrap_err();
    assert!(
        matches!(e.loss_error(), Some(LossError::MarginWithSoftMargin { .. })),
        "{e:?}"
    );
    let e = from_value(&json!({"class_name": "XBM", "config": {"memory_size": 8,
        "loss": {"class_name": "SoftNearestNeighborLoss", "temperature": 0}}}))
    .unwrap_err();
    assert!(
        matches!(
            e.loss_error(),
            Some(LossError::InvalidParameter {
                name: "temperature",
                ..
            })
        ),
        "{e:?}"
    );
    // A loss XBM cannot wrap (XBM itself included) is named.
    for class in ["QuadrupletLoss", "XBM"] {
        let e = from_value(&json!({"class_name": "XBM", "config": {"memory_size": 8,
            "loss": {"class_name": class}}}))
        .unwrap_err();
        assert!(
            matches!(&e, RegistryError::InvalidValue { class_name, .. } if class_name == "XBM"),
            "{e:?}"
        );
        assert!(e.to_string().contains(class), "{e}");
        assert!(e.to_string().contains("TripletLoss"), "{e}");
    }
}

#[test]
fn missing_required_xbm_keys() {
    let e = err(
        "class_name = \"XBM\"\n[config.loss]\nclass_name = \"TripletLoss\"\n",
        Format::Toml,
    );
    assert!(
        matches!(&e, RegistryError::MissingKey { key, section, .. }
            if key == "memory_size" && section == "the config of XBM"),
        "{e:?}"
    );
    let e = err("class_name: XBM\nconfig: {memory_size: 8}\n", Format::Yaml);
    assert!(
        matches!(&e, RegistryError::MissingKey { key, .. } if key == "loss"),
        "{e:?}"
    );
    // A bare XBM has no defaults for them.
    assert!(matches!(
        err("class_name = \"XBM\"", Format::Toml),
        RegistryError::MissingKey { .. }
    ));
    let e = err(
        r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": {"margin": 0.5}}}"#,
        Format::Json,
    );
    assert!(
        matches!(&e, RegistryError::MissingKey { key, .. } if key == "class_name"),
        "{e:?}"
    );
}

#[test]
fn wrong_value_types_name_the_key() {
    let cases = [
        (
            "class_name: XBM\nconfig: {memory_size: big, loss: {class_name: TripletLoss}}\n",
            Format::Yaml,
            "config.memory_size",
        ),
        (
            r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": "TripletLoss"}}"#,
            Format::Json,
            "config.loss",
        ),
        (
            r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": {"class_name": "TripletLoss", "config": 3}}}"#,
            Format::Json,
            "config.loss.config",
        ),
        (
            r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": {"class_name": "TripletLoss", "config": {}, "module": 1}}}"#,
            Format::Json,
            "config.loss.module",
        ),
        (
            r#"{"class_name": "XBM", "config": {"memory_size": 8, "loss": {"class_name": "TripletLoss", "config": {"distance": {"config": {}}}}}}"#,
            Format::Json,
            "config.loss.config.distance",
        ),
        (
            "class_name = \"SoftNearestNeighborLoss\"\n[config]\ntemperature = \"hot\"\n",
            Format::Toml,
            "config.temperature",
        ),
        (
            "class_name: MultiSimilarityLoss\nconfig: {alpha: true}\n",
            Format::Yaml,
            "config.alpha",
        ),
        (
            r#"{"class_name": "PNLoss", "config": {"remove_diagonal": "yes"}}"#,
            Format::Json,
            "config.remove_diagonal",
        ),
        (
            "class_name = \"CircleLoss\"\n[config]\nmargin = [0.4]\n",
            Format::Toml,
            "config.margin",
        ),
    ];
    for (text, format, want) in cases {
        let e = err(text, format);
        let RegistryError::WrongType { key, .. } = &e else {
            panic!("{text}: {e:?}")
        };
        assert_eq!(key, want, "{text}: {e}");
    }
}

#[test]
fn non_finite_numbers_are_rejected() {
    for (text, format, key) in [
        (
            "class_name = \"CircleLoss\"\n[config]\ngamma = inf\n",
            Format::Toml,
            "config.gamma",
        ),
        (
            "class_name: PNLoss\nconfig: {margin: .nan}\n",
            Format::Yaml,
            "config.margin",
        ),
        (
            "class_name: XBM\nconfig: {memory_size: 8, loss: {class_name: CircleLoss, margin: -.inf}}\n",
            Format::Yaml,
            "config.loss.margin",
        ),
    ] {
        let e = err(text, format);
        assert!(
            matches!(&e, RegistryError::NonFinite { key: k, .. } if k == key),
            "{text}: {e:?}"
        );
    }
}
