//! `MultiNegativesRankLoss`: the multiple-negatives ranking loss of Henderson et al.
//! (2017), as TF Similarity 0.17.1 computes it.

use metric_loss_core::params::finite;
use metric_loss_core::{config_setters, LossError, LossInput, LossOutput, Reduction, Workspace};
use metric_loss_distances::lanes::{exp_shifted_sum, max, DenseFloat};
use metric_loss_distances::parallel::{for_row_chunks, gemm_rows};
use metric_loss_distances::wide::with_avx2;
use metric_loss_distances::DistanceKind;

use crate::common::{keras_reduce, two_views, view_metric_loss};

/// `MultiNegativesRankLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not
/// yet validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `name` | `"MultipleNegativesRankingLoss"` | |
/// | `distance` | `"inner_product"` | must name the inner product (`"ip"`, any case, surrounding spaces ignored) |
/// | `scale` | 20.0 | the similarities' multiplier, any finite number (0 and negative values accepted, as in TF) |
/// | `reduction` | `"auto"` | Keras's reduction name |
///
/// Unlike TF's `get_config`, the config keeps `scale`, so that a loss read back from it is
/// the same loss; and `distance` is the canonical name, not a `Distance` object.
///
/// ```
/// use metric_loss_views::MultiNegativesRankLossConfig;
/// let loss = MultiNegativesRankLossConfig::default().scale(5.0).build()?;
/// assert_eq!(loss.config().scale, 5.0);
/// assert!(MultiNegativesRankLossConfig::default().distance("cosine").build().is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultiNegativesRankLossConfig {
    /// Keras's reduction name (default `"auto"`).
    pub reduction: String,
    /// The loss's name (default `"MultipleNegativesRankingLoss"`).
    /// Not written when `None` (TOML has no null); a config without it reads as the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The distance (default `"inner_product"`, the only one TF accepts at the call).
    pub distance: String,
    /// The multiplier of the similarities (default 20).
    pub scale: f64,
}

impl Default for MultiNegativesRankLossConfig {
    fn default() -> Self {
        Self {
            reduction: "auto".into(),
            name: Some("MultipleNegativesRankingLoss".into()),
            distance: "inner_product".into(),
            scale: 20.0,
        }
    }
}

impl MultiNegativesRankLossConfig {
    config_setters! {
        /// Sets `reduction`.
        reduction: impl Into<String>,
        /// Sets `name`.
        name: Option<String>,
        /// Sets `distance`.
        distance: impl Into<String>,
        /// Sets `scale`.
        scale: f64,
    }

    /// Validates the arguments.
    ///
    /// # Errors
    /// [`LossError::UnknownReduction`]; [`LossError::UnknownDistance`] for a name TF does
    /// not know; [`LossError::Unsupported`] for a known distance other than the inner
    /// product (TF constructs it and raises at the first call);
    /// [`LossError::InvalidParameter`] for a non-finite scale.
    pub fn build(&self) -> Result<MultiNegativesRankLoss, LossError> {
        let reduction = self.reduction.parse()?;
        let kind = DistanceKind::from_name(&self.distance)?;
        if kind != DistanceKind::InnerProduct {
            return Err(LossError::Unsupported {
                loss: "MultiNegativesRankLoss".into(),
                message: format!(
                    "distance must be inner_product (or \"ip\"), got {:?}",
                    self.distance
                ),
            });
        }
        Ok(MultiNegativesRankLoss {
            name: self.name.clone(),
            scale: finite("scale", self.scale)?,
            reduction,
        })
    }
}

/// TF Similarity's `MultiNegativesRankLoss`: query i's positive is key i, every other key
/// is a negative.
///
/// # Input
/// [`LossInput::views`] with the queries (n×d) as view A and the keys (m×d) as view B; n
/// and m may differ. Nothing is normalised: give unit rows for cosine similarities.
///
/// # Formula
/// With S = scale · Q Kᵀ, k = min(n, m) and sⱼ = Sⱼⱼ:
///
/// - Lᵢ = ln(1 + Σⱼ e^{Sᵢⱼ}) (TF's log-sum-exp helper adds an implicit logit 0, computed
///   stably around the row's maximum);
/// - the output is the n×k matrix Eᵢⱼ = Lᵢ − sⱼ, row-major in
///   [`LossOutput::per_example`] (not a vector of n values, as for the labelled losses);
/// - the default reduction is its mean: mean Lᵢ − mean sⱼ.
///
/// Only Eᵢᵢ is an anchor's own loss; off-diagonal entries mix two anchors and can be
/// negative, and so can the loss when there are fewer keys than queries.
///
/// # Sample weights
/// As Keras broadcasts a weight of shape `[n]` against the n×k output: weight i multiplies
/// row i, so a zero weight removes Lᵢ but not sᵢ. TF's per-entry weights of shape [n, k] are
/// not taken ([`metric_loss_core::SampleWeight`] holds per-example weights).
///
/// # Gradient
/// Both views: ∂/∂Q = scale · ∂S K and ∂/∂K = scale · ∂Sᵀ Q, with
/// ∂Lᵢ/∂Sᵢⱼ = e^{Sᵢⱼ} / (1 + Σₗ e^{Sᵢₗ}).
///
/// # Differences from TF Similarity 0.17.1
/// - A distance other than the inner product is rejected by `build` (TF raises at the
///   first call); the config keeps `scale` (TF's drops it).
/// - Similarities that overflow the dtype are [`LossError::NonFiniteResult`] (TF: ±∞ or
///   NaN).
/// - float64 works (TF: a float32 mask makes it fail).
///
/// ```
/// use metric_loss_core::{Embeddings, LossInput, MetricLossExt};
/// use metric_loss_views::MultiNegativesRankLoss;
///
/// let q = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0];
/// let k = [0.8f32, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let input = LossInput::views(
///     Embeddings::from_row_major(&q, 3, 2)?,
///     Embeddings::from_row_major(&k, 3, 2)?,
/// );
/// let out = MultiNegativesRankLoss::default().compute(&input)?;
/// assert!((out.loss - 14.66689).abs() < 1e-4);
/// assert_eq!(out.per_example.len(), 9); // the 3 x 3 matrix E
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct MultiNegativesRankLoss {
    name: Option<String>,
    scale: f64,
    reduction: Reduction,
}

