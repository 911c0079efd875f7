//! Keras's loss reductions and sample weights.

use std::fmt;
use std::str::FromStr;

use crate::float::first_non_finite;
use crate::{Float, LossError};

/// How per-example losses become the scalar loss (Keras's `Reduction`).
///
/// With weights wᵢ and per-example losses ℓᵢ over a batch of n:
/// - `SumOverBatchSize` (and `Auto`, its Keras alias, the default): Σ wᵢℓᵢ / n. The
///   denominator is n, not Σ wᵢ: zero weights still count. An empty batch gives 0.
/// - `Sum`: Σ wᵢℓᵢ.
/// - `None`: no reduction. The per-example values are in [`crate::LossOutput::per_example`];
///   the scalar [`crate::LossOutput::loss`] and the gradient are those of Σ wᵢℓᵢ, which is
///   what TensorFlow's tape differentiates for a vector target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reduction {
    /// Keras's `"auto"`: the same numbers as [`Reduction::SumOverBatchSize`].
    #[default]
    Auto,
    /// Σ wᵢℓᵢ / n.
    SumOverBatchSize,
    /// Σ wᵢℓᵢ.
    Sum,
    /// Per-example values; the scalar and gradient are those of Σ wᵢℓᵢ.
    None,
}

impl Reduction {
    /// Every reduction, in Keras's spelling.
    pub const NAMES: [&'static str; 4] = ["auto", "sum_over_batch_size", "sum", "none"];

    /// Keras's name for the reduction.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Auto => "auto",
            Reduction::SumOverBatchSize => "sum_over_batch_size",
            Reduction::Sum => "sum",
            Reduction::None => "none",
        }
    }

    /// The factor each weighted per-example loss is multiplied by in the scalar loss:
    /// `1/n` for the mean reductions (0 for an empty batch), 1 otherwise.
    pub fn example_scale(self, n: usize) -> f64 {
        match self {
            Reduction::Auto | Reduction::SumOverBatchSize if n > 0 => 1.0 / n as f64,
            Reduction::Auto | Reduction::SumOverBatchSize => 0.0,
            Reduction::Sum | Reduction::None => 1.0,
        }
    }
}

impl fmt::Display for Reduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Reduction {
    type Err = LossError;

    /// Parses Keras's names, case-insensitively and ignoring surrounding white space.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Reduction::Auto),
            "sum_over_batch_size" => Ok(Reduction::SumOverBatchSize),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            _ => Err(LossError::UnknownReduction {
                given: s.to_owned(),
            }),
        }
    }
}

/// Per-example weights (Keras's `sample_weight`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum SampleWeight<'a, T> {
    /// Every weight is 1.
    #[default]
    None,
    /// One weight for every example.
    Scalar(T),
    /// One weight per query example.
    PerExample(&'a [T]),
}

impl<T: Float> SampleWeight<'_, T> {
    /// The weight of example `i` (1 without weights).
    ///
    /// # Panics
    /// If per-example weights are shorter than `i + 1`; [`SampleWeight::check`] rules that out.
    #[inline]
    pub fn get(&self, i: usize) -> T {
        match self {
            SampleWeight::None => T::ONE,
            SampleWeight::Scalar(w) => *w,
            SampleWeight::PerExample(w) => w[i],
        }
    }

    /// Checks the weights fit a batch of `n` and are finite.
    ///
    /// # Errors
    /// [`LossError::LengthMismatch`] or [`LossError::NonFiniteWeight`].
    pub fn check(&self, n: usize) -> Result<(), LossError> {
        match self {
            SampleWeight::None => Ok(()),
            SampleWeight::Scalar(w) if w.is_finite() => Ok(()),
            SampleWeight::Scalar(w) => Err(LossError::NonFiniteWeight {
                index: 0,
                value: w.to_f64(),
            }),
            SampleWeight::PerExample(w) if w.len() != n => Err(LossError::LengthMismatch {
                what: "sample_weight",
                got: w.len(),
                reference: "the query batch",
                expected: n,
            }),
            SampleWeight::PerExample(w) => match first_non_finite(w) {
                None => Ok(()),
                Some(index) => Err(LossError::NonFiniteWeight {
                    index,
                    value: w[index].to_f64(),
                }),
            },
        }
    }
}

/// Applies `reduction` and `weights` to per-example losses.
///
/// The sum is accumulated in `f64`. A zero weight contributes exactly 0, even when its
/// loss is infinite (Keras would give NaN there).
pub fn reduce<T: Float>(
    per_example: &[T],
    weights: &SampleWeight<'_, T>,
    reduction: Reduction,
) -> T {
    let scale = reduction.example_scale(per_example.len());
    let sum: f64 = per_example
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let w = weights.get(i);
            if w == T::ZERO {
                0.0
            } else {
                (w * *l).to_f64()
            }
        })
        .sum();
    T::from_f64(sum * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_example_from_the_spec() {
        // Per-anchor hinge [0, 0.3, 0.1, 0] with weights [1, 2, 0, 1] => 0.6 / 4.
        let l = [0.0f32, 0.3, 0.1, 0.0];
        let w = [1.0f32, 2.0, 0.0, 1.0];
        let got = reduce(&l, &SampleWeight::PerExample(&w), Reduction::Auto);
        assert!((got - 0.15).abs() < 1e-7, "{got}");
        assert_eq!(
            reduce(&l, &SampleWeight::PerExample(&w), Reduction::Sum),
            0.6
        );
    }

    #[test]
    fn empty_batch_reduces_to_zero() {
        let none: [f64; 0] = [];
        assert_eq!(reduce(&none, &SampleWeight::None, Reduction::Auto), 0.0);
    }

    #[test]
    fn names_round_trip() {
        for name in Reduction::NAMES {
            assert_eq!(name.parse::<Reduction>().unwrap().name(), name);
        }
        assert!(matches!(
            "mean".parse::<Reduction>(),
            Err(LossError::UnknownReduction { .. })
        ));
    }

    #[test]
    fn weights_are_checked() {
        assert!(SampleWeight::PerExample(&[1.0f32]).check(2).is_err());
        assert!(SampleWeight::PerExample(&[1.0f32, f32::NAN])
            .check(2)
            .is_err());
        assert!(SampleWeight::Scalar(f64::INFINITY).check(2).is_err());
        assert!(SampleWeight::Scalar(-2.0f64).check(2).is_ok());
    }
}
