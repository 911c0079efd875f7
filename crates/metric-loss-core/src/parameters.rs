//! Learnable parameters a loss owns (a classifier's weight matrix, a proxy per class): their
//! shape, a thread-safe master copy in f64, and a seeded initialiser.
//!
//! A loss with parameters keeps a [`Parameters`] and answers
//! [`MetricLoss::parameter_shape`](crate::MetricLoss::parameter_shape),
//! [`read_parameters`](crate::MetricLoss::read_parameters) and
//! [`set_parameters`](crate::MetricLoss::set_parameters) through it; each call writes the
//! gradient with respect to them into [`LossOutput::grad_parameters`](crate::LossOutput).
//!
//! ```
//! use metric_loss_core::{ParameterShape, Parameters};
//!
//! let shape = ParameterShape { name: "W", rows: 2, cols: 3 };
//! let params = Parameters::normal(shape, 1.0, 7);
//! let mut w = vec![0.0; 6];
//! params.read(&mut w)?;
//! assert_eq!(Parameters::normal(shape, 1.0, 7).snapshot(), w); // the seed fixes the draw
//! params.set(&[1.0, 0.0, -1.0, 0.0, 1.0, 0.0])?;
//! assert!(params.set(&[f64::NAN; 6]).is_err());
//! # Ok::<(), metric_loss_core::LossError>(())
//! ```

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{Float, LossError};

/// The name and row-major shape of a loss's parameter matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParameterShape {
    /// The parameter's name in the reference package (`"W"`, `"proxies"`).
    pub name: &'static str,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
}

impl ParameterShape {
    /// `rows * cols` (saturating: a loss refuses a shape that large when it is built).
    pub fn len(&self) -> usize {
        self.rows.saturating_mul(self.cols)
    }

    /// Whether the matrix holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A parameter matrix: its shape and its values in f64, behind a lock so that a loss
/// computed through `&self` (and shared between threads) can still be set by its owner.
///
/// The values are the master copy: an f32 call converts them into its own scratch, as the
/// reference package casts its parameters to the embeddings' dtype at every call.
#[derive(Debug)]
pub struct Parameters {
    shape: ParameterShape,
    values: RwLock<Vec<f64>>,
}

impl Clone for Parameters {
    fn clone(&self) -> Self {
        Self {
            shape: self.shape,
            values: RwLock::new(self.snapshot()),
        }
    }
}

impl Parameters {
    /// A matrix of i.i.d. normal values of mean 0 and standard deviation `std`, drawn from
    /// `seed` by [`normal_values`].
    pub fn normal(shape: ParameterShape, std: f64, seed: u64) -> Self {
        let mut values = vec![0.0; shape.len()];
        normal_values(seed, std, &mut values);
        Self {
            shape,
            values: RwLock::new(values),
        }
    }

    /// The shape.
    pub fn shape(&self) -> ParameterShape {
        self.shape
    }

    fn values(&self) -> RwLockReadGuard<'_, Vec<f64>> {
        // A writer that panicked left whole, finite values behind (`set` checks before it
        // writes), so a poisoned lock still holds a usable matrix.
        self.values.read().unwrap_or_else(|e| e.into_inner())
    }

    fn values_mut(&self) -> RwLockWriteGuard<'_, Vec<f64>> {
        self.values.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the values, row-major.
    pub fn snapshot(&self) -> Vec<f64> {
        self.values().clone()
    }

    fn check_len(&self, got: usize) -> Result<(), LossError> {
        if got == self.shape.len() {
            Ok(())
        } else {
            Err(LossError::BufferLength {
                what: self.shape.name,
                got,
                rows: self.shape.rows,
                cols: self.shape.cols,
                expected: self.shape.len(),
            })
        }
    }

    /// Copies the values into `out` (row-major).
    ///
    /// # Errors
    /// [`LossError::BufferLength`] when `out` does not hold `rows * cols` values.
    pub fn read(&self, out: &mut [f64]) -> Result<(), LossError> {
        self.check_len(out.len())?;
        out.copy_from_slice(&self.values());
        Ok(())
    }

