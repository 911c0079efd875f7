//! Steady-state calls of every loss of the crate allocate nothing: with a reused
//! `Workspace` and `LossOutput`, a call (forward, or forward + backward, parameter gradient
//! included) makes no heap allocation of its own, in f32 and f64, with and without sample
//! weights. matrixmultiply's packing buffers (SIMD-aligned, one per product) are not
//! counted; the batch stays below what `threads` would split (spawning work on other
//! threads allocates).

use metric_loss_core::{Batch, Embeddings, Float, LossInput, SampleWeight};
mod common;

use common::every_loss;
use metric_loss_testkit::{assert_steady_state_does_not_allocate, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const CLASSES: usize = 5;

fn check<T: Float>(n: usize, d: usize) {
    let x: Vec<T> = (0..n * d)
        .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 130.0))
        .collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i * 3 % CLASSES as i64).collect();
    let w: Vec<T> = (0..n).map(|i| T::from_f64((i % 3) as f64 * 0.5)).collect();
    let input =
        LossInput::new(Batch::new(&labels, Embeddings::from_row_major(&x, n, d).unwrap()).unwrap());
    let weighted = input.with_sample_weight(SampleWeight::PerExample(&w));
    let losses = every_loss(CLASSES, d);
    for (i, loss) in losses.iter().enumerate() {
        assert_steady_state_does_not_allocate(loss.as_ref(), &input, "");
        // ProxyAnchor's terms are per class: it rejects sample weights.
        if i < 6 {
            assert_steady_state_does_not_allocate(loss.as_ref(), &weighted, "weighted");
        }
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    let n = metric_loss_distances::parallel::MIN_ROWS_PER_THREAD - 1;
    for (n, d) in [(n, 12), (9, 3), (2, 5)] {
        check::<f32>(n, d);
        check::<f64>(n, d);
    }
}
