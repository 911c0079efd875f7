//! Bad input gives a typed, descriptive error, never a panic.

use metric_loss_core::{LossError, StrategyRole};
use metric_loss_registry::{from_str, from_value, load, Format, RegistryError, MAX_CONFIG_BYTES};
use proptest::prelude::*;
use serde_json::json;

fn err(text: &str, format: Format) -> RegistryError {
    match from_str(text, format) {
        Ok(loss) => panic!("accepted {text:?} as {loss:?}"),
        Err(e) => e,
    }
}

fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "metric-loss-registry-errors-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn unknown_class_lists_the_registered_names() {
    let e = err("class_name = \"TripletLos\"", Format::Toml);
    let RegistryError::UnknownClass {
        given, registered, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(given, "TripletLos");
    assert!(registered.contains(&"TripletLoss".to_owned()));
    assert!(
        e.to_string().contains(
            "registered losses: ArcFaceLoss, Barlow, CircleLoss, ContrastiveLoss, CosFaceLoss, MultiNegativesRankLoss, MultiSimilarityLoss, NTXentLoss, PNLoss, ProxyAnchorLoss, SimCLRLoss, SimSiamLoss, SoftNearestNeighborLoss, SubCenterArcFaceLoss, SupConLoss, TripletLoss, VicReg, XBM"
        ),
        "{e}"
    );
    // The Keras prefix is only stripped for TF Similarity's package.
    assert!(matches!(
        err("class_name: Other>TripletLoss", Format::Yaml),
        RegistryError::UnknownClass { .. }
    ));
}

#[test]
fn unknown_keys_are_named() {
    for (text, format) in [
        (
            "class_name = \"TripletLoss\"\n[config]\nmarign = 0.5\n",
            Format::Toml,
        ),
        (
            "{\"class_name\": \"TripletLoss\", \"config\": {\"marign\": 0.5}}",
            Format::Json,
        ),
        (
            "class_name: TripletLoss\nconfig:\n  marign: 0.5\n",
            Format::Yaml,
        ),
    ] {
        let e = err(text, format);
        let RegistryError::UnknownKey {
            key,
            expected,
            section,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(key, "marign");
        assert!(expected.contains(&"margin".to_owned()), "{expected:?}");
        assert_eq!(section, "the config of TripletLoss");
        assert!(e.to_string().contains("\"marign\""), "{e}");
    }
    // TF Similarity's hidden kwarg remove_diagonal is a property of the input here.
    let e = err(
        "{\"class_name\": \"TripletLoss\", \"config\": {\"remove_diagonal\": false}}",
        Format::Json,
    );
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, .. } if key == "remove_diagonal"),
        "{e:?}"
    );
    let e = err("class_name = \"TripletLoss\"\nextra = 1\n", Format::Toml);
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, section, .. } if key == "extra" && section == "the top level"),
        "{e:?}"
    );
}

#[test]
fn missing_class_name() {
    let e = err("[config]\nmargin = 0.5\n", Format::Toml);
    assert!(
        matches!(&e, RegistryError::MissingKey { key, .. } if key == "class_name"),
        "{e:?}"
    );
}

