//! `metric-loss bench`: forward and forward+backward timings on a synthetic batch.

use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, LossOutput, MetricLoss, Workspace,
};
use metric_loss_registry::RegisteredLoss;
use metric_loss_triplet::TripletLoss;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::timing::median_ms;
use crate::{load_loss, CliError};

/// The largest synthetic batch, in values (`n * d`): 4 GiB of `f32`.
pub const MAX_BENCH_VALUES: u64 = 1 << 30;

/// What `bench` prints: the batch shape and the median times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BenchReport {
    /// Rows.
    pub n: u64,
    /// Columns.
    pub d: u64,
    /// Median forward time (no gradient), ms.
    pub fwd_ms: f64,
    /// Median forward+backward time, ms.
    pub fwd_bwd_ms: f64,
}

/// Runs `bench` and returns its one JSON line. A two-view loss (one that refuses labels)
/// is timed on two synthetic views.
///
/// # Errors
/// A [`CliError`]: an invalid `--config`, a batch above [`MAX_BENCH_VALUES`], `--threads`
/// above 1 without the `threads` feature, or a loss that fails on the batch.
pub fn run(args: &BenchArgs) -> Result<String, CliError> {
    if let Some(threads) = args.threads {
        set_threads(threads)?;
    }
    let loss: Box<dyn RegisteredLoss> = match &args.config {
        Some(path) => load_loss(path)?,
        None => Box::new(TripletLoss::default()),
    };
    if args.n.saturating_mul(args.d) > MAX_BENCH_VALUES {
        return Err(CliError::new(format!(
            "--n {} --d {}: the batch would hold {} values, more than the {MAX_BENCH_VALUES} allowed",
            args.n,
            args.d,
            u128::from(args.n) * u128::from(args.d)
        )));
    }
    let too_large = |_| CliError::new("the batch does not fit in memory on this platform");
    let n = usize::try_from(args.n).map_err(too_large)?;
    let d = usize::try_from(args.d).map_err(too_large)?;
    let (labels, x) = synthetic_batch(n, d, args.seed);
    let fail = |e: metric_loss_core::LossError| {
        CliError::new(format!(
            "{} cannot be evaluated on the synthetic batch (n = {n}, d = {d}): {e}",
            loss.name()
        ))
    };
    let batch =
        Batch::new(&labels, Embeddings::from_row_major(&x, n, d).map_err(fail)?).map_err(fail)?;
    let mut full = LossInput::new(batch);
    let mut workspace = Workspace::new();
    let mut out = LossOutput::<f32>::new();
    // A two-view loss refuses labels: it gets a second view, its positives row by row.
    let (_, second_view) = synthetic_batch(n, d, args.seed.wrapping_add(1));
    if let Err(LossError::InputKind { .. }) =
        loss.compute_f32(&full.without_gradient(), &mut workspace, &mut out)
    {
        full = LossInput::views(
            Embeddings::from_row_major(&x, n, d).map_err(fail)?,
            Embeddings::from_row_major(&second_view, n, d).map_err(fail)?,
        );
    }
    let forward = full.without_gradient();

    let (warmup, reps) = (to_count(args.warmup), to_count(args.reps));
    let fwd_ms = median_ms(warmup, reps, || {
        loss.compute_f32(&forward, &mut workspace, &mut out)
    })
    .map_err(fail)?;
    let fwd_bwd_ms = median_ms(warmup, reps, || {
        loss.compute_f32(&full, &mut workspace, &mut out)
    })
    .map_err(fail)?;

    let report = BenchReport {
        n: args.n,
        d: args.d,
        fwd_ms: round_ns(fwd_ms),
        fwd_bwd_ms: round_ns(fwd_bwd_ms),
    };
    let mut line = serde_json::to_string(&report)
        .map_err(|e| CliError::new(format!("cannot write the result as JSON: {e}")))?;
    line.push('\n');
    Ok(line)
}

/// The benchmark batch: `n` rows in `n / 4` classes of 4 (label `i / 4`), standard
/// gaussian values (Box–Muller on a ChaCha8 stream seeded with `seed`), each row
/// L2-normalised.
///
/// ```
/// let (labels, x) = metric_loss_cli::bench::synthetic_batch(8, 3, 42);
/// assert_eq!(labels, [0, 0, 0, 0, 1, 1, 1, 1]);
/// let norm: f32 = x[..3].iter().map(|v| v * v).sum();
/// assert!((norm - 1.0).abs() < 1e-6);
/// ```
pub fn synthetic_batch(n: usize, d: usize, seed: u64) -> (Vec<i64>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels = (0..n).map(|i| (i / 4) as i64).collect();
    let mut x = vec![0.0f32; n * d];
    let mut row = vec![0.0f64; d];
    for out in x.chunks_exact_mut(d) {
        for v in row.iter_mut() {
            // Box–Muller; 1 - u is in (0, 1], so the logarithm is finite.
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            *v = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        for (o, v) in out.iter_mut().zip(&row) {
            #[allow(clippy::cast_possible_truncation)]
            {
                *o = (v / norm) as f32;
            }
        }
    }
    (labels, x)
}

fn set_threads(threads: u64) -> Result<(), CliError> {
    if !cfg!(feature = "threads") && threads > 1 {
        return Err(CliError::new(format!(
            "--threads {threads}: this metric-loss was built without the `threads` feature, so matrix products run on one thread; rebuild with default features"
        )));
    }
    // Read once, at the first call, which comes later; the process has a single thread
    // at this point.
    std::env::set_var(
        metric_loss_distances::parallel::THREADS_ENV,
        threads.to_string(),
    );
    Ok(())
}

fn to_count(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn round_ns(ms: f64) -> f64 {
    (ms * 1e6).round() / 1e6
}
