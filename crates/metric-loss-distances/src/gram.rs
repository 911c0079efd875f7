//! Gram matrices `Q Kᵀ` on row-major buffers, with the symmetric case at half the cost.

use std::ops::Range;

use metric_loss_core::Float;

use crate::bands::{split_square, Band, SquareWork};
use crate::parallel::{for_row_ranges, for_rows_on};
use crate::wide::with_avx2;

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
/// reads what the product just wrote while it is in cache. Rows are split over
/// `threads` threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gram_with<T: Float>(
    threads: usize,
    q: &[T],
    k: &[T],
    n: usize,
    m: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    debug_assert_eq!(out.len(), n * m);
    if m == 0 {
        return;
    }
    for_rows_on(threads, out, m, |r0, rows| {
        let strip_rows = general_strip_rows::<T>(m);
        for (s, strip) in rows.chunks_mut(strip_rows * m).enumerate() {
            let s0 = r0 + s * strip_rows;
            gram(&q[s0 * dims..], k, strip.len() / m, m, dims, alpha, strip);
            // In the AVX2 copy, inside the thread's own closure (the epilogues are
            // element-wise maps: twice the lanes, the same bits).
            with_avx2(
                #[inline(always)]
                || {
                    for (i, row) in strip.chunks_exact_mut(m).enumerate() {
                        epilogue(s0 + i, 0, row);
                    }
                },
            );
        }
    });
}

/// Rows per strip of the general product: about 1 MiB of output, and at least [`BLOCK`].
/// Each strip's product packs all of `K` again, so short strips cost packing; long ones
/// leave the epilogue reading what fell out of cache. Measured with two threads at
/// N = 1024, D = 128 (f32): strips of 128 rows took 2.53 ms, of 256 or 512 rows 2.25 ms
/// (median of four interleaved runs); at N = 4096 the strip height made no difference
/// beyond the noise.
fn general_strip_rows<T>(m: usize) -> usize {
    ((1 << 20) / (m * std::mem::size_of::<T>()).max(1)).max(BLOCK)
}

/// `out = alpha · X Xᵀ` (`n x n`): the upper triangle block by block, then mirrored, so
/// the result is exactly symmetric.
#[cfg(test)]
pub(crate) fn gram_symmetric<T: Float>(x: &[T], n: usize, dims: usize, alpha: T, out: &mut [T]) {
    gram_symmetric_with(1, x, n, dims, alpha, out, |_, _, _| {});
}

/// `out = epilogue(alpha · Q Kᵀ)` on `threads` threads: [`gram_symmetric_with`] when the
/// keys are the queries (`same`), else [`gram_with`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn product<T: Float>(
    threads: usize,
    q: &[T],
    k: &[T],
    same: bool,
    n: usize,
    m: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    if same {
        gram_symmetric_with(threads, q, n, dims, alpha, out, epilogue);
    } else {
        gram_with(threads, q, k, n, m, dims, alpha, out, epilogue);
    }
}

/// `out = epilogue(alpha · X Xᵀ)` (`n x n`).
///
/// The product is computed for the upper triangle only, one strip of `BLOCK` rows at a
/// time; each strip is then mirrored onto the lower triangle and `epilogue(i, j0, segment)`
/// applied in place to every row segment (entries `(i, j0..)`), while the strip is in
/// cache. Every entry (i, j) is `epilogue(i, j, p)` of the same product value p as entry
/// (j, i), exactly as if the epilogue ran on a mirrored matrix, so asymmetric epilogues
/// (norms, variances) keep their arithmetic.
///
/// Compared with a product, a full mirror pass and a full epilogue pass over the finished
/// matrix, this touches each entry once while it is hot: at N = 4096 the separate mirror
/// alone (strided writes over a 64 MiB matrix) cost about as much as the half product.
///
/// On several threads the rows are cut into bands ([`split_square`]): each thread takes the
/// triangle of its own band, then the blocks between two bands in rounds of disjoint pairs,
/// each block's product mirrored into the other band while it is hot. The kernel computes
/// entry (j, i) from the same products in the same order as entry (i, j) whatever the
/// block's shape, so the values do not depend on the thread count (a test checks this bit
/// for bit). Against whole rows per thread with the full product (no mirror), the bands
/// took MultiSimilarity's forward at N = 4096 on 2 threads from 55 to 46 ms; a parallel
/// upper-triangle product followed by a separate parallel mirror pass had been slower
/// than either (72 ms against 50 ms then), bound by memory traffic.
pub(crate) fn gram_symmetric_with<T: Float>(
    threads: usize,
    x: &[T],
    n: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    let work = SymmetricProduct {
        x,
        dims,
        alpha,
        epilogue,
    };
    split_square(&mut out[..n * n], n, threads.max(1), BLOCK, &work);
}

