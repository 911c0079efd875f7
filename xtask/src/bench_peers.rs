//! `cargo xtask bench-peers`: our TripletLoss against TF Similarity 0.17.1 and
//! pytorch-metric-learning (PML) batch-hard, measured in one run on this machine, with the
//! bare matrix product of the same shape as the floor, and the same loss called from Python
//! (the `metric-loss` wheel). Not part of CI.
//!
//! Our side is `bench-json` (package `metric-loss-benches`), built twice: single-threaded
//! (default features) and with `--features threads` (run with `--threads 2`). The peers are
//! `bench_tfsim.py` and `bench_pml.py` from the peers folder (default
//! `<workspace>/../shared/peers`), run in venvs under `--venvs DIR` (default
//! `$METRIC_LOSS_PEERS_DIR` or `~/.cache/metric-loss-peers`); a missing venv is created with
//! the folder's `setup_tfsim.sh` / `setup_pml.sh`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::bench_losses;

const HELP: &str = "\
cargo xtask bench-peers [options]

Times our TripletLoss (f32, cosine, forward+backward; single-threaded and with the
`threads` feature), TF Similarity 0.17.1's TripletLoss and PML batch-hard on the peers'
batch, plus the bare f32 matrix product (N x D by D x N) as the GEMM floor, and prints a
table with the ratios.

options:
  --sizes 1024,4096         batch sizes N
  --dims 128                embedding widths D
  --configs LIST            comma-separated POS/NEG:MARGIN, MARGIN = soft or a number
                            (default hard/semi-hard:soft,hard/hard:soft,hard/semi-hard:1.0,hard/hard:1.0)
  --threads 2               threads of the multi-threaded run (and of the peers)
  --min-time-ms 1500        timed wall time per measurement of ours
  --venvs DIR               where the peers' venvs are (DIR/tfsim, DIR/pml); created when missing
  --scripts DIR             the peers folder (bench_*.py, setup_*.sh)
  --skip-tfsim, --skip-pml  leave a peer out
  --python PY               a Python with our package installed, for the `ours from Python`
                            column (default: <target>/py-venv/bin/python, the venv .ci/run
                            makes; the column is left out when it is missing)
  --skip-python             leave the Python column out
  --losses LIST             the other losses' table: class names, default arguments, each
                            against its reference package (default PNLoss,MultiSimilarityLoss,
                            CircleLoss,SoftNearestNeighborLoss,ContrastiveLoss,NTXentLoss,
                            SupConLoss,MultiNegativesRankLoss,SimCLRLoss,SimSiamLoss,Barlow,
                            VicReg; `none` leaves the table out)
  --json FILE               also write every number as JSON (default: <target>/bench-peers.json)

`--configs none` leaves the TripletLoss table out.
";

/// One row of the table: a shape and a loss configuration.
#[derive(Debug, Clone)]
struct Config {
    pos: String,
    neg: String,
    /// `None`: soft margin.
    margin: Option<f64>,
}

impl Config {
    fn parse(s: &str) -> Result<Self, String> {
        let (pair, margin) = s.split_once(':').unwrap_or((s, "soft"));
        let (pos, neg) = pair
            .split_once('/')
            .ok_or_else(|| format!("config {s:?}: expected POS/NEG[:MARGIN]"))?;
        let margin = match margin {
            "soft" => None,
            m => Some(
                m.parse()
                    .map_err(|e| format!("config {s:?}: margin: {e}"))?,
            ),
        };
        Ok(Self {
            pos: pos.into(),
            neg: neg.into(),
            margin,
        })
    }

    fn label(&self) -> String {
        let margin = self.margin.map_or("soft".into(), |m| format!("m={m}"));
        format!("{}/{} {margin}", self.pos, self.neg)
    }

    /// TF Similarity's key for this config's margin (`null` = soft).
    fn margin_key(&self) -> String {
        self.margin.map_or("soft".into(), |m| format!("{m}"))
    }
}

