//! `MultiSimilarityLoss`: the multi-similarity loss of Wang et al. (2019) on distances.

use metric_loss_mining::SENTINEL_OFFSET;
use metric_loss_triplet::{RowLoss, RowView};

use crate::common::{row_loss_fields, RowScratch};
use crate::dense_loss::dense_loss;
use crate::lanes::{two_softmaxes, DenseFloat};
use metric_loss_core::params::{finite, finite_nonzero};

/// What α and β accept.
const DIVISOR: &str = "a finite, non-zero number (the loss divides by it)";

dense_loss! {
    /// `MultiSimilarityLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not
    /// yet validated.
    ///
    /// | key | default | meaning |
    /// | --- | --- | --- |
    /// | `distance` | `"cosine"` | a distance name or alias, or a registered distance |
    /// | `alpha` | 2.0 | positive-pair scale α (finite, non-zero) |
    /// | `beta` | 40.0 | negative-pair scale β (finite, non-zero) |
    /// | `epsilon` | 0.1 | pair-mining slack ε |
    /// | `lmda` | 0.5 | the offset λ |
    /// | `center` | 1.0 | the expected distance |
    /// | `name` | `"MultiSimilarityLoss"` | |
    /// | `reduction` | `"auto"` | Keras's reduction name, `"mean_over_non_zero"`, or a registered reducer |
    /// | `remove_diagonal` | `true` | TF's hidden keyword |
    ///
    /// ```
    /// use metric_loss_distances::DistanceKind;
    /// use metric_loss_losses::MultiSimilarityLossConfig;
    /// let loss = MultiSimilarityLossConfig::default()
    ///     .epsilon(1.0)
    ///     .distance(DistanceKind::Euclidean)
    ///     .build()?;
    /// assert_eq!(loss.config()?.epsilon, 1.0);
    /// assert_eq!(loss.parts().distance_kind(), Some(DistanceKind::Euclidean));
    /// assert!(MultiSimilarityLossConfig::default().alpha(0.0).build().is_err());
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    config: MultiSimilarityLossConfig,
    /// TF Similarity's `MultiSimilarityLoss`, the multi-similarity loss written for a distance
    /// (similarity s = center − D).
    ///
    /// # Arguments
    /// See [`MultiSimilarityLossConfig`] (TF Similarity's names and defaults); `Default` is TF's
    /// defaults and `config()` gives the arguments back. In code,
    /// [`MultiSimilarityLoss::with_parts`] takes any distance and reducer
    /// ([`DenseParts`](metric_loss_triplet::DenseParts)), yours included.
    ///
    /// # Formula
    /// For anchor i (P: positives, N: negatives, no gradient through the mining):
    /// - μᵢ = min{Dᵢⱼ : j ∈ N} − ε; keep positive j iff Dᵢⱼ > μᵢ;
    /// - νᵢ = max{Dᵢⱼ : j ∈ P} + ε; keep negative j iff Dᵢⱼ < νᵢ;
    ///   (the extrema are TF's masked extrema, with their ±1e-6 sentinels for empty masks);
    /// - Sᵢⱼ = (Dᵢⱼ + λ) − center;
    /// - ℓᵢ = (1/α)·ln(1 + Σ_{kept P} e^{α Sᵢⱼ}) + (1/β)·ln(1 + Σ_{kept N} e^{−β Sᵢⱼ}) when the
    ///   anchor keeps at least one positive and one negative, else 0.
    ///
    /// ∂ℓᵢ/∂Dᵢⱼ is the softmax weight of kept positive j in the α-term minus that of kept
    /// negative j in the β-term; it goes through [`metric_loss_core::Distance::dense_vjp`].
    ///
    /// # Degenerate anchors
    /// No positive, no negative, or an "easy" anchor (nothing kept on one side): ℓᵢ = 0, with
    /// zero gradient. They still count in the batch size of the mean.
    ///
    /// # Differences from TF Similarity 0.17.1
    /// - **Excluded anchors give exactly 0.** TF multiplies by vᵢ = 0, so an excluded anchor
    ///   whose term is ±∞ gives NaN for the whole batch and gradient.
    /// - **No −∞.** TF shifts each log-sum-exp by the unmasked row maximum; when a kept
    ///   positive lies more than ~87 below it (unnormalised embeddings, squared euclidean
    ///   distances of tens) every kept term underflows and the term is ln(0) = −∞, with NaN
    ///   gradients. Here the shift is max(0, largest kept score), so the value is always the
    ///   finite ln(1 + Σ e^{…}); wherever TF is finite the two agree to rounding.
    /// - α = 0 and β = 0 are rejected by `build` (TF: +∞ or NaN); non-finite values too.
    ///
    /// # Overflow: `NonFiniteResult`
    /// Finite inputs can still overflow the dtype. A row whose own loss or ∂ℓᵢ/∂D is not
    /// finite is [`metric_loss_core::LossError::Unsupported`] naming the anchor; after
    /// that, a tiny α or β (the 1/α and 1/β factors: α = 1e-290 makes
    /// ℓᵢ ≈ 1e289), a sample weight times a per-example loss, a reduced sum beyond
    /// the dtype's range (positive and negative weights then give ∞ − ∞) and a gradient entry
    /// that overflows (sample weights around 1e30, or embeddings near the dtype's maximum,
    /// e.g. 3e38 in f32, through the distance's VJP) are
    /// [`metric_loss_core::LossError::NonFiniteResult`] naming the first such value. The
    /// loss never returns ±∞ or NaN.
    ///
    /// # Example
    /// ```
    /// use metric_loss_core::MetricLossExt;
    /// use metric_loss_losses::MultiSimilarityLoss;
    ///
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = MultiSimilarityLoss::default().evaluate(&[0, 1, 0, 1], &x, 2)?;
    /// assert!((out.per_example[0] - 0.956631).abs() < 1e-5);
    /// assert!((out.loss - 1.246563).abs() < 1e-5);
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    ///
    /// # Cost per call
    /// The `n x m` distance matrix, O(n·m) exponentials, and two `n x m x dims` matrix
    /// products for the gradient (cosine, inner product, euclidean distances; manhattan and
    /// snr pay O(dims) per pair). Memory: two `n x m` matrices in the workspace.
    loss: MultiSimilarityLoss,
    class: "MultiSimilarityLoss",
    distance: "cosine",
    fields: {
        /// Positive-pair scale α (default 2.0).
        alpha = 2.0 => finite_nonzero("alpha", alpha, DIVISOR)?;
        /// Negative-pair scale β (default 40.0).
        beta = 40.0 => finite_nonzero("beta", beta, DIVISOR)?;
        /// Pair-mining slack ε (default 0.1).
        epsilon = 0.1 => finite("epsilon", epsilon)?;
        /// The offset λ (default 0.5).
        lmda = 0.5 => finite("lmda", lmda)?;
        /// The expected distance (default 1.0).
        center = 1.0 => finite("center", center)?;
    },
    /// Validates the arguments: the distance, then the reduction, then the numbers.
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`](metric_loss_core::LossError::UnknownDistance),
    /// [`LossError::UnknownReduction`](metric_loss_core::LossError::UnknownReduction),
    /// [`LossError::InvalidParameter`](metric_loss_core::LossError::InvalidParameter) for a
    /// non-finite value, or for α = 0 or β = 0 (TF Similarity divides by them and returns +∞ or
    /// NaN).
    build,
    /// The same loss with other parts: any distance and reducer, yours included.
    ///
    /// ```
    /// use metric_loss_core::{MeanOverNonZero, MetricLossExt};
    /// use metric_loss_distances::DistanceKind;
    /// use metric_loss_losses::MultiSimilarityLoss;
    /// use metric_loss_triplet::DenseParts;
    ///
    /// let parts = DenseParts::default()
    ///     .distance(DistanceKind::SquaredEuclidean)
    ///     .reducer(MeanOverNonZero);
    /// let loss = MultiSimilarityLoss::default().with_parts(parts);
    /// let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// assert!(loss.evaluate(&[0, 1, 0, 1], &x, 2)?.loss.is_finite());
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    with_parts,
}

