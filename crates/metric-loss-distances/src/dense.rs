//! Dense vector-Jacobian products: the gradient of Σᵢⱼ Gᵢⱼ Dᵢⱼ for a full `n x m` upstream
//! matrix G, through matrix products instead of one `pair_vjp` per entry.
//!
//! | distance | grad_q | grad_k |
//! | --- | --- | --- |
//! | inner product | G K | Gᵀ Q |
//! | cosine | −G K | −Gᵀ Q |
//! | squared euclidean | 2 (diag(G 1) Q − G K) | 2 (diag(Gᵀ 1) K − Gᵀ Q) |
//! | euclidean | the same with H = G / D (0 where D = 0) and factor 1 | |
//!
//! Clamped entries (cosine's `max(1 − q·k, 0)` and squared euclidean's `max(s, 0)` when the
//! clamp is active, which `Distance::matrix` writes as `-0.0`) pass no gradient: their
//! upstream entries are set to 0 before the products (the branch rule is exactly
//! `pair_vjp`'s). Manhattan and snr visit every non-zero entry with `pair_vjp`.
//!
//! Cost: two `n x m x dims` matrix products plus O(n·m) (and an `n x m` temporary for
//! euclidean, an `m`-vector of column sums for both euclidean distances).

use metric_loss_core::{Distance, Embeddings, Float};

use crate::parallel::{for_rows_on, gemm_rows, threads_for};
use crate::transpose::add_transpose;
use crate::DistanceKind;

/// The dense VJP of `kind`; see the module documentation. `col_sums` is reusable memory
/// (the euclidean distances' column sums).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense_vjp<T: Float>(
    kind: DistanceKind,
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    dist: &[T],
    dist_grad: &mut [T],
    grad_q: &mut [T],
    grad_k: &mut [T],
    col_sums: &mut Vec<T>,
) {
    let (n, m, dims) = (q.rows(), k.rows(), q.cols());
    debug_assert_eq!(dist.len(), n * m);
    debug_assert_eq!(dist_grad.len(), n * m);
    if n == 0 || m == 0 || dims == 0 {
        return;
    }
    match kind {
        DistanceKind::InnerProduct => products(q, k, dist_grad, T::ONE, grad_q, grad_k),
        DistanceKind::Cosine => {
            drop_clamped(dist, dist_grad, m);
            products(q, k, dist_grad, -T::ONE, grad_q, grad_k);
        }
        DistanceKind::SquaredEuclidean => {
            drop_clamped(dist, dist_grad, m);
            differences(q, k, dist_grad, T::from_f64(2.0), grad_q, grad_k, col_sums);
        }
        DistanceKind::Euclidean => {
            // Below the 1e-18 clamp the value is exactly 0 and the gradient is 0. The
            // upstream gradient is ours to overwrite (see `Distance::dense_vjp`).
            for (g, d) in dist_grad.iter_mut().zip(dist) {
                *g = if *d > T::ZERO { *g / *d } else { T::ZERO };
            }
            differences(q, k, dist_grad, T::ONE, grad_q, grad_k, col_sums);
        }
        DistanceKind::Manhattan | DistanceKind::Snr => {
            for i in 0..n {
                for j in 0..m {
                    let g = dist_grad[i * m + j];
                    if g != T::ZERO {
                        let gq = &mut grad_q[i * dims..(i + 1) * dims];
                        let gk = &mut grad_k[j * dims..(j + 1) * dims];
                        kind.pair_vjp(q.row(i), k.row(j), dist[i * m + j], g, gq, gk);
                    }
                }
            }
        }
    }
}