struct Options {
    sizes: Vec<usize>,
    dims: Vec<usize>,
    configs: Vec<Config>,
    threads: usize,
    min_time_ms: u64,
    venvs: PathBuf,
    scripts: PathBuf,
    tfsim: bool,
    pml: bool,
    /// The Python with `metric_loss` installed (`None`: no Python column).
    python: Option<PathBuf>,
    /// Class names of the other losses' table.
    losses: Vec<String>,
    json: Option<PathBuf>,
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    s.split(',')
        .map(|v| v.trim().parse::<T>().map_err(|e| format!("{v:?}: {e}")))
        .collect()
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let root = workspace_root();
    let venvs = std::env::var_os("METRIC_LOSS_PEERS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/metric-loss-peers"))
        })
        .unwrap_or_else(|| PathBuf::from(".metric-loss-peers"));
    let mut o = Options {
        sizes: vec![1024, 4096],
        dims: vec![128],
        configs: [
            "hard/semi-hard:soft",
            "hard/hard:soft",
            "hard/semi-hard:1.0",
            "hard/hard:1.0",
        ]
        .iter()
        .map(|c| Config::parse(c))
        .collect::<Result<_, _>>()?,
        threads: 2,
        min_time_ms: 1500,
        venvs,
        scripts: root.join("../shared/peers"),
        tfsim: true,
        pml: true,
        python: Some(target_dir().join("py-venv/bin/python")).filter(|p| p.exists()),
        losses: bench_losses::DEFAULT_LOSSES
            .iter()
            .map(|(name, _)| (*name).to_string())
            .collect(),
        json: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--sizes" => o.sizes = list(value()?)?,
            "--dims" => o.dims = list(value()?)?,
            "--configs" => {
                o.configs = match value()? {
                    "none" => Vec::new(),
                    v => v.split(',').map(Config::parse).collect::<Result<_, _>>()?,
                }
            }
            "--losses" => {
                o.losses = match value()? {
                    "none" => Vec::new(),
                    v => v.split(',').map(|l| l.trim().to_string()).collect(),
                }
            }
            "--threads" => o.threads = list::<usize>(value()?)?[0].max(1),
            "--min-time-ms" => o.min_time_ms = list::<u64>(value()?)?[0],
            "--venvs" => o.venvs = PathBuf::from(value()?),
            "--scripts" => o.scripts = PathBuf::from(value()?),
            "--skip-tfsim" => o.tfsim = false,
            "--skip-pml" => o.pml = false,
            "--python" => o.python = Some(PathBuf::from(value()?)),
            "--skip-python" => o.python = None,
            "--json" => o.json = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            other => return Err(format!("unknown option {other:?}\n\n{HELP}")),
        }
    }
    Ok(Some(o))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Builds `package`'s binary `bin` in release mode into `target_dir`.
fn cargo_build(
    package: &str,
    bin: &str,
    target_dir: &Path,
    features: &[&str],
) -> Result<(), String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .args(["build", "--release", "--quiet", "-p", package, "--bin", bin])
        .arg("--target-dir")
        .arg(target_dir);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    eprintln!("bench-peers: building {bin} {features:?}");
    let status = cmd.status().map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {bin} failed"));
    }
    Ok(())
}

/// Builds `bench-json` into its own target directory (`threads`: with the feature).
fn build_bench_json(threads: bool) -> Result<PathBuf, String> {
    let dir = target_dir().join(if threads {
        "bench-peers-mt"
    } else {
        "bench-peers-st"
    });
    let features: &[&str] = if threads { &["threads"] } else { &[] };
    cargo_build("metric-loss-benches", "bench-json", &dir, features)?;
    Ok(dir.join("release/bench-json"))
}

pub(crate) fn run_json(cmd: &mut Command) -> Result<Value, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("{cmd:?}: bad JSON ({e}): {text}"))
}

