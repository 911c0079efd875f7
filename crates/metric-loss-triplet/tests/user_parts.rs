//! User parts through `TripletLoss`: a part that breaks its contract is a typed error naming
//! it (never a panic or a NaN), and a user miner on the symmetric fast path (cosine against
//! the batch itself, where the built-in mines the upper triangle) sees the full matrix.

use metric_loss_core::{
    Float, LossError, MetricLossExt, Mined, Miner, MiningView, NegativeStrategy, PositiveStrategy,
    Reducer, SampleWeight, Workspace,
};
use metric_loss_testkit::PoisonedAtZeroOne;
use metric_loss_triplet::TripletLoss;

/// Batch-hard (farthest positive, closest negative); `column_offset` shifts the negative's
/// column, out of range when large.
#[derive(Debug)]
struct BatchHard {
    column_offset: usize,
}

impl<T: Float> Miner<T> for BatchHard {
    fn name(&self) -> &str {
        "batch_hard"
    }
    fn mine(
        &self,
        view: MiningView<'_, T>,
        _: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<(), LossError> {
        for (i, slot) in out.iter_mut().enumerate() {
            let (row, ctx) = (view.row(i), view.context(i));
            let pos = (0..row.len())
                .filter(|&j| ctx.is_positive(j))
                .reduce(|a, b| if row[b] > row[a] { b } else { a });
            let neg = (0..row.len())
                .filter(|&j| ctx.is_negative(j))
                .reduce(|a, b| if row[b] < row[a] { b } else { a });
            *slot = match (pos, neg) {
                (Some(p), Some(n)) => Mined::triplet(p, row[p], n + self.column_offset, row[n]),
                _ => Mined::none(),
            };
        }
        Ok(())
    }
}

/// A reducer whose scales are NaN.
#[derive(Debug)]
struct NanScales;

impl<T: Float> Reducer<T> for NanScales {
    fn name(&self) -> &str {
        "nan_scales"
    }
    fn reduce(&self, per_example: &[T], _: &SampleWeight<'_, T>, scales: &mut [T]) -> T {
        scales.fill(T::from_f64(f64::NAN));
        per_example.iter().copied().sum()
    }
}

fn batch() -> (Vec<i64>, Vec<f32>) {
    let labels = vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 3];
    let mut x: Vec<f32> = (0..40).map(|t| (t as f32 * 1.7).sin()).collect();
    for row in x.chunks_mut(4) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    (labels, x)
}

fn part_error(loss: TripletLoss) -> (String, String) {
    let (labels, x) = batch();
    match loss.evaluate(&labels, &x, 4) {
        Err(LossError::InvalidPartOutput {
            part,
            name,
            problem,
        }) => (format!("{part} {name}"), problem),
        other => panic!("expected a part error, got {other:?}"),
    }
}

#[test]
fn a_non_finite_user_distance_is_an_error_naming_it() {
    let (who, problem) = part_error(
        TripletLoss::builder()
            .distance(PoisonedAtZeroOne(f64::NAN))
            .build()
            .unwrap(),
    );
    assert_eq!(who, "distance poisoned_at_zero_one");
    assert!(problem.contains("entry (0, 1) is NaN"), "{problem}");
}

#[test]
fn a_user_miner_picking_outside_the_row_is_an_error_naming_it() {
    let miner = BatchHard { column_offset: 100 };
    let (who, problem) = part_error(TripletLoss::builder().miner(miner).build().unwrap());
    assert_eq!(who, "miner batch_hard");
    assert!(problem.contains("out of range for 10 keys"), "{problem}");
}

#[test]
fn non_finite_user_reducer_scales_are_an_error_naming_it() {
    let (who, problem) = part_error(TripletLoss::builder().reducer(NanScales).build().unwrap());
    assert_eq!(who, "reducer nan_scales");
    assert!(problem.contains("example 0"), "{problem}");
}

/// Cosine against the batch itself: the built-in mines the upper triangle, a user miner
/// gets the mirrored full matrix, and both give the same bits.
#[test]
fn a_user_miner_on_the_symmetric_fast_path_sees_full_rows() {
    let (labels, x) = batch();
    let ours = TripletLoss::builder()
        .miner(BatchHard { column_offset: 0 })
        .build()
        .unwrap()
        .evaluate(&labels, &x, 4)
        .unwrap();
    let built_in = TripletLoss::builder()
        .positive_mining(PositiveStrategy::Hard)
        .negative_mining(NegativeStrategy::Hard)
        .exclude_degenerate_anchors(true)
        .build()
        .unwrap()
        .evaluate(&labels, &x, 4)
        .unwrap();
    assert_eq!(ours.per_example, built_in.per_example);
    assert_eq!(ours.grad_queries, built_in.grad_queries);
}
