//! Mining one anchor's row.

use metric_loss_core::{Float, LossError, NegativeStrategy, PositiveStrategy};
pub use metric_loss_core::{Mined, Pick, PickMask, RowContext};

use crate::extreme::Extreme;
use crate::SENTINEL_OFFSET;

/// Why a row could not be mined.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MiningError {
    /// A NaN or infinite distance (the first one in the row).
    #[error("distance {value} at column {col} is not finite; distances must be finite to mine")]
    NonFinite {
        /// Its column.
        col: usize,
        /// Its value.
        value: f64,
    },
    /// The row has no entries (an empty key set): there is no positive or negative to pick,
    /// and TF Similarity's sentinels (row extremes ± 1e-6) would be infinite.
    #[error("the row is empty; give at least one key to mine against")]
    EmptyRow,
}

impl MiningError {
    /// The loss-level error for row `row` of a `distance` matrix of `T` with `queries`
    /// rows: [`LossError::NonFiniteDistance`] or [`LossError::EmptyKeys`].
    ///
    /// ```
    /// use metric_loss_core::LossError;
    /// use metric_loss_mining::MiningError;
    /// let e = MiningError::EmptyRow.into_loss_error::<f32>("cosine", 0, 3);
    /// assert_eq!(e, LossError::EmptyKeys { queries: 3 });
    /// ```
    pub fn into_loss_error<T: Float>(
        self,
        distance: &'static str,
        row: usize,
        queries: usize,
    ) -> LossError {
        match self {
            MiningError::NonFinite { col, value } => LossError::NonFiniteDistance {
                distance,
                row,
                col,
                value,
                dtype: T::DTYPE,
            },
            MiningError::EmptyRow => LossError::EmptyKeys { queries },
        }
    }
}

/// Lanes of the vectorised scans. Each lane keeps its own running value over the entries
/// `j ≡ lane (mod LANES)`; fixed-size lane arrays updated with branch-free selects are what
/// LLVM turns into SIMD compares and blends. The one-pass scalar scan this replaces
/// (`reference.rs`, which tracked index and ties of six extrema per entry) branched on
/// every entry and took ~60% of a TripletLoss forward pass at N = 1024 (N = 1024, D = 128,
/// f32 cosine hard/semi-hard: mining 4.1 ms -> see the benches' history in the report).
///
/// Index-and-ties tracking does not vectorise, so the scans find values only; a separate
/// [`locate`] pass finds the first index and the ties of each value the strategies pick.
const LANES: usize = 8;

/// What the main pass over a row finds (values only; ±∞ marks an empty mask, as every
/// entry is finite once `finite` holds).
struct Scan<T> {
    /// Row minimum and maximum (every entry, the diagonal included).
    min: T,
    max: T,
    /// Every entry is finite.
    finite: bool,
    /// The positive extremum the strategy needs (maximum for hard, minimum for easy).
    pos: T,
    /// The negative extremum (minimum for hard, maximum for easy and semi-hard).
    neg: T,
}

#[inline(always)]
pub(crate) fn pick_max<T: Float>(a: T, b: T) -> T {
    if b > a {
        b
    } else {
        a
    }
}

#[inline(always)]
pub(crate) fn pick_min<T: Float>(a: T, b: T) -> T {
    if b < a {
        b
    } else {
        a
    }
}

fn fold<T: Float>(lanes: [T; LANES], max: bool) -> T {
    let f = if max { pick_max } else { pick_min };
    lanes.into_iter().fold(lanes[0], f)
}

