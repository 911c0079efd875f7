//! Timing helpers shared by the criterion benches, the `bench-json` binary and
//! `cargo xtask bench-peers` (and reusable by a `metric-loss bench` command).
//!
//! The batch is the peers' (`/work/shared/peers/bench_*.py`): L2-normalised N(0, 1)
//! embeddings, labels = shuffled `arange(N) / 4` (N/4 classes of 4). Timings are wall-clock
//! medians over repeated calls after a warm-up, with one reused [`Workspace`] and
//! [`LossOutput`], as a training loop would call the loss.
//!
//! ```
//! use metric_loss_benches::{time_triplet, BenchSpec, Repeat};
//! let spec = BenchSpec { n: 64, d: 16, ..BenchSpec::default() };
//! let t = time_triplet::<f32>(&spec, &Repeat::quick()).unwrap();
//! assert!(t.fwd_ms > 0.0 && t.fwd_bwd_ms > 0.0 && t.loss.is_finite());
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLossExt, Workspace,
};
use metric_loss_distances::l2_normalize;
use metric_loss_distances::parallel::gemm_rows;
use metric_loss_triplet::{TripletLoss, TripletLossConfig};

/// A small deterministic generator, so that benches need no RNG crate and every run times
/// the same batch: core's.
pub use metric_loss_core::SplitMix64;

/// The peers' batch: labels (N/4 classes of 4 when N is a multiple of 4, shuffled) and
/// L2-normalised gaussian rows, `n x d` row-major.
pub fn make_batch<T: Float>(n: usize, d: usize, seed: u64) -> (Vec<i64>, Vec<T>) {
    let mut rng = SplitMix64::new(seed);
    let mut labels: Vec<i64> = (0..n as i64).map(|i| i / 4).collect();
    for i in (1..n).rev() {
        labels.swap(i, rng.below(i + 1));
    }
    let raw: Vec<T> = (0..n * d).map(|_| T::from_f64(rng.gaussian())).collect();
    let mut x = vec![T::ZERO; n * d];
    // Gaussian rows of the right length: finite whole rows.
    l2_normalize(&raw, d, &mut x).expect("finite whole rows");
    (labels, x)
}

/// What to time: shape and the loss's arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSpec {
    /// Batch size N.
    pub n: usize,
    /// Embedding width D.
    pub d: usize,
    /// Distance name (TF Similarity's, aliases accepted).
    pub distance: String,
    /// Positive strategy, `"hard"` or `"easy"`.
    pub positive: String,
    /// Negative strategy, `"semi-hard"`, `"hard"` or `"easy"`.
    pub negative: String,
    /// Hinge margin, or `None` for the soft margin (TF Similarity 0.17.1's default).
    pub margin: Option<f64>,
    /// Seed of the batch.
    pub seed: u64,
}

impl Default for BenchSpec {
    /// N = 1024, D = 128, cosine, hard / semi-hard, soft margin, seed 0.
    fn default() -> Self {
        Self {
            n: 1024,
            d: 128,
            distance: "cosine".into(),
            positive: "hard".into(),
            negative: "semi-hard".into(),
            margin: None,
            seed: 0,
        }
    }
}

impl BenchSpec {
    /// The loss this spec describes.
    ///
    /// # Errors
    /// An invalid distance, strategy or margin.
    pub fn loss(&self) -> Result<TripletLoss, LossError> {
        let b = TripletLossConfig::default()
            .distance(self.distance.as_str())
            .positive_mining_strategy(self.positive.as_str())
            .negative_mining_strategy(self.negative.as_str());
        match self.margin {
            Some(m) => b.soft_margin(false).margin(m),
            None => b.soft_margin(true),
        }
        .build()
    }

    /// `"hard/semi-hard soft"`-style label for tables.
    pub fn label(&self) -> String {
        let margin = match self.margin {
            Some(m) => format!("m={m}"),
            None => "soft".into(),
        };
        format!(
            "{} {}/{} {margin}",
            self.distance, self.positive, self.negative
        )
    }
}

/// How many times to call: warm-up calls, then timed calls until both `min_reps` and
/// `min_time` are reached (at most `max_reps`).
#[derive(Debug, Clone, PartialEq)]
pub struct Repeat {
    /// Untimed calls first.
    pub warmup: usize,
    /// At least this many timed calls.
    pub min_reps: usize,
    /// At most this many timed calls.
    pub max_reps: usize,
    /// At least this much timed wall time.
    pub min_time: Duration,
}

impl Default for Repeat {
    /// 3 warm-up calls, then ≥ 10 calls and ≥ 1 s (at most 1000).
    fn default() -> Self {
        Self {
            warmup: 3,
            min_reps: 10,
            max_reps: 1000,
            min_time: Duration::from_secs(1),
        }
    }
}

