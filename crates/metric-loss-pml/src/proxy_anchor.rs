//! [`ProxyAnchorLoss`]: pytorch-metric-learning's proxy-anchor loss.

use metric_loss_core::params::finite;
use metric_loss_core::{Float, LossError, LossInput, LossOutput, ParameterShape, SampleWeight};
use metric_loss_distances::lanes::DenseFloat;
use metric_loss_triplet::DenseParts;

use crate::learnable::{
    distance_vjp, distances, learnable_loss, reduce_elements, Learnable, Scratch, Sizes,
};
use crate::{CosineSimilarity, DivisorReducer};

/// One learnable proxy per class; each class contributes a positive term (its rows) and a
/// negative term (the other rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProxyAnchor {
    margin: f64,
    alpha: f64,
    sizes: Sizes,
}

/// log(1 + Σ exp(aᵢ)) over the kept entries, shifted by max(0, max aᵢ); 0 without any.
fn log_one_plus_sum_exp<T: Float>(entries: impl Iterator<Item = T> + Clone) -> T {
    let Some(max) = entries.clone().reduce(T::max) else {
        return T::ZERO;
    };
    let max = max.max(T::ZERO);
    let sum = entries.fold((-max).exp(), |s, a| s + (a - max).exp());
    max + sum.ln()
}

impl Learnable for ProxyAnchor {
    const CLASS: &'static str = "ProxyAnchorLoss";

    fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// PML's `proxies`: `num_classes x embedding_size`, row c the proxy of class c.
    fn shape(&self) -> ParameterShape {
        ParameterShape {
            name: "proxies",
            rows: self.sizes.num_classes,
            cols: self.sizes.embedding_size,
        }
    }

    /// PML's `kaiming_normal_(mode="fan_out")`: std √(2 / num_classes).
    fn init_std(&self) -> f64 {
        (2.0 / self.sizes.num_classes as f64).sqrt()
    }

    fn run<T: DenseFloat>(
        &self,
        parts: &DenseParts,
        input: &LossInput<'_, T>,
        s: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        if !matches!(input.sample_weight(), SampleWeight::None) {
            return Err(LossError::Unsupported {
                loss: Self::CLASS.into(),
                message: "sample weights are not supported: its terms are per class, not per \
                          example"
                    .into(),
            });
        }
        let distance = T::distance(parts.distance_part());
        let (x, labels) = (input.queries().embeddings(), input.queries().labels());
        let (n, classes) = (x.rows(), self.sizes.num_classes);
        distances(distance, x, &s.params, classes, &mut s.matrix, &mut s.stats)?;
        let similarity = distance.is_similarity();
        let (margin, alpha) = (T::from_f64(self.margin), T::from_f64(self.alpha));
        // α · PML's margin(M, m) and margin(−m, M): closer than the margin costs nothing.
        let pos = |v: T| alpha * if similarity { margin - v } else { v - margin };
        let neg = |v: T| alpha * if similarity { v + margin } else { -margin - v };
        let m = &s.matrix;
        let own = |c: usize| (0..n).filter(move |&i| labels[i] as usize == c);
        let other = |c: usize| (0..n).filter(move |&i| labels[i] as usize != c);
        s.values.clear();
        s.values.extend(
            (0..classes).map(|c| log_one_plus_sum_exp(own(c).map(|i| pos(m[i * classes + c])))),
        );
        s.values.extend(
            (0..classes).map(|c| log_one_plus_sum_exp(other(c).map(|i| neg(m[i * classes + c])))),
        );
        // DivisorReducer divides the positive terms by the classes present and the negative
        // ones by num_classes; every other reducer ignores the divisors.
        let present = (0..classes).filter(|&c| own(c).next().is_some()).count();
        let divisors = if parts.reducer_part().as_any().is::<DivisorReducer>() {
            [present, classes]
        } else {
            [1, 1]
        };
        s.weights.clear();
        for d in divisors {
            let w = T::ONE / T::from_f64(d as f64);
            s.weights.extend(std::iter::repeat_n(w, classes));
        }
        s.scales.clear();
        s.scales.resize(2 * classes, T::ZERO);
        let (pos_values, neg_values) = s.values.split_at(classes);
        let (pos_weights, neg_weights) = s.weights.split_at(classes);
        let (pos_scales, neg_scales) = s.scales.split_at_mut(classes);
        out.loss = reduce_elements(parts, pos_values, pos_weights, pos_scales)
            + reduce_elements(parts, neg_values, neg_weights, neg_scales);
        // Each class term is shared equally among the rows it sums over, so that the
        // per-example values add up to the loss.
        for c in 0..classes {
            let count = own(c).count();
            if count > 0 && pos_scales[c] != T::ZERO {
                let share = pos_scales[c] * pos_values[c] / T::from_f64(count as f64);
                own(c).for_each(|i| out.per_example[i] += share);
            }
            if count < n && neg_scales[c] != T::ZERO {
                let share = neg_scales[c] * neg_values[c] / T::from_f64((n - count) as f64);
                other(c).for_each(|i| out.per_example[i] += share);
            }
        }
        if !input.wants_gradient() {
            return Ok(());
        }
        // ∂term/∂entry is the entry's softmax weight exp(entry − term); the entry is
        // α·margin(…), whose derivative in M is ∓α.
        let (d_pos, d_neg) = if similarity {
            (-alpha, alpha)
        } else {
            (alpha, -alpha)
        };
        s.grad.clear();
        s.grad.extend((0..n * classes).map(|at| {
            let (i, c) = (at / classes, at % classes);
            let v = m[at];
            if labels[i] as usize == c {
                pos_scales[c] * (pos(v) - pos_values[c]).exp() * d_pos
            } else {
                neg_scales[c] * (neg(v) - neg_values[c]).exp() * d_neg
            }
        }));
        distance_vjp(
            distance,
            x,
            &s.params,
            &s.matrix,
            &mut s.grad,
            &mut out.grad_queries,
            &mut s.key_grad,
            &mut s.stats,
        );
        out.grad_parameters.copy_from_slice(&s.key_grad);
        Ok(())
    }
}

