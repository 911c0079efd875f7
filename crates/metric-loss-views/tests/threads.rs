//! Every loss that splits work over threads gives the same bits on 1, 2 and 3 threads:
//! MultiNegativesRankLoss, SimCLR (its dense path and its tiles), and the products of
//! Barlow, VicReg and SimSiam.

use metric_loss_core::{Embeddings, LossInput, MetricLoss, MetricLossExt};
use metric_loss_distances::parallel::set_max_threads;
use metric_loss_distances::wide::set_avx2_enabled;
use metric_loss_testkit::values;
use metric_loss_views::{Barlow, MultiNegativesRankLoss, SimCLRLoss, SimSiamLoss, VicReg};

/// Loss, per-example values and both gradients of `loss` on two views, as bits, for 3, 2
/// and 1 threads.
fn runs(loss: &dyn MetricLoss, n: usize, dims: usize) -> Vec<[Vec<u32>; 4]> {
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
        runs.push([
            vec![out.loss.to_bits()],
            bits(&out.per_example),
            bits(&out.grad_queries),
            bits(&out.grad_keys),
        ]);
    }
    set_max_threads(None);
    runs
}

#[test]
fn every_thread_count_gives_the_same_bits() {
    // SimCLR with more rows than the dense path takes, so the call runs in tiles, and
    // fewer; the others large enough that their d×d and n-row products split three ways.
    let cases: [(&dyn MetricLoss, usize, usize); 6] = [
        (&SimCLRLoss::default(), 2100, 4),
        (&SimCLRLoss::default(), 700, 5),
        (&MultiNegativesRankLoss::default(), 700, 5),
        (&Barlow::default(), 1600, 64),
        (&VicReg::default(), 1600, 64),
        (&SimSiamLoss::default(), 1600, 64),
    ];
    for (loss, n, dims) in cases {
        let runs = runs(loss, n, dims);
        assert_eq!(runs[0], runs[2], "{}: 3 threads", loss.name());
        assert_eq!(runs[1], runs[2], "{}: 2 threads", loss.name());
    }
}

/// The rows' AVX2 copy gives the baseline copy's bits (vacuous on a CPU without AVX2).
/// The switch is process-wide, which the other test here tolerates: both copies give the
/// same bits, or one of the two tests fails.
#[test]
fn the_avx2_rows_give_the_baseline_bits() {
    let cases: [(&dyn MetricLoss, usize, usize); 2] = [
        (&SimCLRLoss::default(), 300, 6),
        (&MultiNegativesRankLoss::default(), 300, 6),
    ];
    for (loss, n, dims) in cases {
        set_avx2_enabled(false);
        let baseline = runs(loss, n, dims);
        set_avx2_enabled(true);
        assert_eq!(runs(loss, n, dims), baseline, "{}", loss.name());
    }
}
