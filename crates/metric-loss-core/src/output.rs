//! What a loss returns.

use crate::float::first_non_finite;
use crate::{Float, LossError};

/// Which non-finite values [`LossOutput::check_finite`] lets through. Gradients must be
/// finite whatever the allowance: an infinite gradient entry is never usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AllowNonFinite {
    /// Every per-example value, the loss and every gradient entry must be finite.
    #[default]
    Never,
    /// A per-example value may be +∞, and the loss it makes may then be +∞ or −∞ (by
    /// its weight's sign), never NaN. For a loss that documents such values:
    /// `TripletLoss`'s reference soft margin, whose soft-plus (TF Similarity's formula)
    /// overflows to +∞ for huge distances.
    PositiveInfinitePerExample,
}

/// The result of one loss evaluation. Reuse one across calls: its buffers keep their
/// capacity, so steady-state training allocates nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LossOutput<T> {
    /// ℓᵢ for each query, **without** sample weights (shape `[n]`).
    pub per_example: Vec<T>,
    /// The reduced, weighted loss (see [`crate::Reduction`]).
    pub loss: T,
    /// d loss / d query embeddings, row-major `n x dims`. When the keys are the queries,
    /// this is the total gradient with respect to the batch. Empty when the gradient was
    /// not requested.
    pub grad_queries: Vec<T>,
    /// d loss / d key embeddings, row-major `m x dims`, for a separate key set; empty
    /// otherwise.
    pub grad_keys: Vec<T>,
    /// d loss / d the loss's learnable parameters, row-major in the shape of
    /// [`MetricLoss::parameter_shape`](crate::MetricLoss::parameter_shape); empty for a
    /// loss without parameters or when the gradient was not requested.
    pub grad_parameters: Vec<T>,
}

