//! What several test binaries of the crate share.

use metric_loss_core::MetricLoss;
use metric_loss_pml::{
    ArcFaceLoss, ContrastiveLoss, CosFaceLoss, NTXentLoss, ProxyAnchorLoss,
    SubCenterArcFaceLossConfig, SupConLoss,
};

/// Every loss of the crate with its defaults (SubCenterArcFace with 3 sub-centers), the
/// learnable ones for `classes` classes of width `dims`; ProxyAnchor, which rejects sample
/// weights, last.
pub(crate) fn every_loss(classes: usize, dims: usize) -> [Box<dyn MetricLoss>; 7] {
    let sub_centers = SubCenterArcFaceLossConfig::new(classes, dims)
        .sub_centers(3)
        .build()
        .unwrap();
    [
        Box::new(ContrastiveLoss::new()),
        Box::new(NTXentLoss::new()),
        Box::new(SupConLoss::new()),
        Box::new(ArcFaceLoss::new(classes, dims).unwrap()),
        Box::new(CosFaceLoss::new(classes, dims).unwrap()),
        Box::new(sub_centers),
        Box::new(ProxyAnchorLoss::new(classes, dims).unwrap()),
    ]
}
