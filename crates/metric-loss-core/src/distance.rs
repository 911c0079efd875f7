//! The distance abstraction.

use std::fmt::Debug;

use crate::{Embeddings, Float, LossError};

/// A pairwise distance (or similarity) between query and key embeddings, with its
/// vector-Jacobian products.
///
/// `matrix` fills the `n x m` row-major matrix D with Dᵢⱼ = d(qᵢ, kⱼ). Losses that use a
/// few entries per row (triplet mining) differentiate through [`Distance::pair_vjp`] in
/// O(dims) per entry; losses that weigh every pair use [`Distance::dense_vjp`], whose
/// default body calls `pair_vjp` on every non-zero entry and which fast distances override
/// with matrix products.
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

    /// Adds `g · ∂d(q, k)/∂q` to `grad_q` and `g · ∂d(q, k)/∂k` to `grad_k`, where `value`
    /// is d(q, k) as computed by [`Distance::matrix`] (used to pick the branch of clamps).
    fn pair_vjp(&self, q: &[T], k: &[T], value: T, g: T, grad_q: &mut [T], grad_k: &mut [T]);

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
