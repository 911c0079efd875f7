//! Mining one anchor's row when its positives are known as a short list of key indices
//! ([`KeyClasses`](crate::KeyClasses)): the negatives are then every other entry, and the
//! scan over the row needs no labels at all.
//!
//! The positives are read first, saved, and overwritten with NaN, which no comparison
//! selects; one branch-free pass then finds the negative extremum with its first index and
//! ties, and the row extremes; the positives are restored. The label comparison per entry
//! (an `i64` compare per `f32`) and the separate locate passes of [`mine_row`] are gone.
//! Rows the fast path does not cover (no positive, no negative, large classes, non-finite
//! entries) go to [`mine_row`], so the results are identical by construction; a test
//! checks them bit for bit against the scalar reference.

use metric_loss_core::{Float, NegativeStrategy, PositiveStrategy};

use crate::extreme::Extreme;
use crate::row::{
    locate_where, masked, mine_row, pick_max, pick_min, Mined, MiningError, PickMask, RowContext,
    RowFrame,
};
use crate::simd;
use crate::SENTINEL_OFFSET;

/// Lanes of the vectorised scans (see `row.rs`).
const LANES: usize = 8;

/// Above one positive per this many keys, the positives' scalar pass and their overwrite
/// cost more than the label compares they save: such rows take [`mine_row`].
const MAX_POSITIVE_SHARE: usize = 8;

/// Rows shorter than this take [`mine_row`] (the fast path's fixed costs do not pay off).
const MIN_ROW: usize = 4 * LANES;

/// The most positives the fast path saves (on the stack) while they are overwritten.
const MAX_MEMBERS: usize = 64;

/// [`mine_row`] for an anchor whose same-label keys are `members` (ascending key indices,
/// as [`KeyClasses::members`](crate::KeyClasses::members) gives them, the diagonal
/// included). `row` is overwritten during the call and restored before it returns.
///
/// The result is identical to [`mine_row`]'s, ties and signed zeros included.
///
/// # Errors
/// As [`mine_row`].
pub fn mine_row_grouped<T: Float>(
    row: &mut [T],
    ctx: &RowContext<'_>,
    members: &[usize],
    positive: PositiveStrategy,
    negative: NegativeStrategy,
) -> Result<Mined<T>, MiningError> {
    debug_assert_eq!(row.len(), ctx.key_labels.len());
    if !covered(row.len(), members.len()) {
        return mine_row(row, ctx, positive, negative);
    }
    let diag = if ctx.remove_diagonal {
        ctx.anchor
    } else {
        usize::MAX
    };
    let mut saved = [T::ZERO; MAX_MEMBERS];
    for (&j, slot) in members.iter().zip(&mut saved) {
        *slot = row[j];
    }
    let positives = Positives::of(members.iter().copied().zip(saved), diag);
    if !positives.usable() {
        return mine_row(row, ctx, positive, negative);
    }
    let nan = T::from_f64(f64::NAN);
    for &j in members {
        row[j] = nan;
    }
    let semi = negative == NegativeStrategy::SemiHard;
    let first = scan_values(row, semi, positives.hardest.value);
    let offsets = Offsets::new(&positives, &first);
    // Where TF's rounding moves semi-hard's threshold, the scan runs again at it: one
    // more vectorised pass, the positives still NaN.
    let scan = if offsets.rescan(semi) {
        scan_values(row, true, offsets.threshold)
    } else {
        first
    };
    let target = scan.target(negative);
    // The negative pick's value is one of the scan's when every entry other than the
    // planted NaNs is finite; its first index and ties come from one more pass, while the
    // positives are still NaN.
    let located = if scan.all_finite(members.len()) {
        locate_value(row, target)
    } else {
        Extreme::none()
    };
    for (&j, &v) in members.iter().zip(saved.iter()) {
        row[j] = v;
    }
    let mined = finish(
        &positives,
        &scan,
        members.len(),
        &offsets,
        located,
        positive,
        negative,
        |j| row[j],
    );
    match mined {
        Some(mined) => Ok(mined),
        None => mine_row(row, ctx, positive, negative),
    }
}

/// The fast path covers a row of `m` keys whose anchor has `members` same-label keys (the
/// diagonal included): it has a negative, and few enough positives to save and overwrite.
pub(crate) fn covered(m: usize, members: usize) -> bool {
    m >= MIN_ROW
        && u32::try_from(m).is_ok()
        && members < m
        && members <= MAX_MEMBERS
        && members * MAX_POSITIVE_SHARE <= m
}

