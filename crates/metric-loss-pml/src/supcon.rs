//! [`SupConLoss`]: pytorch-metric-learning's supervised contrastive loss.

use metric_loss_core::Float;

use crate::loss_config::pair_loss;
use metric_loss_core::params::finite_nonzero;

use crate::pairs::{tiny, Elements, PairFormula, Scores, TEMPERATURE};
use crate::{AvgNonZeroReducer, CosineSimilarity};

/// Minus the mean log-probability of an anchor's positives under the softmax over its
/// positives and negatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SupCon {
    temperature: f64,
}

impl PairFormula for SupCon {
    const SUB_LOSSES: usize = 1;

    /// One element per anchor row, keeping its log-sum-exp and positive count.
    fn forward<T: Float>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
        if !s.has_both() {
            return false;
        }
        let (t, tiny) = (T::from_f64(self.temperature), tiny::<T>());
        for i in 0..s.rows() {
            let row = s.row(i);
            let logit = |j: usize| s.logit(row[j], t);
            let kept = |j: &usize| s.positive(i, *j) || s.negative(i, *j);
            // PML shifts by the maximum over every column, kept or not.
            let shift = (0..s.cols).map(logit).fold(T::from_f64(f64::MIN), T::max);
            let shifted = |j: usize| logit(j) - shift;
            let lse = match (0..s.cols).filter(kept).map(shifted).reduce(T::max) {
                None => T::ZERO,
                Some(c) => {
                    c + (0..s.cols)
                        .filter(kept)
                        .fold(T::ZERO, |a, j| a + (shifted(j) - c).exp())
                        .ln()
                }
            };
            let (mut count, mut sum) = (T::ZERO, T::ZERO);
            for j in (0..s.cols).filter(|&j| s.positive(i, j)) {
                count += T::ONE;
                sum += shifted(j) - lse;
            }
            subs[0].push(i, 0, -(sum / (count + tiny)), [lse + shift, count]);
        }
        true
    }

    /// ∂elementᵢ/∂sᵢⱼ = (−Pᵢⱼ + |Pᵢ| σᵢⱼ) / (|Pᵢ| + tiny), σ the softmax over the kept
    /// columns.
    fn backward<T: Float>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
        let (t, tiny) = (T::from_f64(self.temperature), tiny::<T>());
        let dl = if s.similarity {
            T::ONE / t
        } else {
            -T::ONE / t
        };
        for (i, _, _, [lse, count], scale) in subs[0].iter() {
            if scale == T::ZERO || count == T::ZERO {
                continue;
            }
            let row = s.row(i);
            let factor = scale / (count + tiny) * dl;
            for j in 0..s.cols {
                let positive = s.positive(i, j);
                if !positive && !s.negative(i, j) {
                    continue;
                }
                let sigma = (s.logit(row[j], t) - lse).exp();
                let p = if positive { T::ONE } else { T::ZERO };
                grad[i * s.cols + j] += (count * sigma - p) * factor;
            }
        }
    }
}

pair_loss! {
    /// pytorch-metric-learning's `SupConLoss(temperature=0.1)` (supervised contrastive,
    /// Khosla et al.): for each anchor, minus the mean log-probability of its positives
    /// under the softmax of sᵢⱼ / T over its positives and negatives together:
    ///
    /// ℓᵢ = −(1/|Pᵢ|) Σ_{j∈Pᵢ} log( e^{sᵢⱼ/T} / Σ_{k∈Pᵢ∪Nᵢ} e^{sᵢₖ/T} ),  L = reduce over anchors
    ///
    /// Defaults: [`CosineSimilarity`] and [`AvgNonZeroReducer`] (an anchor without
    /// positives gives −0.0, left out of the mean). A batch without a positive or without
    /// a negative pair has loss 0. A temperature of 0 is rejected (PML returns 0 or NaN
    /// depending on the reducer).
    ///
    /// ```
    /// use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt};
    /// use metric_loss_pml::SupConLoss;
    ///
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let labels = [0, 0, 1, 1];
    /// let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2)?)?;
    /// let out = SupConLoss::new().compute(&LossInput::new(batch))?;
    /// assert!((out.loss - 4.0701127).abs() < 1e-5); // pytorch-metric-learning's value
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: SupConLoss,
    /// [`SupConLoss`]'s arguments, with PML's keyword names.
    config: SupConLossConfig,
    class: "SupConLoss",
    distance: CosineSimilarity::default(),
    reducer: AvgNonZeroReducer {},
    fields: {
        /// The softmax temperature T (default 0.1): finite and non-zero.
        temperature: f64 = 0.1,
    },
    build: |c| -> SupCon {
        SupCon { temperature: finite_nonzero("temperature", c.temperature, TEMPERATURE)? }
    }
}