impl RowLoss for MultiSimilarityLoss {
    row_loss_fields!();

    // Inlined into the driver's AVX2 copy of the row loop.
    #[inline(always)]
    fn row<T: DenseFloat>(
        &self,
        row: &RowView<'_, T>,
        grad: &mut [T],
        scratch: &mut RowScratch,
    ) -> T {
        // Hyper-parameters meet the tensors in the embedding dtype; −β is formed in f64.
        let alpha = T::from_f64(self.alpha);
        let neg_beta = T::from_f64(-self.beta);
        let beta = T::from_f64(self.beta);
        let eps = T::from_f64(self.epsilon);
        let (lmda, center) = (T::from_f64(self.lmda), T::from_f64(self.center));
        let (mined_positive, mined_negative) = hard_extrema(row);
        let mu = mined_negative - eps;
        let nu = mined_positive + eps;
        // A key is kept on its side if the mining says so; ∂ℓ/∂D is the α-softmax
        // weight of a kept positive, minus the β-softmax weight of a kept negative.
        two_softmaxes(
            row,
            grad,
            scratch,
            // `move`: the factors copied in, not borrowed, so that choosing one per key
            // is a select on values that vectorises (a borrowed pair became a per-key
            // branch between two addresses).
            move |dj, same, off_diagonal| {
                let pos = same & off_diagonal & (dj > mu);
                let s = (dj + lmda) - center;
                (
                    pos,
                    !same & (dj < nu),
                    if pos { alpha * s } else { neg_beta * s },
                )
            },
            |_, pos| if pos { T::ONE } else { -T::ONE },
        )
        .map_or(T::ZERO, |(lse_p, lse_n)| lse_p / alpha + lse_n / beta)
    }
}

