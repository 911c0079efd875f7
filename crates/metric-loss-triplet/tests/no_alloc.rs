//! Steady-state calls allocate nothing: with a reused `Workspace` and `LossOutput`, a
//! TripletLoss call (forward, or forward + backward) makes no heap allocation of its own,
//! for every distance and strategy pair, in f32 and f64.
//!
//! The one allocation left is matrixmultiply's: each product call allocates its packing
//! buffer (matrixmultiply 0.3 has no way to pass one in). Those requests are recognisable
//! by their SIMD alignment (≥ 16 bytes; nothing in this workspace asks for more than 8) and
//! are counted separately: at most one per matrix product, and none for manhattan, which
//! has no product.
//!
//! Allocations are counted per thread, so tests running in parallel do not disturb each
//! other. With the `threads` feature, large batches are split over a thread pool (a few
//! small allocations per call), so the bound is checked on a batch small enough to stay on
//! the calling thread.

use metric_loss_core::{Batch, Embeddings, Float, LossInput, LossOutput, MetricLossExt, Workspace};
use metric_loss_testkit::{allocations, CountingAllocator};
use metric_loss_triplet::{TripletLoss, TripletLossConfig};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const DISTANCES: [&str; 6] = [
    "cosine",
    "inner_product",
    "euclidean",
    "squared_euclidean",
    "manhattan",
    "snr",
];
const PAIRS: [(&str, &str); 6] = [
    ("hard", "semi-hard"),
    ("hard", "hard"),
    ("hard", "easy"),
    ("easy", "semi-hard"),
    ("easy", "hard"),
    ("easy", "easy"),
];

/// A deterministic batch: classes of 4, rows with some spread.
fn batch<T: Float>(n: usize, d: usize) -> (Vec<i64>, Vec<T>) {
    let labels = (0..n as i64).map(|i| (i * 7 % n as i64) / 4).collect();
    let x = (0..n * d)
        .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 53.0 + (i % 7) as f64 * 0.01))
        .collect();
    (labels, x)
}

/// Number of matrix products one distance matrix of an `n x n` batch takes: one per strip
/// of 128 rows (`metric-loss-distances`' gram.rs), none for manhattan.
fn products(distance: &str, n: usize) -> usize {
    if distance == "manhattan" {
        0
    } else {
        n.div_ceil(128)
    }
}

fn check<T: Float>(n: usize, d: usize) {
    let (labels, x) = batch::<T>(n, d);
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, n, d).unwrap()).unwrap();
    let with_grad = LossInput::new(batch);
    let forward = with_grad.without_gradient();
    for distance in DISTANCES {
        for (pos, neg) in PAIRS {
            for soft in [false, true] {
                let loss: TripletLoss = TripletLossConfig::default()
                    .distance(distance)
                    .positive_mining_strategy(pos)
                    .negative_mining_strategy(neg)
                    .soft_margin(soft)
                    .build()
                    .unwrap();
                let mut ws = Workspace::new();
                let mut out = LossOutput::new();
                // Warm-up: both modes, so every buffer has reached its size.
                loss.compute_into(&with_grad, &mut ws, &mut out).unwrap();
                loss.compute_into(&forward, &mut ws, &mut out).unwrap();
                loss.compute_into(&with_grad, &mut ws, &mut out).unwrap();
                let calls = 3;
                let before = allocations();
                for _ in 0..calls {
                    loss.compute_into(&forward, &mut ws, &mut out).unwrap();
                    loss.compute_into(&with_grad, &mut ws, &mut out).unwrap();
                }
                let after = allocations();
                let (plain, packing) = (after.0 - before.0, after.1 - before.1);
                let what = format!("{} {distance} {pos}/{neg} soft={soft} n={n}", T::DTYPE);
                assert_eq!(
                    plain,
                    0,
                    "{what}: {plain} allocations in {} calls",
                    2 * calls
                );
                let bound = 2 * calls * products(distance, n);
                assert!(
                    packing <= bound,
                    "{what}: {packing} packing buffers in {} calls, expected at most {bound}",
                    2 * calls
                );
            }
        }
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    // Two strips of the symmetric product, a partial lane block in mining, and one row
    // short of what `threads` would split over two threads (spawning allocates).
    let n = 2 * metric_loss_distances::parallel::MIN_ROWS_PER_THREAD - 1;
    check::<f32>(n, 12);
    check::<f64>(n, 12);
    check::<f32>(9, 3);
}
