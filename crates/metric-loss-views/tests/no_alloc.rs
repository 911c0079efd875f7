//! Steady-state calls of the two-view losses that keep their scratch in the workspace
//! allocate nothing: with a reused `Workspace` and `LossOutput`, a call (forward, or
//! forward + backward) makes no heap allocation of its own, in f32 and f64. matrixmultiply's
//! packing buffers (SIMD-aligned, one per product) are not counted; the batch stays below
//! what `threads` would split (spawning work on other threads allocates).

use metric_loss_core::{Embeddings, Float, LossInput, MetricLoss};
use metric_loss_testkit::{assert_steady_state_does_not_allocate, CountingAllocator};
use metric_loss_views::{Barlow, SimSiamLoss, VicReg};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn check<T: Float>(n: usize, d: usize) {
    let view = |seed: usize| -> Vec<T> {
        (0..n * d)
            .map(|i| T::from_f64((((i + seed) * 37 % 101) as f64 - 50.0) / 130.0))
            .collect()
    };
    let (a, b) = (view(0), view(7));
    let with_grad = LossInput::views(
        Embeddings::from_row_major(&a, n, d).unwrap(),
        Embeddings::from_row_major(&b, n, d).unwrap(),
    );
    for loss in [
        Box::new(Barlow::default()) as Box<dyn MetricLoss>,
        Box::new(VicReg::default()),
        Box::new(SimSiamLoss::default()),
    ] {
        assert_steady_state_does_not_allocate(loss.as_ref(), &with_grad, "");
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    // Below what the products would split: 96 rows of 16 is far from a thread's work.
    for (n, d) in [(96, 16), (9, 3), (2, 5)] {
        check::<f32>(n, d);
        check::<f64>(n, d);
    }
}
