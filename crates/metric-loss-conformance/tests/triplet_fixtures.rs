//! Every vendored TF Similarity triplet case, f32 and f64, through the public API.

use std::path::PathBuf;

use metric_loss_conformance::{
    run_files, vendored_other_fixtures, vendored_triplet_fixtures, Outcome,
};

#[test]
fn every_triplet_fixture_case_agrees_with_tf_similarity() {
    let paths: Vec<PathBuf> = vendored_triplet_fixtures();
    let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let report = run_files(&refs).expect("vendored fixtures load");
    print!("{}", report.details());
    println!(
        "{} (of which {} with loose tolerance on ulp-sensitive rows)",
        report.summary(),
        report.passed_loose()
    );
    assert_eq!(report.failed(), 0, "{}", report.details());
    // The only skips: TF's own float64 rounding flips, named in the harness with the reason.
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
    assert_eq!(report.cases.len(), 1555 + 1495);
}

#[test]
fn other_losses_fixture_cases_run_through_the_same_entry_point() {
    let paths: Vec<PathBuf> = vendored_other_fixtures();
    let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let report = run_files(&refs).expect("vendored fixtures load");
    print!("{}", report.details());
    println!(
        "{} ({} documented deviations)",
        report.summary(),
        report.deviations()
    );
    assert_eq!(report.failed(), 0, "{}", report.details());
    // Only documented deviations are not compared: TF's NaN / inf / failures.
    assert_eq!(report.skipped(), report.deviations());
    assert_eq!(report.deviations(), 20, "{}", report.details());
}