/// One branch-free pass: row min / max, a finiteness check, and the values of the positive
/// (`PMAX`: maximum, else minimum) and negative (`NMAX`) extrema. The diagonal (index
/// `diag`, or none when `usize::MAX`) is in the row extremes but not a positive.
fn scan<T: Float, const PMAX: bool, const NMAX: bool>(
    row: &[T],
    labels: &[i64],
    label: i64,
    diag: usize,
) -> Scan<T> {
    let (inf, ninf) = (T::from_f64(f64::INFINITY), T::from_f64(f64::NEG_INFINITY));
    let (pos_empty, neg_empty) = (if PMAX { ninf } else { inf }, if NMAX { ninf } else { inf });
    let mut min = [inf; LANES];
    let mut max = [ninf; LANES];
    // Stays 0 while every entry is finite: v · 0 is NaN for ±∞ and NaN.
    let mut poison = [T::ZERO; LANES];
    let mut pos = [pos_empty; LANES];
    let mut neg = [neg_empty; LANES];
    // The diagonal sits in the row extremes only: take it out of the label scan.
    let (head, tail) = if diag < row.len() {
        (diag, diag + 1)
    } else {
        (row.len(), row.len())
    };
    for (range_start, range_end) in [(0, head), (tail, row.len())] {
        let (row, labels) = (
            &row[range_start..range_end],
            &labels[range_start..range_end],
        );
        let (rows, labs) = (row.chunks_exact(LANES), labels.chunks_exact(LANES));
        let (row_tail, lab_tail) = (rows.remainder(), labs.remainder());
        let mut step = |l: usize, v: T, same: bool| {
            min[l] = pick_min(min[l], v);
            max[l] = pick_max(max[l], v);
            poison[l] += v * T::ZERO;
            let p = if same { v } else { pos_empty };
            pos[l] = if PMAX {
                pick_max(pos[l], p)
            } else {
                pick_min(pos[l], p)
            };
            let q = if same { neg_empty } else { v };
            neg[l] = if NMAX {
                pick_max(neg[l], q)
            } else {
                pick_min(neg[l], q)
            };
        };
        for (r, lb) in rows.zip(labs) {
            for l in 0..LANES {
                step(l, r[l], lb[l] == label);
            }
        }
        for (l, (v, lab)) in row_tail.iter().zip(lab_tail).enumerate() {
            step(l, *v, *lab == label);
        }
    }
    let mut out = Scan {
        min: fold(min, false),
        max: fold(max, true),
        finite: poison.iter().all(|p| *p == T::ZERO),
        pos: fold(pos, PMAX),
        neg: fold(neg, NMAX),
    };
    if head < tail {
        let v = row[head];
        out.min = pick_min(out.min, v);
        out.max = pick_max(out.max, v);
        out.finite &= v.is_finite();
    }
    out
}

/// Which entries a located value may come from.
#[derive(Clone, Copy)]
enum Mask {
    /// Same label, not the diagonal (`usize::MAX`: no diagonal).
    Positive { diag: usize },
    /// Another label.
    Negative,
}

/// The first index and the number of entries in `mask` equal to `target`, as an
/// [`Extreme`] holding the value at that first index (which may differ from `target` in the
/// sign of a zero). Empty when no entry matches.
///
/// Matches are rare (the extremum and its exact ties), so a block of entries is first
/// tested for any value equal to `target` (branch-free, vectorised), and only a block with
/// a hit is looked at entry by entry with its labels. (A scalar compare-and-branch per
/// entry here cost as much as the main scan.)
fn locate<T: Float>(row: &[T], ctx: &RowContext<'_>, mask: Mask, target: T) -> Extreme<T> {
    locate_where(row, target, |j| match mask {
        Mask::Positive { diag } => ctx.key_labels[j] == ctx.anchor_label && j != diag,
        Mask::Negative => ctx.key_labels[j] != ctx.anchor_label,
    })
}

/// The first index and the number of entries `j` with `member(j)` equal to `target`, as
/// [`locate`] describes; `member` is asked only in blocks that hold the value.
#[inline(always)]
pub(crate) fn locate_where<T: Float>(
    row: &[T],
    target: T,
    member: impl Fn(usize) -> bool,
) -> Extreme<T> {
    let mut e = Extreme::none();
    let mut visit = |start: usize, chunk: &[T]| {
        for (t, &v) in chunk.iter().enumerate() {
            let j = start + t;
            if v == target && member(j) {
                if e.is_empty() {
                    e.value = v;
                    e.index = j;
                }
                e.ties += 1;
            }
        }
    };
    // Blocks of 8 lanes x 8: an equality count per lane (compare + add, vectorised), and
    // the entry-by-entry visit only for a block with a hit.
    const BLOCK: usize = LANES * 8;
    let blocks = row.chunks_exact(BLOCK);
    let tail = blocks.remainder();
    for (b, block) in blocks.enumerate() {
        let mut hits = [0u32; LANES];
        for chunk in block.chunks_exact(LANES) {
            for l in 0..LANES {
                hits[l] += u32::from(chunk[l] == target);
            }
        }
        if hits.iter().sum::<u32>() != 0 {
            visit(b * BLOCK, block);
        }
    }
    visit(row.len() - tail.len(), tail);
    e
}

