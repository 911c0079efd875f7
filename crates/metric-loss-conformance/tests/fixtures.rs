//! Every vendored TF Similarity case (TripletLoss in f32 and f64, PN, MultiSimilarity,
//! Circle, SoftNN, XBM), run once through the one harness and its public entry point.
//!
//! Prints each skipped case and deviation with its reason, then
//! `conformance: N passed, M failed, K skipped`.

use std::path::Path;

use metric_loss_conformance::{run_files, vendored_fixtures, Outcome};

#[test]
fn every_vendored_fixture_case_agrees_with_tf_similarity() {
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
    // The only skips that are not deviations: TF's own float64 rounding flips.
    let skipped: Vec<&str> = report
        .cases
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Skipped(_)))
        .map(|(_, name, _)| name.as_str())
        .collect();
    assert_eq!(
        skipped,
        [
            "edge_all_same_label/inner_product/hard/semi-hard/soft",
            "edge_all_same_label/inner_product/hard/semi-hard/m1",
            "edge_all_same_label/inner_product/hard/semi-hard/m0.2",
        ]
    );
    // Only TF's NaN / inf / failures are deviations, each named in `details`.
    assert_eq!(report.deviations(), 20, "{}", report.details());
    assert_eq!(report.cases.len(), 3964 + 23);
}
