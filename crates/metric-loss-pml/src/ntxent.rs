//! [`NTXentLoss`]: pytorch-metric-learning's InfoNCE / NT-Xent loss.

use metric_loss_core::Float;

use crate::loss_config::pair_loss;
use metric_loss_core::params::finite_nonzero;

use crate::pairs::{tiny, Elements, PairFormula, Scores, TEMPERATURE};
use crate::{CosineSimilarity, MeanReducer};

/// −log softmax of each positive pair against its anchor's negatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NTXent {
    temperature: f64,
}

/// An anchor row's negatives: their largest logit and Σ exp(ν − max), in column order.
fn negatives<T: Float>(s: &Scores<'_, T>, i: usize, t: T) -> Option<(T, T)> {
    let row = s.row(i);
    let logits = (0..s.cols)
        .filter(|&j| s.negative(i, j))
        .map(|j| s.logit(row[j], t));
    let max = logits.clone().reduce(T::max)?;
    Some((max, logits.fold(T::ZERO, |a, v| a + (v - max).exp())))
}

impl PairFormula for NTXent {
    const SUB_LOSSES: usize = 1;

    /// Per positive pair (i, j) with logit ℓ and the anchor's negative logits ν:
    /// shift c = max(ℓ, max ν), r = e^{ℓ−c} / (Σ e^{ν−c} + e^{ℓ−c}), element −ln(r + tiny).
    /// Keeps ∂element/∂ℓ and r / (den (r + tiny)) · e^{max ν − c} for the gradient.
    fn forward<T: Float>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
        if !s.has_both() {
            return false;
        }
        let (t, tiny) = (T::from_f64(self.temperature), tiny::<T>());
        for i in 0..s.rows() {
            let negs = negatives(s, i, t);
            for (j, &v) in s.row(i).iter().enumerate() {
                if !s.positive(i, j) {
                    continue;
                }
                let l = s.logit(v, t);
                // (e^{ℓ−c}, Σ e^{ν−c}, e^{max ν − c})
                let (num, sum, shift) = match negs {
                    Some((max, sum)) if l <= max => ((l - max).exp(), sum, T::ONE),
                    Some((max, sum)) => {
                        let shift = (max - l).exp();
                        (T::ONE, sum * shift, shift)
                    }
                    None => (T::ONE, T::ZERO, T::ZERO),
                };
                let den = sum + num;
                let r = num / den;
                let value = -(r + tiny).ln();
                let d_pos = -(r * (T::ONE - r)) / (r + tiny);
                let d_neg = r / (den * (r + tiny)) * shift;
                subs[0].push(i, j, value, [d_pos, d_neg]);
            }
        }
        true
    }

    fn backward<T: Float>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
        let t = T::from_f64(self.temperature);
        // ∂logit/∂d: 1/T for a similarity, −1/T for a distance.
        let dl = if s.similarity {
            T::ONE / t
        } else {
            -T::ONE / t
        };
        let elements = &subs[0];
        let mut e = 0;
        while e < elements.values.len() {
            let i = elements.anchors[e];
            // Σ over the anchor's positives of scale · r/(den (r+tiny)) · e^{max ν − c}.
            let mut neg_weight = T::ZERO;
            while e < elements.values.len() && elements.anchors[e] == i {
                let [d_pos, d_neg] = elements.aux[e];
                let scale = elements.scales[e];
                grad[i * s.cols + elements.cols[e]] += scale * d_pos * dl;
                neg_weight += scale * d_neg;
                e += 1;
            }
            if neg_weight == T::ZERO {
                continue;
            }
            if let Some((max, _)) = negatives(s, i, t) {
                let row = s.row(i);
                for j in (0..s.cols).filter(|&j| s.negative(i, j)) {
                    let nu = s.logit(row[j], t);
                    grad[i * s.cols + j] += neg_weight * (nu - max).exp() * dl;
                }
            }
        }
    }
}

pair_loss! {
    /// pytorch-metric-learning's `NTXentLoss(temperature=0.07)` (InfoNCE, SimCLR's
    /// NT-Xent): for every positive pair (i, j), minus the log-softmax of its logit
    /// sᵢⱼ / T against the logits of anchor i's negatives, never against its other
    /// positives:
    ///
    /// ℓᵢⱼ = −log( e^{sᵢⱼ/T} / (e^{sᵢⱼ/T} + Σₖ₋ e^{sᵢₖ/T}) ),  L = reduce over the positive pairs
    ///
    /// with s the similarity (the negated distance for a distance). Defaults:
    /// [`CosineSimilarity`] and [`MeanReducer`]. A batch without a positive or without a
    /// negative pair has loss 0; a ratio that underflows gives PML's cap −ln(tiny)
    /// (87.34 in f32) with no gradient. A temperature of 0 is rejected (PML returns NaN).
    ///
    /// ```
    /// use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt};
    /// use metric_loss_pml::NTXentLossConfig;
    ///
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let labels = [0, 0, 1, 1];
    /// let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2)?)?;
    /// let loss = NTXentLossConfig::default().temperature(1.0).build()?;
    /// let out = loss.compute(&LossInput::new(batch))?;
    /// assert!((out.loss - 1.0812045).abs() < 1e-6); // pytorch-metric-learning's value
    /// assert!(NTXentLossConfig::default().temperature(0.0).build().is_err());
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: NTXentLoss,
    /// [`NTXentLoss`]'s arguments, with PML's keyword names.
    config: NTXentLossConfig,
    class: "NTXentLoss",
    distance: CosineSimilarity::default(),
    reducer: MeanReducer {},
    fields: {
        /// The softmax temperature T (default 0.07): finite and non-zero.
        temperature: f64 = 0.07,
    },
    build: |c| -> NTXent {
        NTXent { temperature: finite_nonzero("temperature", c.temperature, TEMPERATURE)? }
    }
}
