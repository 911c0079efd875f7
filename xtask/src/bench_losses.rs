//! The second table of `cargo xtask bench-peers`: every other loss with its default
//! arguments against the package it comes from (TF Similarity or pytorch-metric-learning),
//! timed side by side in the same run.
//!
//! Ours is `metric-loss bench --config <{"class_name": LOSS}>` (the CLI's synthetic batch:
//! L2-normalised gaussian rows, N/4 classes of 4, or two such views for a two-view loss); the
//! peers' scripts use the same shapes and class structure with their own seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Which package a loss comes from, and so which script times the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// `bench_tfsim_losses.py` (all of TF Similarity's labelled losses in one run).
    TfSimilarity,
    /// `bench_pml_losses.py --only LOSS`, under an address-space limit.
    Pml,
    /// `bench_tfsim_views.py` (TF Similarity's two-view losses, two L2-normalised views).
    TfSimilarityViews,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Self::TfSimilarity | Self::TfSimilarityViews => "TF Similarity 0.17.1",
            Self::Pml => "PML 2.9.0",
        }
    }
}

/// The losses of the table by default, with their reference package.
pub(crate) const DEFAULT_LOSSES: [(&str, Peer); 16] = [
    ("PNLoss", Peer::TfSimilarity),
    ("MultiSimilarityLoss", Peer::TfSimilarity),
    ("CircleLoss", Peer::TfSimilarity),
    ("SoftNearestNeighborLoss", Peer::TfSimilarity),
    ("ContrastiveLoss", Peer::Pml),
    ("NTXentLoss", Peer::Pml),
    ("SupConLoss", Peer::Pml),
    ("ArcFaceLoss", Peer::Pml),
    ("CosFaceLoss", Peer::Pml),
    ("SubCenterArcFaceLoss", Peer::Pml),
    ("ProxyAnchorLoss", Peer::Pml),
    ("MultiNegativesRankLoss", Peer::TfSimilarityViews),
    ("SimCLRLoss", Peer::TfSimilarityViews),
    ("SimSiamLoss", Peer::TfSimilarityViews),
    ("Barlow", Peer::TfSimilarityViews),
    ("VicReg", Peer::TfSimilarityViews),
];

/// The losses that own a class-weight or proxy matrix: built, as the PML script builds
/// them, with one class per four rows (the batch's classes) and the batch's width.
const WITH_CLASSES: [&str; 4] = [
    "ArcFaceLoss",
    "CosFaceLoss",
    "SubCenterArcFaceLoss",
    "ProxyAnchorLoss",
];

/// The config of `loss` with its default arguments for a batch of `n` rows of width `d`.
fn config_for(loss: &str, n: usize, d: usize) -> String {
    if WITH_CLASSES.contains(&loss) {
        format!(
            "{{\"class_name\": \"{loss}\", \"config\": {{\"num_classes\": {}, \"embedding_size\": {d}}}}}\n",
            n / 4
        )
    } else {
        format!("{{\"class_name\": \"{loss}\"}}\n")
    }
}

/// The reference package of a loss class name, if the table knows it.
pub(crate) fn peer_of(loss: &str) -> Option<Peer> {
    DEFAULT_LOSSES
        .iter()
        .find(|(name, _)| *name == loss)
        .map(|&(_, peer)| peer)
}

/// What the table needs from the caller.
pub(crate) struct Setup<'a> {
    pub sizes: &'a [usize],
    pub dims: &'a [usize],
    pub losses: &'a [String],
    pub threads: usize,
    /// Release `metric-loss` CLI built with the `threads` feature.
    pub cli: &'a Path,
    /// Where the generated configs go.
    pub scratch: &'a Path,
    pub scripts: &'a Path,
    /// The peers' Pythons; `None` leaves that peer's column empty.
    pub tfsim: Option<&'a Path>,
    pub pml: Option<&'a Path>,
    /// The bare product's time by (N, D, threads), for the floor column.
    pub gemm: &'a dyn Fn(usize, usize, usize) -> Result<f64, String>,
}

/// One measured row.
pub(crate) struct Row {
    pub loss: String,
    pub n: usize,
    pub d: usize,
    pub ours_1t: f64,
    pub ours_mt: f64,
    /// The reference's median ms, or why there is none (an allocation failure).
    pub peer: Result<f64, String>,
    pub gemm_1t: f64,
    pub gemm_mt: f64,
}

/// The address-space limit the PML script runs under, in KiB: a loss whose memory grows
/// with N² reports its failed allocation instead of taking the machine down.
const PML_ULIMIT_KB: u64 = 16_000_000;

fn our_time(
    s: &Setup<'_>,
    config: &Path,
    n: usize,
    d: usize,
    threads: usize,
) -> Result<f64, String> {
    let mut cmd = Command::new(s.cli);
    cmd.arg("bench")
        .arg("--config")
        .arg(config)
        .args(["--n", &n.to_string(), "--d", &d.to_string()])
        .args(["--threads", &threads.to_string()]);
    let doc = super::bench_peers::run_json(&mut cmd)?;
    doc.get("fwd_bwd_ms")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("{cmd:?}: no fwd_bwd_ms in {doc}"))
}

fn tfsim_times(
    python: &Path,
    scripts: &Path,
    script: &str,
    n: usize,
    d: usize,
) -> Result<Value, String> {
    let mut cmd = Command::new(python);
    cmd.arg(scripts.join(script))
        .args(["--n", &n.to_string(), "--d", &d.to_string()]);
    super::bench_peers::run_json(&mut cmd)
}

