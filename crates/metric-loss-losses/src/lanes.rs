//! Branch-free row arithmetic of the dense losses: each key's side computed once per row,
//! and the two softmaxes of a row over the shared lanes.

use metric_loss_core::Float;
pub(crate) use metric_loss_distances::lanes::{keep, total, DenseFloat, LANES};

use metric_loss_triplet::RowView;

use crate::common::RowScratch;

/// A key's side in a row. 32 bits wide like the f32 values it masks: with bytes, the
/// vectoriser widened each mask and summed two lanes at a time.
pub(crate) type Side = u32;

/// A key that is in neither softmax of a row (the anchor itself, or a key the mining left
/// out).
pub(crate) const NEITHER: Side = 0;
/// A key in the row's positive softmax.
pub(crate) const POSITIVE: Side = 1;
/// A key in the row's negative softmax.
pub(crate) const NEGATIVE: Side = 2;

/// The side of a key that is a positive, a negative, or neither (never both).
#[inline(always)]
pub(crate) fn side_of(positive: bool, negative: bool) -> Side {
    (Side::from(positive) * POSITIVE) | (Side::from(negative) * NEGATIVE)
}

/// Replaces each score xⱼ of `scores` by e^{xⱼ − c} with c the shift of its side (0 for
/// [`NEITHER`]) and returns each side's e^{−c} + Σ e^{xⱼ − c}: the denominators of the two
/// softmaxes of ln(1 + Σ e^{xⱼ}), which never overflow when c ≥ 0 and c is at least the
/// side's largest score.
#[inline(always)]
pub(crate) fn shifted_exp_sums<T: DenseFloat>(
    scores: &mut [T],
    side: &[Side],
    c_pos: T,
    c_neg: T,
) -> (T, T) {
    // A plain map (the loop vectoriser's case, unlike the exponential inside per-lane
    // accumulators), then the sums.
    for (s, &k) in scores.iter_mut().zip(side) {
        let pos = k == POSITIVE;
        *s = keep(
            k != NEITHER,
            T::exp_ftz(*s - if pos { c_pos } else { c_neg }),
        );
    }
    let (sum_pos, sum_neg) = side_sums(scores, side);
    (T::exp_ftz(-c_pos) + sum_pos, T::exp_ftz(-c_neg) + sum_neg)
}

/// The row of a loss made of two softmaxes, ln(1 + Σ_P e^{xⱼ}) and ln(1 + Σ_N e^{xⱼ})
/// (MultiSimilarity, Circle): returns the two values, or `None` when either side is empty
/// (`grad` is then all 0), and leaves in `grad` each key's softmax weight within its side
/// times `slope(dⱼ, is_positive)` (0 for keys on neither side).
///
/// `score(dⱼ, same_class, off_diagonal)` gives a key's (positive, negative, xⱼ). It runs
/// in one branch-free pass with the sides and their largest scores, so that it
/// vectorises.
#[inline(always)]
pub(crate) fn two_softmaxes<T: DenseFloat>(
    row: &RowView<'_, T>,
    grad: &mut [T],
    scratch: &mut RowScratch,
    score: impl Fn(T, bool, bool) -> (bool, bool, T),
    slope: impl Fn(T, bool) -> T,
) -> Option<(T, T)> {
    let (d, classes, class, diag) = (row.distances, row.key_classes, row.anchor_class, row.diag);
    let side = scratch.sides(d.len());
    // Each side's shift: its largest score, at least 0.
    let (mut c_pos, mut c_neg, mut sides) = (T::ZERO.key(), T::ZERO.key(), NEITHER);
    for (j, (((g, k), &dj), &c)) in grad
        .iter_mut()
        .zip(side.iter_mut())
        .zip(d)
        .zip(classes)
        .enumerate()
    {
        let (pos, neg, x) = score(dj, c == class, j != diag);
        c_pos = c_pos.max(keep(pos, x).key());
        c_neg = c_neg.max(keep(neg, x).key());
        let this = side_of(pos, neg);
        sides |= this;
        *k = this;
        *g = x;
    }
    if sides != POSITIVE | NEGATIVE {
        grad.fill(T::ZERO);
        return None;
    }
    let (c_pos, c_neg) = (T::from_key(c_pos), T::from_key(c_neg));
    let (sum_pos, sum_neg) = shifted_exp_sums(grad, side, c_pos, c_neg);
    let (w_pos, w_neg) = (T::ONE / sum_pos, T::ONE / sum_neg);
    for ((g, &k), &dj) in grad.iter_mut().zip(side.iter()).zip(d) {
        // `slope` with a constant side: each evaluates only its own formula.
        *g *= if k == POSITIVE {
            w_pos * slope(dj, true)
        } else {
            keep(k == NEGATIVE, w_neg * slope(dj, false))
        };
    }
    Some((sum_pos.ln() + c_pos, sum_neg.ln() + c_neg))
}

/// Σ `values` over the [`POSITIVE`] keys and over the [`NEGATIVE`] ones.
#[inline(always)]
pub(crate) fn side_sums<T: Float>(values: &[T], side: &[Side]) -> (T, T) {
    // One pass per side: in one loop the vectoriser pairs each lane's two sums in a 2-wide
    // register instead of taking the eight lanes of one side together.
    (
        side_sum(values, side, POSITIVE),
        side_sum(values, side, NEGATIVE),
    )
}

/// Σ `values` over the keys on side `which`, in [`LANES`] accumulators.
#[inline(always)]
fn side_sum<T: Float>(values: &[T], side: &[Side], which: Side) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut v_blocks = values.chunks_exact(LANES);
    let mut k_blocks = side.chunks_exact(LANES);
    for (v, k) in (&mut v_blocks).zip(&mut k_blocks) {
        for l in 0..LANES {
            acc[l] += keep(k[l] == which, v[l]);
        }
    }
    for (l, (v, k)) in v_blocks
        .remainder()
        .iter()
        .zip(k_blocks.remainder())
        .enumerate()
    {
        acc[l] += keep(*k == which, *v);
    }
    total(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_sums_are_stable() {
        let side = [POSITIVE, NEGATIVE, NEITHER];
        let mut s = [-200.0f32, -300.0, 5.0];
        let (p, n) = shifted_exp_sums(&mut s, &side, 0.0, 0.0);
        assert_eq!((p, n), (1.0, 1.0));
        assert_eq!(s[2], 0.0);
        let side = [POSITIVE, NEITHER, POSITIVE];
        let mut s = [200.0f32, 7.0, 200.0];
        let (p, n) = shifted_exp_sums(&mut s, &side, 200.0, 0.0);
        assert!(((p.ln() + 200.0) - (200.0 + 2f32.ln())).abs() < 1e-4, "{p}");
        assert_eq!(n, 1.0);
        assert!((s[0] / p - 0.5).abs() < 1e-6 && s[1] == 0.0);
    }
}
