//! [`NTXentLoss`]: pytorch-metric-learning's InfoNCE / NT-Xent loss.

use metric_loss_distances::lanes::{exp_shifted_sum, max, DenseFloat};

use crate::loss_config::pair_loss;
use metric_loss_core::params::finite_nonzero;

use crate::pairs::{tiny, Elements, PairFormula, Scores, TEMPERATURE};
use crate::{CosineSimilarity, MeanReducer};

/// −log softmax of each positive pair against its anchor's negatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NTXent {
    temperature: f64,
}

/// An anchor row's negatives: their largest logit and Σ exp(ν − max), with `row` (`cols`
/// long) left holding each column's exp(ν − max) (0 for the other columns).
#[inline(always)]
fn negatives<T: DenseFloat>(s: &Scores<'_, T>, i: usize, t: T, row: &mut [T]) -> Option<(T, T)> {
    s.kept_logits_by_side(i, t, row, |_, negative| negative);
    let top = max(row);
    if top == T::from_f64(f64::NEG_INFINITY) {
        row.fill(T::ZERO);
        return None;
    }
    Some((top, exp_shifted_sum(row, top)))
}

impl PairFormula for NTXent {
    const SUB_LOSSES: usize = 1;
    const STRIPS: bool = true;

    /// Per positive pair (i, j) with logit ℓ and the anchor's negative logits ν:
    /// shift c = max(ℓ, max ν), r = e^{ℓ−c} / (Σ e^{ν−c} + e^{ℓ−c}), element −ln(r + tiny).
    /// Keeps ∂element/∂ℓ and r / (den (r + tiny)) · e^{max ν − c} for the gradient.
    #[inline(always)]
    fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
        if !s.has_both() {
            return false;
        }
        let (t, tiny) = (T::from_f64(self.temperature), tiny::<T>());
        let mut row = std::mem::take(&mut subs[0].row);
        row.resize(s.cols, T::ZERO);
        for i in s.rows() {
            let negs = negatives(s, i, t, &mut row);
            for (j, (&v, (positive, _))) in s.row(i).iter().zip(s.sides(i)).enumerate() {
                if !positive {
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
        subs[0].row = row;
        true
    }

    #[inline(always)]
    fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
        let t = T::from_f64(self.temperature);
        // ∂logit/∂d: 1/T for a similarity, −1/T for a distance.
        let dl = if s.similarity {
            T::ONE / t
        } else {
            -T::ONE / t
        };
        let elements = &subs[0];
        let span = elements.span(s.rows());
        let mut e = span.start;
        while e < span.end {
            let i = elements.anchors[e] as usize;
            let first = e;
            // Σ over the anchor's positives of scale · r/(den (r+tiny)) · e^{max ν − c}.
            let mut neg_weight = T::ZERO;
            while e < span.end && elements.anchors[e] as usize == i {
                neg_weight += elements.scales[e] * elements.aux[e][1];
                e += 1;
            }
            let out = s.grad_row(grad, i);
            // The negatives' columns first (the row is still 0, and the positives' columns
            // are disjoint from them): exp(ν − max) in place, then its weight.
            if neg_weight != T::ZERO && negatives(s, i, t, out).is_some() {
                let w = neg_weight;
                out.iter_mut().for_each(|g| *g = w * *g * dl);
            }
            for f in first..e {
                let [d_pos, _] = elements.aux[f];
                out[elements.cols[f] as usize] += elements.scales[f] * d_pos * dl;
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