/// What the pass over an anchor's positives (its same-label keys) finds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Positives<T> {
    /// The smallest and largest of them, the diagonal included (for the row extremes).
    min: T,
    max: T,
    finite: bool,
    /// The hard and easy positive: the largest and smallest, the diagonal excluded when
    /// it is removed.
    pub(crate) hardest: Extreme<T>,
    easiest: Extreme<T>,
}

impl<T: Float> Positives<T> {
    /// Over `(key index, distance)` pairs in ascending key order; `diag` is the removed
    /// diagonal's key index (`usize::MAX`: none).
    pub(crate) fn of(members: impl Iterator<Item = (usize, T)>, diag: usize) -> Self {
        let inf = T::from_f64(f64::INFINITY);
        let mut p = Self {
            min: inf,
            max: -inf,
            finite: true,
            hardest: Extreme::none(),
            easiest: Extreme::none(),
        };
        for (j, v) in members {
            p.finite &= v.is_finite();
            p.min = pick_min(p.min, v);
            p.max = pick_max(p.max, v);
            if j != diag {
                p.hardest.offer_max(v, j);
                p.easiest.offer_min(v, j);
            }
        }
        p
    }

    /// The fast path applies: every positive is finite and there is one.
    pub(crate) fn usable(&self) -> bool {
        self.finite && !self.hardest.is_empty()
    }
}

/// TF's sentinel offsets and semi-hard's threshold, from the first scan (the row extremes
/// do not depend on the threshold).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offsets<T> {
    /// `rowmin − 1e-6` and `rowmax + 1e-6` in f64.
    below: f64,
    above: f64,
    /// The hardest positive's masked value (semi-hard's threshold proper).
    pub(crate) threshold: T,
    raw_threshold: T,
}

impl<T: Float> Offsets<T> {
    pub(crate) fn new(positives: &Positives<T>, first: &ValueScan<T>) -> Self {
        let below = pick_min(positives.min, first.min).to_f64() - SENTINEL_OFFSET;
        let above = pick_max(positives.max, first.max).to_f64() + SENTINEL_OFFSET;
        let raw_threshold = positives.hardest.value;
        Self {
            below,
            above,
            threshold: masked(raw_threshold, below),
            raw_threshold,
        }
    }

    /// Semi-hard's scan must run again at [`Offsets::threshold`]: in f64,
    /// `(d − below) + below` can differ from d. (A threshold that is not finite sends the
    /// row to [`mine_row`] instead.)
    pub(crate) fn rescan(&self, semi: bool) -> bool {
        semi && self.threshold != self.raw_threshold && self.threshold.is_finite()
    }
}

/// The picks of a fast-path row from its passes: `None` sends the row to [`mine_row`].
/// `value` reads the row's entry at a key index (the positives restored).
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish<T: Float>(
    positives: &Positives<T>,
    scan: &ValueScan<T>,
    members: usize,
    offsets: &Offsets<T>,
    located: Extreme<T>,
    positive: PositiveStrategy,
    negative: NegativeStrategy,
    value: impl Fn(usize) -> T,
) -> Option<Mined<T>> {
    // The scan ran at `threshold` unless that was not finite (TF's sum overflows for a
    // positive and a row minimum near ±f64::MAX): such rows go to `mine_row`.
    if !scan.all_finite(members)
        || (negative == NegativeStrategy::SemiHard && !offsets.threshold.is_finite())
    {
        return None;
    }
    // Every mask here is non-empty (a positive, and a located negative since all the
    // scanned entries are finite), so no sentinel reads the row.
    let frame = RowFrame {
        row: &[],
        below: offsets.below,
        above: offsets.above,
    };
    let (p, pos) = if positive == PositiveStrategy::Hard {
        frame.masked_max(&positives.hardest, PickMask::Positive)
    } else {
        frame.masked_min(&positives.easiest, PickMask::Positive)
    };
    if located.is_empty() {
        return None;
    }
    let (q, neg) = match negative {
        NegativeStrategy::Hard => frame.masked_min(&located, PickMask::Negative),
        NegativeStrategy::Easy => frame.masked_max(&located, PickMask::Negative),
        NegativeStrategy::SemiHard if scan.beyond.is_finite() => {
            frame.masked_min(&located, PickMask::NegativeBeyond(offsets.threshold))
        }
        NegativeStrategy::SemiHard => {
            // No negative beyond the threshold: TF's one-hot fallback at the farthest
            // negative, which is then never beyond it.
            let column = located.index;
            let single = Extreme {
                value: value(column),
                index: column,
                ties: 1,
            };
            frame.masked_min(&single, PickMask::Column)
        }
    };
    #[cfg(test)]
    FAST_ROWS.with(|c| c.set(c.get() + 1));
    Some(Mined {
        positive: p,
        negative: q,
        pos,
        neg,
        has_positive: true,
        has_negative: true,
        active: true,
    })
}