/// `alpha · X Xᵀ` and its epilogue as band work (see [`gram_symmetric_with`]).
struct SymmetricProduct<'x, T, E> {
    x: &'x [T],
    dims: usize,
    alpha: T,
    epilogue: E,
}

impl<T: Float, E: Fn(usize, usize, &mut [T]) + Sync> SquareWork<T> for SymmetricProduct<'_, T, E> {
    /// The band's own triangle strip by strip, each strip mirrored below the diagonal.
    fn within(&self, band: Band<'_, T>, n: usize) {
        let (first, end) = (band.first, band.end(n));
        let (x, epilogue) = (self.x, &self.epilogue);
        for strip in strips(first..end) {
            let (r0, r1) = (strip.start, strip.end);
            let at = (r0 - first) * n;
            upper_strip(
                x,
                n,
                self.dims,
                self.alpha,
                strip,
                end,
                &mut band.rows[at..],
            );
            // The strip's upper part holds raw products: mirror them, running the epilogue
            // on both copies as they pass through the cache (in the AVX2 copy).
            with_avx2(
                #[inline(always)]
                || {
                    mirror_strip(band.rows, n, first, r0, r1, end, epilogue);
                    for i in r0..r1 {
                        let at = (i - first) * n + i;
                        epilogue(i, i, &mut band.rows[at..at + 1]);
                    }
                },
            );
        }
    }

    /// `a`'s rows against `b`'s columns strip by strip, each strip's block mirrored into
    /// `b`'s rows.
    fn across(&self, a: Band<'_, T>, b: Band<'_, T>, n: usize) {
        let (x, dims, epilogue) = (self.x, self.dims, &self.epilogue);
        let cols = b.len(n);
        for strip in strips(a.first..a.end(n)) {
            let (r0, r1) = (strip.start, strip.end);
            T::gemm(
                r1 - r0,
                dims,
                cols,
                self.alpha,
                (&x[r0 * dims..], dims, 1),
                (&x[b.first * dims..], 1, dims),
                T::ZERO,
                (&mut a.rows[(r0 - a.first) * n + b.first..], n, 1),
            );
            with_avx2(
                #[inline(always)]
                || {
                    mirror_block(
                        &mut *a.rows,
                        a.first,
                        &mut *b.rows,
                        b.first,
                        n,
                        strip,
                        epilogue,
                    )
                },
            );
        }
    }
}

/// `out = epilogue(alpha · X Xᵀ)` on and above the diagonal only: entries (i, j ≥ i), with
/// `epilogue(i, i, segment)` run once on each row's segment from the diagonal on. Entries
/// below the diagonal are not meaningful afterwards (the strips' products spill into
/// them). The row ranges `bounds` (see [`triangle_bounds`](crate::parallel::triangle_bounds))
/// run in parallel; each is computed in strips of [`BLOCK`] rows, the same kernel calls
/// per entry as [`gram_symmetric_with`], so the values are identical to its.
pub(crate) fn gram_upper_with<T: Float>(
    bounds: &[usize],
    x: &[T],
    n: usize,
    dims: usize,
    alpha: T,
    out: &mut [T],
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync,
) {
    debug_assert_eq!(out.len(), n * n);
    for_row_ranges(bounds, out, n, |start, rows| {
        for strip in strips(start..start + rows.len() / n) {
            let at = (strip.start - start) * n;
            upper_strip(x, n, dims, alpha, strip.clone(), n, &mut rows[at..]);
            for i in strip {
                epilogue(i, i, &mut rows[(i - start) * n + i..(i - start + 1) * n]);
            }
        }
    });
}

/// `rows` in consecutive strips of at most [`BLOCK`] rows.
fn strips(rows: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let end = rows.end;
    rows.step_by(BLOCK).map(move |r0| r0..(r0 + BLOCK).min(end))
}

/// The products of rows `rows` with columns `rows.start..end` (the strip's upper part and
/// the square block on its diagonal) into `out`, which starts at row `rows.start`
/// (`n` entries per row).
fn upper_strip<T: Float>(
    x: &[T],
    n: usize,
    dims: usize,
    alpha: T,
    rows: Range<usize>,
    end: usize,
    out: &mut [T],
) {
    let r0 = rows.start;
    T::gemm(
        rows.len(),
        dims,
        end - r0,
        alpha,
        (&x[r0 * dims..], dims, 1),
        (&x[r0 * dims..], 1, dims),
        T::ZERO,
        (&mut out[r0..], n, 1),
    );
}