/// The smallest negative strictly beyond `threshold` (+∞ when there is none).
fn min_negative_beyond<T: Float>(row: &[T], ctx: &RowContext<'_>, threshold: T) -> T {
    let inf = T::from_f64(f64::INFINITY);
    let mut best = [inf; LANES];
    let mut step = |l: usize, v: T, same: bool| {
        let q = if !same & (v > threshold) { v } else { inf };
        best[l] = pick_min(best[l], q);
    };
    let (rows, labs) = (row.chunks_exact(LANES), ctx.key_labels.chunks_exact(LANES));
    let (row_tail, lab_tail) = (rows.remainder(), labs.remainder());
    for (r, lb) in rows.zip(labs) {
        for l in 0..LANES {
            step(l, r[l], lb[l] == ctx.anchor_label);
        }
    }
    for (l, (v, lab)) in row_tail.iter().zip(lab_tail).enumerate() {
        step(l, *v, *lab == ctx.anchor_label);
    }
    fold(best, false)
}

/// The row's extreme values and the offsets of TF Similarity's masked helpers. The index
/// and ties of the row extremes are only needed for an empty mask (a sentinel), so they
/// are found then, by a scan of their own.
pub(crate) struct RowFrame<'r, T> {
    pub(crate) row: &'r [T],
    /// `rowmin − 1e-6` in f64: the masked maximum's offset.
    pub(crate) below: f64,
    /// `rowmax + 1e-6` in f64: the masked minimum's offset.
    pub(crate) above: f64,
}

impl<T: Float> RowFrame<'_, T> {
    /// The row minimum or maximum with its first index and ties (every entry counts).
    fn row_extreme(&self, max: bool) -> Extreme<T> {
        let mut e = Extreme::none();
        for (j, &d) in self.row.iter().enumerate() {
            if max {
                e.offer_max(d, j);
            } else {
                e.offer_min(d, j);
            }
        }
        e
    }

    fn sentinel(&self, max: bool) -> Pick<T> {
        let e = self.row_extreme(max);
        Pick {
            index: 0,
            mask: if max {
                PickMask::RowMax
            } else {
                PickMask::RowMin
            },
            target: e.value,
            first: e.index,
            ties: e.ties,
        }
    }

    /// masked_max over the entries summarised by `ext`.
    pub(crate) fn masked_max(&self, ext: &Extreme<T>, mask: PickMask<T>) -> (T, Pick<T>) {
        if ext.is_empty() {
            (T::from_f64(self.below), self.sentinel(false))
        } else {
            let value = masked(ext.value, self.below);
            (value, picked(ext, mask))
        }
    }

    /// masked_min over the entries summarised by `ext`.
    pub(crate) fn masked_min(&self, ext: &Extreme<T>, mask: PickMask<T>) -> (T, Pick<T>) {
        if ext.is_empty() {
            (T::from_f64(self.above), self.sentinel(true))
        } else {
            let value = masked(ext.value, self.above);
            (value, picked(ext, mask))
        }
    }
}

/// TF's value of a masked extremum over a non-empty mask: `(d − offset) + offset` in f64,
/// rounded to `T` (exactly `d` for f32 input, within an ulp in f64).
pub(crate) fn masked<T: Float>(d: T, offset: f64) -> T {
    T::from_f64((d.to_f64() - offset) + offset)
}

fn picked<T: Float>(ext: &Extreme<T>, mask: PickMask<T>) -> Pick<T> {
    Pick {
        index: ext.index,
        mask,
        target: ext.value,
        first: ext.index,
        ties: ext.ties,
    }
}

