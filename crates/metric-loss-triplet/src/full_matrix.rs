//! The start of a call that reads the whole distance matrix (the dense losses, the pair
//! losses): everything before the loss's own formula.

use metric_loss_core::{Distance, Float, LossError, LossInput, LossOutput};

use metric_loss_distances::lanes::all_finite;
use metric_loss_distances::parallel::all_row_chunks;
use metric_loss_distances::wide::with_avx2;

use crate::check_matrix_size;

/// The shape of a validated call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallShape {
    /// Queries (anchors).
    pub n: usize,
    /// Keys.
    pub m: usize,
    /// Embedding width.
    pub dims: usize,
    /// The keys are the queries themselves.
    pub same: bool,
    /// The caller asked for the gradient.
    pub gradient: bool,
}

/// Validates `input` and resets `out` for it: the start of every call, before any
/// distance is computed. `Ok(None)` for an empty batch, whose output is then complete.
///
/// # Errors
/// Invalid input ([`LossInput::validate`]).
pub fn start_call<T: Float>(
    input: &LossInput<'_, T>,
    out: &mut LossOutput<T>,
) -> Result<Option<CallShape>, LossError> {
    input.validate()?;
    let (queries, keys) = (input.queries(), input.keys());
    let shape = CallShape {
        n: queries.len(),
        m: keys.len(),
        dims: queries.embeddings().cols(),
        same: input.keys_are_queries(),
        gradient: input.wants_gradient(),
    };
    out.reset(
        shape.n,
        if shape.same { 0 } else { shape.m },
        shape.dims,
        shape.gradient,
    );
    Ok((shape.n > 0).then_some(shape))
}

/// [`start_call`], then checks that `matrices` matrices of `n x m` entries fit in
/// [`MAX_DISTANCE_MATRIX_BYTES`](crate::MAX_DISTANCE_MATRIX_BYTES), and fills `matrix` with
/// the distances (`stats` is the distance's reusable memory). `Ok(None)` for an empty
/// batch, whose output is then complete.
///
/// # Errors
/// Invalid input ([`LossInput::validate`]), [`LossError::TooLarge`], the distance's own
/// error, or [`LossError::NonFiniteDistance`] naming the first non-finite entry.
pub fn full_distance_matrix<T: Float>(
    input: &LossInput<'_, T>,
    distance: &dyn Distance<T>,
    matrices: u128,
    out: &mut LossOutput<T>,
    stats: &mut Vec<T>,
    matrix: &mut Vec<T>,
) -> Result<Option<CallShape>, LossError> {
    let Some(shape) = start_call(input, out)? else {
        return Ok(None);
    };
    let CallShape { n, m, .. } = shape;
    check_matrix_size::<T>(n, m, matrices)?;
    // Not zeroed: `Distance::matrix` writes every entry (a memset of the matrix was 9% of
    // a MultiSimilarity call at N = 1024 on two threads).
    matrix.resize(n * m, T::ZERO);
    stats.clear();
    distance.matrix(
        input.queries().embeddings(),
        input.keys().embeddings(),
        shape.same,
        stats,
        matrix,
    )?;
    finite_distances(distance.name(), matrix, m)?;
    Ok(Some(shape))
}

/// Checks that every entry of a distance matrix with `m` columns is finite: a distance
/// can overflow although its inputs are finite.
///
/// # Errors
/// [`LossError::NonFiniteDistance`] naming the first non-finite entry of `distance`.
pub fn finite_distances<T: Float>(
    distance: &'static str,
    matrix: &[T],
    m: usize,
) -> Result<(), LossError> {
    if all_row_chunks(matrix, m, |rows| with_avx2(|| all_finite(rows))) {
        return Ok(());
    }
    match matrix.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(at) => Err(LossError::NonFiniteDistance {
            distance,
            row: at / m,
            col: at % m,
            value: matrix[at].to_f64(),
            dtype: T::DTYPE,
        }),
    }
}