#[test]
fn wrong_value_types() {
    let cases = [
        (
            "class_name = \"TripletLoss\"\n[config]\nmargin = \"big\"\n",
            Format::Toml,
            "config.margin",
        ),
        (
            "class_name: TripletLoss\nconfig: {soft_margin: 3}\n",
            Format::Yaml,
            "config.soft_margin",
        ),
        (
            "{\"class_name\": \"TripletLoss\", \"config\": {\"distance\": 2}}",
            Format::Json,
            "config.distance",
        ),
        (
            "{\"class_name\": \"TripletLoss\", \"config\": [1]}",
            Format::Json,
            "config",
        ),
        ("{\"class_name\": 7}", Format::Json, "class_name"),
        ("[1, 2]", Format::Json, "the top level"),
        (
            "class_name = \"TripletLoss\"\n[config]\nname = 1979-05-27\n",
            Format::Toml,
            "config.name",
        ),
        (
            "class_name: TripletLoss\nconfig: {distance: !Cosine x}\n",
            Format::Yaml,
            "config.distance",
        ),
        (
            "class_name: TripletLoss\nconfig: {1: x}\n",
            Format::Yaml,
            "config",
        ),
        (
            "{\"class_name\": \"TripletLoss\", \"config\": {\"distance\": {\"config\": {}}}}",
            Format::Json,
            "config.distance",
        ),
    ];
    for (text, format, want) in cases {
        let e = err(text, format);
        let RegistryError::WrongType { key, .. } = &e else {
            panic!("{text}: {e:?}")
        };
        assert_eq!(key, want, "{text}: {e}");
    }
    let e = err(
        "class_name = \"TripletLoss\"\n[config]\nmargin = \"big\"\n",
        Format::Toml,
    );
    assert!(
        e.to_string()
            .contains("expected a number, found string \"big\""),
        "{e}"
    );
}