/// The venv `name` under `--venvs`, created with `setup_<name>.sh` when missing.
fn venv_python(o: &Options, name: &str) -> Result<PathBuf, String> {
    let dir = o.venvs.join(name);
    let python = dir.join("bin/python");
    if python.exists() {
        return Ok(python);
    }
    let setup = o.scripts.join(format!("setup_{name}.sh"));
    eprintln!(
        "bench-peers: creating {} with {}",
        dir.display(),
        setup.display()
    );
    let status = Command::new("bash")
        .arg(&setup)
        .arg(&dir)
        .status()
        .map_err(|e| format!("{}: {e}", setup.display()))?;
    if !status.success() || !python.exists() {
        return Err(format!("{} failed", setup.display()));
    }
    Ok(python)
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

type Key = (usize, usize, String);

/// TF Similarity's forward+backward medians by (N, D, "pos/neg margin").
fn tfsim(o: &Options) -> Result<BTreeMap<Key, f64>, String> {
    let python = venv_python(o, "tfsim")?;
    let mut found = BTreeMap::new();
    // bench_tfsim.py takes one margin per run: group the configs by margin.
    let mut margins: Vec<Option<f64>> = o.configs.iter().map(|c| c.margin).collect();
    margins.sort_by(|a, b| a.partial_cmp(b).expect("finite margins"));
    margins.dedup();
    for margin in margins {
        let pairs: Vec<String> = o
            .configs
            .iter()
            .filter(|c| c.margin == margin)
            .map(|c| format!("{}/{}", c.pos, c.neg))
            .collect();
        let mut cmd = Command::new(&python);
        cmd.arg(o.scripts.join("bench_tfsim.py"))
            .arg("--sizes")
            .args(o.sizes.iter().map(usize::to_string))
            .arg("--dims")
            .args(o.dims.iter().map(usize::to_string))
            .arg("--configs")
            .args(&pairs)
            .args(["--intra", &o.threads.to_string()]);
        if let Some(m) = margin {
            cmd.args(["--margin", &m.to_string()]);
        }
        eprintln!(
            "bench-peers: TF Similarity, margin {margin:?} (load {})",
            load()
        );
        let doc = run_json(&mut cmd)?;
        for r in doc["results"].as_array().into_iter().flatten() {
            let (Some(n), Some(d), Some(ms)) = (
                r["n"].as_u64(),
                r["d"].as_u64(),
                num(r, "fwd_bwd_median_ms"),
            ) else {
                continue;
            };
            let config = Config {
                pos: r["positive"].as_str().unwrap_or("").into(),
                neg: r["negative"].as_str().unwrap_or("").into(),
                margin,
            };
            found.insert((n as usize, d as usize, config.label()), ms);
        }
    }
    Ok(found)
}

/// Our default TripletLoss called from Python (`crates/metric-loss-python/bench.py`, one
/// `compute` with the gradient) on `o.threads` threads: forward+backward ms by (N, D).
fn from_python(o: &Options, python: &Path) -> Result<BTreeMap<(usize, usize), f64>, String> {
    let script = workspace_root().join("crates/metric-loss-python/bench.py");
    let sizes: Vec<String> = o.sizes.iter().map(usize::to_string).collect();
    let mut found = BTreeMap::new();
    for &d in &o.dims {
        eprintln!("bench-peers: ours from Python, D={d} (load {})", load());
        let output = Command::new(python)
            .arg(&script)
            .args(["--sizes", &sizes.join(","), "--d", &d.to_string()])
            .env("METRIC_LOSS_THREADS", o.threads.to_string())
            .output()
            .map_err(|e| format!("{}: {e}", python.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Ok(r) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let (Some(n), Some(ms)) = (r["n"].as_u64(), num(&r, "fwd_bwd_ms")) {
                found.insert((n as usize, d), ms);
            }
        }
    }
    Ok(found)
}

/// (PML batch-hard forward+backward ms, torch.mm ms) by (N, D).
type PmlTimes = BTreeMap<(usize, usize), (f64, f64)>;

/// PML batch-hard forward+backward and torch.mm medians by (N, D).
fn pml(o: &Options) -> Result<PmlTimes, String> {
    let python = venv_python(o, "pml")?;
    let out = target_dir().join("bench-peers-pml.json");
    let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new(&python);
    cmd.arg(o.scripts.join("bench_pml.py"))
        .args(["--ns", &join(&o.sizes), "--ds", &join(&o.dims)])
        .args([
            "--methods",
            "batch_hard,mm",
            "--threads",
            &o.threads.to_string(),
        ])
        // The shared machine is rarely quiet: wait a little for it, never minutes.
        .args(["--wait-quiet-s", "20", "--retries", "1"])
        .arg("--out")
        .arg(&out);
    eprintln!("bench-peers: PML (load {})", load());
    let doc = run_json(&mut cmd)?;
    let mut by_shape = PmlTimes::new();
    for r in doc["results"].as_array().into_iter().flatten() {
        let (Some(n), Some(d), Some(ms)) = (r["N"].as_u64(), r["D"].as_u64(), num(r, "total_ms"))
        else {
            continue;
        };
        let e = by_shape
            .entry((n as usize, d as usize))
            .or_insert((f64::NAN, f64::NAN));
        match r["method"].as_str() {
            Some("batch_hard") => e.0 = ms,
            Some("mm") => e.1 = ms,
            _ => {}
        }
    }
    Ok(by_shape)
}

/// Our timings: (single-threaded run, multi-threaded run) of bench-json.
fn ours(
    o: &Options,
    st: &Path,
    mt: &Path,
    n: usize,
    d: usize,
    c: &Config,
) -> Result<(Value, Value), String> {
    let run = |bin: &Path, threads: usize| {
        let mut cmd = Command::new(bin);
        cmd.args(["--n", &n.to_string(), "--d", &d.to_string()])
            .args(["--distance", "cosine", "--pos", &c.pos, "--neg", &c.neg])
            .args(["--threads", &threads.to_string()])
            .args(["--min-time-ms", &o.min_time_ms.to_string()]);
        match c.margin {
            Some(m) => cmd.args(["--margin", &m.to_string()]),
            None => cmd.arg("--soft"),
        };
        run_json(&mut cmd)
    };
    Ok((run(st, 1)?, run(mt, o.threads)?))
}

pub(crate) fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".into()
    }
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.1}x")
    } else {
        "-".into()
    }
}

