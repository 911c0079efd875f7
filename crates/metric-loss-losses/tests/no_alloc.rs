//! Steady-state calls of the dense losses allocate nothing: with a reused `Workspace` and
//! `LossOutput`, a call (forward, or forward + backward) makes no heap allocation of its
//! own, for every distance, in f32 and f64. matrixmultiply's packing buffers (SIMD-aligned,
//! one per product) are not counted; the batch stays below what `threads` would split
//! (spawning work on other threads allocates).

use metric_loss_core::{Batch, Embeddings, Float, LossInput, MetricLoss};
use metric_loss_distances::DistanceKind;
use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, SoftNearestNeighborLoss};
use metric_loss_testkit::{assert_steady_state_does_not_allocate, CountingAllocator};
use metric_loss_triplet::DenseParts;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn check<T: Float>(n: usize, d: usize) {
    let labels: Vec<i64> = (0..n as i64).map(|i| (i * 7 % n as i64) / 4).collect();
    let x: Vec<T> = (0..n * d)
        .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 130.0))
        .collect();
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, n, d).unwrap()).unwrap();
    // A separate key set too (its labels numbered per call, some shared with no query).
    let key_labels: Vec<i64> = (0..n as i64 + 3).map(|i| i % 5 + 1).collect();
    let key_x: Vec<T> = (0..(n + 3) * d)
        .map(|i| T::from_f64(((i * 53 % 97) as f64 - 48.0) / 110.0))
        .collect();
    let keys = Batch::new(
        &key_labels,
        Embeddings::from_row_major(&key_x, n + 3, d).unwrap(),
    )
    .unwrap();
    for with_grad in [LossInput::new(batch), LossInput::new(batch).with_keys(keys)] {
        check_input(&with_grad);
    }
}

fn check_input<T: Float>(with_grad: &LossInput<'_, T>) {
    for kind in DistanceKind::ALL {
        let parts = DenseParts::default().distance(kind);
        for loss in [
            Box::new(MultiSimilarityLoss::default().with_parts(parts.clone()))
                as Box<dyn MetricLoss>,
            Box::new(CircleLoss::default().with_parts(parts.clone())),
            Box::new(SoftNearestNeighborLoss::default().with_parts(parts)),
        ] {
            assert_steady_state_does_not_allocate(loss.as_ref(), with_grad, &kind.to_string());
        }
    }
}

#[test]
fn steady_state_calls_do_not_allocate() {
    let n = metric_loss_distances::parallel::MIN_ROWS_PER_THREAD - 1;
    check::<f32>(n, 12);
    check::<f64>(n, 12);
    check::<f32>(9, 3);
}
