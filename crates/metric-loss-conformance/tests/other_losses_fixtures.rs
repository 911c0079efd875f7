//! Data-driven conformance against TF Similarity 0.17.1's fixtures (vendored, gzip).
//!
//! Prints one line per non-passing case and a summary line per file and overall:
//! `conformance: N passed, M failed, K skipped, J deviations`. Fails on any failure.

use metric_loss_conformance::other_losses::{run_file, Outcome, Summary};
use metric_loss_conformance::vendored_other_fixtures;

#[test]
fn tf_similarity_fixtures() {
    let mut all = Vec::new();
    for path in vendored_other_fixtures() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let results = run_file(&path).expect("fixture file");
        for r in &results {
            if r.outcome != Outcome::Passed {
                println!("{r}");
            }
        }
        println!("{name}: {}", Summary::of(&results));
        all.extend(results);
    }
    let summary = Summary::of(&all);
    println!("{summary}");
    assert_eq!(summary.failed, 0, "{summary}");
}