/// The other losses' table: the CLI built with `threads`, the peers' venvs, and the GEMM
/// floor taken from the TripletLoss rows of the same shape (timed anew when there are none).
fn other_losses(
    o: &Options,
    st: &Path,
    mt: &Path,
    triplet_rows: &[TripletRow],
) -> Result<Vec<bench_losses::Row>, String> {
    if o.losses.is_empty() {
        return Ok(Vec::new());
    }
    let cli_dir = target_dir().join("bench-peers-cli");
    cargo_build("metric-loss-cli", "metric-loss", &cli_dir, &[])?;
    let cli = cli_dir.join("release/metric-loss");
    let wants = |peer| {
        o.losses
            .iter()
            .any(|l| bench_losses::peer_of(l) == Some(peer))
    };
    let tfsim = if o.tfsim
        && (wants(bench_losses::Peer::TfSimilarity) || wants(bench_losses::Peer::TfSimilarityViews))
    {
        Some(venv_python(o, "tfsim")?)
    } else {
        None
    };
    let pml = if o.pml && wants(bench_losses::Peer::Pml) {
        Some(venv_python(o, "pml")?)
    } else {
        None
    };
    let gemm = |n: usize, d: usize, threads: usize| -> Result<f64, String> {
        let single = threads == 1;
        let known = triplet_rows
            .iter()
            .find(|r| r.0 == n && r.1 == d)
            .and_then(|r| num(if single { &r.3 } else { &r.4 }, "gemm_ms"));
        if let Some(ms) = known {
            return Ok(ms);
        }
        let doc = run_json(
            Command::new(if single { st } else { mt })
                .args(["--n", &n.to_string(), "--d", &d.to_string()])
                .args(["--threads", &threads.to_string(), "--min-time-ms", "500"]),
        )?;
        num(&doc, "gemm_ms").ok_or_else(|| format!("bench-json gave no gemm_ms: {doc}"))
    };
    eprintln!("bench-peers: other losses (load {})", load());
    bench_losses::measure(&bench_losses::Setup {
        sizes: &o.sizes,
        dims: &o.dims,
        losses: &o.losses,
        threads: o.threads,
        cli: &cli,
        scratch: &target_dir().join("bench-peers-configs"),
        scripts: &o.scripts,
        tfsim: tfsim.as_deref(),
        pml: pml.as_deref(),
        gemm: &gemm,
    })
}

/// A TripletLoss row: N, D, config, single-threaded and multi-threaded bench-json output.
type TripletRow = (usize, usize, Config, Value, Value);