impl Repeat {
    /// One warm-up and three timed calls: for tests and smoke runs.
    pub fn quick() -> Self {
        Self {
            warmup: 1,
            min_reps: 3,
            max_reps: 3,
            min_time: Duration::ZERO,
        }
    }
}

/// Median wall time of `f` in milliseconds, called as `repeat` says.
pub fn median_ms(repeat: &Repeat, mut f: impl FnMut()) -> f64 {
    for _ in 0..repeat.warmup {
        f();
    }
    let mut samples = Vec::with_capacity(repeat.min_reps.max(16));
    let start = Instant::now();
    while samples.len() < repeat.max_reps.max(1) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        if samples.len() >= repeat.min_reps && start.elapsed() >= repeat.min_time {
            break;
        }
    }
    median(&mut samples)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// One triplet-loss timing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripletTiming {
    /// Median ms of the forward pass (loss only, `LossInput::without_gradient`).
    pub fwd_ms: f64,
    /// Median ms of forward + backward (loss and d loss / d embeddings).
    pub fwd_bwd_ms: f64,
    /// The reduced loss (a sanity value, comparable with TF Similarity's).
    pub loss: f64,
}

/// Times `TripletLoss` forward and forward + backward on the peers' batch, in precision `T`,
/// reusing one workspace and output across calls (the steady state of a training loop).
///
/// # Errors
/// An invalid spec.
pub fn time_triplet<T: Float>(
    spec: &BenchSpec,
    repeat: &Repeat,
) -> Result<TripletTiming, LossError> {
    let loss = spec.loss()?;
    let (labels, x) = make_batch::<T>(spec.n, spec.d, spec.seed);
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, spec.n, spec.d)?)?;
    let input = LossInput::new(batch);
    let fwd_input = input.without_gradient();
    let mut ws = Workspace::new();
    let mut out = LossOutput::new();
    loss.compute_into(&input, &mut ws, &mut out)?;
    let value = out.loss.to_f64();
    let fwd_ms = median_ms(repeat, || {
        loss.compute_into(black_box(&fwd_input), &mut ws, &mut out)
            .expect("validated above");
        black_box(&out);
    });
    let fwd_bwd_ms = median_ms(repeat, || {
        loss.compute_into(black_box(&input), &mut ws, &mut out)
            .expect("validated above");
        black_box(&out);
    });
    Ok(TripletTiming {
        fwd_ms,
        fwd_bwd_ms,
        loss: value,
    })
}

/// A bare `n x d` by `d x n` product in precision `T` (the GEMM floor: the work every
/// GEMM-based distance matrix needs), row-major operands, `f32::gemm` / `f64::gemm`.
#[derive(Debug, Clone)]
pub struct GemmFloor<T> {
    n: usize,
    d: usize,
    x: Vec<T>,
    out: Vec<T>,
}

impl<T: Float> GemmFloor<T> {
    /// Buffers for the product of the peers' `n x d` batch with its transpose.
    pub fn new(n: usize, d: usize) -> Self {
        let (_, x) = make_batch::<T>(n, d, 0);
        Self {
            n,
            d,
            x,
            out: vec![T::ZERO; n * n],
        }
    }

    /// One product `X Xᵀ` (all n² entries, no symmetry shortcut), its rows split over
    /// threads as the loss's are (`threads` feature): the best bare product on the same
    /// threads. (matrixmultiply's own pool, measured on 2 threads, was as fast at
    /// N = 1024 and 1.6x slower at N = 4096.)
    pub fn run(&mut self) {
        let (n, d) = (self.n, self.d);
        gemm_rows(
            n,
            d,
            n,
            T::ONE,
            (&self.x, d, 1),
            (&self.x, 1, d),
            T::ZERO,
            &mut self.out,
        );
        black_box(&self.out);
    }
}

/// Median ms of the GEMM floor ([`GemmFloor::run`]).
pub fn time_gemm<T: Float>(n: usize, d: usize, repeat: &Repeat) -> f64 {
    let mut g = GemmFloor::<T>::new(n, d);
    median_ms(repeat, || g.run())
}

/// Whether this build splits work over threads (the `threads` feature).
pub const THREADS_FEATURE: bool = cfg!(feature = "threads");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_has_classes_of_four_and_unit_rows() {
        let (labels, x) = make_batch::<f64>(64, 8, 1);
        for c in 0..16 {
            assert_eq!(labels.iter().filter(|l| **l == c).count(), 4);
        }
        for r in x.chunks(8) {
            let s: f64 = r.iter().map(|v| v * v).sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }
}