/// TF's masked extrema of the row: the largest positive distance and the smallest
/// negative one, each as TF computes it, `(d − offset) + offset` with the row minimum (or
/// maximum) shifted by the ±1e-6 sentinel offset, in f64 (exactly d in f32), and that
/// offset for an empty mask. One branch-free pass (integer maxima, so that it vectorises).
#[inline(always)]
fn hard_extrema<T: DenseFloat>(row: &RowView<'_, T>) -> (T, T) {
    let (d, classes, class, diag) = (row.distances, row.key_classes, row.anchor_class, row.diag);
    let (none_below, none_above) = (
        T::from_f64(f64::NEG_INFINITY).key(),
        T::from_f64(f64::INFINITY).key(),
    );
    let (mut lo, mut hi) = (none_above, none_below);
    let (mut pos_hi, mut neg_lo) = (none_below, none_above);
    for (j, (&dj, &c)) in d.iter().zip(classes).enumerate() {
        let (same, key) = (c == class, dj.key());
        lo = lo.min(key);
        hi = hi.max(key);
        pos_hi = pos_hi.max(if same & (j != diag) { key } else { none_below });
        neg_lo = neg_lo.min(if same { none_above } else { key });
    }
    let below = T::from_key(lo).to_f64() - SENTINEL_OFFSET;
    let above = T::from_key(hi).to_f64() + SENTINEL_OFFSET;
    let masked = |key: T::Key, empty: T::Key, offset: f64| {
        T::from_f64(if key == empty {
            offset
        } else {
            (T::from_key(key).to_f64() - offset) + offset
        })
    };
    (
        masked(pos_hi, none_below, below),
        masked(neg_lo, none_above, above),
    )
}