/// Copies the upper-triangle entries of rows `r0..r1` (columns `i < j < end`) onto the
/// lower triangle (rows `j`, columns `r0..r1`) of `out`, whose first row is row `base` of
/// the matrix, and runs `epilogue` on every entry off the diagonal it reads or writes: the
/// upper segment right after it is read, the lower one right after it is written. The
/// strip's own square block is mirrored within the strip, the rest into the rows below it
/// ([`mirror_block`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mirror_strip<T: Float>(
    out: &mut [T],
    n: usize,
    base: usize,
    r0: usize,
    r1: usize,
    end: usize,
    epilogue: &impl Fn(usize, usize, &mut [T]),
) {
    let (strip, below) = out[(r0 - base) * n..].split_at_mut((r1 - r0) * n);
    mirror_square(strip, n, r0, epilogue);
    mirror_block(
        strip,
        r0,
        &mut below[..(end - r1) * n],
        r1,
        n,
        r0..r1,
        epilogue,
    );
}

/// [`mirror_strip`] on the strip's square block (`strip` holds its rows from row `r0`):
/// entries (i, j) with `r0 ≤ i < j < r0 + rows` onto (j, i).
#[inline(always)]
fn mirror_square<T: Float>(
    strip: &mut [T],
    n: usize,
    r0: usize,
    epilogue: &impl Fn(usize, usize, &mut [T]),
) {
    let mut buf = [[T::ZERO; BLOCK]; TILE];
    let r1 = r0 + strip.len() / n;
    let mut j0 = r0 + 1;
    while j0 < r1 {
        let j1 = (j0 + TILE).min(r1);
        // Rows i < j of the block hold entry (i, j).
        for i in r0..j1 - 1 {
            let at = (i - r0) * n;
            let src = &mut strip[at + j0..at + j1];
            for (t, v) in src.iter().enumerate() {
                buf[t][i - r0] = *v;
            }
            // Entries (i, j > i); for i ≥ j0 the first ones are on or below the diagonal.
            let skip = (i + 1).saturating_sub(j0);
            epilogue(i, j0 + skip, &mut src[skip..]);
        }
        for (t, j) in (j0..j1).enumerate() {
            let at = (j - r0) * n + r0;
            let dst = &mut strip[at..at + (j - r0)];
            dst.copy_from_slice(&buf[t][..j - r0]);
            epilogue(j, r0, dst);
        }
        j0 = j1;
    }
}

/// [`mirror_strip`] between two bands: the entries of rows `strip` (in `upper`, whose
/// first row is `upper_first`) at the columns of `lower`'s rows are copied to `lower`
/// (rows `lower_first..`, columns `strip`), the epilogue run on both copies.
#[inline(always)]
fn mirror_block<T: Float>(
    upper: &mut [T],
    upper_first: usize,
    lower: &mut [T],
    lower_first: usize,
    n: usize,
    strip: Range<usize>,
    epilogue: &impl Fn(usize, usize, &mut [T]),
) {
    let mut buf = [[T::ZERO; BLOCK]; TILE];
    let (r0, r1) = (strip.start, strip.end);
    let end = lower_first + lower.len() / n;
    let mut j0 = lower_first;
    while j0 < end {
        let j1 = (j0 + TILE).min(end);
        for i in r0..r1 {
            let at = (i - upper_first) * n;
            let src = &mut upper[at + j0..at + j1];
            for (t, v) in src.iter().enumerate() {
                buf[t][i - r0] = *v;
            }
            epilogue(i, j0, src);
        }
        for (t, j) in (j0..j1).enumerate() {
            let at = (j - lower_first) * n + r0;
            let dst = &mut lower[at..at + (r1 - r0)];
            dst.copy_from_slice(&buf[t][..r1 - r0]);
            epilogue(j, r0, dst);
        }
        j0 = j1;
    }
}

