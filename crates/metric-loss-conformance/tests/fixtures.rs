//! Every vendored case (TF Similarity's TripletLoss in f32 and f64, PN, MultiSimilarity,
//! Circle, SoftNN, XBM, and its two-view losses; pytorch-metric-learning's Contrastive, NTXent, SupCon, ArcFace,
//! CosFace, SubCenterArcFace and ProxyAnchor in f32 and f64), run once through the one harness and its public entry point.
//!
//! Prints each skipped case and deviation with its reason, then
//! `conformance: N passed, M failed, K skipped`.

use std::path::Path;

use metric_loss_conformance::{run_files, vendored_fixtures, Outcome};

#[test]
fn every_vendored_fixture_case_agrees_with_its_reference() {
    let paths = vendored_fixtures();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let report = run_files(&refs).expect("vendored fixtures load");
    print!("{}", report.details());
    println!(
        "{} ({} with the loose tolerance on ulp-sensitive rows, {} documented deviations)",
        report.summary(),
        report.passed_loose(),
        report.deviations()
    );
    assert_eq!(report.failed(), 0, "{}", report.details());
    // The skips that are not deviations: TF's own float64 rounding flips, PML's
    // `ref_labels=None` (keys here always carry labels) and PML's ulp-sensitive cases.
    let is_view_file = |file: &str| VIEW_FILES.iter().any(|f| file.ends_with(f));
    let skipped: Vec<(&str, &str)> = report
        .cases
        .iter()
        .filter(|(file, _, _)| !is_view_file(file))
        .filter_map(|(_, name, o)| match o {
            Outcome::Skipped(why) => Some((name.as_str(), why.as_str())),
            _ => None,
        })
        .collect();
    let triplet: Vec<&str> = skipped
        .iter()
        .filter(|(name, _)| name.starts_with("edge_all_same_label/"))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        triplet,
        [
            "edge_all_same_label/inner_product/hard/semi-hard/soft",
            "edge_all_same_label/inner_product/hard/semi-hard/m1",
            "edge_all_same_label/inner_product/hard/semi-hard/m0.2",
        ]
    );
    let pml: Vec<&(&str, &str)> = skipped
        .iter()
        .filter(|(name, _)| !name.starts_with("edge_all_same_label/"))
        .collect();
    assert!(
        pml.iter().all(|(name, why)| (*name == "ref/ref_labels_none"
            && why.starts_with("ref_emb without ref_labels"))
            || why.starts_with("ulp-sensitive in PML")),
        "{pml:?}"
    );
    assert_eq!(pml.len(), 13, "{pml:?}");
    // TF Similarity's two-view losses: the one input SampleWeight cannot hold, and Barlow's
    // rows TF flags as rounding noise beyond the loose tolerance.
    let views: Vec<(&str, &str)> = report
        .cases
        .iter()
        .filter(|(file, _, _)| is_view_file(file))
        .filter_map(|(_, name, o)| match o {
            Outcome::Skipped(why) => Some((name.as_str(), why.as_str())),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = views.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "edge/sample_weight_matrix/default",
            "edge/all_rows_equal/lambda_=0.05"
        ],
        "{views:?}"
    );
    assert!(views[0]
        .1
        .starts_with("per-entry sample weights of shape [8,8]"));
    assert!(views[1].1.starts_with("ulp-sensitive in TF"));
    // Only the references' NaN / inf / failures are deviations, each named in `details`.
    assert_eq!(
        report.deviations(),
        26 + VIEW_DEVIATIONS,
        "{}",
        report.details()
    );
    assert_eq!(
        report.cases.len(),
        3964 + 23 + 965 + 19 + VIEW_CASES + LEARNABLE_CASES
    );
}

/// pytorch-metric-learning's losses with a learnable matrix, each file in f32 and f64:
/// ArcFace 111, CosFace 105, SubCenterArcFace 111, ProxyAnchor 110; every case passes.
const LEARNABLE_CASES: usize = 2 * (111 + 105 + 111 + 110);

/// The two-view fixture files (TF Similarity 0.17.1).
const VIEW_FILES: [&str; 5] = [
    "multinegrank_public.json.gz",
    "simclr_public.json.gz",
    "simsiam_public.json.gz",
    "barlow_public.json.gz",
    "vicreg_public.json.gz",
];
/// Their cases: MultiNegativesRank 132, SimCLR 117, SimSiam 149, Barlow 119, VicReg 131.
const VIEW_CASES: usize = 132 + 117 + 149 + 119 + 131;
/// TF's NaN / inf on finite input: SimCLR's temperature 0 (2), SimSiam's angular
/// projection of identical or opposite rows (4), Barlow's empty batch (1), VicReg's batch
/// of one (7), negative std_const (2) and std_const 0 on a constant column (1).
const VIEW_DEVIATIONS: usize = 2 + 4 + 1 + 7 + 2 + 1;
