//! Property tests for mining: `mine_row` on arbitrary rows (any length, special values,
//! i64 extreme labels, all equal or all distinct) returns a pick inside the row or a
//! `MiningError::NonFinite`, never panics, and agrees with a brute-force reading of TF Similarity's
//! rules; `route_gradient` conserves the gradient and only touches the row's entries.
//!
//! Case counts are modest for CI; raise them with `PROPTEST_CASES=N`.

use metric_loss_core::{NegativeStrategy, PositiveStrategy};
use metric_loss_mining::{
    mine_row, route_gradient, Mined, MiningError, Pick, RowContext, SENTINEL_OFFSET,
};
use metric_loss_testkit::cases;
use proptest::prelude::*;

fn nasty() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -3.0..3.0f64,
        // Few distinct values: exact ties.
        4 => prop::sample::select(vec![0.0, -0.0, 0.5, 1.0, 2.0]),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(1e-40),
        1 => Just(1e30),
        1 => Just(-1e30),
        1 => Just(f64::MAX),
    ]
}

fn label() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0..3i64,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

fn positive() -> impl Strategy<Value = PositiveStrategy> {
    prop::sample::select(vec![PositiveStrategy::Easy, PositiveStrategy::Hard])
}

fn negative() -> impl Strategy<Value = NegativeStrategy> {
    prop::sample::select(vec![
        NegativeStrategy::Easy,
        NegativeStrategy::Hard,
        NegativeStrategy::SemiHard,
    ])
}

#[derive(Debug, Clone)]
struct Row {
    values: Vec<f64>,
    labels: Vec<i64>,
    anchor: usize,
    anchor_label: i64,
    remove_diagonal: bool,
}

fn row(values: BoxedStrategy<f64>) -> impl Strategy<Value = Row> {
    // Empty rows: `empty_row_is_an_error`.
    (1usize..9).prop_flat_map(move |m| {
        let labels = prop_oneof![
            3 => prop::collection::vec(label(), m),
            1 => label().prop_map(move |l| vec![l; m]),
            1 => Just((0..m as i64).map(|i| i64::MIN + i).collect::<Vec<_>>()),
        ];
        (
            prop::collection::vec(values.clone(), m),
            labels,
            0usize..m + 3,
            label(),
            any::<bool>(),
        )
            .prop_map(
                |(values, labels, anchor, anchor_label, remove_diagonal)| Row {
                    values,
                    labels,
                    anchor,
                    anchor_label,
                    remove_diagonal,
                },
            )
    })
}

impl Row {
    fn ctx(&self) -> RowContext<'_> {
        RowContext {
            anchor: self.anchor,
            anchor_label: self.anchor_label,
            key_labels: &self.labels,
            remove_diagonal: self.remove_diagonal,
        }
    }
}

/// Everything a pick must satisfy whatever the row.
fn check_pick(r: &Row, value: f64, pick: &Pick<f64>) {
    let m = r.values.len();
    assert!(value.is_finite(), "mined value {value}");
    if m == 0 {
        return;
    }
    assert!(
        pick.index < m && pick.first < m,
        "{pick:?} outside a row of {m}"
    );
    assert!(pick.ties >= 1, "{pick:?}");
    assert_eq!(r.values[pick.first], pick.target, "{pick:?}");
    if pick.is_sentinel() {
        let lo = r.values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(
            value == lo - SENTINEL_OFFSET || value == hi + SENTINEL_OFFSET,
            "sentinel {value} for row min {lo} max {hi}"
        );
    }
}

/// A pick in f64 (only the flags and values are compared).
fn r_pick(p: Pick<f32>) -> Pick<f64> {
    Pick {
        index: p.index,
        mask: metric_loss_mining::PickMask::Column,
        target: f64::from(p.target),
        first: p.first,
        ties: p.ties,
    }
}

/// Brute force over the masks: the value TF Similarity's rules give (for a non-empty mask).
fn brute_force(
    r: &Row,
    pos: PositiveStrategy,
    neg: NegativeStrategy,
) -> (Option<f64>, Option<f64>) {
    let ctx = r.ctx();
    let positives: Vec<f64> = (0..r.values.len())
        .filter(|&j| ctx.is_positive(j))
        .map(|j| r.values[j])
        .collect();
    let negatives: Vec<f64> = (0..r.values.len())
        .filter(|&j| ctx.is_negative(j))
        .map(|j| r.values[j])
        .collect();
    let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
    let min = |v: &[f64]| v.iter().copied().reduce(f64::min);
    let p = match pos {
        PositiveStrategy::Hard => max(&positives),
        PositiveStrategy::Easy => min(&positives),
    };
    let q = match neg {
        NegativeStrategy::Hard => min(&negatives),
        NegativeStrategy::Easy => max(&negatives),
        NegativeStrategy::SemiHard => match max(&positives) {
            Some(t) => {
                let beyond: Vec<f64> = negatives.iter().copied().filter(|d| *d > t).collect();
                min(&beyond).or(max(&negatives))
            }
            None => None,
        },
    };
    (p, q)
}

