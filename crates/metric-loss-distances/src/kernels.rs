//! The distance matrices and their vector-Jacobian products, in TF Similarity's arithmetic.

use metric_loss_core::{Distance, Embeddings, Float, LossError};

use crate::gram::{gram_upper_with, mirror_upper, product};
use crate::parallel::{for_rows_on, threads_for};
use crate::DistanceKind;

/// TF Similarity's Euclidean clamp: below it the distance and its gradient are 0.
const EUCLIDEAN_FLOOR: f64 = 1e-18;

impl DistanceKind {
    /// Each side's terms, element by element as one loop over both would compute them.
    fn pair_vjp_sides<T: Float>(
        &self,
        q: &[T],
        k: &[T],
        value: T,
        g: T,
        grad_q: Option<&mut [T]>,
        grad_k: Option<&mut [T]>,
    ) {
        match self {
            DistanceKind::InnerProduct => {
                if let Some(gq) = grad_q {
                    axpy(g, k, gq);
                }
                if let Some(gk) = grad_k {
                    axpy(g, q, gk);
                }
            }
            DistanceKind::Cosine => {
                // max(1 − q·k, 0) passes the gradient when its first argument is ≥ 0 (TF's
                // maximum sends ties to the first argument); -0.0 marks an active clamp.
                if !value.is_sign_negative() {
                    if let Some(gq) = grad_q {
                        axpy(-g, k, gq);
                    }
                    if let Some(gk) = grad_k {
                        axpy(-g, q, gk);
                    }
                }
            }
            DistanceKind::SquaredEuclidean => {
                if !value.is_sign_negative() {
                    let two_g = T::from_f64(2.0) * g;
                    antisymmetric(q, k, grad_q, grad_k, |a, b| two_g * (a - b));
                }
            }
            DistanceKind::Euclidean => {
                // value = 0 means s < 1e-18, where TF's indicator zeroes the gradient.
                if value > T::ZERO {
                    let scale = g / value;
                    antisymmetric(q, k, grad_q, grad_k, |a, b| scale * (a - b));
                }
            }
            DistanceKind::Manhattan => {
                // d|x|/dx is 0 at 0, as in TF.
                antisymmetric(q, k, grad_q, grad_k, |a, b| {
                    let diff = a - b;
                    if diff > T::ZERO {
                        g
                    } else if diff < T::ZERO {
                        -g
                    } else {
                        T::ZERO
                    }
                });
            }
            DistanceKind::Snr => snr_pair_vjp(q, k, g, grad_q, grad_k),
        }
    }
}

/// Checks an `n x m` distance matrix's shapes (the losses validate first; direct callers
/// get errors, not panics) and says whether it has any entry to compute.
fn has_entries<T: Float>(
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    out: &[T],
) -> Result<bool, LossError> {
    let (n, m, dims) = (q.rows(), k.rows(), q.cols());
    if n.checked_mul(m) != Some(out.len()) {
        return Err(LossError::BufferLength {
            what: "distance matrix",
            got: out.len(),
            rows: n,
            cols: m,
            expected: n.saturating_mul(m),
        });
    }
    if n == 0 || m == 0 {
        return Ok(false);
    }
    if k.cols() != dims {
        return Err(LossError::DimensionMismatch {
            queries: dims,
            keys: k.cols(),
        });
    }
    if dims == 0 {
        return Err(LossError::ZeroWidth {
            what: "query embeddings",
            rows: n,
        });
    }
    Ok(true)
}

/// `max(1 − p, 0)` on each product of a segment (TF Similarity's cosine distance).
#[inline(always)]
fn cosine_epilogue<T: Float>(_: usize, _: usize, segment: &mut [T]) {
    for v in segment.iter_mut() {
        *v = clamp_at_zero(T::ONE - *v);
    }
}