    /// Replaces the values (row-major). Nothing changes when the values are refused.
    ///
    /// # Errors
    /// [`LossError::BufferLength`] for the wrong number of values,
    /// [`LossError::NonFiniteParameter`] for NaN or ±∞.
    pub fn set(&self, values: &[f64]) -> Result<(), LossError> {
        self.check_len(values.len())?;
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(LossError::NonFiniteParameter {
                name: self.shape.name,
                index,
                value: values[index],
            });
        }
        self.values_mut().copy_from_slice(values);
        Ok(())
    }

    /// Writes the values, rounded to `T`, into `out` (cleared first; its capacity is kept).
    pub fn copy_into<T: Float>(&self, out: &mut Vec<T>) {
        out.clear();
        out.extend(self.values().iter().map(|v| T::from_f64(*v)));
    }
}

/// The splitmix64 generator: one 64-bit state, advanced by a constant and mixed at each
/// draw. Tiny, seeded, the same stream on every platform, no dependency: what
/// [`normal_values`] draws from, and test data anywhere in the workspace.
///
/// ```
/// use metric_loss_core::SplitMix64;
/// let mut rng = SplitMix64::new(1);
/// let (a, b) = (rng.next_u64(), rng.next_u64());
/// assert_ne!(a, b);
/// assert_eq!(SplitMix64::new(1).next_u64(), a);
/// assert!((0.0..=1.0).contains(&rng.uniform()));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The generator at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in (0, 1]: the top 53 bits, shifted away from 0 so that its log is
    /// finite.
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal draw (Box–Muller, its cosine branch).
    pub fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// A uniform draw in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Fills `out` with i.i.d. normal values of mean 0 and standard deviation `std`, drawn
/// from `seed` (splitmix64 and the Box–Muller transform). The same seed gives the same
/// values on every platform. The distributions are the reference package's (a standard
/// normal for a classifier's weights, √(2 / num_classes) for ProxyAnchor's proxies); the
/// numbers are not torch's random stream.
///
/// ```
/// let mut v = vec![0.0; 10_000];
/// metric_loss_core::normal_values(3, 2.0, &mut v);
/// let mean = v.iter().sum::<f64>() / v.len() as f64;
/// let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
/// assert!(mean.abs() < 0.1 && (std - 2.0).abs() < 0.1);
/// ```
pub fn normal_values(seed: u64, std: f64, out: &mut [f64]) {
    let mut rng = SplitMix64::new(seed);
    for pair in out.chunks_mut(2) {
        let (u, v) = (rng.uniform(), rng.uniform());
        let r = (-2.0 * u.ln()).sqrt() * std;
        let angle = std::f64::consts::TAU * v;
        pair[0] = r * angle.cos();
        if let Some(second) = pair.get_mut(1) {
            *second = r * angle.sin();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ParameterShape = ParameterShape {
        name: "W",
        rows: 3,
        cols: 4,
    };

    #[test]
    fn refused_values_leave_the_matrix_unchanged() {
        let p = Parameters::normal(SHAPE, 1.0, 0);
        let before = p.snapshot();
        let err = p.set(&[1.0; 11]).unwrap_err();
        assert!(matches!(
            err,
            LossError::BufferLength {
                what: "W",
                got: 11,
                expected: 12,
                ..
            }
        ));
        let mut bad = vec![0.0; 12];
        bad[5] = f64::INFINITY;
        let err = p.set(&bad).unwrap_err();
        assert!(matches!(
            err,
            LossError::NonFiniteParameter {
                name: "W",
                index: 5,
                ..
            }
        ));
        assert_eq!(p.snapshot(), before);
        assert!(p.read(&mut [0.0; 3]).is_err());
    }

    #[test]
    fn seeds_differ_and_clones_are_independent() {
        let (a, b) = (
            Parameters::normal(SHAPE, 1.0, 0),
            Parameters::normal(SHAPE, 1.0, 1),
        );
        assert_ne!(a.snapshot(), b.snapshot());
        let c = a.clone();
        c.set(&[0.5; 12]).unwrap();
        assert_ne!(a.snapshot(), c.snapshot());
        let mut f32s = Vec::new();
        c.copy_into::<f32>(&mut f32s);
        assert_eq!(f32s, vec![0.5f32; 12]);
    }
}
