//! Data-driven conformance against TF Similarity 0.17.1's fixtures (vendored, gzip).
//!
//! Prints one line per non-passing case and a summary line per file and overall:
//! `conformance: N passed, M failed, K skipped, J deviations`. Fails on any failure.

use std::path::PathBuf;

use metric_loss_losses::conformance::{run_file, Outcome, Summary};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}_public.json.gz"))
}

#[test]
fn tf_similarity_fixtures() {
    let mut all = Vec::new();
    for name in ["pn", "multisim", "circle", "softnn", "xbm"] {
        let results = run_file(&fixture(name)).expect("fixture file");
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