impl<T: Float> LossOutput<T> {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resets the buffers for a batch of `n` queries, `m` separate keys (0 when the keys
    /// are the queries) and `dims` columns, keeping their capacity.
    pub fn reset(&mut self, n: usize, m: usize, dims: usize, gradient: bool) {
        self.loss = T::ZERO;
        fill(&mut self.per_example, n);
        fill(&mut self.grad_queries, if gradient { n * dims } else { 0 });
        fill(&mut self.grad_keys, if gradient { m * dims } else { 0 });
        self.grad_parameters.clear();
    }

    /// Sizes [`LossOutput::grad_parameters`] to `len` zeros when `gradient` is set (empty
    /// otherwise), keeping its capacity: a loss with parameters calls it after
    /// [`LossOutput::reset`].
    pub fn reset_parameters(&mut self, len: usize, gradient: bool) {
        fill(&mut self.grad_parameters, if gradient { len } else { 0 });
    }

    /// Checks that the output holds no ±∞ or NaN beyond what `allow` permits, so that a
    /// loss can end with `out.check_finite(..)` and never return a non-finite number
    /// silently: finite inputs can still overflow (a huge margin or distance, a sample
    /// weight times a large per-example loss, the reduced sum, a gradient entry).
    ///
    /// The per-example values are checked first, then the loss, then the gradient
    /// (`grad_queries` followed by `grad_keys`, indexed as one flat sequence), then the
    /// parameters' gradient.
    ///
    /// # Errors
    /// [`LossError::NonFiniteResult`] naming the first offending value: `what` is
    /// `"per-example loss"` (index: the example), `"loss"` (index 0), `"gradient"` (index:
    /// the flat gradient entry) or `"parameter gradient"` (index: its flat entry).
    ///
    /// # Example
    /// ```
    /// use metric_loss_core::{AllowNonFinite, LossError, LossOutput};
    ///
    /// let mut out = LossOutput::<f32>::new();
    /// out.reset(2, 0, 1, true);
    /// out.per_example = vec![1.0, f32::INFINITY];
    /// out.loss = f32::INFINITY;
    /// // Documented +∞ per-example values (and the loss they make) may be allowed ...
    /// assert!(out.check_finite(AllowNonFinite::PositiveInfinitePerExample).is_ok());
    /// // ... but are an error otherwise.
    /// let err = out.check_finite(AllowNonFinite::Never).unwrap_err();
    /// assert!(matches!(
    ///     err,
    ///     LossError::NonFiniteResult { what: "per-example loss", index: 1, dtype: "f32", .. }
    /// ));
    /// // A non-finite gradient entry is always an error.
    /// out.grad_queries[1] = f32::NAN;
    /// let err = out.check_finite(AllowNonFinite::PositiveInfinitePerExample).unwrap_err();
    /// assert!(matches!(err, LossError::NonFiniteResult { what: "gradient", index: 1, .. }));
    /// ```
    pub fn check_finite(&self, allow: AllowNonFinite) -> Result<(), LossError> {
        let inf_allowed = allow == AllowNonFinite::PositiveInfinitePerExample;
        let allowed = |v: T| inf_allowed && v.to_f64() == f64::INFINITY;
        let error = |what, index, value: T| LossError::NonFiniteResult {
            what,
            index,
            value: value.to_f64(),
            dtype: T::DTYPE,
        };
        let non_finite_example = first_non_finite(&self.per_example);
        if non_finite_example.is_some() {
            if let Some(i) = self
                .per_example
                .iter()
                .position(|v| !v.is_finite() && !allowed(*v))
            {
                return Err(error("per-example loss", i, self.per_example[i]));
            }
        }
        // An allowed +∞ example makes the loss ±∞ (by its weight's sign); NaN would mean
        // ∞ − ∞ or 0·∞, which no allowance covers.
        let loss_allowed = non_finite_example.is_some() && !self.loss.to_f64().is_nan();
        if !self.loss.is_finite() && !loss_allowed {
            return Err(error("loss", 0, self.loss));
        }
        let (queries, keys) = (&self.grad_queries, &self.grad_keys);
        let bad =
            first_non_finite(queries).or_else(|| first_non_finite(keys).map(|i| queries.len() + i));
        if let Some(i) = bad {
            let g = queries
                .get(i)
                .copied()
                .unwrap_or_else(|| keys[i - queries.len()]);
            return Err(error("gradient", i, g));
        }
        if let Some(i) = first_non_finite(&self.grad_parameters) {
            return Err(error("parameter gradient", i, self.grad_parameters[i]));
        }
        Ok(())
    }

    /// The gradient row of query `i`.
    pub fn grad_query_row(&self, i: usize, dims: usize) -> &[T] {
        &self.grad_queries[i * dims..(i + 1) * dims]
    }
}

fn fill<T: Float>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::ZERO);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(per_example: Vec<f64>, loss: f64, grad_keys: Vec<f64>) -> LossOutput<f64> {
        LossOutput {
            per_example,
            loss,
            grad_queries: vec![0.0; 2],
            grad_keys,
            grad_parameters: vec![],
        }
    }

    fn what(r: Result<(), LossError>) -> Option<(&'static str, usize)> {
        match r {
            Ok(()) => None,
            Err(LossError::NonFiniteResult { what, index, .. }) => Some((what, index)),
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    #[test]
    fn finite_output_passes_both_allowances() {
        let out = output(vec![1.0, 2.0], 3.0, vec![0.5]);
        assert_eq!(what(out.check_finite(AllowNonFinite::Never)), None);
        let soft = AllowNonFinite::PositiveInfinitePerExample;
        assert_eq!(what(out.check_finite(soft)), None);
    }

    #[test]
    fn allowance_covers_positive_infinity_only() {
        let soft = AllowNonFinite::PositiveInfinitePerExample;
        // +∞ examples: the loss may be −∞ (a negative weight) but not NaN.
        let out = output(vec![f64::INFINITY, 1.0], f64::NEG_INFINITY, vec![]);
        assert_eq!(what(out.check_finite(soft)), None);
        let out = output(vec![f64::INFINITY, 1.0], f64::NAN, vec![]);
        assert_eq!(what(out.check_finite(soft)), Some(("loss", 0)));
        let out = output(vec![1.0, f64::NEG_INFINITY], f64::NEG_INFINITY, vec![]);
        assert_eq!(what(out.check_finite(soft)), Some(("per-example loss", 1)));
        // Finite examples whose weighted sum overflowed: never allowed.
        let out = output(vec![1.0, 1.0], f64::INFINITY, vec![]);
        assert_eq!(what(out.check_finite(soft)), Some(("loss", 0)));
    }

    #[test]
    fn gradient_index_runs_through_queries_then_keys() {
        let out = output(vec![1.0], 1.0, vec![0.0, f64::NAN]);
        let soft = AllowNonFinite::PositiveInfinitePerExample;
        assert_eq!(what(out.check_finite(soft)), Some(("gradient", 3)));
        let mut out = output(vec![1.0], 1.0, vec![]);
        out.grad_parameters = vec![0.0, f64::INFINITY];
        let never = AllowNonFinite::Never;
        assert_eq!(
            what(out.check_finite(never)),
            Some(("parameter gradient", 1))
        );
    }
}