/// Mines anchor `ctx.anchor`'s positive and negative from its row of distances (one entry
/// per key).
///
/// One vectorised pass finds the row extremes and the positive and negative extrema the
/// strategies need; semi-hard mining adds a second pass over the negatives beyond the
/// threshold. The results are those of a one-pass scalar scan, ties and signed zeros
/// included.
///
/// # Errors
/// [`MiningError::NonFinite`] at the first NaN or infinite distance;
/// [`MiningError::EmptyRow`] for an empty row.
pub fn mine_row<T: Float>(
    row: &[T],
    ctx: &RowContext<'_>,
    positive: PositiveStrategy,
    negative: NegativeStrategy,
) -> Result<Mined<T>, MiningError> {
    debug_assert_eq!(row.len(), ctx.key_labels.len());
    if row.is_empty() {
        return Err(MiningError::EmptyRow);
    }
    let hard_positive = positive == PositiveStrategy::Hard;
    let max_negative = negative != NegativeStrategy::Hard;
    let diag = if ctx.remove_diagonal && ctx.anchor < row.len() {
        ctx.anchor
    } else {
        usize::MAX
    };
    let (labels, label) = (ctx.key_labels, ctx.anchor_label);
    let mut s = match (hard_positive, max_negative) {
        (true, true) => scan::<T, true, true>(row, labels, label, diag),
        (true, false) => scan::<T, true, false>(row, labels, label, diag),
        (false, true) => scan::<T, false, true>(row, labels, label, diag),
        (false, false) => scan::<T, false, false>(row, labels, label, diag),
    };
    if !s.finite {
        let col = row
            .iter()
            .position(|d| !d.is_finite())
            .expect("a non-finite entry");
        return Err(MiningError::NonFinite {
            col,
            value: row[col].to_f64(),
        });
    }
    if diag != usize::MAX && labels[diag] != label {
        // A separate key set: key `anchor` may carry another label, and is then a negative.
        let v = row[diag];
        s.neg = if max_negative {
            pick_max(s.neg, v)
        } else {
            pick_min(s.neg, v)
        };
    }
    let frame = RowFrame {
        row,
        below: s.min.to_f64() - SENTINEL_OFFSET,
        above: s.max.to_f64() + SENTINEL_OFFSET,
    };
    // Every entry is finite, so an infinite extremum means an empty mask.
    let located = |value: T, mask: Mask| {
        if value.is_finite() {
            locate(row, ctx, mask, value)
        } else {
            Extreme::none()
        }
    };
    let pos_ext = located(s.pos, Mask::Positive { diag });
    let (p, pos) = if hard_positive {
        frame.masked_max(&pos_ext, PickMask::Positive)
    } else {
        frame.masked_min(&pos_ext, PickMask::Positive)
    };
    let (q, neg) = match negative {
        NegativeStrategy::Hard => {
            frame.masked_min(&located(s.neg, Mask::Negative), PickMask::Negative)
        }
        NegativeStrategy::Easy => {
            frame.masked_max(&located(s.neg, Mask::Negative), PickMask::Negative)
        }
        NegativeStrategy::SemiHard => {
            // The threshold is the hardest positive, whatever the positive strategy.
            let threshold = if hard_positive {
                p
            } else {
                let hardest = hardest_positive(row, ctx);
                frame.masked_max(&hardest, PickMask::Positive).0
            };
            semi_hard(row, ctx, &frame, threshold, s.neg)
        }
    };
    Ok(Mined {
        positive: p,
        negative: q,
        pos,
        neg,
        has_positive: s.pos.is_finite(),
        has_negative: s.neg.is_finite(),
        active: true,
    })
}

/// The largest positive (for easy positives with semi-hard negatives only: the main pass
/// tracked the smallest positive there).
fn hardest_positive<T: Float>(row: &[T], ctx: &RowContext<'_>) -> Extreme<T> {
    let mut e = Extreme::none();
    for (j, &d) in row.iter().enumerate() {
        if ctx.is_positive(j) {
            e.offer_max(d, j);
        }
    }
    e
}

/// TF Similarity 0.17's semi-hard negative: the closest negative beyond the threshold,
/// else the one-hot fallback at the farthest negative's column (0 without negatives).
/// `neg_max` is the largest negative, −∞ when there is none.
fn semi_hard<T: Float>(
    row: &[T],
    ctx: &RowContext<'_>,
    frame: &RowFrame<'_, T>,
    threshold: T,
    neg_max: T,
) -> (T, Pick<T>) {
    let has_negative = neg_max.is_finite();
    if has_negative && neg_max > threshold {
        let beyond = min_negative_beyond(row, ctx, threshold);
        // Entries equal to `beyond` are beyond the threshold too: locate negatives only.
        let ext = locate(row, ctx, Mask::Negative, beyond);
        return frame.masked_min(&ext, PickMask::NegativeBeyond(threshold));
    }
    // The fallback column: argmax of the masked negatives, 0 when there are none. It is in
    // the mask only if its distance is not beyond the threshold (TF's `where(D > t, N, F)`),
    // and with negatives present the farthest one is never beyond it here.
    let column = if has_negative {
        locate(row, ctx, Mask::Negative, neg_max).index
    } else {
        0
    };
    if row[column] > threshold {
        return frame.masked_min(&Extreme::none(), PickMask::Column);
    }
    let single = Extreme {
        value: row[column],
        index: column,
        ties: 1,
    };
    frame.masked_min(&single, PickMask::Column)
}

