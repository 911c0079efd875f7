//! [`SupConLoss`]: pytorch-metric-learning's supervised contrastive loss.

use metric_loss_distances::lanes::{exp_shifted, max, sum, DenseFloat};

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
    const STRIPS: bool = true;

    /// One element per anchor row, keeping its log-sum-exp and positive count.
    #[inline(always)]
    fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
        if !s.has_both() {
            return false;
        }
        let (t, tiny) = (T::from_f64(self.temperature), tiny::<T>());
        let none = T::from_f64(f64::NEG_INFINITY);
        let mut buf = std::mem::take(&mut subs[0].row);
        buf.resize(s.cols, T::ZERO);
        for i in s.rows() {
            let row = s.row(i);
            // PML shifts by the maximum over every column, kept or not.
            s.kept_logits(i, t, &mut buf, |_| true);
            let top = max(&buf);
            let shift = top.max(T::from_f64(f64::MIN));
            // Every key is a positive or a negative but the anchor itself when the diagonal
            // rule leaves it out: the softmax's own maximum needs a second pass only when
            // that key holds the row's.
            let (label, keys, diag) = s.row_labels(i);
            let kept_top = if keys.get(diag).is_some_and(|&y| y == label) {
                let own = std::mem::replace(&mut buf[diag], none);
                if own == top {
                    max(&buf)
                } else {
                    top
                }
            } else {
                top
            };
            // max(ℓⱼ − shift) over the kept keys, as rounding is monotone.
            let c = kept_top - shift;
            let lse = if c == none {
                T::ZERO
            } else {
                // PML's two shifts, in its order; e^−∞ = 0 drops the left-out key.
                for v in buf.iter_mut() {
                    *v = T::exp_ftz((*v - shift) - c);
                }
                c + sum(&buf).ln()
            };
            let (mut count, mut sum) = (T::ZERO, T::ZERO);
            for (&v, (positive, _)) in row.iter().zip(s.sides(i)) {
                if positive {
                    count += T::ONE;
                    sum += (s.logit(v, t) - shift) - lse;
                }
            }
            subs[0].push(i, 0, -(sum / (count + tiny)), [lse + shift, count]);
        }
        subs[0].row = buf;
        true
    }

    /// ∂elementᵢ/∂sᵢⱼ = (−Pᵢⱼ + |Pᵢ| σᵢⱼ) / (|Pᵢ| + tiny), σ the softmax over the kept
    /// columns.
    #[inline(always)]
    fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
        let (t, tiny) = (T::from_f64(self.temperature), tiny::<T>());
        let dl = if s.similarity {
            T::ONE / t
        } else {
            -T::ONE / t
        };
        for (i, _, _, [lse, count], scale) in subs[0].of_rows(s.rows()) {
            if scale == T::ZERO || count == T::ZERO {
                continue;
            }
            let factor = scale / (count + tiny) * dl;
            let out = s.grad_row(grad, i);
            // σ in place (0 off the kept columns), then the weights.
            s.kept_logits_by_side(i, t, out, |positive, negative| positive || negative);
            exp_shifted(out, lse);
            for (g, (positive, _)) in out.iter_mut().zip(s.sides(i)) {
                let p = if positive { T::ONE } else { T::ZERO };
                *g = (count * *g - p) * factor;
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