impl<T: Float> Distance<T> for DistanceKind {
    fn name(&self) -> &'static str {
        DistanceKind::name(*self)
    }

    fn matrix(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        same: bool,
        scratch: &mut Vec<T>,
        out: &mut [T],
    ) -> Result<(), LossError> {
        let (n, m, dims) = (q.rows(), k.rows(), q.cols());
        if !has_entries(q, k, out)? {
            return Ok(());
        }
        let (qs, ks) = (q.as_slice(), k.as_slice());
        // One thread count for the whole matrix. Each arm passes its element-wise epilogue
        // to `product` as a generic argument, so it is inlined into the tile loops.
        let threads = threads_for(n);
        match self {
            DistanceKind::InnerProduct => {
                product(threads, qs, ks, same, n, m, dims, T::ONE, out, |_, _, _| {})
            }
            DistanceKind::Cosine => product(
                threads,
                qs,
                ks,
                same,
                n,
                m,
                dims,
                T::ONE,
                out,
                cosine_epilogue,
            ),
            DistanceKind::SquaredEuclidean | DistanceKind::Euclidean => {
                // Norms accumulated in f64 and s rounded once: at large norms the expansion
                // otherwise loses a few ulps of the distance (TF's own error is smaller).
                scratch.clear();
                scratch.extend((0..n).map(|i| T::from_f64(squared_norm_f64(q.row(i)))));
                scratch.extend((0..m).map(|j| T::from_f64(squared_norm_f64(k.row(j)))));
                let (nq, nk) = scratch.split_at(n);
                let floor = T::from_f64(EUCLIDEAN_FLOOR);
                let euclidean = *self == DistanceKind::Euclidean;
                product(
                    threads,
                    qs,
                    ks,
                    same,
                    n,
                    m,
                    dims,
                    T::from_f64(-2.0),
                    out,
                    #[inline(always)]
                    move |i: usize, j0: usize, seg: &mut [T]| {
                        let qn = nq[i].to_f64();
                        for (v, kn) in seg.iter_mut().zip(&nk[j0..]) {
                            // TF's association: (‖q‖² − 2q·k) + ‖k‖².
                            let s = T::from_f64((qn + v.to_f64()) + kn.to_f64());
                            *v = if !euclidean {
                                clamp_at_zero(s)
                            } else if s >= floor {
                                s.sqrt()
                            } else {
                                T::ZERO
                            };
                        }
                    },
                );
            }
            DistanceKind::Manhattan => {
                if same && threads == 1 {
                    // One triangle, mirrored: half the work.
                    for i in 0..n {
                        for j in i..m {
                            out[i * m + j] = manhattan(q.row(i), k.row(j));
                        }
                    }
                    mirror_upper(out, n);
                } else {
                    // Whole rows per thread (|a − b| = |b − a|: the same values).
                    for_rows_on(threads, out, m, |r0, rows| {
                        for (t, row) in rows.chunks_exact_mut(m).enumerate() {
                            for (j, v) in row.iter_mut().enumerate() {
                                *v = manhattan(q.row(r0 + t), k.row(j));
                            }
                        }
                    });
                }
            }
            DistanceKind::Snr => snr_matrix(threads, q, k, same, scratch, out)?,
        }
        Ok(())
    }

    /// Cosine and inner product are symmetric bit for bit (an element-wise function of one
    /// shared product) and write the triangle; the others return `false`.
    fn upper_triangle(
        &self,
        x: Embeddings<'_, T>,
        parts: &[usize],
        out: &mut [T],
    ) -> Result<bool, LossError> {
        let (n, dims) = (x.rows(), x.cols());
        if !matches!(self, DistanceKind::Cosine | DistanceKind::InnerProduct) {
            return Ok(false);
        }
        if !has_entries(x, x, out)? {
            return Ok(true);
        }
        let xs = x.as_slice();
        if *self == DistanceKind::Cosine {
            gram_upper_with(parts, xs, n, dims, T::ONE, out, cosine_epilogue);
        } else {
            gram_upper_with(parts, xs, n, dims, T::ONE, out, |_, _, _| {});
        }
        Ok(true)
    }

    fn pair_vjp_query(&self, q: &[T], k: &[T], value: T, g: T, grad_q: &mut [T]) {
        self.pair_vjp_sides(q, k, value, g, Some(grad_q), None);
    }

    fn pair_vjp_key(&self, q: &[T], k: &[T], value: T, g: T, grad_k: &mut [T]) {
        self.pair_vjp_sides(q, k, value, g, None, Some(grad_k));
    }

    fn pair_vjp(&self, q: &[T], k: &[T], value: T, g: T, grad_q: &mut [T], grad_k: &mut [T]) {
        self.pair_vjp_sides(q, k, value, g, Some(grad_q), Some(grad_k));
    }

    fn dense_vjp(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        dist: &[T],
        dist_grad: &mut [T],
        grad_q: &mut [T],
        grad_k: &mut [T],
    ) {
        crate::dense::dense_vjp(
            *self,
            q,
            k,
            dist,
            dist_grad,
            grad_q,
            grad_k,
            &mut Vec::new(),
        );
    }

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
        crate::dense::dense_vjp(*self, q, k, dist, dist_grad, grad_q, grad_k, scratch);
    }

    fn dense_vjp_same(
        &self,
        x: Embeddings<'_, T>,
        dist: &[T],
        dist_grad: &mut [T],
        grad: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        if !crate::dense::dense_vjp_same(*self, x, dist, dist_grad, grad) {
            // Manhattan and snr: one pair at a time, through both halves.
            metric_loss_core::dense_vjp_by_halves(self, x, dist, dist_grad, grad, scratch);
        }
    }
}

/// max(v, 0), with -0.0 when the clamp is active (see `Distance::matrix`).
#[inline(always)]
fn clamp_at_zero<T: Float>(v: T) -> T {
    if v >= T::ZERO {
        v
    } else {
        -T::ZERO
    }
}

fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().copied().sum::<T>();
    for (x, y) in ra.iter().zip(rb) {
        s += *x * *y;
    }
    s
}

fn squared_norm<T: Float>(a: &[T]) -> T {
    dot(a, a)
}

fn squared_norm_f64<T: Float>(a: &[T]) -> f64 {
    a.iter().map(|v| v.to_f64() * v.to_f64()).sum()
}