/// Copies the upper triangle of the `n x n` row-major matrix `out` onto its lower one
/// (what a caller does with [`Distance::upper_triangle`](metric_loss_core::Distance::upper_triangle)'s
/// output when it needs the full matrix after all), in cache-sized strips.
///
/// ```
/// let mut d = [0.0f32, 1.0, 2.0, -1.0, 0.0, 3.0, -1.0, -1.0, 0.0];
/// metric_loss_distances::mirror_upper(&mut d, 3);
/// assert_eq!(d, [0.0, 1.0, 2.0, 1.0, 0.0, 3.0, 2.0, 3.0, 0.0]);
/// ```
///
/// # Panics
/// If `out` is shorter than `n * n`.
pub fn mirror_upper<T: Float>(out: &mut [T], n: usize) {
    for strip in strips(0..n) {
        mirror_strip(out, n, 0, strip.start, strip.end, n, &|_, _, _| {});
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
        use std::sync::atomic::{AtomicU8, Ordering};
        let (n, d) = (300, 5);
        let x: Vec<f64> = (0..n * d).map(|i| ((i * 13 % 29) as f64) / 7.0).collect();
        let mut plain = vec![0.0; n * n];
        gram(&x, &x, n, n, d, 1.0, &mut plain);
        for threads in [1, 2, 3] {
            let mut out = vec![0.0; n * n];
            let seen: Vec<AtomicU8> = (0..n * n).map(|_| AtomicU8::new(0)).collect();
            gram_symmetric_with(threads, &x, n, d, 1.0, &mut out, |i, j0, seg| {
                for (t, v) in seg.iter_mut().enumerate() {
                    seen[i * n + j0 + t].fetch_add(1, Ordering::Relaxed);
                    *v = *v * 1000.0 + (i * n + j0 + t) as f64;
                }
            });
            assert!(seen.iter().all(|s| s.load(Ordering::Relaxed) == 1));
            for i in 0..n {
                for j in 0..n {
                    let p = out[i * n + j] - (i * n + j) as f64;
                    assert!((p / 1000.0 - plain[i * n + j]).abs() < 1e-9);
                }
            }
        }
    }

    /// The threaded paths (whole rows per thread, no mirror) give the single-threaded
    /// symmetric result bit for bit, with an epilogue that depends on the indices, at
    /// widths inside one and across several of the kernel's depth blocks.
    fn threads_agree_bit_for_bit<T: Float>(bits: impl Fn(T) -> u64) {
        for (n, d) in [(300, 7), (260, 128), (140, 600), (600, 9)] {
            let x: Vec<T> = (0..n * d)
                .map(|i| T::from_f64(((i * 7919 % 1013) as f64 - 506.0) / 97.0))
                .collect();
            let norms: Vec<T> = x
                .chunks(d)
                .map(|r| r.iter().map(|v| *v * *v).sum())
                .collect();
            let epilogue = |i: usize, j0: usize, seg: &mut [T]| {
                for (v, kn) in seg.iter_mut().zip(&norms[j0..]) {
                    *v = (norms[i] + *v) + *kn;
                }
            };
            let mut one = vec![T::ZERO; n * n];
            gram_symmetric_with(1, &x, n, d, T::from_f64(-2.0), &mut one, epilogue);
            for threads in [2, 3] {
                let mut many = vec![T::ZERO; n * n];
                gram_symmetric_with(threads, &x, n, d, T::from_f64(-2.0), &mut many, epilogue);
                let mut general = vec![T::ZERO; n * n];
                gram_with(
                    threads,
                    &x,
                    &x,
                    n,
                    n,
                    d,
                    T::from_f64(-2.0),
                    &mut general,
                    epilogue,
                );
                for (at, ((a, b), c)) in one.iter().zip(&many).zip(&general).enumerate() {
                    assert_eq!(
                        bits(*a),
                        bits(*b),
                        "n={n} d={d} {threads} threads, entry {at}"
                    );
                    assert_eq!(bits(*a), bits(*c), "n={n} d={d} general, entry {at}");
                }
            }
        }
    }

    #[test]
    fn threaded_products_match_the_symmetric_one_bit_for_bit() {
        threads_agree_bit_for_bit::<f32>(|v| u64::from(v.to_bits()));
        threads_agree_bit_for_bit::<f64>(f64::to_bits);
    }

    /// The upper-triangle product gives the symmetric product's upper entries bit for bit,
    /// whatever the split, and runs the epilogue once per entry.
    #[test]
    fn upper_product_matches_the_symmetric_one() {
        let (n, d) = (300, 130);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let epilogue = |i: usize, j0: usize, seg: &mut [f32]| {
            for (t, v) in seg.iter_mut().enumerate() {
                *v = *v * 2.0 + (i * 7 + j0 + t) as f32;
            }
        };
        let mut full = vec![0.0f32; n * n];
        gram_symmetric_with(1, &x, n, d, 1.0, &mut full, epilogue);
        for bounds in [vec![0, n], vec![0, 88, n], vec![0, 1, 150, 299, n]] {
            let mut upper = vec![f32::NAN; n * n];
            gram_upper_with(&bounds, &x, n, d, 1.0, &mut upper, epilogue);
            for i in 0..n {
                for j in i..n {
                    let (a, b) = (upper[i * n + j], full[i * n + j]);
                    assert_eq!(a.to_bits(), b.to_bits(), "{bounds:?} ({i},{j})");
                }
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
