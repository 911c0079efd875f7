//! [`ProxyAnchorLoss`]: pytorch-metric-learning's proxy-anchor loss.

use metric_loss_core::params::finite;
use metric_loss_core::{LossError, LossInput, LossOutput, ParameterShape, SampleWeight};
use metric_loss_distances::lanes::{keep, DenseFloat};
use metric_loss_distances::parallel::{for_rows_on, threads_for};
use metric_loss_distances::wide::with_avx2;
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

/// Each class's two terms, log(1 + Σ e^{aᵢ}) shifted by max(0, max aᵢ) over the class's
/// rows (`pos` of their entries in its column) and over the other rows (`neg`), 0 without
/// any row: into `values` (the positive terms, then the negative ones), with each class's
/// row count in `counts`. Row-major passes with one accumulator per class and side, so
/// that the matrix is read in order and the exponentials vectorise; each class's sum still
/// adds its rows in order, from e^{−max}.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn class_terms<T: DenseFloat>(
    m: &[T],
    labels: &[i64],
    classes: usize,
    pos: impl Fn(T) -> T,
    neg: impl Fn(T) -> T,
    stats: &mut Vec<T>,
    counts: &mut Vec<usize>,
    values: &mut Vec<T>,
) {
    let n = labels.len();
    let none = T::from_f64(f64::NEG_INFINITY);
    counts.clear();
    counts.resize(classes, 0);
    stats.clear();
    stats.resize(4 * classes, none);
    let (maxima, sums) = stats.split_at_mut(2 * classes);
    let (pos_max, neg_max) = maxima.split_at_mut(classes);
    for (row, &label) in m.chunks_exact(classes).zip(labels) {
        let own = label as usize;
        counts[own] += 1;
        for (c, (top, &v)) in neg_max.iter_mut().zip(row).enumerate() {
            let key = if c == own { none.key() } else { neg(v).key() };
            *top = T::from_key(top.key().max(key));
        }
        pos_max[own] = pos_max[own].max(pos(row[own]));
    }
    let (pos_sum, neg_sum) = sums.split_at_mut(classes);
    for (top, sum) in maxima
        .iter_mut()
        .zip(pos_sum.iter_mut().chain(neg_sum.iter_mut()))
    {
        *top = top.max(T::ZERO);
        *sum = (-*top).exp();
    }
    let (pos_max, neg_max) = maxima.split_at(classes);
    for (row, &label) in m.chunks_exact(classes).zip(labels) {
        let own = label as usize;
        for (c, ((sum, &top), &v)) in neg_sum.iter_mut().zip(neg_max).zip(row).enumerate() {
            *sum += keep(c != own, T::exp_ftz(neg(v) - top));
        }
        pos_sum[own] += T::exp_ftz(pos(row[own]) - pos_max[own]);
    }
    values.clear();
    values.extend((0..classes).map(|c| keep(counts[c] > 0, pos_max[c] + pos_sum[c].ln())));
    values.extend((0..classes).map(|c| keep(counts[c] < n, neg_max[c] + neg_sum[c].ln())));
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
        // `move`: the numbers copied in (borrowed, a choice between them is not vectorised).
        let pos = move |v: T| alpha * if similarity { margin - v } else { v - margin };
        let neg = move |v: T| alpha * if similarity { v + margin } else { -margin - v };
        let m = &s.matrix[..];
        let (stats, counts, values) = (&mut s.class_stats, &mut s.counts, &mut s.values);
        with_avx2(
            #[inline(always)]
            || class_terms(m, labels, classes, pos, neg, stats, counts, values),
        );
        let counts = &s.counts[..];
        // DivisorReducer divides the positive terms by the classes present and the negative
        // ones by num_classes; every other reducer ignores the divisors.
        let present = counts.iter().filter(|&&count| count > 0).count();
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
        // per-example values add up to the loss; a row takes its shares class by class.
        let shares = &mut s.class_stats;
        shares.clear();
        shares.extend((0..classes).map(|c| {
            let count = counts[c];
            keep(
                count > 0 && pos_scales[c] != T::ZERO,
                pos_scales[c] * pos_values[c] / T::from_f64(count as f64),
            )
        }));
        shares.extend((0..classes).map(|c| {
            let count = counts[c];
            keep(
                count < n && neg_scales[c] != T::ZERO,
                neg_scales[c] * neg_values[c] / T::from_f64((n - count) as f64),
            )
        }));
        let (pos_shares, neg_shares) = shares.split_at(classes);
        for (o, &label) in out.per_example.iter_mut().zip(labels) {
            let own = label as usize;
            for (c, (&p, &q)) in pos_shares.iter().zip(neg_shares).enumerate() {
                *o += if c == own { p } else { q };
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
        let (pos_scales, neg_scales) = (&pos_scales[..], &neg_scales[..]);
        s.grad.resize(n * classes, T::ZERO);
        // Rows split over threads (each row's arithmetic is its own).
        for_rows_on(threads_for(n), &mut s.grad, classes, |r0, grad| {
            with_avx2(
                #[inline(always)]
                || {
                    for (i, g) in (r0..).zip(grad.chunks_exact_mut(classes)) {
                        let row = &m[i * classes..(i + 1) * classes];
                        for (((o, &v), &scale), &term) in
                            g.iter_mut().zip(row).zip(neg_scales).zip(neg_values)
                        {
                            *o = scale * T::exp_ftz(neg(v) - term) * d_neg;
                        }
                        let own = labels[i] as usize;
                        g[own] =
                            pos_scales[own] * T::exp_ftz(pos(row[own]) - pos_values[own]) * d_pos;
                    }
                },
            )
        });
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
