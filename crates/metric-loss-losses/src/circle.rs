//! `CircleLoss`: the circle loss of Sun et al. (2020), rewritten for distances.

use metric_loss_triplet::{RowLoss, RowView};

use crate::common::{row_loss_fields, RowScratch};
use crate::dense_loss::dense_loss;
use crate::lanes::{two_softmaxes, DenseFloat};
use metric_loss_core::params::finite;

dense_loss! {
    /// `CircleLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not yet
    /// validated.
    ///
    /// | key | default | meaning |
    /// | --- | --- | --- |
    /// | `distance` | `"cosine"` | a distance name or alias, or a registered distance (the loss expects distances in [0, 2]) |
    /// | `gamma` | 80.0 | the scale γ |
    /// | `margin` | 0.4 | the relaxation m |
    /// | `name` | `"CircleLoss"` | |
    /// | `reduction` | `"auto"` | Keras's reduction name, `"mean_over_non_zero"`, or a registered reducer |
    /// | `remove_diagonal` | `true` | TF's hidden keyword |
    ///
    /// ```
    /// use metric_loss_losses::CircleLossConfig;
    /// let loss = CircleLossConfig::default().gamma(32.0).margin(0.25).build()?;
    /// assert_eq!(loss.config()?.gamma, 32.0);
    /// assert!(CircleLossConfig::default().gamma(f64::NAN).build().is_err());
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    config: CircleLossConfig,
    /// TF Similarity's `CircleLoss`: the circle loss in the paper's similarity form with
    /// s = 1 − D.
    ///
    /// # Arguments
    /// See [`CircleLossConfig`] (TF Similarity's names and defaults); `Default` is TF's defaults
    /// and `config()` gives the arguments back. In code, [`CircleLoss::with_parts`] takes any
    /// distance and reducer ([`DenseParts`](metric_loss_triplet::DenseParts)), yours included.
    ///
    /// # Formula
    /// With m the margin (constants formed in f64, then rounded to the embedding dtype):
    /// - α⁺ᵢⱼ = max(m + Dᵢⱼ, 0) for positives, α⁻ᵢⱼ = max((1 + m) − Dᵢⱼ, 0) for negatives;
    /// - s⁺ᵢⱼ = (−γ α⁺ᵢⱼ)(m − Dᵢⱼ) and s⁻ᵢⱼ = (γ α⁻ᵢⱼ)((1 − m) − Dᵢⱼ);
    /// - ℓᵢ = ln(1 + Σ_P e^{s⁺ᵢⱼ}) + ln(1 + Σ_N e^{s⁻ᵢⱼ}) when the anchor has at least one
    ///   positive and one negative (there is no mining), else 0.
    ///
    /// The gradient flows through the weights α as well (for a positive ∂s⁺/∂D = 2γD, for an
    /// unclipped negative −2γ(1 − D); a clipped weight passes the gradient at exactly 0, as
    /// TF's `maximum` does). Two TF quirks are kept: the two sums are separate logs (not the
    /// paper's ln(1 + Σ_N Σ_P)), and a negative beyond 1 + m still adds e⁰ = 1 to its sum.
    ///
    /// # Degenerate anchors
    /// No positive or no negative: ℓᵢ = 0 with zero gradient (finite, as in TF).
    ///
    /// # Differences from TF Similarity 0.17.1
    /// None in the numbers (TF is finite for every finite distance matrix of the fixtures);
    /// non-finite γ or margin are rejected, and scores that overflow the dtype (γD² for
    /// distances around 1e18 in f32) are an error ([`metric_loss_core::LossError::Unsupported`])
    /// instead of ∞ or NaN; see also *Overflow* below.
    /// Values reach a few hundred with the defaults: compare relatively.
    ///
    /// # Overflow: `NonFiniteResult`
    /// Finite inputs can still overflow the dtype. A row whose own loss or ∂ℓᵢ/∂D is not
    /// finite is [`metric_loss_core::LossError::Unsupported`] naming the anchor; after
    /// that, per-example values of 1e78 and more (euclidean distances near
    /// 1e38 in f64), a sample weight times a per-example loss, a reduced sum beyond
    /// the dtype's range (positive and negative weights then give ∞ − ∞) and a gradient entry
    /// that overflows (sample weights around 1e30, or embeddings near the dtype's maximum,
    /// e.g. 3e38 in f32, through the distance's VJP) are
    /// [`metric_loss_core::LossError::NonFiniteResult`] naming the first such value. The
    /// loss never returns ±∞ or NaN.
    ///
    /// # Example
    /// ```
    /// use metric_loss_core::MetricLossExt;
    /// use metric_loss_losses::CircleLoss;
    ///
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = CircleLoss::default().evaluate(&[0, 0, 1, 2], &x, 2)?;
    /// assert!((out.per_example[1] - 16.00007).abs() < 1e-4);
    /// assert!((out.loss - 4.173322).abs() < 1e-4);
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    ///
    /// # Cost per call
    /// As [`crate::MultiSimilarityLoss`]: the distance matrix, O(n·m) exponentials and two
    /// matrix products for the gradient; two `n x m` matrices of memory.
    loss: CircleLoss,
    class: "CircleLoss",
    distance: "cosine",
    fields: {
        /// The scale γ (default 80.0).
        gamma = 80.0 => finite("gamma", gamma)?;
        /// The relaxation m (default 0.4).
        margin = 0.4 => finite("margin", margin)?;
    },
    /// Validates the arguments. As in TF Similarity, γ = 0 and negative margins are
    /// accepted.
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`](metric_loss_core::LossError::UnknownDistance),
    /// [`LossError::UnknownReduction`](metric_loss_core::LossError::UnknownReduction),
    /// [`LossError::InvalidParameter`](metric_loss_core::LossError::InvalidParameter) for a
    /// non-finite γ or margin.
    build,
    /// The same loss with other parts: any distance and reducer, yours included (see
    /// [`crate::MultiSimilarityLoss::with_parts`]).
    with_parts,
}

impl RowLoss for CircleLoss {
    row_loss_fields!();

    // Inlined into the driver's AVX2 copy of the row loop.
    #[inline(always)]
    fn row<T: DenseFloat>(
        &self,
        row: &RowView<'_, T>,
        grad: &mut [T],
        scratch: &mut RowScratch,
    ) -> T {
        let gamma = T::from_f64(self.gamma);
        let o_pos = T::from_f64(self.margin);
        let o_neg = T::from_f64(1.0 + self.margin);
        let delta_pos = T::from_f64(self.margin);
        let delta_neg = T::from_f64(1.0 - self.margin);
        // Entry j's score on either side, with the clipped weight α and its slope.
        let positive = move |dj: T| {
            let t = o_pos + dj;
            let (a, da) = if t >= T::ZERO {
                (t, T::ONE)
            } else {
                (T::ZERO, T::ZERO)
            };
            ((-gamma * a) * (delta_pos - dj), a, da)
        };
        let negative = move |dj: T| {
            let t = o_neg - dj;
            let (a, da) = if t >= T::ZERO {
                (t, -T::ONE)
            } else {
                (T::ZERO, T::ZERO)
            };
            ((gamma * a) * (delta_neg - dj), a, da)
        };
        // ∂ℓ/∂D: the softmax weight within the side times ∂score/∂D (through the
        // clipped weight α too).
        two_softmaxes(
            row,
            grad,
            scratch,
            // `move` throughout: the numbers copied in, not borrowed, so that picking a
            // side's value is a select on values that vectorises (borrowed, it became a
            // per-key load from one of two addresses).
            move |dj, same, off_diagonal| {
                let pos = same & off_diagonal;
                let x = if pos { positive(dj).0 } else { negative(dj).0 };
                (pos, !same, x)
            },
            move |dj, pos| {
                if pos {
                    let (_, a, da) = positive(dj);
                    -gamma * (da * (delta_pos - dj) - a)
                } else {
                    let (_, a, da) = negative(dj);
                    gamma * (da * (delta_neg - dj) - a)
                }
            },
        )
        .map_or(T::ZERO, |(lse_p, lse_n)| lse_p + lse_n)
    }
}
