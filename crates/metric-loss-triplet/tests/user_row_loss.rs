//! A user's `RowLoss` through the row driver: a formula that returns or writes a non-finite
//! number is a typed error naming the anchor (never a NaN in the output), a user distance
//! that gives a non-finite entry is an error naming the distance, and the rows give the
//! same bits on one to three threads.

use metric_loss_core::{LossError, MetricLossExt};
use metric_loss_distances::lanes::DenseFloat;
use metric_loss_distances::parallel::set_max_threads;
use metric_loss_distances::DistanceKind;
use metric_loss_testkit::{bits, values, PoisonedAtZeroOne};
use metric_loss_triplet::{row_metric_loss, DenseParts, RowLoss, RowView};

/// ℓᵢ = Σⱼ Dᵢⱼ² over the positives, except that anchor `broken_anchor` returns a NaN
/// loss (`in_value`) or a gradient entry of +∞.
#[derive(Debug, Default)]
struct SquaredPositives {
    parts: DenseParts,
    broken_anchor: Option<usize>,
    in_value: bool,
}

impl RowLoss for SquaredPositives {
    type Scratch = usize;

    fn name(&self) -> &str {
        "squared_positives"
    }

    fn parts(&self) -> &DenseParts {
        &self.parts
    }

    fn row<T: DenseFloat>(&self, row: &RowView<'_, T>, grad: &mut [T], rows_seen: &mut usize) -> T {
        // The per-thread scratch is the loss's own type, kept between rows.
        *rows_seen += 1;
        let mut loss = T::ZERO;
        for (j, (g, &d)) in grad.iter_mut().zip(row.distances).enumerate() {
            let on = row.is_positive(j);
            *g = if on { T::from_f64(2.0) * d } else { T::ZERO };
            loss += if on { d * d } else { T::ZERO };
        }
        if self.broken_anchor == Some(row.anchor) {
            if self.in_value {
                return T::from_f64(f64::NAN);
            }
            grad[0] = T::from_f64(f64::INFINITY);
        }
        loss
    }
}

row_metric_loss!(SquaredPositives);

fn batch(n: usize, dims: usize) -> (Vec<i64>, Vec<f32>) {
    let labels = (0..n as i64).map(|i| i % 5).collect();
    let x = values(n * dims, 3).iter().map(|&v| v as f32).collect();
    (labels, x)
}

#[test]
fn a_non_finite_row_is_an_error_naming_the_anchor() {
    let (labels, x) = batch(8, 3);
    for in_value in [true, false] {
        let loss = SquaredPositives {
            broken_anchor: Some(5),
            in_value,
            ..SquaredPositives::default()
        };
        let e = loss.evaluate(&labels, &x, 3).unwrap_err();
        assert!(
            matches!(&e, LossError::Unsupported { loss, message }
                if loss == "squared_positives" && message.contains("anchor 5")),
            "{e:?}"
        );
    }
}

#[test]
fn a_non_finite_user_distance_is_an_error_naming_it() {
    let (labels, x) = batch(6, 2);
    let loss = SquaredPositives {
        parts: DenseParts::default().distance(PoisonedAtZeroOne(f64::INFINITY)),
        ..SquaredPositives::default()
    };
    let e = loss.evaluate(&labels, &x, 2).unwrap_err();
    assert!(
        matches!(
            e,
            LossError::NonFiniteDistance {
                distance: "poisoned_at_zero_one",
                row: 0,
                col: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rows_give_the_same_bits_on_one_to_three_threads() {
    // 1024 rows: eight chunks' worth of the smallest split, so three threads do split.
    let (labels, x) = batch(1024, 16);
    let loss = SquaredPositives {
        parts: DenseParts::default().distance(DistanceKind::SquaredEuclidean),
        ..SquaredPositives::default()
    };
    set_max_threads(Some(1));
    let one = loss.evaluate(&labels, &x, 16).unwrap();
    assert!(one.loss > 0.0);
    for threads in [2, 3] {
        set_max_threads(Some(threads));
        assert_eq!(
            bits(&loss.evaluate(&labels, &x, 16).unwrap()),
            bits(&one),
            "{threads} threads"
        );
    }
    set_max_threads(None);
}
