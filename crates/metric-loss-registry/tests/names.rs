//! The registered-name list: what this build registers, without duplicates.

use metric_loss_registry::{catalog, duplicate_names, registered_names};

/// The losses this crate registers itself, sorted: TF Similarity's class names.
const BUILT_IN: [&str; 18] = [
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
    "XBM",
];

#[test]
fn this_crate_registers_exactly_the_built_in_losses_once() {
    // This test binary names no other loss crate, so only the built-in losses are here.
    // A new built-in loss must be added to this list; a name registered twice would show
    // in `duplicate_names` and fail below.
    assert_eq!(registered_names(), BUILT_IN);
    assert!(duplicate_names().is_empty(), "{:?}", duplicate_names());
}

#[test]
fn catalog_lists_every_name() {
    let c = catalog();
    assert_eq!(c.losses, registered_names());
    assert_eq!(c.losses, BUILT_IN);
    let names: Vec<&str> = c.distances.iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "cosine",
            "inner_product",
            "euclidean",
            "squared_euclidean",
            "manhattan",
            "snr"
        ]
    );
    let euclidean = c.distances.iter().find(|d| d.name == "euclidean").unwrap();
    assert_eq!(euclidean.aliases, &["l2", "pythagorean"]);
    assert_eq!(euclidean.class_name, "EuclideanDistance");
    assert_eq!(c.positive_mining_strategies, &["easy", "hard"]);
    assert_eq!(c.negative_mining_strategies, &["easy", "hard", "semi-hard"]);
    assert_eq!(
        c.reductions,
        &["auto", "sum_over_batch_size", "sum", "none"]
    );
    let text = c.to_string();
    assert!(
        text.contains("losses (class_name): ArcFaceLoss, Barlow, CircleLoss, ContrastiveLoss, CosFaceLoss, MultiNegativesRankLoss, MultiSimilarityLoss, NTXentLoss, PNLoss, ProxyAnchorLoss, SimCLRLoss, SimSiamLoss, SoftNearestNeighborLoss, SubCenterArcFaceLoss, SupConLoss, TripletLoss, VicReg, XBM\n"),
        "{text}"
    );
    for needle in [
        "TripletLoss",
        "sqeuclidean",
        "semi-hard",
        "sum_over_batch_size",
        "SNRDistance",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}