fn pml_times(
    python: &Path,
    scripts: &Path,
    n: usize,
    d: usize,
    losses: &[&str],
) -> Result<Value, String> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("ulimit -v {PML_ULIMIT_KB} && exec \"$0\" \"$@\""))
        .arg(python)
        .arg(scripts.join("bench_pml_losses.py"))
        .args(["--n", &n.to_string(), "--d", &d.to_string(), "--only"])
        .args(losses);
    super::bench_peers::run_json(&mut cmd)
}

fn peer_entry(doc: Option<&Value>, loss: &str) -> Result<f64, String> {
    match doc.and_then(|d| d.get(loss)) {
        Some(Value::Number(ms)) => ms.as_f64().ok_or_else(|| "not a number".into()),
        Some(Value::String(why)) => Err(why.clone()),
        Some(other) => Err(format!("unexpected {other}")),
        None => Err("not run".into()),
    }
}

/// Times every (loss, N, D): ours on 1 and `threads` threads, then each peer once per shape.
pub(crate) fn measure(s: &Setup<'_>) -> Result<Vec<Row>, String> {
    std::fs::create_dir_all(s.scratch).map_err(|e| format!("{}: {e}", s.scratch.display()))?;
    let mut rows = Vec::new();
    for &n in s.sizes {
        for &d in s.dims {
            let mut configs = BTreeMap::new();
            for loss in s.losses {
                let path: PathBuf = s.scratch.join(format!("{loss}_{n}x{d}.json"));
                std::fs::write(&path, config_for(loss, n, d))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                configs.insert(loss.clone(), path);
            }
            let wants = |peer| s.losses.iter().any(|l| peer_of(l) == Some(peer));
            let tf_doc = match s.tfsim {
                Some(py) if wants(Peer::TfSimilarity) => {
                    eprintln!("bench-peers: TF Similarity losses N={n} D={d}");
                    Some(tfsim_times(py, s.scripts, "bench_tfsim_losses.py", n, d)?)
                }
                _ => None,
            };
            let views_doc = match s.tfsim {
                Some(py) if wants(Peer::TfSimilarityViews) => {
                    eprintln!("bench-peers: TF Similarity two-view losses N={n} D={d}");
                    Some(tfsim_times(py, s.scripts, "bench_tfsim_views.py", n, d)?)
                }
                _ => None,
            };
            let pml_losses: Vec<&str> = s
                .losses
                .iter()
                .filter(|l| peer_of(l) == Some(Peer::Pml))
                .map(String::as_str)
                .collect();
            let pml_doc = match s.pml {
                Some(py) if !pml_losses.is_empty() => {
                    eprintln!("bench-peers: PML losses N={n} D={d}");
                    Some(pml_times(py, s.scripts, n, d, &pml_losses)?)
                }
                _ => None,
            };
            let gemm_1t = (s.gemm)(n, d, 1)?;
            let gemm_mt = (s.gemm)(n, d, s.threads)?;
            for loss in s.losses {
                let config = &configs[loss];
                let ours_1t = our_time(s, config, n, d, 1)?;
                let ours_mt = our_time(s, config, n, d, s.threads)?;
                eprintln!("  {loss} N={n} D={d}: {ours_1t:.2} ms / {ours_mt:.2} ms");
                let peer = match peer_of(loss) {
                    Some(Peer::TfSimilarity) => peer_entry(tf_doc.as_ref(), loss),
                    Some(Peer::Pml) => peer_entry(pml_doc.as_ref(), loss),
                    Some(Peer::TfSimilarityViews) => peer_entry(views_doc.as_ref(), loss),
                    None => Err("no reference script".into()),
                };
                rows.push(Row {
                    loss: loss.clone(),
                    n,
                    d,
                    ours_1t,
                    ours_mt,
                    peer,
                    gemm_1t,
                    gemm_mt,
                });
            }
        }
    }
    Ok(rows)
}

/// Prints the table and returns its rows as JSON.
pub(crate) fn print(rows: &[Row], threads: usize) -> Vec<Value> {
    use super::bench_peers::{fmt, ratio};
    let t = threads;
    println!();
    println!(
        "Other losses, default arguments, f32 forward+backward, median ms (ours: 1 thread | {t} threads; peers: {t} threads)"
    );
    println!(
        "| loss | N | D | ours 1T | ours {t}T | reference | reference ms | reference / ours | ours / GEMM 1T | ours / GEMM {t}T |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    let mut json = Vec::new();
    for r in rows {
        let best = r.ours_1t.min(r.ours_mt);
        let peer = peer_of(&r.loss).map_or("-", Peer::label);
        let (peer_ms, peer_ratio) = match &r.peer {
            Ok(ms) => (fmt(*ms), ratio(*ms, best)),
            Err(why) => (
                format!("({})", why.chars().take(60).collect::<String>()),
                "-".into(),
            ),
        };
        println!(
            "| {} | {} | {} | {} | {} | {peer} | {peer_ms} | {peer_ratio} | {} | {} |",
            r.loss,
            r.n,
            r.d,
            fmt(r.ours_1t),
            fmt(r.ours_mt),
            ratio(r.ours_1t, r.gemm_1t),
            ratio(r.ours_mt, r.gemm_mt),
        );
        json.push(serde_json::json!({
            "loss": r.loss, "n": r.n, "d": r.d, "ours_1t_ms": r.ours_1t, "ours_mt_ms": r.ours_mt,
            "reference": peer, "reference_ms": r.peer.as_ref().ok(),
            "reference_error": r.peer.as_ref().err(),
            "gemm_1t_ms": r.gemm_1t, "gemm_mt_ms": r.gemm_mt,
        }));
    }
    println!(
        "ratios: reference / min(ours 1T, ours {t}T); ours / one N x D x N product at the same thread count"
    );
    json
}
