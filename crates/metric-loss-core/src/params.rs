//! Checks of a loss's hyper-parameters, run once when the loss is built, each failing with
//! [`LossError::InvalidParameter`] naming the parameter and what it accepts.
//!
//! ```
//! use metric_loss_core::params;
//! assert_eq!(params::finite("margin", 0.5).unwrap(), 0.5);
//! assert!(params::finite("margin", f64::NAN).is_err());
//! let expected = "a finite, non-zero number (the scores are divided by it)";
//! assert!(params::finite_nonzero("temperature", 0.0, expected).is_err());
//! ```

use crate::LossError;

/// `value` if it is finite.
///
/// # Errors
/// [`LossError::InvalidParameter`] for NaN or ±∞.
pub fn finite(name: &'static str, value: f64) -> Result<f64, LossError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(LossError::InvalidParameter {
            name,
            value,
            expected: "a finite number",
        })
    }
}

/// `value` if it is finite and not zero (a parameter the loss divides by); `expected`
/// says what the parameter accepts, for the error.
///
/// # Errors
/// [`LossError::InvalidParameter`] for NaN, ±∞ or ±0.
pub fn finite_nonzero(
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<f64, LossError> {
    if value.is_finite() && value != 0.0 {
        Ok(value)
    } else {
        Err(LossError::InvalidParameter {
            name,
            value,
            expected,
        })
    }
}
