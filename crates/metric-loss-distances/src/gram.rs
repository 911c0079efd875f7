//! Gram matrices `Q Kᵀ` on row-major buffers, with the symmetric case at half the cost.

use metric_loss_core::Float;

/// Row-block height of the strips: each strip of the symmetric product computes its rows
/// from the diagonal rightwards (the work wasted below the diagonal is about
/// `n * BLOCK / 2` entries), and each strip's epilogue and mirror run right after its
/// product, while the strip is still in cache.
const BLOCK: usize = 128;

/// Columns per mirror tile: one 64-byte cache line of `f32`.
const TILE: usize = 16;

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

/// [`gram`] followed by `epilogue(i, j0, segment)` on every row segment of the result
/// (entries `(i, j0..j0 + segment.len())`, in place), strip by strip so that the epilogue
/// reads what the product just wrote while it is in cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gram_with<T: Float>(
    q: &[T],
    k: &[T],
    n: usize,
    m: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
    mut epilogue: impl FnMut(usize, usize, &mut [T]),
) {
    debug_assert_eq!(out.len(), n * m);
    if m == 0 {
        return;
    }
    for (s, strip) in out.chunks_mut(BLOCK * m).enumerate() {
        let r0 = s * BLOCK;
        let rows = strip.len() / m;
        gram(&q[r0 * dims..], k, rows, m, dims, alpha, strip);
        for (i, row) in strip.chunks_exact_mut(m).enumerate() {
            epilogue(r0 + i, 0, row);
        }
    }
}

/// `out = alpha · X Xᵀ` (`n x n`): the upper triangle block by block, then mirrored, so
/// the result is exactly symmetric.
#[cfg(test)]
pub(crate) fn gram_symmetric<T: Float>(x: &[T], n: usize, dims: usize, alpha: T, out: &mut [T]) {
    gram_symmetric_with(x, n, dims, alpha, out, |_, _, _| {});
}

/// `out = epilogue(alpha · X Xᵀ)` (`n x n`). The product is computed for the upper
/// triangle only, one strip of `BLOCK` rows at a time; each strip is then mirrored onto the
/// lower triangle and `epilogue(i, j0, segment)` applied in place to every row segment
/// (entries `(i, j0..)`), while the strip is in cache. Every entry (i, j) is
/// `epilogue(i, j, p)` of the same product value p as entry (j, i), exactly as if the
/// epilogue ran on a mirrored matrix, so asymmetric epilogues (norms, variances) keep their
/// arithmetic.
///
/// Compared with a product, a full mirror pass and a full epilogue pass over the finished
/// matrix, this touches each entry once while it is hot: at N = 4096 the separate mirror
/// alone (strided writes over a 64 MiB matrix) cost about as much as the half product.
pub(crate) fn gram_symmetric_with<T: Float>(
    x: &[T],
    n: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
    mut epilogue: impl FnMut(usize, usize, &mut [T]),
) {
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
        // The strip's upper part holds raw products: mirror them, running the epilogue on
        // both copies as they pass through the cache.
        mirror_strip(out, n, r0, r1, &mut epilogue);
        for i in r0..r1 {
            epilogue(i, i, &mut out[i * n + i..i * n + i + 1]);
        }
        r0 = r1;
    }
}

/// Copies the upper-triangle entries of rows `r0..r1` (columns `> i`) onto the lower
/// triangle (rows `j > i`, columns `r0..r1`), and runs `epilogue` on every entry off the
/// diagonal it reads or writes: the upper segment right after it is read, the lower one
/// right after it is written. Tiles of `TILE` columns are read row by row into a small
/// transposed buffer, then written as contiguous row segments: no strided writes, no
/// cache-set thrashing at power-of-two strides.
fn mirror_strip<T: Float>(
    out: &mut [T],
    n: usize,
    r0: usize,
    r1: usize,
    epilogue: &mut impl FnMut(usize, usize, &mut [T]),
) {
    let mut buf = [[T::ZERO; BLOCK]; TILE];
    let mut j0 = r0 + 1;
    while j0 < n {
        let j1 = (j0 + TILE).min(n);
        // Rows i < j of the strip hold entry (i, j).
        let rows = (j1 - 1).min(r1) - r0;
        for i in r0..r0 + rows {
            let src = &mut out[i * n + j0..i * n + j1];
            for (t, v) in src.iter().enumerate() {
                buf[t][i - r0] = *v;
            }
            // Entries (i, j > i); for i ≥ j0 the first ones are on or below the diagonal.
            let skip = (i + 1).saturating_sub(j0);
            epilogue(i, j0 + skip, &mut src[skip..]);
        }
        for (t, j) in (j0..j1).enumerate() {
            let len = j.min(r1) - r0;
            let dst = &mut out[j * n + r0..j * n + r0 + len];
            dst.copy_from_slice(&buf[t][..len]);
            epilogue(j, r0, dst);
        }
        j0 = j1;
    }
}

/// Copies the upper triangle onto the lower one, strip by strip (see [`mirror_strip`]).
pub(crate) fn mirror_upper<T: Float>(out: &mut [T], n: usize) {
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + BLOCK).min(n);
        mirror_strip(out, n, r0, r1, &mut |_, _, _| {});
        r0 = r1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_fills_the_lower_triangle() {
        for n in [1, 5, 16, 17, 130, 300] {
            let mut a: Vec<f64> = (0..n * n).map(|i| i as f64).collect();
            mirror_upper(&mut a, n);
            for i in 0..n {
                for j in 0..n {
                    let (r, c) = if i <= j { (i, j) } else { (j, i) };
                    assert_eq!(a[i * n + j], (r * n + c) as f64, "n={n} ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn symmetric_epilogue_sees_each_entry_once_with_its_own_indices() {
        let (n, d) = (300, 5);
        let x: Vec<f64> = (0..n * d).map(|i| ((i * 13 % 29) as f64) / 7.0).collect();
        let mut plain = vec![0.0; n * n];
        gram(&x, &x, n, n, d, 1.0, &mut plain);
        let mut out = vec![0.0; n * n];
        let mut seen = vec![0u8; n * n];
        gram_symmetric_with(&x, n, d, 1.0, &mut out, |i, j0, seg| {
            for (t, v) in seg.iter_mut().enumerate() {
                seen[i * n + j0 + t] += 1;
                *v = *v * 1000.0 + (i * n + j0 + t) as f64;
            }
        });
        assert!(seen.iter().all(|s| *s == 1));
        for i in 0..n {
            for j in 0..n {
                let p = out[i * n + j] - (i * n + j) as f64;
                assert!((p / 1000.0 - plain[i * n + j]).abs() < 1e-9);
            }
        }
    }

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