proptest! {
    #![proptest_config(cases(1024))]

    /// Any row: a pick inside the row or a `MiningError::NonFinite` at the first non-finite
    /// entry; never a panic.
    #[test]
    fn mine_row_never_panics(r in row(nasty().boxed()), pos in positive(), neg in negative()) {
        let first_bad = r.values.iter().position(|v| !v.is_finite());
        match mine_row(&r.values, &r.ctx(), pos, neg) {
            Ok(m) => {
                prop_assert!(first_bad.is_none());
                check_pick(&r, m.positive, &m.pos);
                check_pick(&r, m.negative, &m.neg);
            }
            Err(MiningError::NonFinite { col, .. }) => prop_assert_eq!(Some(col), first_bad),
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        // f32 rows too.
        let r32: Vec<f32> = r.values.iter().map(|v| *v as f32).collect();
        let _ = mine_row(&r32, &r.ctx(), pos, neg);
    }

    /// Non-empty masks give exactly the brute-force value; the flags say which masks were
    /// empty. In f32, where TF's `(d − a) + a` round trip through f64 is exact (in f64 it
    /// is not: TF's float64 round trip (d − a) + a).
    #[test]
    fn mine_row_matches_brute_force(r in row((-3.0..3.0f64).prop_map(|v| v as f32 as f64).boxed()), pos in positive(), neg in negative()) {
        let r32: Vec<f32> = r.values.iter().map(|v| *v as f32).collect();
        let m: Mined<f32> = mine_row(&r32, &r.ctx(), pos, neg).unwrap();
        let m = Mined { positive: f64::from(m.positive), negative: f64::from(m.negative), has_positive: m.has_positive, has_negative: m.has_negative, pos: r_pick(m.pos), neg: r_pick(m.neg), active: m.active };
        let (p, q) = brute_force(&r, pos, neg);
        let ctx = r.ctx();
        prop_assert_eq!(m.has_positive, (0..r.values.len()).any(|j| ctx.is_positive(j)));
        prop_assert_eq!(m.has_negative, (0..r.values.len()).any(|j| ctx.is_negative(j)));
        if let Some(p) = p {
            prop_assert_eq!(m.positive, p);
        }
        if let (Some(q), true) = (q, m.has_positive || neg != NegativeStrategy::SemiHard) {
            prop_assert_eq!(m.negative, q);
        }
    }

    /// route_gradient hands out exactly g in total, split over entries of the row equal to
    /// the pick's target, each visited once.
    #[test]
    fn route_gradient_conserves_the_gradient(
        r in row(prop::sample::select(vec![0.0, 0.5, 1.0, 1.5]).boxed()),
        pos in positive(),
        neg in negative(),
        g in -2.0..2.0f64,
    ) {
        let m = mine_row(&r.values, &r.ctx(), pos, neg).unwrap();
        for pick in [&m.pos, &m.neg] {
            let mut seen = vec![0u32; r.values.len()];
            let mut total = 0.0;
            route_gradient(&r.values, &r.ctx(), pick, g, |j, share| {
                seen[j] += 1;
                total += share;
                assert_eq!(r.values[j], pick.target);
            });
            prop_assert!(seen.iter().all(|c| *c <= 1));
            prop_assert_eq!(seen.iter().sum::<u32>(), pick.ties);
            prop_assert!((total - g).abs() <= 1e-12 * (1.0 + g.abs()), "{total} vs {g}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Regression tests for findings
// ---------------------------------------------------------------------------------------

/// Regression (found by the property tests): on an empty row (a key set of 0) `mine_row`
/// once indexed column 0 under semi-hard, then returned ±∞ sentinels; it is now an error.
#[test]
fn empty_row_is_an_error() {
    let ctx = RowContext {
        anchor: 0,
        anchor_label: 0,
        key_labels: &[],
        remove_diagonal: true,
    };
    for pos in [PositiveStrategy::Easy, PositiveStrategy::Hard] {
        for neg in [
            NegativeStrategy::Easy,
            NegativeStrategy::Hard,
            NegativeStrategy::SemiHard,
        ] {
            assert_eq!(
                mine_row::<f64>(&[], &ctx, pos, neg),
                Err(MiningError::EmptyRow)
            );
        }
    }
}
