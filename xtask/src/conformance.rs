//! `cargo xtask conformance [FILE...]`: runs fixture files through the conformance harness.

use std::path::{Path, PathBuf};

/// Runs the given fixture files (or the vendored ones), prints failures, skips and the
/// summary line, and fails when any case failed.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let paths: Vec<PathBuf> = if args.is_empty() {
        metric_loss_conformance::vendored_fixtures()
    } else {
        args.iter().map(PathBuf::from).collect()
    };
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let report = metric_loss_conformance::run_files(&refs)?;
    print!("{}", report.details());
    if report.passed_loose() > 0 {
        println!(
            "{} cases passed with the loose tolerance on their ulp-sensitive anchors",
            report.passed_loose()
        );
    }
    if report.deviations() > 0 {
        println!(
            "{} of the skipped cases are documented deviations from a reference's NaN, inf or failure",
            report.deviations()
        );
    }
    println!("{}", report.summary());
    if report.failed() > 0 {
        Err(format!("{} cases failed", report.failed()))
    } else {
        Ok(())
    }
}
