//! L2 normalisation of embedding rows (TF Similarity's `L2Embedding` layer) and its
//! vector-Jacobian product. Cosine distance expects unit rows.

use metric_loss_core::{Embeddings, Float, LossError};

/// TF's `l2_normalize` epsilon: rows with ‖x‖² below it are divided by √1e-12 instead.
const EPSILON: f64 = 1e-12;

/// Writes each row of `x` (row-major, `dims` columns) divided by its L2 norm into `out`:
/// `y = x / √max(‖x‖², 1e-12)`.
///
/// ```
/// use metric_loss_distances::l2_normalize;
/// let mut y = [0.0f32; 4];
/// l2_normalize(&[3.0, 4.0, 0.0, 0.0], 2, &mut y)?;
/// assert_eq!(y, [0.6, 0.8, 0.0, 0.0]);
/// // A partial row or a NaN is an error, not a silent result.
/// assert!(l2_normalize(&[3.0, 4.0, 1.0], 2, &mut [0.0; 3]).is_err());
/// assert!(l2_normalize(&[f32::NAN, 1.0], 2, &mut y[..2]).is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
///
/// Rows whose squared norm overflows (|x| ≳ 1.8e19 in f32) are scaled first, so every
/// finite row gives a finite result.
///
/// # Errors
/// [`LossError::ZeroWidth`] for `dims == 0` with values; [`LossError::BufferLength`] when
/// `x` is not whole rows of `dims` or `out` is not as long as `x`;
/// [`LossError::NonFiniteEmbedding`] at the first NaN or infinity of `x`.
pub fn l2_normalize<T: Float>(x: &[T], dims: usize, out: &mut [T]) -> Result<(), LossError> {
    let rows = whole_rows(x, dims, "l2_normalize input")?;
    same_shape(out.len(), rows, dims, "l2_normalize output")?;
    if rows == 0 {
        return Ok(());
    }
    for (row, o) in x.chunks_exact(dims).zip(out.chunks_exact_mut(dims)) {
        let (divisor, inv) = inverse_norm(row);
        for (o, v) in o.iter_mut().zip(row) {
            *o = *v / divisor * inv;
        }
    }
    Ok(())
}

/// The gradient with respect to `x` of Σ g·y for `y = l2_normalize(x)`, written to
/// `grad_x`: `(g − y (y·g)) / ‖x‖` (just `g / √1e-12` for rows under the epsilon).
///
/// # Errors
/// As [`l2_normalize`], for `x`, `upstream` (same shape, finite) and `grad_x` (same
/// length).
pub fn l2_normalize_vjp<T: Float>(
    x: &[T],
    dims: usize,
    upstream: &[T],
    grad_x: &mut [T],
) -> Result<(), LossError> {
    let rows = whole_rows(x, dims, "l2_normalize_vjp input")?;
    same_shape(
        upstream.len(),
        rows,
        dims,
        "l2_normalize_vjp upstream gradient",
    )?;
    Embeddings::from_row_major(upstream, rows, dims)?
        .check_finite("l2_normalize_vjp upstream gradient")?;
    same_shape(grad_x.len(), rows, dims, "l2_normalize_vjp output")?;
    if rows == 0 {
        return Ok(());
    }
    let eps = T::from_f64(EPSILON);
    for ((row, g), out) in x
        .chunks_exact(dims)
        .zip(upstream.chunks_exact(dims))
        .zip(grad_x.chunks_exact_mut(dims))
    {
        let sq = squared_norm(row);
        let (divisor, inv) = inverse_norm(row);
        // Inside the clamp, ‖x‖² is a constant and y = x / √eps is linear.
        let yg = if sq > eps {
            row.iter()
                .zip(g)
                .map(|(v, g)| *v / divisor * inv * *g)
                .sum::<T>()
        } else {
            T::ZERO
        };
        for ((o, v), g) in out.iter_mut().zip(row).zip(g) {
            *o = (*g - *v / divisor * inv * yg) * inv / divisor;
        }
    }
    Ok(())
}

/// The number of rows of `x`, checked: whole rows of `dims` (at least one column when
/// there are values) and finite values.
fn whole_rows<T: Float>(x: &[T], dims: usize, what: &'static str) -> Result<usize, LossError> {
    if dims == 0 {
        if x.is_empty() {
            return Ok(0);
        }
        return Err(LossError::ZeroWidth { what, rows: 1 });
    }
    let rows = x.len().div_ceil(dims);
    Embeddings::from_row_major(x, rows, dims)
        .map_err(|_| LossError::BufferLength {
            what,
            got: x.len(),
            rows,
            cols: dims,
            expected: rows * dims,
        })?
        .check_finite(what)?;
    Ok(rows)
}

/// `len` is that of `rows x dims` values.
fn same_shape(len: usize, rows: usize, dims: usize, what: &'static str) -> Result<(), LossError> {
    if len == rows * dims {
        return Ok(());
    }
    Err(LossError::BufferLength {
        what,
        got: len,
        rows,
        cols: dims,
        expected: rows * dims,
    })
}

/// ‖x‖², or +∞ when it overflows.
fn squared_norm<T: Float>(row: &[T]) -> T {
    row.iter().map(|v| *v * *v).sum()
}

/// (d, r) with x / d · r = x / ‖x‖: d = 1 and r = 1 / √max(‖x‖², 1e-12) (TF's formula)
/// unless ‖x‖² overflows although x may be finite (|x| ≳ 1.8e19 in f32); then d is the
/// largest magnitude and r = 1 / ‖x / d‖, so a finite row still gives a unit row, not 0.
fn inverse_norm<T: Float>(row: &[T]) -> (T, T) {
    let sq = squared_norm(row);
    if sq.is_finite() {
        return (T::ONE, T::ONE / sq.max(T::from_f64(EPSILON)).sqrt());
    }
    let scale = row.iter().fold(T::ZERO, |m, v| m.max(v.abs()));
    let scaled: T = row.iter().map(|v| (*v / scale) * (*v / scale)).sum();
    (scale, T::ONE / scaled.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vjp_matches_finite_differences() {
        let x = [0.3f64, -1.2, 0.7, 2.0, 0.1, -0.4];
        let g = [0.5f64, -0.25, 1.0, 0.3, 0.2, -0.7];
        let mut grad = [0.0; 6];
        l2_normalize_vjp(&x, 3, &g, &mut grad).unwrap();
        let f = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            l2_normalize(x, 3, &mut y).unwrap();
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
        l2_normalize(&[0.0, 0.0], 2, &mut y).unwrap();
        assert_eq!(y, [0.0, 0.0]);
    }
}
