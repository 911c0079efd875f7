//! L2 normalisation of embedding rows (TF Similarity's `L2Embedding` layer) and its
//! vector-Jacobian product. Cosine distance expects unit rows.

use metric_loss_core::Float;

/// TF's `l2_normalize` epsilon: rows with ‖x‖² below it are divided by √1e-12 instead.
const EPSILON: f64 = 1e-12;

/// Writes each row of `x` (row-major, `dims` columns) divided by its L2 norm into `out`:
/// `y = x / √max(‖x‖², 1e-12)`.
///
/// ```
/// use metric_loss_distances::l2_normalize;
/// let mut y = [0.0f32; 4];
/// l2_normalize(&[3.0, 4.0, 0.0, 0.0], 2, &mut y);
/// assert_eq!(y, [0.6, 0.8, 0.0, 0.0]);
/// ```
///
/// # Panics
/// If `out.len() != x.len()` or `dims` is 0 with non-empty `x`.
pub fn l2_normalize<T: Float>(x: &[T], dims: usize, out: &mut [T]) {
    assert_eq!(x.len(), out.len(), "l2_normalize: output length");
    for (row, o) in x.chunks_exact(dims).zip(out.chunks_exact_mut(dims)) {
        let inv = inverse_norm(row);
        for (o, v) in o.iter_mut().zip(row) {
            *o = *v * inv;
        }
    }
}

/// The gradient with respect to `x` of Σ g·y for `y = l2_normalize(x)`, written to
/// `grad_x`: `(g − y (y·g)) / ‖x‖` (just `g / √1e-12` for rows under the epsilon).
///
/// # Panics
/// If the slices differ in length.
pub fn l2_normalize_vjp<T: Float>(x: &[T], dims: usize, upstream: &[T], grad_x: &mut [T]) {
    assert!(
        x.len() == upstream.len() && x.len() == grad_x.len(),
        "l2_normalize_vjp: lengths"
    );
    let eps = T::from_f64(EPSILON);
    for ((row, g), out) in x
        .chunks_exact(dims)
        .zip(upstream.chunks_exact(dims))
        .zip(grad_x.chunks_exact_mut(dims))
    {
        let sq: T = row.iter().map(|v| *v * *v).sum();
        let inv = inverse_norm(row);
        // Inside the clamp, ‖x‖² is a constant and y = x / √eps is linear.
        let yg = if sq > eps {
            row.iter().zip(g).map(|(v, g)| *v * inv * *g).sum::<T>()
        } else {
            T::ZERO
        };
        for ((o, v), g) in out.iter_mut().zip(row).zip(g) {
            *o = (*g - *v * inv * yg) * inv;
        }
    }
}

fn inverse_norm<T: Float>(row: &[T]) -> T {
    let sq: T = row.iter().map(|v| *v * *v).sum();
    T::ONE / sq.max(T::from_f64(EPSILON)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vjp_matches_finite_differences() {
        let x = [0.3f64, -1.2, 0.7, 2.0, 0.1, -0.4];
        let g = [0.5f64, -0.25, 1.0, 0.3, 0.2, -0.7];
        let mut grad = [0.0; 6];
        l2_normalize_vjp(&x, 3, &g, &mut grad);
        let f = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            l2_normalize(x, 3, &mut y);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        for i in 0..6 {
            let (mut p, mut m) = (x, x);
            p[i] += 1e-6;
            m[i] -= 1e-6;
            let fd = (f(&p) - f(&m)) / 2e-6;
            assert!((fd - grad[i]).abs() < 1e-8, "{i}: {fd} vs {}", grad[i]);
        }
    }

    #[test]
    fn zero_rows_stay_finite() {
        let mut y = [1.0f32; 2];
        l2_normalize(&[0.0, 0.0], 2, &mut y);
        assert_eq!(y, [0.0, 0.0]);
    }
}