#[cfg(test)]
thread_local! {
    /// Rows mined by the fast path itself (not handed to `mine_row`), so that the test
    /// shows it covers them.
    static FAST_ROWS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What a label-free pass over a row with its positives set to NaN finds (values only:
/// index-and-ties tracking does not vectorise, see `row.rs`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueScan<T> {
    /// The smallest and largest non-NaN entries (±∞ when there is none).
    pub(crate) min: T,
    pub(crate) max: T,
    /// Semi-hard only: the smallest entry strictly beyond the threshold (+∞: none).
    pub(crate) beyond: T,
    /// NaN entries (the planted positives plus any NaN distance), counted in `T`: exact
    /// up to 2²⁴ per lane in f32, and a miscount only sends the row to [`mine_row`].
    pub(crate) nans: T,
}

impl<T: Float> ValueScan<T> {
    /// Nothing scanned yet: the identity of [`ValueScan::then`].
    pub(crate) fn empty() -> Self {
        let inf = T::from_f64(f64::INFINITY);
        Self {
            min: inf,
            max: -inf,
            beyond: inf,
            nans: T::ZERO,
        }
    }

    /// The scan of this part of a row followed by `next`'s.
    pub(crate) fn then(&self, next: &Self) -> Self {
        Self {
            min: pick_min(self.min, next.min),
            max: pick_max(self.max, next.max),
            beyond: pick_min(self.beyond, next.beyond),
            nans: self.nans + next.nans,
        }
    }

    /// The negative pick's value.
    pub(crate) fn target(&self, negative: NegativeStrategy) -> T {
        match negative {
            NegativeStrategy::Hard => self.min,
            NegativeStrategy::Easy => self.max,
            NegativeStrategy::SemiHard if self.beyond.is_finite() => self.beyond,
            // The fallback column: the first of the largest negatives.
            NegativeStrategy::SemiHard => self.max,
        }
    }

    /// Every entry but the `members` planted NaNs was finite.
    pub(crate) fn all_finite(&self, members: usize) -> bool {
        self.min.is_finite() && self.max.is_finite() && self.nans == T::from_f64(members as f64)
    }
}

/// The scan's per-lane accumulators.
struct Accumulators<T> {
    min: [T; LANES],
    max: [T; LANES],
    beyond: [T; LANES],
    nans: [T; LANES],
}

impl<T: Float> Accumulators<T> {
    /// One statement per accumulator over whole lane arrays, every operand a value: the
    /// form LLVM's SLP vectoriser turns into packed compares and blends. (A per-lane closure
    /// capturing the threshold by reference came out as scalar pointer selects.)
    #[inline(always)]
    // `x != x` is the NaN test that compiles to one packed unordered compare.
    #[allow(clippy::eq_op)]
    fn step<const SEMI: bool>(&mut self, v: [T; LANES], threshold: T, inf: T) {
        for (a, x) in self.min.iter_mut().zip(v) {
            *a = pick_min(*a, x);
        }
        for (a, x) in self.max.iter_mut().zip(v) {
            *a = pick_max(*a, x);
        }
        for (a, x) in self.nans.iter_mut().zip(v) {
            *a += if x != x { T::ONE } else { T::ZERO };
        }
        if SEMI {
            for (a, x) in self.beyond.iter_mut().zip(v) {
                let candidate = if x > threshold { x } else { inf };
                *a = pick_min(*a, candidate);
            }
        }
    }
}

/// One branch-free pass; `semi` adds the smallest entry beyond `threshold`.
pub(crate) fn scan_values<T: Float>(row: &[T], semi: bool, threshold: T) -> ValueScan<T> {
    if semi {
        scan_values_with::<T, true>(row, threshold)
    } else {
        scan_values_with::<T, false>(row, threshold)
    }
}

fn scan_values_with<T: Float, const SEMI: bool>(row: &[T], threshold: T) -> ValueScan<T> {
    let explicit = match (T::as_f32s(row), T::as_f64s(row)) {
        // `T` is f32 here: the threshold converts exactly.
        (Some(r), _) => simd::scan_f32::<SEMI>(r, threshold.to_f64() as f32)
            .map(|(a, b, c, n)| (f64::from(a), f64::from(b), f64::from(c), n)),
        (_, Some(r)) => simd::scan_f64::<SEMI>(r, threshold.to_f64()),
        _ => None,
    };
    if let Some((min, max, beyond, nans)) = explicit {
        return ValueScan {
            min: T::from_f64(min),
            max: T::from_f64(max),
            beyond: T::from_f64(beyond),
            nans: T::from_f64(nans as f64),
        };
    }
    portable_scan::<T, SEMI>(row, threshold)
}

/// The scan in portable code (other CPUs, and the reference for the explicit one).
fn portable_scan<T: Float, const SEMI: bool>(row: &[T], threshold: T) -> ValueScan<T> {
    let inf = T::from_f64(f64::INFINITY);
    let mut acc = Accumulators {
        min: [inf; LANES],
        max: [-inf; LANES],
        beyond: [inf; LANES],
        nans: [T::ZERO; LANES],
    };
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut v = [T::ZERO; LANES];
        v.copy_from_slice(chunk);
        acc.step::<SEMI>(v, threshold, inf);
    }
    if !tail.is_empty() {
        // Pad with NaN, which every accumulator but the count ignores.
        let mut v = [T::from_f64(f64::NAN); LANES];
        v[..tail.len()].copy_from_slice(tail);
        acc.step::<SEMI>(v, threshold, inf);
        acc.nans[0] -= T::from_f64((LANES - tail.len()) as f64);
    }
    let fold = |lanes: [T; LANES], max: bool| {
        lanes.into_iter().fold(
            lanes[0],
            |a, b| if max { pick_max(a, b) } else { pick_min(a, b) },
        )
    };
    ValueScan {
        min: fold(acc.min, false),
        max: fold(acc.max, true),
        beyond: fold(acc.beyond, false),
        nans: acc.nans.into_iter().fold(T::ZERO, |a, b| a + b),
    }
}