/// `cargo xtask bench-peers [options]`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let Some(o) = parse(args)? else {
        return Ok(());
    };
    let load_start = load();
    let st = build_bench_json(false)?;
    let mt = build_bench_json(true)?;
    eprintln!("bench-peers: ours (load {})", load());
    let mut rows: Vec<TripletRow> = Vec::new();
    for &n in &o.sizes {
        for &d in &o.dims {
            for c in &o.configs {
                let (a, b) = ours(&o, &st, &mt, n, d, c)?;
                eprintln!(
                    "  N={n} D={d} {}: {:.2} ms / {:.2} ms",
                    c.label(),
                    num(&a, "fwd_bwd_ms").unwrap_or(f64::NAN),
                    num(&b, "fwd_bwd_ms").unwrap_or(f64::NAN)
                );
                rows.push((n, d, c.clone(), a, b));
            }
        }
    }
    let triplets = !o.configs.is_empty();
    let tf = if o.tfsim && triplets {
        tfsim(&o)?
    } else {
        BTreeMap::new()
    };
    let pm = if o.pml && triplets {
        pml(&o)?
    } else {
        BTreeMap::new()
    };
    let py = match &o.python {
        Some(python) if triplets => from_python(&o, python)?,
        _ => BTreeMap::new(),
    };
    let other_losses = other_losses(&o, &st, &mt, &rows)?;
    let load_end = load();

    let t = o.threads;
    let mut json_rows = Vec::new();
    if !rows.is_empty() {
        println!(
        "TripletLoss f32 cosine forward+backward, median ms (ours: 1 thread | {t} threads with `threads`; peers: {t} threads)"
    );
        println!(
        "| N | D | config | ours 1T | ours {t}T | ours from Python {t}T | TF Sim | PML batch-hard | GEMM 1T | GEMM {t}T | torch.mm | TF Sim / ours | PML / ours | ours / GEMM (1T) | ours / GEMM ({t}T) |"
    );
        println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (n, d, c, a, b) in &rows {
            let ours1 = num(a, "fwd_bwd_ms").unwrap_or(f64::NAN);
            let ours_t = num(b, "fwd_bwd_ms").unwrap_or(f64::NAN);
            let gemm1 = num(a, "gemm_ms").unwrap_or(f64::NAN);
            let gemm_t = num(b, "gemm_ms").unwrap_or(f64::NAN);
            let tf_ms = tf.get(&(*n, *d, c.label())).copied().unwrap_or(f64::NAN);
            let (pml_ms, mm_ms) = pm.get(&(*n, *d)).copied().unwrap_or((f64::NAN, f64::NAN));
            let best = ours1.min(ours_t);
            // bench.py times the default loss only: hard / semi-hard, margin 1.0.
            let default = c.pos == "hard" && c.neg == "semi-hard" && c.margin == Some(1.0);
            let py_ms = py
                .get(&(*n, *d))
                .copied()
                .filter(|_| default)
                .unwrap_or(f64::NAN);
            println!(
                "| {n} | {d} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                c.label(),
                fmt(ours1),
                fmt(ours_t),
                fmt(py_ms),
                fmt(tf_ms),
                fmt(pml_ms),
                fmt(gemm1),
                fmt(gemm_t),
                fmt(mm_ms),
                ratio(tf_ms, best),
                ratio(pml_ms, best),
                ratio(ours1, gemm1),
                ratio(ours_t, gemm_t),
            );
            json_rows.push(serde_json::json!({
                "n": n, "d": d, "config": c.label(), "margin": c.margin_key(),
                "ours_1t": a, "ours_mt": b, "tfsim_fwd_bwd_ms": tf_ms, "pml_batch_hard_ms": pml_ms,
                "torch_mm_ms": mm_ms, "ours_from_python_mt_ms": py_ms,
            }));
        }
        println!(
            "ratios: peers / min(ours 1T, ours {t}T); ours / GEMM floor at the same thread count"
        );
    }
    let loss_rows = bench_losses::print(&other_losses, t);
    println!("load average: {load_start} at start, {load_end} at end");
    let path = o
        .json
        .clone()
        .unwrap_or_else(|| target_dir().join("bench-peers.json"));
    let doc = serde_json::json!({
        "load_start": load_start, "load_end": load_end, "threads": t, "rows": json_rows,
        "other_losses": loss_rows,
    });
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&doc).expect("serialisable"),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("bench-peers: wrote {}", path.display());
    Ok(())
}