/// The dense VJP of `kind` for a batch against itself (keys = queries): with S = G + Gᵀ
/// the two products G K and Gᵀ Q become one, S X. Returns `false` for the distances
/// without a product form (manhattan, snr), leaving everything untouched.
pub(crate) fn dense_vjp_same<T: Float>(
    kind: DistanceKind,
    x: Embeddings<'_, T>,
    dist: &[T],
    dist_grad: &mut [T],
    grad: &mut [T],
) -> bool {
    let (n, dims) = (x.rows(), x.cols());
    debug_assert_eq!(dist.len(), n * n);
    debug_assert_eq!(dist_grad.len(), n * n);
    if n == 0 || dims == 0 {
        return true;
    }
    match kind {
        DistanceKind::InnerProduct => symmetric_product(x, dist_grad, T::ONE, grad),
        DistanceKind::Cosine => {
            drop_clamped(dist, dist_grad, n);
            symmetric_product(x, dist_grad, -T::ONE, grad);
        }
        DistanceKind::SquaredEuclidean => {
            drop_clamped(dist, dist_grad, n);
            symmetric_differences(x, dist_grad, T::from_f64(2.0), grad);
        }
        DistanceKind::Euclidean => {
            for (g, d) in dist_grad.iter_mut().zip(dist) {
                *g = if *d > T::ZERO { *g / *d } else { T::ZERO };
            }
            symmetric_differences(x, dist_grad, T::ONE, grad);
        }
        DistanceKind::Manhattan | DistanceKind::Snr => return false,
    }
    true
}

/// grad += alpha · (G + Gᵀ) X, consuming G.
fn symmetric_product<T: Float>(x: Embeddings<'_, T>, g: &mut [T], alpha: T, grad: &mut [T]) {
    let (n, dims) = (x.rows(), x.cols());
    add_transpose(g, n);
    gemm_rows(
        n,
        n,
        dims,
        alpha,
        (g, n, 1),
        (x.as_slice(), dims, 1),
        T::ONE,
        grad,
    );
}

/// [`differences`] with keys = queries: grad += factor (diag(S 1) X − S X), S = H + Hᵀ.
fn symmetric_differences<T: Float>(x: Embeddings<'_, T>, h: &mut [T], factor: T, grad: &mut [T]) {
    let (n, dims) = (x.rows(), x.cols());
    symmetric_product(x, h, -factor, grad);
    for (i, row) in h.chunks_exact(n).enumerate() {
        let row_sum = crate::lanes::sum(row);
        if row_sum != T::ZERO {
            axpy(
                factor * row_sum,
                x.row(i),
                &mut grad[i * dims..(i + 1) * dims],
            );
        }
    }
}

/// grad_q += alpha · G K and grad_k += alpha · Gᵀ Q.
fn products<T: Float>(
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    g: &[T],
    alpha: T,
    grad_q: &mut [T],
    grad_k: &mut [T],
) {
    let (n, m, dims) = (q.rows(), k.rows(), q.cols());
    gemm_rows(
        n,
        m,
        dims,
        alpha,
        (g, m, 1),
        (k.as_slice(), dims, 1),
        T::ONE,
        grad_q,
    );
    gemm_rows(
        m,
        n,
        dims,
        alpha,
        (g, 1, m),
        (q.as_slice(), dims, 1),
        T::ONE,
        grad_k,
    );
}

/// The gradient of Σ Hᵢⱼ · f(‖qᵢ − kⱼ‖²) for f' folded into `factor · H`:
/// grad_q += factor (diag(H 1) Q − H K), grad_k += factor (diag(Hᵀ 1) K − Hᵀ Q).
fn differences<T: Float>(
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    h: &[T],
    factor: T,
    grad_q: &mut [T],
    grad_k: &mut [T],
    col_sums: &mut Vec<T>,
) {
    let (m, dims) = (k.rows(), q.cols());
    products(q, k, h, -factor, grad_q, grad_k);
    col_sums.clear();
    col_sums.resize(m, T::ZERO);
    for (i, row) in h.chunks_exact(m).enumerate() {
        let mut row_sum = T::ZERO;
        for (c, v) in col_sums.iter_mut().zip(row) {
            row_sum += *v;
            *c += *v;
        }
        if row_sum != T::ZERO {
            axpy(
                factor * row_sum,
                q.row(i),
                &mut grad_q[i * dims..(i + 1) * dims],
            );
        }
    }
    for (j, c) in col_sums.iter().enumerate() {
        if *c != T::ZERO {
            axpy(factor * *c, k.row(j), &mut grad_k[j * dims..(j + 1) * dims]);
        }
    }
}