learnable_loss! {
    /// pytorch-metric-learning's `ProxyAnchorLoss(num_classes, embedding_size, margin=0.1,
    /// alpha=32)`: one learnable proxy per class (the rows of `proxies`,
    /// `num_classes x embedding_size`); each class c collects a positive term from its rows
    /// and a negative term from every other row,
    ///
    /// pos_c = log(1 + Σ_{i: yᵢ = c} e^{α(m − sᵢ꜀)}),  neg_c = log(1 + Σ_{i: yᵢ ≠ c} e^{α(sᵢ꜀ + m)})
    ///
    /// (for a distance d: e^{α(dᵢ꜀ − m)} and e^{−α(m + dᵢ꜀)}), each a max-shifted
    /// log-sum-exp. With the default [`DivisorReducer`],
    /// L = Σ pos_c / #classes present + Σ neg_c / num_classes; any other reducer reduces
    /// each set of `num_classes` terms on its own and the two are summed. The loss owns the
    /// proxies (initialised N(0, 2/num_classes) from `seed`, PML's distribution), each call
    /// returns ∂L/∂proxies in `grad_parameters`. Defaults: [`CosineSimilarity`] (any
    /// distance is accepted). Sample weights and separate keys are refused; `per_example[i]`
    /// is row i's equal share of each term it enters.
    ///
    /// ```
    /// use metric_loss_core::{MetricLoss, MetricLossExt};
    /// use metric_loss_pml::ProxyAnchorLoss;
    ///
    /// let loss = ProxyAnchorLoss::new(3, 2)?;
    /// loss.set_parameters(&[1.0, 0.0, 0.0, 1.0, -1.0, 0.0])?; // proxies (1,0), (0,1), (−1,0)
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
    /// assert!((out.loss - 9.6266365).abs() < 1e-4); // pytorch-metric-learning's value
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: ProxyAnchorLoss,
    /// [`ProxyAnchorLoss`]'s arguments, with PML's keyword names, and `seed`.
    config: ProxyAnchorLossConfig,
    class: "ProxyAnchorLoss",
    distance: CosineSimilarity::default(),
    reducer: DivisorReducer {},
    fields: {
        /// The margin m (default 0.1).
        margin: f64 = 0.1,
        /// The sharpness α (default 32).
        alpha: f64 = 32.0,
    },
    build: |c, sizes| -> ProxyAnchor {
        ProxyAnchor {
            margin: finite("margin", c.margin)?,
            alpha: finite("alpha", c.alpha)?,
            sizes,
        }
    }
}
