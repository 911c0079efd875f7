//! Helpers shared by the crate's unit tests.

use metric_loss_core::{Float, NegativeStrategy, PositiveStrategy};

/// SplitMix64, for reproducible random rows without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (up to a negligible modulo bias).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every positive strategy.
pub(crate) const POS: [PositiveStrategy; 2] = [PositiveStrategy::Hard, PositiveStrategy::Easy];

/// Every negative strategy.
pub(crate) const NEG: [NegativeStrategy; 3] = [
    NegativeStrategy::Hard,
    NegativeStrategy::Easy,
    NegativeStrategy::SemiHard,
];

/// A value's bits, widened to f64 (exact), so that signed zeros and NaNs compare.
pub(crate) fn bits<T: Float>(v: T) -> u64 {
    v.to_f64().to_bits()
}
