//! Two types registered under one class name are noticed: listed by `duplicate_names` and
//! refused when loaded, instead of one silently winning.

use metric_loss_core::{LossError, LossInput, LossOutput, MetricLoss, Workspace};
use metric_loss_registry::{
    duplicate_names, from_str, registered_names, Format, RegisteredLoss, RegistryError,
};
use serde::{Deserialize, Serialize};

macro_rules! nothing_loss {
    ($ty:ident) => {
        #[derive(Debug, Default, Serialize, Deserialize)]
        struct $ty {}

        impl MetricLoss for $ty {
            fn name(&self) -> &str {
                stringify!($ty)
            }
            fn compute_f32(
                &self,
                _: &LossInput<'_, f32>,
                _: &mut Workspace,
                _: &mut LossOutput<f32>,
            ) -> Result<(), LossError> {
                Ok(())
            }
            fn compute_f64(
                &self,
                _: &LossInput<'_, f64>,
                _: &mut Workspace,
                _: &mut LossOutput<f64>,
            ) -> Result<(), LossError> {
                Ok(())
            }
        }
    };
}

nothing_loss!(First);
nothing_loss!(Second);

#[typetag::serde(name = "Twin")]
impl RegisteredLoss for First {}

#[typetag::serde(name = "Twin")]
impl RegisteredLoss for Second {}

#[test]
fn duplicates_are_listed_and_refused() {
    assert_eq!(duplicate_names(), vec!["Twin"]);
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
            "Twin",
            "VicReg",
            "XBM"
        ]
    );
    let e = from_str("class_name = \"Twin\"", Format::Toml).unwrap_err();
    assert!(
        matches!(&e, RegistryError::DuplicateClass { class_name, .. } if class_name == "Twin"),
        "{e:?}"
    );
    assert!(e.to_string().contains("more than one"), "{e}");
    // Other classes still load.
    assert!(from_str("class_name = \"TripletLoss\"", Format::Toml).is_ok());
    assert!(from_str("class_name = \"CircleLoss\"", Format::Toml).is_ok());
}
