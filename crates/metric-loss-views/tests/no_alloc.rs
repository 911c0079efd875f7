//! Steady-state calls of the InfoNCE-family view losses allocate nothing: with a reused
//! `Workspace` and `LossOutput`, a call (forward, or forward + backward) makes no heap
//! allocation of its own, in f32 and f64. matrixmultiply's packing buffers (SIMD-aligned,
//! one per product) are not counted; the batch stays below what `threads` would split
//! (spawning work on other threads allocates).

use metric_loss_core::{
    Embeddings, Float, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight, Workspace,
};
use metric_loss_testkit::{allocations, CountingAllocator};
use metric_loss_views::{MultiNegativesRankLoss, SimCLRLoss};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn check<T: Float>(n: usize, d: usize) {
    let a: Vec<T> = (0..n * d)
        .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 130.0))
        .collect();
    let b: Vec<T> = (0..n * d)
        .map(|i| T::from_f64(((i * 53 % 97) as f64 - 48.0) / 110.0))
        .collect();
    let w: Vec<T> = (0..n).map(|i| T::from_f64((i % 3) as f64 * 0.5)).collect();
    let views = LossInput::views(
        Embeddings::from_row_major(&a, n, d).unwrap(),
        Embeddings::from_row_major(&b, n, d).unwrap(),
    );
    for with_grad in [
        views,
        views.with_sample_weight(SampleWeight::PerExample(&w)),
    ] {
        let forward = with_grad.without_gradient();
        let losses: [Box<dyn MetricLoss>; 2] = [
            Box::new(MultiNegativesRankLoss::default()),
            Box::new(SimCLRLoss::default()),
        ];
        for loss in losses {
            let mut ws = Workspace::new();
            let mut out = LossOutput::new();
            loss.compute_into(&with_grad, &mut ws, &mut out).unwrap();
            loss.compute_into(&forward, &mut ws, &mut out).unwrap();
            loss.compute_into(&with_grad, &mut ws, &mut out).unwrap();
            let before = allocations().0;
            for _ in 0..3 {
                loss.compute_into(&forward, &mut ws, &mut out).unwrap();
                loss.compute_into(&with_grad, &mut ws, &mut out).unwrap();
            }
            let made = allocations().0 - before;
            assert_eq!(
                made,
                0,
                "{} {}: {made} allocations in 6 calls",
                T::DTYPE,
                loss.name()
            );
        }
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    // SimCLR's 2n logit rows stay below a thread split too.
    let n = metric_loss_distances::parallel::MIN_ROWS_PER_THREAD / 2 - 1;
    check::<f32>(n, 12);
    check::<f64>(n, 12);
    check::<f32>(3, 2);
}
