//! What the dense losses share beyond the row driver (`metric_loss_triplet::compute_rows`)
//! and their declaration (`dense_loss!`): each thread's row memory, the size limit, the
//! `RowLoss` items besides the formula.

/// The largest distance matrix a call may allocate, in bytes (16 GiB, as for `TripletLoss`):
/// larger batches get [`metric_loss_core::LossError::TooLarge`] instead of an allocation
/// failure. The dense losses keep two `n x m` matrices (distances and their gradient) and
/// count both.
pub const MAX_MATRIX_BYTES: u128 = metric_loss_triplet::MAX_DISTANCE_MATRIX_BYTES;

use crate::lanes::Side;

/// The built-in dense losses' memory for one row, one per thread
/// ([`RowLoss::Scratch`](metric_loss_triplet::RowLoss::Scratch)): each key's side of the
/// row. Opaque; what it holds on entry is whatever the thread's previous row left, so a
/// formula overwrites what it reads.
#[derive(Debug, Default)]
pub struct RowScratch {
    side: Vec<Side>,
}

impl RowScratch {
    /// The side buffer, `m` long (contents unspecified).
    pub(crate) fn sides(&mut self, m: usize) -> &mut [Side] {
        self.side.resize(m, crate::lanes::NEITHER);
        &mut self.side[..m]
    }
}

/// A built-in row loss's `RowLoss` items besides its formula: each thread's key sides, and
/// its `name`, `parts` and `remove_diagonal` fields.
macro_rules! row_loss_fields {
    () => {
        type Scratch = $crate::common::RowScratch;

        fn name(&self) -> &str {
            &self.name
        }

        fn parts(&self) -> &metric_loss_triplet::DenseParts {
            &self.parts
        }

        fn remove_diagonal(&self) -> bool {
            self.remove_diagonal
        }
    };
}
pub(crate) use row_loss_fields;

#[cfg(feature = "serde")]
pub(crate) fn is_true(v: &bool) -> bool {
    *v
}
