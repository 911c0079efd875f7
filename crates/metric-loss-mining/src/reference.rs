//! The original one-pass scalar miner, kept as the reference the vectorised [`crate::mine_row`]
//! is tested against (results must be identical, ties and signed zeros included).

use metric_loss_core::{Float, NegativeStrategy, PositiveStrategy};

use crate::extreme::Extreme;
use crate::row::{Mined, MiningError, Pick, PickMask, RowContext};
use crate::SENTINEL_OFFSET;

/// Row extremes and the offsets of TF Similarity's masked helpers.
struct RowFrame<T> {
    min: Extreme<T>,
    max: Extreme<T>,
    /// `rowmin − 1e-6` in f64: the masked maximum's offset.
    below: f64,
    /// `rowmax + 1e-6` in f64: the masked minimum's offset.
    above: f64,
}

impl<T: Float> RowFrame<T> {
    /// masked_max over the entries summarised by `ext`.
    fn masked_max(&self, ext: &Extreme<T>, mask: PickMask<T>) -> (T, Pick<T>) {
        if ext.is_empty() {
            let pick = Pick {
                index: 0,
                mask: PickMask::RowMin,
                target: self.min.value,
                first: self.min.index,
                ties: self.min.ties,
            };
            (T::from_f64(self.below), pick)
        } else {
            let value = T::from_f64((ext.value.to_f64() - self.below) + self.below);
            (value, picked(ext, mask))
        }
    }

    /// masked_min over the entries summarised by `ext`.
    fn masked_min(&self, ext: &Extreme<T>, mask: PickMask<T>) -> (T, Pick<T>) {
        if ext.is_empty() {
            let pick = Pick {
                index: 0,
                mask: PickMask::RowMax,
                target: self.max.value,
                first: self.max.index,
                ties: self.max.ties,
            };
            (T::from_f64(self.above), pick)
        } else {
            let value = T::from_f64((ext.value.to_f64() - self.above) + self.above);
            (value, picked(ext, mask))
        }
    }
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
/// # Errors
/// [`MiningError`] at the first NaN or infinite distance.
pub(crate) fn mine_row_reference<T: Float>(
    row: &[T],
    ctx: &RowContext<'_>,
    positive: PositiveStrategy,
    negative: NegativeStrategy,
) -> Result<Mined<T>, MiningError> {
    debug_assert_eq!(row.len(), ctx.key_labels.len());
    let mut min = Extreme::none();
    let mut max = Extreme::none();
    let (mut pos_max, mut pos_min) = (Extreme::none(), Extreme::none());
    let (mut neg_max, mut neg_min) = (Extreme::none(), Extreme::none());
    for (j, &d) in row.iter().enumerate() {
        if !d.is_finite() {
            return Err(MiningError::NonFinite {
                col: j,
                value: d.to_f64(),
            });
        }
        min.offer_min(d, j);
        max.offer_max(d, j);
        if ctx.is_negative(j) {
            neg_max.offer_max(d, j);
            neg_min.offer_min(d, j);
        } else if ctx.is_positive(j) {
            pos_max.offer_max(d, j);
            pos_min.offer_min(d, j);
        }
    }
    let frame = RowFrame {
        below: min.value.to_f64() - SENTINEL_OFFSET,
        above: max.value.to_f64() + SENTINEL_OFFSET,
        min,
        max,
    };

    let hardest_positive = frame.masked_max(&pos_max, PickMask::Positive);
    let (p, pos) = match positive {
        PositiveStrategy::Hard => hardest_positive,
        PositiveStrategy::Easy => frame.masked_min(&pos_min, PickMask::Positive),
    };
    let (q, neg) = match negative {
        NegativeStrategy::Hard => frame.masked_min(&neg_min, PickMask::Negative),
        NegativeStrategy::Easy => frame.masked_max(&neg_max, PickMask::Negative),
        NegativeStrategy::SemiHard => semi_hard(row, ctx, &frame, hardest_positive.0, &neg_max),
    };
    Ok(Mined {
        positive: p,
        negative: q,
        pos,
        neg,
        has_positive: !pos_max.is_empty(),
        has_negative: !neg_max.is_empty(),
        active: true,
    })
}

/// TF Similarity 0.17's semi-hard negative: the closest negative beyond the threshold,
/// else the one-hot fallback at the farthest negative's column (0 without negatives).
fn semi_hard<T: Float>(
    row: &[T],
    ctx: &RowContext<'_>,
    frame: &RowFrame<T>,
    threshold: T,
    neg_max: &Extreme<T>,
) -> (T, Pick<T>) {
    let mut beyond = Extreme::none();
    if !neg_max.is_empty() && neg_max.value > threshold {
        for (j, &d) in row.iter().enumerate() {
            if d > threshold && ctx.is_negative(j) {
                beyond.offer_min(d, j);
            }
        }
    }
    if !beyond.is_empty() {
        return frame.masked_min(&beyond, PickMask::NegativeBeyond(threshold));
    }
    // The fallback column: argmax of the masked negatives, 0 when there are none. It is in
    // the mask only if its distance is not beyond the threshold (TF's `where(D > t, N, F)`),
    // and with negatives present the farthest one is never beyond it here.
    let column = if neg_max.is_empty() { 0 } else { neg_max.index };
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
