//! A loss registered in another crate (`metric-loss-registry-testloss`) is loaded through
//! the same call as the built-in ones, once that crate is linked.

mod common;

use common::{assert_same, run};
use metric_loss_core::LossError;
use metric_loss_registry::{
    duplicate_names, from_str, load, registered_names, ConfigExt, Format, RegistryError,
};
use metric_loss_registry_testloss::{ScaledNorm, ScaledNormConfig};

// The fix for the linker trap: name the crate. (`metric_loss_registry_testloss::register()`
// would do as well.)
metric_loss_registry::link!(metric_loss_registry_testloss);

#[test]
fn the_other_crates_loss_is_registered_once() {
    assert_eq!(
        registered_names(),
        vec![
            "ArcFaceLoss",
            "Barlow",
            "CircleLoss",
            "ContrastiveLoss",
            "CosFaceLoss",
            "MultiNegativesRankLoss",
            "MultiSimilarityLoss",
            "NTXentLoss",
            "PNLoss",
            "ProxyAnchorLoss",
            "ScaledNorm",
            "SimCLRLoss",
            "SimSiamLoss",
            "SoftNearestNeighborLoss",
            "SubCenterArcFaceLoss",
            "SupConLoss",
            "TripletLoss",
            "VicReg",
            "XBM"
        ]
    );
    assert!(duplicate_names().is_empty());
}

#[test]
fn the_other_crates_loss_loads_from_every_format() {
    let expected = ScaledNorm::new(ScaledNormConfig {
        scale: 0.5,
        name: "half".into(),
    })
    .unwrap();
    for (text, format) in [
        (
            "{\"class_name\": \"ScaledNorm\", \"config\": {\"scale\": 0.5, \"name\": \"half\"}}",
            Format::Json,
        ),
        (
            "class_name = \"ScaledNorm\"\n[config]\nscale = 0.5\nname = \"half\"\n",
            Format::Toml,
        ),
        (
            "class_name: ScaledNorm\nconfig:\n  scale: 0.5\n  name: half\n",
            Format::Yaml,
        ),
    ] {
        let loss = from_str(text, format).unwrap();
        assert_same(&run(&*loss), &run(&expected), text);
        assert_eq!(loss.get_config().unwrap(), expected.get_config().unwrap());
        let again = from_str(&loss.to_config_string(format).unwrap(), format).unwrap();
        assert_same(&run(&*again), &run(&expected), text);
    }
    // Through a file too, and with defaults.
    let path = std::env::temp_dir().join(format!("scaled-norm-{}.yaml", std::process::id()));
    std::fs::write(&path, "class_name: ScaledNorm\n").unwrap();
    let loss = load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loss.name(), "scaled_norm");
}

#[test]
fn the_other_crates_errors_are_typed() {
    let e = from_str(
        "class_name = \"ScaledNorm\"\n[config]\nscale = -1.0\n",
        Format::Toml,
    )
    .unwrap_err();
    assert!(
        matches!(
            e.loss_error(),
            Some(LossError::InvalidParameter { name: "scale", .. })
        ),
        "{e:?}"
    );
    let e = from_str(
        "class_name = \"ScaledNorm\"\n[config]\nscael = 1.0\n",
        Format::Toml,
    )
    .unwrap_err();
    assert!(
        matches!(&e, RegistryError::UnknownKey { key, .. } if key == "scael"),
        "{e:?}"
    );
    let e = from_str("class_name = \"Nope\"", Format::Toml).unwrap_err();
    assert!(
        e.to_string()
            .contains("PNLoss, ProxyAnchorLoss, ScaledNorm, SimCLRLoss, SimSiamLoss, SoftNearestNeighborLoss, SubCenterArcFaceLoss, SupConLoss, TripletLoss"),
        "{e}"
    );
}
