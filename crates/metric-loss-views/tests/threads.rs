//! MultiNegativesRankLoss and SimCLR (its dense path and its tiles) give the same bits on
//! 1, 2 and 3 threads.

use metric_loss_core::{Embeddings, LossInput, MetricLoss, MetricLossExt};
use metric_loss_distances::parallel::set_max_threads;
use metric_loss_testkit::values;
use metric_loss_views::{MultiNegativesRankLoss, SimCLRLoss};

/// Every output bit of `loss` on n×dims views, on 3, 2 and 1 threads.
fn same_bits(loss: &dyn MetricLoss, n: usize, dims: usize) {
    let cast = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let (a, b) = (cast(values(n * dims, 1)), cast(values(n * dims, 2)));
    let input = LossInput::views(
        Embeddings::from_row_major(&a, n, dims).unwrap(),
        Embeddings::from_row_major(&b, n, dims).unwrap(),
    );
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut runs = Vec::new();
    // Three first: the helper threads are sized by the first parallel call's cap.
    for threads in [3, 2, 1] {
        set_max_threads(Some(threads));
        let out = loss.compute(&input).unwrap();
        assert!(out.loss.is_finite());
        runs.push((
            out.loss.to_bits(),
            bits(&out.per_example),
            bits(&out.grad_queries),
            bits(&out.grad_keys),
        ));
    }
    set_max_threads(None);
    assert_eq!(runs[0], runs[2], "{}: 3 threads", loss.name());
    assert_eq!(runs[1], runs[2], "{}: 2 threads", loss.name());
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    // More rows than SimCLR's dense path takes, so the call runs in tiles.
    same_bits(&SimCLRLoss::default(), 2100, 4);
    same_bits(&SimCLRLoss::default(), 700, 5);
    same_bits(&MultiNegativesRankLoss::default(), 700, 5);
}