/// Two errors are the same, NaN values included (compared by bits).
#[cfg(test)]
pub(crate) fn same_error(a: &MiningError, b: &MiningError) -> bool {
    match (a, b) {
        (
            MiningError::NonFinite { col: c1, value: v1 },
            MiningError::NonFinite { col: c2, value: v2 },
        ) => c1 == c2 && v1.to_bits() == v2.to_bits(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::mine_row_reference;
    use crate::testing::{Rng, NEG, POS};

    fn check<T: Float>(row: &[T], labels: &[i64], anchor: usize, remove_diagonal: bool) {
        check_with(
            row,
            labels,
            anchor,
            labels.get(anchor).copied().unwrap_or(0),
            remove_diagonal,
        );
    }

    fn check_with<T: Float>(
        row: &[T],
        labels: &[i64],
        anchor: usize,
        anchor_label: i64,
        remove_diagonal: bool,
    ) {
        let ctx = RowContext {
            anchor,
            anchor_label,
            key_labels: labels,
            remove_diagonal,
        };
        for p in POS {
            for n in NEG {
                let fast = mine_row(row, &ctx, p, n);
                let slow = mine_row_reference(row, &ctx, p, n);
                if let (Err(f), Err(s)) = (fast, slow) {
                    assert!(same_error(&f, &s), "{f:?} vs {s:?}");
                    continue;
                }
                assert_eq!(
                    fast, slow,
                    "{p:?}/{n:?} row {row:?} labels {labels:?} anchor {anchor}"
                );
                // Identical down to the bits (signed zeros included).
                if let (Ok(f), Ok(s)) = (fast, slow) {
                    assert_eq!(f.positive.to_f64().to_bits(), s.positive.to_f64().to_bits());
                    assert_eq!(f.negative.to_f64().to_bits(), s.negative.to_f64().to_bits());
                    assert_eq!(
                        f.pos.target.to_f64().to_bits(),
                        s.pos.target.to_f64().to_bits()
                    );
                    assert_eq!(
                        f.neg.target.to_f64().to_bits(),
                        s.neg.target.to_f64().to_bits()
                    );
                }
            }
        }
    }

    /// Rows drawn from a handful of values (many exact ties, signed zeros, the diagonal as
    /// row extremum), of lengths around the lane width, against the scalar reference.
    #[test]
    fn vectorised_scan_matches_the_scalar_reference() {
        let mut rng = Rng(7);
        let values = [-0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 1.5, 2.0, -1.0, 1e-7];
        for case in 0..4000 {
            let m = 1 + rng.below(if case % 4 == 0 { 70 } else { 20 }) as usize;
            let classes = 1 + rng.below(4) as i64;
            let labels: Vec<i64> = (0..m).map(|_| rng.below(classes as u64) as i64).collect();
            let row: Vec<f64> = (0..m)
                .map(|_| values[rng.below(values.len() as u64) as usize])
                .collect();
            let anchor = rng.below(m as u64 + 1) as usize; // sometimes past the end (keys)
            let rd = rng.below(4) != 0;
            // A separate key set: the key at the anchor's index may have another label.
            let label = if rng.below(3) == 0 {
                rng.below(classes as u64 + 1) as i64
            } else {
                labels.get(anchor).copied().unwrap_or(0)
            };
            check_with(&row, &labels, anchor, label, rd);
            let row32: Vec<f32> = row.iter().map(|v| *v as f32).collect();
            check_with(&row32, &labels, anchor, label, rd);
        }
    }

    #[test]
    fn non_finite_entries_are_reported_at_their_first_column() {
        let labels = [0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 5, 9, 10] {
                let mut row = [0.5f32; 11];
                row[at] = bad;
                row[10] = if at == 10 { bad } else { f32::NAN };
                check(&row, &labels, 1, true);
            }
        }
    }
}