/// Zeroes the upstream gradient of every entry whose clamp is active (written as `-0.0`
/// by `Distance::matrix`, exactly the entries `pair_vjp` blocks), so that the products
/// pass none of it; rows split over threads.
fn drop_clamped<T: Float>(dist: &[T], dist_grad: &mut [T], m: usize) {
    // Zeros are rare (the diagonal, duplicate rows): a vectorised test per block first,
    // the exact test only in blocks that hold a zero.
    const BLOCK: usize = 64;
    let rows = dist.len().checked_div(m).unwrap_or(0);
    for_rows_on(threads_for(rows), dist_grad, m, |r0, grads| {
        let ds = &dist[r0 * m..r0 * m + grads.len()];
        for (ds, gs) in ds.chunks(BLOCK).zip(grads.chunks_mut(BLOCK)) {
            if ds.iter().fold(false, |any, d| any | (*d == T::ZERO)) {
                for (d, g) in ds.iter().zip(gs) {
                    if *d == T::ZERO && d.is_sign_negative() {
                        *g = T::ZERO;
                    }
                }
            }
        }
    });
}

fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * *x;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trait's default body: one `pair_vjp` per non-zero entry.
    fn reference(
        kind: DistanceKind,
        q: Embeddings<'_, f64>,
        k: Embeddings<'_, f64>,
        dist: &[f64],
        g: &[f64],
    ) -> (Vec<f64>, Vec<f64>) {
        let (n, m, d) = (q.rows(), k.rows(), q.cols());
        let (mut gq, mut gk) = (vec![0.0; n * d], vec![0.0; m * d]);
        for i in 0..n {
            for j in 0..m {
                let v = g[i * m + j];
                if v != 0.0 {
                    Distance::<f64>::pair_vjp(
                        &kind,
                        q.row(i),
                        k.row(j),
                        dist[i * m + j],
                        v,
                        &mut gq[i * d..(i + 1) * d],
                        &mut gk[j * d..(j + 1) * d],
                    );
                }
            }
        }
        (gq, gk)
    }

    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_batch_against_itself_matches_both_halves() {
        let (n, d) = (40, 5);
        let mut xv = values(n * d, 4);
        // Two identical rows exercise the clamps.
        xv.copy_within(0..d, d);
        let x = Embeddings::from_row_major(&xv, n, d).unwrap();
        let g = values(n * n, 5);
        for kind in DistanceKind::ALL {
            let mut dist = vec![0.0; n * n];
            kind.matrix(x, x, true, &mut Vec::new(), &mut dist).unwrap();
            let (rq, rk) = reference(kind, x, x, &dist, &g);
            let mut got = vec![0.0; n * d];
            kind.dense_vjp_same(x, &dist, &mut g.clone(), &mut got, &mut Vec::new());
            // Euclidean's H = G / D is ~1e8 on the duplicated pair (D is the square root
            // of a rounding error there): the products cancel it only to ~1e-8, where the
            // pairwise reference multiplies by an exact 0.
            let tol = if kind == DistanceKind::Euclidean {
                1e-6
            } else {
                1e-9
            };
            for (a, (q, k)) in got.iter().zip(rq.iter().zip(&rk)) {
                let b = q + k;
                assert!((a - b).abs() < tol * (1.0 + b.abs()), "{kind}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn dense_matches_pairwise_for_every_distance() {
        let (n, m, d) = (7, 9, 5);
        let mut qv = values(n * d, 1);
        let mut kv = values(m * d, 2);
        // Identical rows and a row of norm > 1 exercise the clamps.
        let (head, tail) = kv.split_at_mut(d);
        tail[..d].copy_from_slice(head);
        qv[..d].copy_from_slice(&kv[..d]);
        for v in &mut qv[d..2 * d] {
            *v *= 3.0;
        }
        kv[2 * d..3 * d].copy_from_slice(&qv[d..2 * d]);
        let g = values(n * m, 3);
        let q = Embeddings::from_row_major(&qv, n, d).unwrap();
        let k = Embeddings::from_row_major(&kv, m, d).unwrap();
        for kind in DistanceKind::ALL {
            let mut dist = vec![0.0; n * m];
            kind.matrix(q, k, false, &mut Vec::new(), &mut dist)
                .unwrap();
            let (rq, rk) = reference(kind, q, k, &dist, &g);
            let (mut gq, mut gk) = (vec![0.0; n * d], vec![0.0; m * d]);
            kind.dense_vjp(q, k, &dist, &mut g.clone(), &mut gq, &mut gk);
            for (a, b) in gq.iter().zip(&rq).chain(gk.iter().zip(&rk)) {
                assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "{kind}: {a} vs {b}");
            }
        }
    }
}
