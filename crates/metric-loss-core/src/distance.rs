//! The distance abstraction.

use std::any::Any;
use std::fmt::Debug;

use crate::{Embeddings, Float, LossError};

/// A pairwise distance (or similarity) between query and key embeddings, with its
/// vector-Jacobian products.
///
/// `matrix` fills the `n x m` row-major matrix D with Dᵢⱼ = d(qᵢ, kⱼ). Losses that use a
/// few entries per row (triplet mining) differentiate through [`Distance::pair_vjp_query`]
/// and [`Distance::pair_vjp_key`] in O(dims) per entry; losses that weigh every pair use
/// [`Distance::dense_vjp`], whose default body visits every non-zero entry and which fast
/// distances override with matrix products.
///
/// Optional capabilities have default bodies, so a distance implements what it can:
/// [`Distance::upper_triangle`] declares that entry (j, i) equals entry (i, j) bit for bit,
/// which lets a loss compute and mine a batch against itself from one triangle.
///
/// ```
/// use metric_loss_core::{Distance, Embeddings, Float, LossError};
///
/// /// Σₜ (qₜ − kₜ)²: squared euclidean, written out.
/// #[derive(Debug)]
/// struct SquaredL2;
///
/// impl<T: Float> Distance<T> for SquaredL2 {
///     fn name(&self) -> &'static str { "my_squared_l2" }
///     fn matrix(&self, q: Embeddings<'_, T>, k: Embeddings<'_, T>, _same: bool,
///               _scratch: &mut Vec<T>, out: &mut [T]) -> Result<(), LossError> {
///         for i in 0..q.rows() {
///             for j in 0..k.rows() {
///                 out[i * k.rows() + j] = q.row(i).iter().zip(k.row(j))
///                     .map(|(a, b)| (*a - *b) * (*a - *b)).sum();
///             }
///         }
///         Ok(())
///     }
///     fn pair_vjp_query(&self, q: &[T], k: &[T], _value: T, g: T, grad_q: &mut [T]) {
///         for ((o, a), b) in grad_q.iter_mut().zip(q).zip(k) { *o += T::from_f64(2.0) * g * (*a - *b); }
///     }
///     fn pair_vjp_key(&self, q: &[T], k: &[T], _value: T, g: T, grad_k: &mut [T]) {
///         for ((o, a), b) in grad_k.iter_mut().zip(q).zip(k) { *o -= T::from_f64(2.0) * g * (*a - *b); }
///     }
/// }
///
/// let x = [0.0f64, 0.0, 3.0, 4.0];
/// let e = Embeddings::from_row_major(&x, 2, 2)?;
/// let mut d = [0.0; 4];
/// SquaredL2.matrix(e, e, true, &mut Vec::new(), &mut d)?;
/// assert_eq!(d, [0.0, 25.0, 25.0, 0.0]);
/// # Ok::<(), LossError>(())
/// ```
pub trait Distance<T: Float>: Debug + Send + Sync {
    /// The canonical name (TF Similarity's), e.g. `"cosine"`.
    fn name(&self) -> &'static str;

    /// Fills `out` (length `q.rows() * k.rows()`, row-major) with the distances. `same`
    /// says `k` is `q` itself, so implementations may compute only one triangle. `scratch`
    /// is reusable memory for per-row statistics.
    ///
    /// A distance clamped at zero whose gradient is blocked by the clamp is written as
    /// `-0.0` (it compares equal to `0.0`), so that [`Distance::pair_vjp`] follows the
    /// forward pass's branch exactly instead of re-deriving it in another summation order.
    ///
    /// # Errors
    /// When a distance is undefined for the input (see each implementation).
    fn matrix(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        same: bool,
        scratch: &mut Vec<T>,
        out: &mut [T],
    ) -> Result<(), LossError>;

    /// Writes the distances of the batch `x` to itself on and above the diagonal of `out`
    /// (`n x n`, row-major: entries (i, j ≥ i)) and returns `true`, if this distance is
    /// symmetric bit for bit (entry (j, i) would equal entry (i, j)). The values must be
    /// [`Distance::matrix`]'s with `same = true`. Entries below the diagonal are not
    /// meaningful afterwards.
    ///
    /// `parts` splits the rows into the ranges `parts[p]..parts[p + 1]` that the caller
    /// mines in parallel; an implementation that splits its own work should split there.
    ///
    /// The default returns `false` and writes nothing: the caller then computes the full
    /// matrix with [`Distance::matrix`].
    ///
    /// # Errors
    /// As [`Distance::matrix`].
    fn upper_triangle(
        &self,
        x: Embeddings<'_, T>,
        parts: &[usize],
        out: &mut [T],
    ) -> Result<bool, LossError> {
        let _ = (x, parts, out);
        Ok(false)
    }

    /// Adds `g · ∂d(q, k)/∂q` to `grad_q`, where `value` is d(q, k) as computed by
    /// [`Distance::matrix`] (used to pick the branch of clamps).
    fn pair_vjp_query(&self, q: &[T], k: &[T], value: T, g: T, grad_q: &mut [T]);

