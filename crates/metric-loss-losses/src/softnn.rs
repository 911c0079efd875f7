//! `SoftNearestNeighborLoss`: the soft nearest-neighbour loss of Frosst, Papernot and
//! Hinton (2019).

use metric_loss_triplet::{RowLoss, RowView};

use crate::common::{row_loss_fields, RowScratch};
use crate::dense_loss::dense_loss;
use crate::lanes::{keep, side_sums, DenseFloat, Side, NEGATIVE, NEITHER, POSITIVE};
use metric_loss_core::params::finite_nonzero;

/// What the temperature accepts.
const DIVISOR: &str = "a finite, non-zero number (the distances are divided by it)";

dense_loss! {
    /// `SoftNearestNeighborLoss`'s arguments with TF Similarity 0.17.1's names and defaults,
    /// not yet validated.
    ///
    /// | key | default | meaning |
    /// | --- | --- | --- |
    /// | `distance` | `"sql2"` (squared euclidean) | a distance name or alias, or a registered distance |
    /// | `temperature` | 1.0 | T, finite and non-zero (negative values are accepted, as in TF) |
    /// | `name` | `"SoftNearestNeighborLoss"` | |
    /// | `reduction` | `"auto"` | Keras's reduction name, `"mean_over_non_zero"`, or a registered reducer |
    /// | `remove_diagonal` | `true` | TF's hidden keyword (only decides whether singletons count) |
    ///
    /// ```
    /// use metric_loss_losses::SoftNearestNeighborLossConfig;
    /// let loss = SoftNearestNeighborLossConfig::default().temperature(0.5).build()?;
    /// assert_eq!(loss.config()?.distance, "squared_euclidean".into());
    /// assert!(SoftNearestNeighborLossConfig::default().temperature(0.0).build().is_err());
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    config: SoftNearestNeighborLossConfig,
    /// TF Similarity's `SoftNearestNeighborLoss`.
    ///
    /// # Arguments
    /// See [`SoftNearestNeighborLossConfig`] (TF Similarity's names and defaults); `Default` is
    /// TF's defaults and `config()` gives the arguments back. In code,
    /// [`SoftNearestNeighborLoss::with_parts`] takes any distance and reducer
    /// ([`DenseParts`](metric_loss_triplet::DenseParts)), yours included.
    ///
    /// # Formula
    /// With Eᵢⱼ = e^{−Dᵢⱼ/T} for j ≠ i (the self-pair is always left out), Aᵢ = Σⱼ Eᵢⱼ,
    /// Bᵢ = Σ_{j ∈ P} Eᵢⱼ and rᵢ = Bᵢ/Aᵢ:
    ///
    /// ℓᵢ = −ln(10⁻⁹ + rᵢ) for an anchor with a positive, 0 otherwise.
    ///
    /// ∂ℓᵢ/∂Dᵢⱼ = (Eᵢⱼ/T) / (10⁻⁹ + rᵢ) · (Pᵢⱼ/Aᵢ − Bᵢ/Aᵢ²), through
    /// [`metric_loss_core::Distance::dense_vjp`].
    ///
    /// Like TF on CPU, e^x is flushed to 0 below the smallest normal number (x < −87.34 in
    /// f32). An anchor whose positive terms all underflow while others do not gets TF's cap
    /// −ln(10⁻⁹) ≈ 20.72, with zero gradient.
    ///
    /// # Degenerate anchors
    /// - No positive: 0 (with `remove_diagonal = false` a singleton counts as having a
    ///   positive, and gets the cap 20.72 as in TF).
    /// - One-class batch: rᵢ = 1, ℓᵢ = −ln(1 + 10⁻⁹) = −0.0 in f32.
    ///
    /// # Differences from TF Similarity 0.17.1
    /// - **Fully underflowed rows.** When every e^{−Dᵢⱼ/T} of a row underflows (Aᵢ = 0) TF gives
    ///   0/0 = NaN — for that anchor, even a singleton, and so for the batch loss and the whole
    ///   gradient. Here such a row (or one whose sum overflows, T < 0) is recomputed with the
    ///   exponentials shifted by the row's largest exponent, which leaves rᵢ and the gradient
    ///   mathematically unchanged: the value is the finite, exact one.
    /// - **Batch of one** (no key besides the anchor): TF gives NaN; here ℓ = 0 with zero
    ///   gradient.
    /// - T = 0 is rejected by `build` (TF: NaN); so is a non-finite T.
    /// - With separate keys (e.g. under [`crate::XBM`]) the loss works row-wise over the keys,
    ///   the key (i, i) being the anchor itself when the keys start with the queries. TF fails
    ///   (an n×n mask against an n×m matrix).
    ///
    /// # Overflow: `NonFiniteResult`
    /// Finite inputs can still overflow the dtype. A row whose own loss or ∂ℓᵢ/∂D is not
    /// finite is [`metric_loss_core::LossError::Unsupported`] naming the anchor; after
    /// that, a sample weight times a per-example loss, a reduced sum beyond
    /// the dtype's range (positive and negative weights then give ∞ − ∞) and a gradient entry
    /// that overflows (sample weights around 1e30, or embeddings near the dtype's maximum,
    /// e.g. 3e38 in f32, through the distance's VJP) are
    /// [`metric_loss_core::LossError::NonFiniteResult`] naming the first such value. The
    /// loss never returns ±∞ or NaN.
    ///
    /// # Example
    /// ```
    /// use metric_loss_core::MetricLossExt;
    /// use metric_loss_losses::SoftNearestNeighborLoss;
    ///
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = SoftNearestNeighborLoss::default().evaluate(&[0, 0, 1, 2], &x, 2)?;
    /// assert!((out.per_example[0] - 0.2332574).abs() < 1e-6);
    /// assert!((out.loss - 0.1909596).abs() < 1e-6);
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    ///
    /// # Cost per call
    /// As [`crate::MultiSimilarityLoss`]: the distance matrix, O(n·m) exponentials and two
    /// matrix products for the gradient; two `n x m` matrices of memory.
    loss: SoftNearestNeighborLoss,
    class: "SoftNearestNeighborLoss",
    distance: "sql2",
    fields: {
        /// The temperature T (default 1.0).
        temperature = 1.0 => finite_nonzero("temperature", temperature, DIVISOR)?;
    },
    /// Validates the arguments.
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`](metric_loss_core::LossError::UnknownDistance),
    /// [`LossError::UnknownReduction`](metric_loss_core::LossError::UnknownReduction),
    /// [`LossError::InvalidParameter`](metric_loss_core::LossError::InvalidParameter) for T = 0 (TF
    /// Similarity divides by it: NaN) or a non-finite T.
    build,
    /// The same loss with other parts: any distance and reducer, yours included (see
    /// [`crate::MultiSimilarityLoss::with_parts`]).
    with_parts,
}

impl RowLoss for SoftNearestNeighborLoss {
    row_loss_fields!();

    // Inlined into the driver's AVX2 copy of the row loop.
    #[inline(always)]
    fn row<T: DenseFloat>(
        &self,
        row: &RowView<'_, T>,
        grad: &mut [T],
        scratch: &mut RowScratch,
    ) -> T {
        let t = T::from_f64(self.temperature);
        let tiny = T::from_f64(1e-9);
        let d = row.distances;
        let m = d.len();
        let self_col = row.self_col.unwrap_or(usize::MAX);
        let (side, grad) = (scratch.sides(m), &mut grad[..m]);
        let (mut a, mut b, has_positive) = exps(row, t, grad, side, T::ZERO);
        if !(a > T::ZERO && a.is_finite()) {
            // TF: 0/0 (or ∞/∞). The ratio is shift-invariant: shift by the largest
            // exponent of the row.
            if m == 0 || (m == 1 && self_col == 0) {
                return T::ZERO; // no key besides the anchor
            }
            let c = (0..m)
                .filter(|&j| j != self_col)
                .map(|j| (-d[j] / t).key())
                .max()
                .map_or(T::ZERO, T::from_key);
            (a, b, _) = exps(row, t, grad, side, c);
        }
        if !has_positive {
            grad.fill(T::ZERO);
            return T::ZERO;
        }
        let r = b / a;
        let denom = tiny + r;
        // (Eᵢⱼ/T)/(1e-9 + r)·(Pᵢⱼ/A − B/A²), as (Eᵢⱼ/A)·((Pᵢⱼ − r)/(1e-9 + r))/T:
        // A² would underflow for rows close to the edge.
        let (f_pos, f_neg) = (((T::ONE - r) / denom) / t, ((-r) / denom) / t);
        for (g, &k) in grad.iter_mut().zip(side.iter()) {
            let f = if k == POSITIVE { f_pos } else { f_neg };
            *g = keep(*g != T::ZERO, (*g / a) * f);
        }
        -denom.ln()
    }
}

/// Eᵢⱼ = e^{−Dᵢⱼ/T − shift} into `grad` (0 for the anchor itself) and each key's side into
/// `side`; returns A = Σ Eᵢⱼ, B (its part over the positives) and whether the row has a
/// positive. Branch-free, so that it vectorises (inlined into the row loop's AVX2 copy).
#[inline(always)]
fn exps<T: DenseFloat>(
    row: &RowView<'_, T>,
    t: T,
    grad: &mut [T],
    side: &mut [Side],
    shift: T,
) -> (T, T, bool) {
    let (d, labels, label, diag) = (row.distances, row.key_classes, row.anchor_class, row.diag);
    let self_col = row.self_col.unwrap_or(usize::MAX);
    let mut sides = NEITHER;
    for (j, (((g, k), &dj), &lab)) in grad
        .iter_mut()
        .zip(side.iter_mut())
        .zip(d)
        .zip(labels)
        .enumerate()
    {
        let pos = (lab == label) & (j != diag);
        *g = keep(j != self_col, T::exp_ftz(-dj / t - shift));
        let this = if pos { POSITIVE } else { NEGATIVE };
        sides |= this;
        *k = this;
    }
    let (b, others) = side_sums(grad, side);
    (b + others, b, sides & POSITIVE != 0)
}
