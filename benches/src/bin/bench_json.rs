//! `bench-json`: times TripletLoss forward and forward+backward (and the GEMM floor) on the
//! peers' batch and prints one JSON line, for `cargo xtask bench-peers`.
//!
//! ```text
//! bench-json --n 1024 --d 128 [--distance cosine] [--pos hard] [--neg semi-hard]
//!            [--margin 1.0 | --soft] [--threads 1] [--dtype f32] [--min-time-ms 1000]
//!            [--min-reps 10] [--warmup 3] [--no-gemm]
//! ```
//!
//! `--threads` sets `METRIC_LOSS_THREADS` before the first call, which caps the row
//! splitting of the loss and of the GEMM floor alike; it has an effect only in a
//! build with the `threads` feature (reported as `"threads_feature"`).

use std::process::ExitCode;
use std::time::Duration;

use metric_loss_benches::{time_gemm, time_triplet, BenchSpec, Repeat, THREADS_FEATURE};

const USAGE: &str = "usage: bench-json --n N --d D [--distance NAME] [--pos hard|easy] \
[--neg semi-hard|hard|easy] [--margin M | --soft] [--threads T] [--dtype f32|f64] \
[--min-time-ms MS] [--min-reps R] [--warmup W] [--no-gemm]";

fn main() -> ExitCode {
    match run() {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let mut spec = BenchSpec {
        margin: None,
        ..BenchSpec::default()
    };
    let mut repeat = Repeat::default();
    let mut threads = 1usize;
    let mut dtype = "f32".to_string();
    let mut gemm = true;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| s.parse::<usize>().map_err(|e| format!("{s}: {e}"));
        match flag.as_str() {
            "--n" => spec.n = num(value()?)?,
            "--d" => spec.d = num(value()?)?,
            "--distance" => spec.distance = value()?,
            "--pos" => spec.positive = value()?,
            "--neg" => spec.negative = value()?,
            "--margin" => {
                let v = value()?;
                spec.margin = Some(v.parse().map_err(|e| format!("{v}: {e}"))?);
            }
            "--soft" => spec.margin = None,
            "--threads" => threads = num(value()?)?.max(1),
            "--dtype" => dtype = value()?,
            "--min-time-ms" => repeat.min_time = Duration::from_millis(num(value()?)? as u64),
            "--min-reps" => repeat.min_reps = num(value()?)?,
            "--warmup" => repeat.warmup = num(value()?)?,
            "--seed" => spec.seed = num(value()?)? as u64,
            "--no-gemm" => gemm = false,
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    // Read once, at the first call.
    std::env::set_var(
        metric_loss_distances::parallel::THREADS_ENV,
        threads.to_string(),
    );
    let (timing, gemm_ms) = match dtype.as_str() {
        "f32" => (
            time_triplet::<f32>(&spec, &repeat),
            gemm.then(|| time_gemm::<f32>(spec.n, spec.d, &repeat)),
        ),
        "f64" => (
            time_triplet::<f64>(&spec, &repeat),
            gemm.then(|| time_gemm::<f64>(spec.n, spec.d, &repeat)),
        ),
        other => return Err(format!("unknown dtype {other:?}")),
    };
    let t = timing.map_err(|e| e.to_string())?;
    let line = serde_json::json!({
        "n": spec.n,
        "d": spec.d,
        "distance": spec.distance,
        "pos": spec.positive,
        "neg": spec.negative,
        "margin": spec.margin,
        "dtype": dtype,
        "threads": threads,
        "threads_feature": THREADS_FEATURE,
        "fwd_ms": t.fwd_ms,
        "fwd_bwd_ms": t.fwd_bwd_ms,
        "gemm_ms": gemm_ms,
        "loss": t.loss,
    });
    Ok(line.to_string())
}