fn manhattan<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += (x[l] - y[l]).abs();
        }
    }
    let mut s = acc.iter().copied().sum::<T>();
    for (x, y) in ra.iter().zip(rb) {
        s += (*x - *y).abs();
    }
    s
}

/// For a gradient whose query side is `term(qₜ, kₜ)` per element and key side its
/// negation: adds the one to `grad_q` and subtracts it from `grad_k`, either side optional.
fn antisymmetric<T: Float>(
    q: &[T],
    k: &[T],
    grad_q: Option<&mut [T]>,
    grad_k: Option<&mut [T]>,
    term: impl Fn(T, T) -> T,
) {
    if let Some(gq) = grad_q {
        for (t, (a, b)) in gq.iter_mut().zip(q.iter().zip(k)) {
            *t += term(*a, *b);
        }
    }
    if let Some(gk) = grad_k {
        for (t, (a, b)) in gk.iter_mut().zip(q.iter().zip(k)) {
            *t -= term(*a, *b);
        }
    }
}

fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * *x;
    }
}

fn mean<T: Float>(a: &[T]) -> T {
    a.iter().copied().sum::<T>() / T::from_f64(a.len() as f64)
}

/// Population variance, two-pass.
fn variance<T: Float>(a: &[T]) -> T {
    let mu = mean(a);
    a.iter().map(|v| (*v - mu) * (*v - mu)).sum::<T>() / T::from_f64(a.len() as f64)
}

/// Var(q − k) / Var(q) for every pair, through the centred Gram matrix:
/// Var(q − k) = Var(q) + Var(k) − 2·cov(q, k). No `n x m x dims` temporary.
fn snr_matrix<T: Float>(
    threads: usize,
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    same: bool,
    scratch: &mut Vec<T>,
    out: &mut [T],
) -> Result<(), LossError> {
    let (n, m, dims) = (q.rows(), k.rows(), q.cols());
    let inv_d = T::from_f64(1.0 / dims as f64);
    // scratch = [centred queries | centred keys (unless same) | Var(q) | Var(k)].
    scratch.clear();
    let centre = |x: Embeddings<'_, T>, scratch: &mut Vec<T>| {
        for i in 0..x.rows() {
            let row = x.row(i);
            let mu = mean(row);
            scratch.extend(row.iter().map(|v| *v - mu));
        }
    };
    centre(q, scratch);
    if !same {
        centre(k, scratch);
    }
    let centred = scratch.len();
    for r in 0..centred / dims {
        let v = squared_norm(&scratch[r * dims..(r + 1) * dims]) * inv_d;
        scratch.push(v);
    }
    let (rows, variances) = scratch.split_at(centred);
    let (qc, kc) = rows.split_at(n * dims);
    let (kc, var_k) = if same {
        (qc, variances)
    } else {
        (kc, &variances[n..])
    };
    let var_q = &variances[..n];
    if let Some(row) = var_q.iter().position(|v| *v == T::ZERO) {
        return Err(LossError::ZeroVariance { row });
    }
    let alpha = T::from_f64(-2.0) * inv_d;
    let epilogue = move |i: usize, j0: usize, seg: &mut [T]| {
        let vq = var_q[i];
        for (v, vk) in seg.iter_mut().zip(&var_k[j0..]) {
            // Rounding can take a variance of identical rows just below 0; it is ≥ 0.
            *v = ((vq + *vk) + *v).max(T::ZERO) / vq;
        }
    };
    product(threads, qc, kc, same, n, m, dims, alpha, out, epilogue);
    Ok(())
}

fn snr_pair_vjp<T: Float>(
    q: &[T],
    k: &[T],
    g: T,
    grad_q: Option<&mut [T]>,
    grad_k: Option<&mut [T]>,
) {
    let dims = T::from_f64(q.len() as f64);
    let two_over_d = T::from_f64(2.0) / dims;
    let (mq, mu) = (mean(q), {
        let s: T = q.iter().zip(k).map(|(a, b)| *a - *b).sum();
        s / dims
    });
    let var_q = variance(q);
    let var_u = q.iter().zip(k).map(|(a, b)| {
        let c = (*a - *b) - mu;
        c * c
    });
    let var_u = var_u.sum::<T>() / dims;
    // Var(u) / Var(q)² taken as two quotients: Var(q)² underflows to 0 for
    // Var(q) ≲ 1e-154 (f64) or 1e-19 (f32), giving ∞ / NaN where the gradient is finite.
    let ratio = var_u / var_q;
    let du = |a: T, b: T| two_over_d * ((a - b) - mu) / var_q;
    if let Some(grad_q) = grad_q {
        for ((gq, a), b) in grad_q.iter_mut().zip(q).zip(k) {
            let dq = two_over_d * ((*a - mq) / var_q) * ratio;
            *gq += g * (du(*a, *b) - dq);
        }
    }
    if let Some(grad_k) = grad_k {
        for ((gk, a), b) in grad_k.iter_mut().zip(q).zip(k) {
            *gk -= g * du(*a, *b);
        }
    }
}
