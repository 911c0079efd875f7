//! Distances written as a user would, outside the workspace's distance crate: the tests of
//! every loss plug them in to check that user parts work, and that a part breaking its
//! contract is a typed error.

use metric_loss_core::{Distance, Embeddings, Float, LossError};

/// Σₜ (qₜ − kₜ)², written out pair by pair: no matrix product, no dense VJP of its own
/// (the trait's default visits every pair).
///
/// ```
/// use metric_loss_core::{Distance, Embeddings};
/// use metric_loss_testkit::HandSquaredL2;
/// let x = Embeddings::from_row_major(&[0.0f64, 0.0, 3.0, 4.0], 2, 2).unwrap();
/// let mut out = [0.0; 4];
/// HandSquaredL2.matrix(x, x, true, &mut Vec::new(), &mut out).unwrap();
/// assert_eq!(out, [0.0, 25.0, 25.0, 0.0]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HandSquaredL2;

impl<T: Float> Distance<T> for HandSquaredL2 {
    fn name(&self) -> &'static str {
        "hand_squared_l2"
    }

    fn matrix(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        _same: bool,
        _scratch: &mut Vec<T>,
        out: &mut [T],
    ) -> Result<(), LossError> {
        for i in 0..q.rows() {
            for j in 0..k.rows() {
                out[i * k.rows() + j] = q
                    .row(i)
                    .iter()
                    .zip(k.row(j))
                    .map(|(a, b)| (*a - *b) * (*a - *b))
                    .sum();
            }
        }
        Ok(())
    }

    fn pair_vjp_query(&self, q: &[T], k: &[T], _value: T, g: T, grad_q: &mut [T]) {
        for ((o, a), b) in grad_q.iter_mut().zip(q).zip(k) {
            *o += T::from_f64(2.0) * g * (*a - *b);
        }
    }

    fn pair_vjp_key(&self, q: &[T], k: &[T], _value: T, g: T, grad_k: &mut [T]) {
        for ((o, a), b) in grad_k.iter_mut().zip(q).zip(k) {
            *o -= T::from_f64(2.0) * g * (*a - *b);
        }
    }
}

/// [`HandSquaredL2`] with entry (0, 1) replaced by the value held (NaN, ±∞): a user
/// distance that breaks its contract, named `"poisoned_at_zero_one"` in errors.
#[derive(Debug, Clone, Copy)]
pub struct PoisonedAtZeroOne(pub f64);

impl<T: Float> Distance<T> for PoisonedAtZeroOne {
    fn name(&self) -> &'static str {
        "poisoned_at_zero_one"
    }

    fn matrix(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        same: bool,
        scratch: &mut Vec<T>,
        out: &mut [T],
    ) -> Result<(), LossError> {
        Distance::<T>::matrix(&HandSquaredL2, q, k, same, scratch, out)?;
        out[1] = T::from_f64(self.0);
        Ok(())
    }

    fn pair_vjp_query(&self, q: &[T], k: &[T], value: T, g: T, grad_q: &mut [T]) {
        Distance::<T>::pair_vjp_query(&HandSquaredL2, q, k, value, g, grad_q);
    }

    fn pair_vjp_key(&self, q: &[T], k: &[T], value: T, g: T, grad_k: &mut [T]) {
        Distance::<T>::pair_vjp_key(&HandSquaredL2, q, k, value, g, grad_k);
    }
}
