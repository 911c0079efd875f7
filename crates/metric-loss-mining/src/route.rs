//! Sending a mined value's gradient back to the distance entries it came from.

use metric_loss_core::Float;

use crate::row::{Pick, PickMask, RowContext};

/// Calls `sink(j, share)` for each row entry `j` that receives part of gradient `g` flowing
/// into the mined value `pick`: the selected entry, or all exact ties of it, each with an
/// equal share (TensorFlow's rule for `reduce_max` / `reduce_min`).
pub fn route_gradient<T: Float>(
    row: &[T],
    ctx: &RowContext<'_>,
    pick: &Pick<T>,
    g: T,
    mut sink: impl FnMut(usize, T),
) {
    if pick.ties <= 1 {
        sink(pick.first, g);
        return;
    }
    let share = g / T::from_f64(f64::from(pick.ties));
    for (j, &d) in row.iter().enumerate().skip(pick.first) {
        if d != pick.target {
            continue;
        }
        let member = match pick.mask {
            PickMask::Positive => ctx.is_positive(j),
            PickMask::Negative => ctx.is_negative(j),
            PickMask::NegativeBeyond(t) => ctx.is_negative(j) && d > t,
            PickMask::Column => j == pick.first,
            PickMask::RowMin | PickMask::RowMax => true,
        };
        if member {
            sink(j, share);
        }
    }
}
