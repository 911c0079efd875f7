//! Running extrema with first-index ties and a tie count.

use metric_loss_core::Float;

/// The best value seen so far, its first index, and how many entries equal it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Extreme<T> {
    pub(crate) value: T,
    pub(crate) index: usize,
    pub(crate) ties: u32,
}

impl<T: Float> Extreme<T> {
    pub(crate) fn none() -> Self {
        Self {
            value: T::ZERO,
            index: 0,
            ties: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ties == 0
    }

    #[inline(always)]
    pub(crate) fn offer_max(&mut self, v: T, j: usize) {
        if self.ties == 0 || v > self.value {
            *self = Self {
                value: v,
                index: j,
                ties: 1,
            };
        } else if v == self.value {
            self.ties += 1;
        }
    }

    #[inline(always)]
    pub(crate) fn offer_min(&mut self, v: T, j: usize) {
        if self.ties == 0 || v < self.value {
            *self = Self {
                value: v,
                index: j,
                ties: 1,
            };
        } else if v == self.value {
            self.ties += 1;
        }
    }
}
