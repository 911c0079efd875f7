//! The linker trap, demonstrated: this test binary has `metric-loss-registry-testloss` as a
//! (dev-)dependency, like `separate_crate.rs`, but never names it, so rustc does not link
//! it and its `ScaledNorm` registration is absent. See the crate docs for the fix.

use metric_loss_registry::{from_str, registered_names, Format, RegistryError};

#[test]
fn a_crate_that_is_never_named_registers_nothing() {
    assert!(!registered_names().contains(&"ScaledNorm"));
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
    let e = from_str("class_name = \"ScaledNorm\"", Format::Toml).unwrap_err();
    assert!(matches!(e, RegistryError::UnknownClass { .. }), "{e:?}");
}
