//! Runs fixture files produced by the real TF Similarity and pytorch-metric-learning
//! packages against this workspace's
//! losses, through their public API: one harness for `cargo test` and for
//! `cargo xtask conformance FILE...`.
//!
//! A case passes when per-example losses, the reduced loss and the gradient agree within
//! [`Tolerance::for_dtype`] (1e-5 / 1e-4 relative to `1 + |value|` in float32, 1e-10 in
//! float64). Rows listed in a case's `ulp_sensitive_anchors` (where the result depends on
//! float rounding of self-distances, which is not defined to the ulp) are compared with
//! [`Tolerance::ulp_sensitive`]; such cases count as passed and are tallied separately.
//! Error cases must produce the typed error this project's rules expect (spec,
//! "decisions").
//!
//! ```no_run
//! let report = metric_loss_conformance::run_files(&["fixtures/triplet_public.json.gz".as_ref()]).unwrap();
//! println!("{}", report.summary());
//! ```

mod compare;
mod fixture;
mod other_losses;
mod pml;
mod triplet;
mod views;

use std::path::Path;

pub use compare::Tolerance;
pub use fixture::{load, FixtureFile};

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Agrees within the tolerances.
    Passed,
    /// Agrees, using the loose tolerance on its `ulp_sensitive_anchors` rows.
    PassedLoose,
    /// Disagrees; the message says where.
    Failed(String),
    /// Not comparable; the message says why.
    Skipped(String),
    /// TF Similarity returns NaN, ±∞ or fails here and this project deliberately computes a
    /// finite, documented value instead (spec: PN, MultiSimilarity, SoftNN defects).
    Deviation(String),
}

/// The outcomes of every case run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(file, case name, outcome)` in run order.
    pub cases: Vec<(String, String, Outcome)>,
}

impl Report {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|(_, _, o)| f(o)).count()
    }

    /// Cases that passed (strictly or with the loose ulp tolerance).
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed | Outcome::PassedLoose))
    }

    /// Cases that passed only with the loose tolerance on their ulp-sensitive rows.
    pub fn passed_loose(&self) -> usize {
        self.count(|o| matches!(o, Outcome::PassedLoose))
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Cases not compared with TF: skipped, or documented deviations.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_) | Outcome::Deviation(_)))
    }

    /// Documented deviations (counted among the skipped).
    pub fn deviations(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Deviation(_)))
    }

    /// `conformance: N passed, M failed, K skipped`.
    pub fn summary(&self) -> String {
        format!(
            "conformance: {} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    /// One line per failed or skipped case, with its reason.
    pub fn details(&self) -> String {
        let mut s = String::new();
        for (file, name, outcome) in &self.cases {
            match outcome {
                Outcome::Failed(why) => s += &format!("FAILED  {file} :: {name}: {why}\n"),
                Outcome::Skipped(why) => s += &format!("skipped {file} :: {name}: {why}\n"),
                Outcome::Deviation(why) => s += &format!("deviation {file} :: {name}: {why}\n"),
                _ => {}
            }
        }
        s
    }
}

/// Runs every case of every file. A float64 triplet file is run with the float32 file of
/// the same directory (if any) at hand, to check the euclidean cases TF cannot compute in
/// float64.
///
/// # Errors
/// A message naming a file that cannot be read or is not a fixture file.
pub fn run_files(paths: &[&Path]) -> Result<Report, String> {
    let files = paths
        .iter()
        .map(|p| load(p))
        .collect::<Result<Vec<_>, _>>()?;
    let float32: Vec<serde_json::Value> = files
        .iter()
        .filter(|f| f.dtype == "float32")
        .flat_map(|f| f.cases.iter().cloned())
        .collect();
    let mut report = Report::default();
    for file in &files {
        for case in &file.cases {
            let name = case["name"].as_str().unwrap_or("<unnamed>").to_owned();
            // A two-view case whose constructor raised has no config: the file names the loss.
            let outcome = if case.get("za").is_some() {
                let class = case["config"]["class_name"].as_str();
                views::run_case(case, class.or(file.loss.as_deref()))
            } else {
                run_case(case, &file.dtype, &file.cases, &float32)
            };
            report.cases.push((file.path.clone(), name, outcome));
        }
    }
    Ok(report)
}

/// Runs one case, dispatching on `config.class_name` (absent means `TripletLoss`).
pub fn run_case(
    case: &serde_json::Value,
    dtype: &str,
    file_cases: &[serde_json::Value],
    float32: &[serde_json::Value],
) -> Outcome {
    match case["config"]["class_name"].as_str() {
        None | Some("TripletLoss") => triplet::run_case(case, dtype, file_cases, float32),
        Some(class) if pml::CLASSES.contains(&class) => pml::run_case(case, dtype),
        Some(class) if views::CLASSES.contains(&class) => views::run_case(case, Some(class)),
        Some(_) => other_losses::run_case(case),
    }
}

/// Every fixture file vendored in this crate (`fixtures/`, gzip-compressed).
pub fn vendored_fixtures() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    [
        "triplet_public.json.gz",
        "triplet_public_f64.json.gz",
        "pn_public.json.gz",
        "multisim_public.json.gz",
        "circle_public.json.gz",
        "softnn_public.json.gz",
        "xbm_public.json.gz",
        "contrastive_public.json.gz",
        "contrastive_public_f64.json.gz",
        "ntxent_public.json.gz",
        "ntxent_public_f64.json.gz",
        "supcon_public.json.gz",
        "supcon_public_f64.json.gz",
        "arcface_public.json.gz",
        "arcface_public_f64.json.gz",
        "cosface_public.json.gz",
        "cosface_public_f64.json.gz",
        "subcenter_arcface_public.json.gz",
        "subcenter_arcface_public_f64.json.gz",
        "proxy_anchor_public.json.gz",
        "proxy_anchor_public_f64.json.gz",
        "multinegrank_public.json.gz",
        "simclr_public.json.gz",
        "simsiam_public.json.gz",
        "barlow_public.json.gz",
        "vicreg_public.json.gz",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}