impl Default for MultiNegativesRankLoss {
    fn default() -> Self {
        MultiNegativesRankLossConfig::default()
            .build()
            .expect("the defaults are valid")
    }
}

impl MultiNegativesRankLoss {
    /// The arguments, as [`MultiNegativesRankLossConfig`] (with `scale`).
    pub fn config(&self) -> MultiNegativesRankLossConfig {
        MultiNegativesRankLossConfig {
            reduction: self.reduction.name().into(),
            name: self.name.clone(),
            distance: DistanceKind::InnerProduct.name().into(),
            scale: self.scale,
        }
    }

    fn run<T: DenseFloat>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let (q, keys, d) = two_views(input)?;
        let (n, m) = (q.rows(), keys.rows());
        let weights = input.sample_weight();
        weights.check(n)?;
        let k = n.min(m);
        let scale = T::from_f64(self.scale);
        let gradient = input.wants_gradient();
        let scratch = workspace.get::<Scratch<T>>();
        let s = &mut scratch.scores;
        // Every entry is overwritten: no clearing.
        s.resize(n * m, T::ZERO);
        gemm_rows(
            n,
            d,
            m,
            T::ONE,
            (q.as_slice(), d, 1),
            (keys.as_slice(), 1, d),
            T::ZERO,
            s,
        );
        // The reduction's factor does not depend on the values: the rows can be scaled by
        // their upstream while their softmax is formed.
        let red = T::from_f64(self.reduction.example_scale(n * k));
        let k_t = T::from_f64(k as f64);
        let (lse, positives) = (&mut scratch.lse, &mut scratch.positives);
        lse.clear();
        lse.resize(n, T::ZERO);
        positives.clear();
        positives.resize(n, T::ZERO);
        let _ = for_row_chunks(lse, positives, s, m, |first, lse, positives, rows| {
            with_avx2(
                #[inline(always)]
                || {
                    for (r, row) in rows.chunks_exact_mut(m.max(1)).enumerate() {
                        let i = first + r;
                        // The product first, then the scale: TF rounds the two steps separately.
                        row.iter_mut().for_each(|v| *v *= scale);
                        if i < m {
                            positives[r] = row[i];
                        }
                        // TF's log-sum-exp with the implicit logit 0, around the row's maximum.
                        let top = max(row);
                        let c = if top.is_finite() { top } else { T::ZERO };
                        let sum = T::exp_ftz(-c) + exp_shifted_sum(row, c);
                        lse[r] = sum.ln() + c;
                        if gradient {
                            // ∂Lᵢ = Σⱼ Gᵢⱼ = k·red·wᵢ times the softmax.
                            let g = k_t * red * weights.get(i);
                            row.iter_mut().for_each(|p| *p = *p / sum * g);
                        }
                    }
                },
            );
            Ok::<(), ()>(())
        });
        out.reset(n, m, d, gradient);
        out.per_example.clear();
        for li in lse.iter() {
            out.per_example
                .extend(positives[..k].iter().map(|sj| -*sj + *li));
        }
        let (loss, _) = keras_reduce(&out.per_example, k, &weights, self.reduction);
        out.loss = loss;
        if !gradient || k == 0 {
            return Ok(());
        }
        // ∂sⱼ = −Σᵢ Gᵢⱼ = −red·Σᵢ wᵢ.
        let total_weight = (0..n).fold(T::ZERO, |a, i| a + weights.get(i));
        for j in 0..k {
            s[j * m + j] -= red * total_weight;
        }
        gemm_rows(
            n,
            m,
            d,
            scale,
            (s, m, 1),
            (keys.as_slice(), d, 1),
            T::ZERO,
            &mut out.grad_queries,
        );
        gemm_rows(
            m,
            n,
            d,
            scale,
            (s, 1, m),
            (q.as_slice(), d, 1),
            T::ZERO,
            &mut out.grad_keys,
        );
        Ok(())
    }
}

/// The call's reusable memory: the scores (then their gradient), each row's log-sum-exp
/// and its positive.
#[derive(Debug, Default)]
struct Scratch<T> {
    scores: Vec<T>,
    lse: Vec<T>,
    positives: Vec<T>,
}

view_metric_loss!(MultiNegativesRankLoss, MultiNegativesRankLossConfig);
