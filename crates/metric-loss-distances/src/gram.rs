//! Gram matrices `Q Kᵀ` on row-major buffers, with the symmetric case at half the cost.

use metric_loss_core::Float;

/// Row-block height of the symmetric product: each block computes its rows from the
/// diagonal rightwards, so the work wasted below the diagonal is about `n * BLOCK / 2`.
const BLOCK: usize = 128;

/// `out = alpha · Q Kᵀ` (`n x m`, row-major) for row-major `q` (`n x dims`) and `k`
/// (`m x dims`).
pub(crate) fn gram<T: Float>(
    q: &[T],
    k: &[T],
    n: usize,
    m: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
) {
    T::gemm(
        n,
        dims,
        m,
        alpha,
        (q, dims, 1),
        (k, 1, dims),
        T::ZERO,
        (out, m, 1),
    );
}

/// `out = alpha · X Xᵀ` (`n x n`): the upper triangle block by block, then mirrored, so
/// the result is exactly symmetric.
pub(crate) fn gram_symmetric<T: Float>(x: &[T], n: usize, dims: usize, alpha: T, out: &mut [T]) {
    if n <= BLOCK {
        gram(x, x, n, n, dims, alpha, out);
    } else {
        let mut r0 = 0;
        while r0 < n {
            let r1 = (r0 + BLOCK).min(n);
            T::gemm(
                r1 - r0,
                dims,
                n - r0,
                alpha,
                (&x[r0 * dims..], dims, 1),
                (&x[r0 * dims..], 1, dims),
                T::ZERO,
                (&mut out[r0 * n + r0..], n, 1),
            );
            r0 = r1;
        }
    }
    mirror_upper(out, n);
}

/// Copies the upper triangle onto the lower one, in square tiles to stay in cache.
pub(crate) fn mirror_upper<T: Float>(out: &mut [T], n: usize) {
    const TILE: usize = 32;
    for bi in (0..n).step_by(TILE) {
        for bj in (0..=bi).step_by(TILE) {
            for i in bi..(bi + TILE).min(n) {
                for j in bj..(bj + TILE).min(i) {
                    out[i * n + j] = out[j * n + i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_matches_general() {
        let (n, d) = (300, 7);
        let x: Vec<f64> = (0..n * d)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 17.0)
            .collect();
        let mut a = vec![0.0; n * n];
        let mut b = vec![0.0; n * n];
        gram(&x, &x, n, n, d, 1.0, &mut a);
        gram_symmetric(&x, n, d, 1.0, &mut b);
        for i in 0..n {
            for j in 0..n {
                assert!((a[i * n + j] - b[i * n + j]).abs() < 1e-9);
                assert_eq!(b[i * n + j], b[j * n + i]);
            }
        }
    }
}
