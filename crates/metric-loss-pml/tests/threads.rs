//! Every loss of the crate gives the same bits on 1, 2 and 3 threads: the loss, each
//! example's share, the embedding gradient and the parameter gradient. The pair losses
//! split their distance products and gradient rows, NTXent and SupCon their forward rows
//! too; the classifier losses split their products.

use metric_loss_core::{Batch, Embeddings, LossInput, MetricLoss, MetricLossExt};
use metric_loss_distances::parallel::set_max_threads;
mod common;

use common::every_loss;
use metric_loss_testkit::values;

const CLASSES: usize = 37;

/// `loss` on `n` rows of width `dims` in [`CLASSES`] classes, as bits, for 3, 2 and 1
/// threads.
fn runs(loss: &dyn MetricLoss, n: usize, dims: usize) -> Vec<[Vec<u32>; 4]> {
    let x: Vec<f32> = values(n * dims, 3).into_iter().map(|v| v as f32).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i * 7 % CLASSES as i64).collect();
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, n, dims).unwrap()).unwrap();
    let input = LossInput::new(batch);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut runs = Vec::new();
    // Three first: the helper threads are sized by the first parallel call's cap.
    for threads in [3, 2, 1] {
        set_max_threads(Some(threads));
        let out = loss.compute(&input).unwrap();
        assert!(out.loss.is_finite() && out.loss != 0.0, "{}", loss.name());
        runs.push([
            vec![out.loss.to_bits()],
            bits(&out.per_example),
            bits(&out.grad_queries),
            bits(&out.grad_parameters),
        ]);
    }
    set_max_threads(None);
    runs
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    let dims = 6;
    let losses = every_loss(CLASSES, dims);
    // Enough rows for three row chunks and for the products' work threshold.
    for loss in &losses {
        let runs = runs(loss.as_ref(), 900, dims);
        assert_eq!(runs[0], runs[2], "{}: 3 threads", loss.name());
        assert_eq!(runs[1], runs[2], "{}: 2 threads", loss.name());
    }
}