    /// Adds `g · ∂d(q, k)/∂k` to `grad_k` (see [`Distance::pair_vjp_query`]).
    fn pair_vjp_key(&self, q: &[T], k: &[T], value: T, g: T, grad_k: &mut [T]);

    /// Both halves: adds `g · ∂d(q, k)/∂q` to `grad_q` and `g · ∂d(q, k)/∂k` to `grad_k`.
    fn pair_vjp(&self, q: &[T], k: &[T], value: T, g: T, grad_q: &mut [T], grad_k: &mut [T]) {
        self.pair_vjp_query(q, k, value, g, grad_q);
        self.pair_vjp_key(q, k, value, g, grad_k);
    }

    /// Adds the gradient of Σᵢⱼ Gᵢⱼ Dᵢⱼ to `grad_q` (`n x dims`) and `grad_k`
    /// (`m x dims`), given the distances `dist` and their upstream gradient `dist_grad`
    /// (both `n x m`). The default visits each non-zero entry of `dist_grad`.
    ///
    /// `dist_grad` is consumed: an implementation may overwrite it (the euclidean one scales
    /// it in place by 1/D instead of allocating an `n x m` temporary per call).
    fn dense_vjp(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        dist: &[T],
        dist_grad: &mut [T],
        grad_q: &mut [T],
        grad_k: &mut [T],
    ) {
        let (m, dims) = (k.rows(), q.cols());
        for i in 0..q.rows() {
            for j in 0..m {
                let g = dist_grad[i * m + j];
                if g != T::ZERO {
                    pair_vjp_into(self, q, k, i, j, dist[i * m + j], g, dims, grad_q, grad_k);
                }
            }
        }
    }

    /// [`Distance::dense_vjp`] with reusable memory: a distance whose gradient needs
    /// intermediates (normalised copies of the rows, say) keeps them in `scratch` instead
    /// of allocating on every call. The default ignores `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn dense_vjp_with_scratch(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        dist: &[T],
        dist_grad: &mut [T],
        grad_q: &mut [T],
        grad_k: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        let _ = scratch;
        self.dense_vjp(q, k, dist, dist_grad, grad_q, grad_k);
    }

    /// Whether larger values mean closer (a similarity, such as a cosine similarity)
    /// rather than farther (a distance). Losses written for distances reject a similarity;
    /// losses that take either (pytorch-metric-learning's) flip their comparisons.
    /// Default: `false`.
    fn is_similarity(&self) -> bool {
        false
    }

    /// [`Distance::dense_vjp`] for the batch `x` against itself: adds the gradient of
    /// Σᵢⱼ Gᵢⱼ Dᵢⱼ with respect to `x` (both sides, queries and keys) to `grad`
    /// (`n x dims`). `dist_grad` is consumed as in `dense_vjp`; `scratch` is reusable
    /// memory.
    ///
    /// The default runs `dense_vjp` with the key gradient in `scratch` and adds it;
    /// product-form distances override it to multiply once by G + Gᵀ instead of twice.
    fn dense_vjp_same(
        &self,
        x: Embeddings<'_, T>,
        dist: &[T],
        dist_grad: &mut [T],
        grad: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        dense_vjp_by_halves(self, x, dist, dist_grad, grad, scratch);
    }
}

/// [`Distance::dense_vjp_same`]'s default body, for implementations that override it only
/// for some cases: [`Distance::dense_vjp`] of `x` against itself, the key half in
/// `scratch`, added to `grad`.
pub fn dense_vjp_by_halves<T: Float, D: Distance<T> + ?Sized>(
    distance: &D,
    x: Embeddings<'_, T>,
    dist: &[T],
    dist_grad: &mut [T],
    grad: &mut [T],
    scratch: &mut Vec<T>,
) {
    scratch.clear();
    scratch.resize(grad.len(), T::ZERO);
    distance.dense_vjp(x, x, dist, dist_grad, grad, scratch);
    for (o, v) in grad.iter_mut().zip(scratch.iter()) {
        *o += *v;
    }
}

#[allow(clippy::too_many_arguments)]
fn pair_vjp_into<T: Float, D: Distance<T> + ?Sized>(
    d: &D,
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    i: usize,
    j: usize,
    value: T,
    g: T,
    dims: usize,
    grad_q: &mut [T],
    grad_k: &mut [T],
) {
    let gq = &mut grad_q[i * dims..(i + 1) * dims];
    let gk = &mut grad_k[j * dims..(j + 1) * dims];
    d.pair_vjp(q.row(i), k.row(j), value, g, gq, gk);
}

/// A distance in both precisions: what a loss holds (`Arc<dyn AnyDistance>`), so that one
/// value serves `compute_f32` and `compute_f64`. Implemented for every type that
/// implements [`Distance`] for `f32` and `f64`.
pub trait AnyDistance: Distance<f32> + Distance<f64> + Any {
    /// The value as [`Any`], to recover a concrete distance (`downcast_ref`).
    fn as_any(&self) -> &dyn Any;
}

impl<D: Distance<f32> + Distance<f64> + Any> AnyDistance for D {
    fn as_any(&self) -> &dyn Any {
        self
    }
}
