//! Steady-state calls of the two-view losses allocate nothing: with a reused `Workspace`
//! and `LossOutput`, a call (forward, or forward + backward) makes no heap allocation of its
//! own, in f32 and f64, with and without sample weights. matrixmultiply's packing buffers
//! (SIMD-aligned, one per product) are not counted; the batch stays below what `threads`
//! would split (spawning work on other threads allocates).

use metric_loss_core::{Embeddings, Float, LossInput, MetricLoss, SampleWeight};
use metric_loss_testkit::{assert_steady_state_does_not_allocate, CountingAllocator};
use metric_loss_views::{Barlow, MultiNegativesRankLoss, SimCLRLoss, SimSiamLoss, VicReg};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn check<T: Float>(n: usize, d: usize) {
    let view = |seed: usize| -> Vec<T> {
        (0..n * d)
            .map(|i| T::from_f64((((i + seed) * 37 % 101) as f64 - 50.0) / 130.0))
            .collect()
    };
    let (a, b) = (view(0), view(7));
    let w: Vec<T> = (0..n).map(|i| T::from_f64((i % 3) as f64 * 0.5)).collect();
    let views = LossInput::views(
        Embeddings::from_row_major(&a, n, d).unwrap(),
        Embeddings::from_row_major(&b, n, d).unwrap(),
    );
    let losses: [Box<dyn MetricLoss>; 5] = [
        Box::new(MultiNegativesRankLoss::default()),
        Box::new(SimCLRLoss::default()),
        Box::new(SimSiamLoss::default()),
        Box::new(Barlow::default()),
        Box::new(VicReg::default()),
    ];
    let weighted = views.with_sample_weight(SampleWeight::PerExample(&w));
    for (i, loss) in losses.iter().enumerate() {
        assert_steady_state_does_not_allocate(loss.as_ref(), &views, "");
        // Barlow's and VicReg's output is one value per batch: no per-row weights.
        if i < 3 {
            assert_steady_state_does_not_allocate(loss.as_ref(), &weighted, "weighted");
        }
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    // SimCLR's 2n logit rows and the products stay below a thread split.
    let n = metric_loss_distances::parallel::MIN_ROWS_PER_THREAD / 2 - 1;
    for (n, d) in [(n, 12), (9, 3), (2, 5)] {
        check::<f32>(n, d);
        check::<f64>(n, d);
    }
}
