//! pytorch-metric-learning's reducers under their class names: [`MeanReducer`],
//! [`SumReducer`], [`AvgNonZeroReducer`], [`ThresholdReducer`] and [`DivisorReducer`].
//!
//! Each is the core's reducer of the same rule (a Keras reduction, or
//! [`Threshold`]) under PML's name, so a config spells it as PML's constructor is called:
//! `{"class_name": "AvgNonZeroReducer", "config": {}}`. Any loss of the workspace takes
//! them.

use std::sync::Arc;

use metric_loss_core::{
    Float, LossError, PartConfig, Reducer, Reduction, RegisteredReducer, SampleWeight, Threshold,
};
use serde::{Deserialize, Serialize};

/// Registers a reducer under PML's class name, reducing as `$rule` does.
macro_rules! pml_reducer {
    ($ty:ident, $class:literal, |$this:ident| $rule:expr) => {
        impl<T: Float> Reducer<T> for $ty {
            fn name(&self) -> &str {
                $class
            }

            fn reduce(
                &self,
                per_example: &[T],
                weights: &SampleWeight<'_, T>,
                scales: &mut [T],
            ) -> T {
                let $this = self;
                Reducer::<T>::reduce(&$rule, per_example, weights, scales)
            }
        }

        #[typetag::serde(name = $class)]
        impl RegisteredReducer for $ty {}

        /// A config's `reducer`.
        impl From<$ty> for PartConfig<dyn RegisteredReducer> {
            fn from(reducer: $ty) -> Self {
                PartConfig::Registered(Arc::new(reducer))
            }
        }
    };
}

/// `MeanReducer()`: the mean of every element, Σ wᵢℓᵢ / n.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeanReducer {}

pml_reducer!(MeanReducer, "MeanReducer", |_r| Reduction::SumOverBatchSize);

/// `SumReducer()`: Σ wᵢℓᵢ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumReducer {}

pml_reducer!(SumReducer, "SumReducer", |_r| Reduction::Sum);

/// `AvgNonZeroReducer()`: the mean of the elements strictly above 0 (0 when there is
/// none), so that satisfied pairs do not dilute the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvgNonZeroReducer {}

pml_reducer!(AvgNonZeroReducer, "AvgNonZeroReducer", |_r| Threshold::new(
    Some(0.0),
    None
)
.expect("0 is a valid lower bound"));

/// `DivisorReducer()`: the sum of the elements divided by the divisor the loss attaches
/// ([`ProxyAnchorLoss`](crate::ProxyAnchorLoss)'s default: its positive terms by the
/// number of classes present, its negative terms by `num_classes`). A loss that attaches
/// no divisor gets the plain sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DivisorReducer {}

pml_reducer!(DivisorReducer, "DivisorReducer", |_r| Reduction::Sum);

/// `ThresholdReducer(low=None, high=None)`: the mean of the elements strictly between
/// the bounds; at least one bound is required, as in PML.
///
/// ```
/// use metric_loss_core::{Reducer, SampleWeight};
/// use metric_loss_pml::ThresholdReducer;
///
/// let r = ThresholdReducer::new(Some(0.2), None)?;
/// let mut scales = [0.0f64; 3];
/// let loss = r.reduce(&[0.1, 0.3, 0.5], &SampleWeight::None, &mut scales);
/// assert!((loss - 0.4).abs() < 1e-12);
/// assert!(ThresholdReducer::new(None, None).is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "ThresholdConfig")]
pub struct ThresholdReducer {
    #[serde(skip_serializing_if = "Option::is_none")]
    low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    high: Option<f64>,
    #[serde(skip_serializing)]
    rule: Threshold,
}

/// [`ThresholdReducer`]'s keyword arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdConfig {
    #[serde(default)]
    low: Option<f64>,
    #[serde(default)]
    high: Option<f64>,
}

impl TryFrom<ThresholdConfig> for ThresholdReducer {
    type Error = LossError;

    fn try_from(c: ThresholdConfig) -> Result<Self, LossError> {
        ThresholdReducer::new(c.low, c.high)
    }
}

impl ThresholdReducer {
    /// Keeps the elements above `low` and below `high`.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] without either bound (PML: "At least one of low or
    /// high must be specified"), for a NaN bound, or `low ≥ high`.
    pub fn new(low: Option<f64>, high: Option<f64>) -> Result<Self, LossError> {
        if low.is_none() && high.is_none() {
            return Err(LossError::InvalidParameter {
                name: "low",
                value: f64::NAN,
                expected: "a bound: at least one of low or high must be given",
            });
        }
        Ok(Self {
            low,
            high,
            rule: Threshold::new(low, high)?,
        })
    }

    /// The lower bound.
    pub fn low(&self) -> Option<f64> {
        self.low
    }

    /// The upper bound.
    pub fn high(&self) -> Option<f64> {
        self.high
    }
}

pml_reducer!(ThresholdReducer, "ThresholdReducer", |r| r.rule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reducers_follow_pml_rules() {
        let l = [0.0f32, 0.5, -0.0, 1.5];
        let mut s = [0.0f32; 4];
        let none = SampleWeight::None;
        assert_eq!(MeanReducer {}.reduce(&l, &none, &mut s), 0.5);
        assert_eq!(SumReducer {}.reduce(&l, &none, &mut s), 2.0);
        assert_eq!(AvgNonZeroReducer {}.reduce(&l, &none, &mut s), 1.0);
        assert_eq!(s, [0.0, 0.5, 0.0, 0.5]);
        let r: ThresholdReducer = serde_json::from_str(r#"{"high": 1.0}"#).unwrap();
        assert_eq!(r.reduce(&l, &none, &mut s), 0.5 / 3.0);
        assert!(serde_json::from_str::<ThresholdReducer>("{}").is_err());
        assert!(serde_json::from_str::<MeanReducer>(r#"{"x": 1}"#).is_err());
    }
}