#[test]
fn invalid_values_wrap_the_loss_error() {
    let e = err(
        "class_name = \"TripletLoss\"\n[config]\nnegative_mining_strategy = \"medium\"\n",
        Format::Toml,
    );
    assert!(
        matches!(
            e.loss_error(),
            Some(LossError::InvalidStrategy {
                role: StrategyRole::Negative,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("medium") && e.to_string().contains("semi-hard"),
        "{e}"
    );

    let e = err(
        "class_name: TripletLoss\nconfig: {soft_margin: true, margin: 0.2}\n",
        Format::Yaml,
    );
    assert!(
        matches!(e.loss_error(), Some(LossError::MarginWithSoftMargin { .. })),
        "{e:?}"
    );

    let e = err(
        "{\"class_name\": \"TripletLoss\", \"config\": {\"distance\": \"chebyshev\"}}",
        Format::Json,
    );
    assert!(
        matches!(e.loss_error(), Some(LossError::UnknownDistance { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("sqeuclidean"), "{e}");

    let e = err(
        "class_name = \"TripletLoss\"\n[config]\nreduction = \"mean\"\n",
        Format::Toml,
    );
    assert!(
        matches!(e.loss_error(), Some(LossError::UnknownReduction { .. })),
        "{e:?}"
    );

    let e = err(
        "class_name = \"TripletLoss\"\n[config]\npositive_mining_strategy = \"Hard\"\n",
        Format::Toml,
    );
    assert!(
        matches!(&e, RegistryError::InvalidValue { class_name, .. } if class_name == "TripletLoss"),
        "{e:?}"
    );
}

#[test]
fn non_finite_numbers_are_rejected() {
    for (text, format) in [
        (
            "class_name = \"TripletLoss\"\n[config]\nmargin = inf\n",
            Format::Toml,
        ),
        (
            "class_name = \"TripletLoss\"\n[config]\nmargin = nan\n",
            Format::Toml,
        ),
        (
            "class_name: TripletLoss\nconfig: {margin: .inf}\n",
            Format::Yaml,
        ),
        (
            "class_name: TripletLoss\nconfig: {margin: .NaN}\n",
            Format::Yaml,
        ),
    ] {
        let e = err(text, format);
        assert!(
            matches!(&e, RegistryError::NonFinite { key, .. } if key == "config.margin"),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn syntax_errors_give_line_and_column() {
    let cases = [
        (
            "{\n  \"class_name\": \"TripletLoss\",\n  \"config\": {\"margin\": 0.5,}\n}\n",
            Format::Json,
            3,
        ),
        (
            "class_name = \"TripletLoss\"\n[config]\nmargin = = 0.5\n",
            Format::Toml,
            3,
        ),
        (
            "class_name: TripletLoss\nconfig:\n  margin: [0.5\n  name: x\n",
            Format::Yaml,
            4,
        ),
    ];
    for (text, format, line_wanted) in cases {
        let e = err(text, format);
        let RegistryError::Syntax {
            line,
            column,
            format: f,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*f, format);
        assert_eq!(*line, Some(line_wanted), "{format}: {e}");
        assert!(column.is_some(), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("at line {line_wanted}, column")),
            "{e}"
        );
    }
}

#[test]
fn empty_and_missing_files_name_the_file() {
    for (name, contents) in [
        ("empty.toml", ""),
        ("blank.json", "  \n\t\n"),
        ("comments.yaml", "# nothing here\n"),
        ("comments.toml", "# nothing here\n"),
    ] {
        let path = temp_file(name, contents.as_bytes());
        let e = load(&path).unwrap_err();
        // TOML with only comments parses to an empty table: a missing class_name.
        let ok = match &e {
            RegistryError::Empty { origin } => origin.contains(name),
            RegistryError::MissingKey { origin, key, .. } => {
                origin.contains(name) && key == "class_name"
            }
            _ => false,
        };
        assert!(ok, "{name}: {e:?}");
        assert!(e.to_string().contains(name), "{e}");
    }
    let e = load("no/such/dir/loss.toml").unwrap_err();
    assert!(
        matches!(&e, RegistryError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert!(e.to_string().contains("no/such/dir/loss.toml"), "{e}");

    let path = temp_file("latin1.json", b"{\"class_name\": \"Tripl\xe9tLoss\"}");
    assert!(matches!(load(&path).unwrap_err(), RegistryError::Io { .. }));

    let e = load("loss.ini").unwrap_err();
    assert!(
        matches!(&e, RegistryError::UnknownFormat { extension, .. } if extension == "ini"),
        "{e:?}"
    );
    let e = from_str("", Format::Json).unwrap_err();
    assert!(
        matches!(&e, RegistryError::Empty { origin } if origin == "<json string>"),
        "{e:?}"
    );
}

#[test]
fn oversized_configs_are_refused() {
    let mut big = String::from("class_name = \"TripletLoss\"\n");
    while (big.len() as u64) <= MAX_CONFIG_BYTES {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let path = temp_file("big.toml", big.as_bytes());
    let e = load(&path).unwrap_err();
    assert!(
        matches!(&e, RegistryError::TooLarge { limit, .. } if *limit == MAX_CONFIG_BYTES),
        "{e:?}"
    );
    assert!(e.to_string().contains("big.toml"), "{e}");
    assert!(matches!(
        from_str(&big, Format::Toml),
        Err(RegistryError::TooLarge { .. })
    ));
}

#[test]
fn wrong_shapes_of_values() {
    assert!(matches!(
        from_value(&json!(null)),
        Err(RegistryError::WrongType { .. })
    ));
    assert!(matches!(
        from_value(&json!("TripletLoss")),
        Err(RegistryError::WrongType { .. })
    ));
    assert!(matches!(
        from_value(&json!({"config": {}})),
        Err(RegistryError::MissingKey { .. })
    ));
    assert!(matches!(
        from_value(&json!({"class_name": "TripletLoss", "module": 3})),
        Err(RegistryError::WrongType { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        for format in Format::ALL {
            let _ = from_str(&text, format);
        }
    }

    #[test]
    fn mangled_configs_never_panic(cut in 0usize..400, insert in "[\\[\\]{}:=,\"'#\\n a-z0-9.-]{0,6}") {
        for (format, base) in [
            (Format::Json, include_str!("../../../examples/configs/triplet_default.json")),
            (Format::Toml, include_str!("../../../examples/configs/triplet_default.toml")),
            (Format::Yaml, include_str!("../../../examples/configs/triplet_soft_l2.yaml")),
        ] {
            let mut at = cut.min(base.len());
            while !base.is_char_boundary(at) {
                at -= 1;
            }
            let text = format!("{}{}{}", &base[..at], insert, &base[at..]);
            let _ = from_str(&text, format);
        }
    }
}