/// The first index and the number of entries equal to `target` (NaN entries never are),
/// holding the value at that first index (which may differ from `target` in the sign of a
/// zero).
pub(crate) fn locate_value<T: Float>(row: &[T], target: T) -> Extreme<T> {
    let explicit = match (T::as_f32s(row), T::as_f64s(row)) {
        // `T` is f32 here: the target converts exactly.
        (Some(r), _) => simd::locate_f32(r, target.to_f64() as f32),
        (_, Some(r)) => simd::locate_f64(r, target.to_f64()),
        _ => None,
    };
    match explicit {
        Some((_, 0)) => Extreme::none(),
        Some((index, ties)) => Extreme {
            value: row[index],
            index,
            ties,
        },
        None => locate_where(row, target, |_| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::mine_row_reference;
    use crate::testing::{bits, Rng, NEG, POS};
    use crate::KeyClasses;

    fn check<T: Float>(row: &[T], labels: &[i64], anchor: usize, label: i64, rd: bool) {
        let ctx = RowContext {
            anchor,
            anchor_label: label,
            key_labels: labels,
            remove_diagonal: rd,
        };
        let mut classes = KeyClasses::default();
        classes.rebuild(labels);
        for p in POS {
            for n in NEG {
                let mut work = row.to_vec();
                let members = classes.members(label);
                let fast = mine_row_grouped(&mut work, &ctx, members, p, n);
                assert!(work.iter().zip(row).all(|(a, b)| bits(*a) == bits(*b)));
                let slow = mine_row_reference(row, &ctx, p, n);
                match (fast, slow) {
                    (Ok(f), Ok(s)) => {
                        assert_eq!(f, s, "{p:?}/{n:?} row {row:?} labels {labels:?}");
                        for (a, b) in [
                            (f.positive, s.positive),
                            (f.negative, s.negative),
                            (f.pos.target, s.pos.target),
                            (f.neg.target, s.neg.target),
                        ] {
                            assert_eq!(bits(a), bits(b), "{p:?}/{n:?} row {row:?}");
                        }
                    }
                    (Err(f), Err(s)) => assert!(crate::row::same_error(&f, &s), "{f:?} vs {s:?}"),
                    (f, s) => panic!("{p:?}/{n:?}: fast {f:?} slow {s:?}"),
                }
            }
        }
    }

    /// The explicit AVX2 scan against the portable one: equal extremes (up to the sign of
    /// a zero, which `ValueScan` leaves unspecified) and NaN counts, on rows of every
    /// length up to 80 (vector bodies and tails) with NaN, ±∞, signed zeros and ties.
    #[test]
    fn explicit_scan_matches_the_portable_one() {
        fn same(a: f64, b: f64) -> bool {
            a == b || (a.is_nan() && b.is_nan())
        }
        fn compare<T: Float>(
            row: &[T],
            threshold: T,
            explicit: Option<simd::Scan<f64>>,
            semi: bool,
        ) {
            let Some((min, max, beyond, nans)) = explicit else {
                // Only CPUs without AVX2 may skip the comparison.
                #[cfg(target_arch = "x86_64")]
                assert!(!std::arch::is_x86_feature_detected!("avx2"));
                return;
            };
            let p = if semi {
                portable_scan::<T, true>(row, threshold)
            } else {
                portable_scan::<T, false>(row, threshold)
            };
            let what = format!("{} semi={semi} row {row:?} threshold {threshold}", T::DTYPE);
            assert!(same(min, p.min.to_f64()), "min: {what}");
            assert!(same(max, p.max.to_f64()), "max: {what}");
            if semi {
                assert!(same(beyond, p.beyond.to_f64()), "beyond: {what}");
            }
            assert_eq!(nans as f64, p.nans.to_f64(), "nans: {what}");
        }
        let mut rng = Rng(5);
        let values = [
            -0.0,
            0.0,
            0.25,
            0.5,
            1.0,
            1e-9,
            2.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for _ in 0..3000 {
            let m = rng.below(81) as usize;
            let row: Vec<f64> = (0..m)
                .map(|_| values[rng.below(values.len() as u64) as usize])
                .collect();
            let threshold = values[rng.below(8) as usize];
            let row32: Vec<f32> = row.iter().map(|v| *v as f32).collect();
            let t32 = threshold as f32;
            let widen = |s: simd::Scan<f32>| (f64::from(s.0), f64::from(s.1), f64::from(s.2), s.3);
            compare(
                &row,
                threshold,
                simd::scan_f64::<true>(&row, threshold),
                true,
            );
            compare(
                &row,
                threshold,
                simd::scan_f64::<false>(&row, threshold),
                false,
            );
            compare(
                &row32,
                t32,
                simd::scan_f32::<true>(&row32, t32).map(widen),
                true,
            );
            compare(
                &row32,
                t32,
                simd::scan_f32::<false>(&row32, t32).map(widen),
                false,
            );
            for target in [threshold, values[rng.below(values.len() as u64) as usize]] {
                let portable = |r: &[f64], target: f64| {
                    let e = locate_where(r, target, |_| true);
                    (e.index, e.ties)
                };
                // An empty locate's index is unspecified.
                let located = |got: Option<(usize, u32)>| match got {
                    Some((_, 0)) => Some((0, 0)),
                    other => other,
                };
                if let Some(got) = located(simd::locate_f64(&row, target)) {
                    assert_eq!(got, portable(&row, target), "locate {target} in {row:?}");
                }
                let wide32: Vec<f64> = row32.iter().map(|v| f64::from(*v)).collect();
                let t32 = target as f32;
                if let Some(got) = located(simd::locate_f32(&row32, t32)) {
                    let expected = portable(&wide32, f64::from(t32));
                    assert_eq!(got, expected, "locate {t32} in {row32:?}");
                }
            }
        }
    }

    /// Long rows (the fast path's) from a few values: exact ties, signed zeros, distances
    /// tiny next to the row's largest (where the masked value differs from the raw one),
    /// sometimes a non-finite entry, against the scalar reference, bit for bit.
    #[test]
    fn grouped_mining_matches_the_scalar_reference() {
        let mut rng = Rng(11);
        let values = [-0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 1.5, 2.0, 1e-9, 3e-12, 1e-7];
        for case in 0..3000 {
            let m = 32 + rng.below(120) as usize;
            let classes = 4 + rng.below(m as u64 / 2) as i64;
            let labels: Vec<i64> = (0..m)
                .map(|_| rng.below(classes as u64) as i64 - classes / 2)
                .collect();
            let mut row: Vec<f64> = (0..m)
                .map(|_| values[rng.below(values.len() as u64) as usize])
                .collect();
            if case % 50 == 0 {
                let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][case / 50 % 3];
                row[rng.below(m as u64) as usize] = bad;
            }
            let anchor = rng.below(m as u64 + 1) as usize;
            let rd = rng.below(4) != 0;
            let label = if rng.below(5) == 0 {
                rng.below(classes as u64) as i64 - classes / 2
            } else {
                labels.get(anchor).copied().unwrap_or(0)
            };
            check(&row, &labels, anchor, label, rd);
            let row32: Vec<f32> = row.iter().map(|v| *v as f32).collect();
            check(&row32, &labels, anchor, label, rd);
        }
        let fast = FAST_ROWS.with(|c| c.get());
        // 3000 rows x 2 dtypes x 6 strategy pairs; most rows qualify.
        assert!(fast > 27_500, "only {fast} rows took the fast path");
    }
}
