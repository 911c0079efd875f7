//! Machinery the losses share: the distance matrix in the workspace, the dense-loss driver
//! and numerically careful exponentials.

use metric_loss_core::{
    reduce_checked, AllowNonFinite, Distance, Float, LossError, LossInput, LossOutput, Reducer,
    Workspace,
};
use metric_loss_distances::parallel::for_row_chunks;
use metric_loss_mining::RowContext;

/// The largest distance matrix a call may allocate, in bytes (16 GiB, as for `TripletLoss`):
/// larger batches get [`LossError::TooLarge`] instead of an allocation failure. The dense
/// losses keep two `n x m` matrices (distances and their gradient) and count both.
pub const MAX_MATRIX_BYTES: u128 = metric_loss_triplet::MAX_DISTANCE_MATRIX_BYTES;

use metric_loss_triplet::{full_distance_matrix, CallShape};

/// `e^x` with results below the smallest normal number flushed to 0, as TensorFlow's CPU
/// kernels do (e^x is 0 below x ≈ −87.34 in f32, not a subnormal).
#[inline]
pub(crate) fn exp_ftz<T: Float>(x: T) -> T {
    let e = x.exp();
    let smallest = if T::DTYPE == "f32" {
        f64::from(f32::MIN_POSITIVE)
    } else {
        f64::MIN_POSITIVE
    };
    if e < T::from_f64(smallest) {
        T::ZERO
    } else {
        e
    }
}

/// Which of a row's two softmaxes an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Positive,
    Negative,
    Neither,
}

/// The two values ln(1 + Σ_{side} e^{sⱼ}) of a row, one per side, each shifted by
/// c = max(0, largest score of its side) so that it never overflows nor underflows to −∞.
/// `scores` holds each entry's score sⱼ on input and its softmax weight
/// ∂/∂sⱼ = e^{sⱼ−c} / (e^{−c} + Σ e^{sₖ−c}) within its side on output (0 for `Neither`).
pub(crate) fn two_log1p_sum_exp<T: Float>(
    scores: &mut [T],
    side: impl Fn(usize) -> Side,
) -> (T, T) {
    let (mut c_pos, mut c_neg) = (T::ZERO, T::ZERO);
    for (j, s) in scores.iter().enumerate() {
        match side(j) {
            Side::Positive => c_pos = c_pos.max(*s),
            Side::Negative => c_neg = c_neg.max(*s),
            Side::Neither => {}
        }
    }
    let (mut sum_pos, mut sum_neg) = ((-c_pos).exp(), (-c_neg).exp());
    for (j, s) in scores.iter_mut().enumerate() {
        match side(j) {
            Side::Positive => {
                *s = (*s - c_pos).exp();
                sum_pos += *s;
            }
            Side::Negative => {
                *s = (*s - c_neg).exp();
                sum_neg += *s;
            }
            Side::Neither => *s = T::ZERO,
        }
    }
    for (j, s) in scores.iter_mut().enumerate() {
        match side(j) {
            Side::Positive => *s = *s / sum_pos,
            Side::Negative => *s = *s / sum_neg,
            Side::Neither => {}
        }
    }
    (sum_pos.ln() + c_pos, sum_neg.ln() + c_neg)
}

/// One anchor's row, as a dense loss sees it.
pub(crate) struct RowView<'a, T> {
    /// Dᵢⱼ for every key j.
    pub(crate) d: &'a [T],
    /// Labels and the diagonal rule.
    pub(crate) ctx: RowContext<'a>,
    /// The key that is the anchor itself (the diagonal), when keys start with the queries.
    pub(crate) self_col: Option<usize>,
}

/// Scratch of the dense losses, kept in the [`Workspace`].
#[derive(Debug, Default)]
struct DenseScratch<T> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    dist_grad: Vec<T>,
    key_grad: Vec<T>,
    scales: Vec<T>,
}

/// What the dense driver needs to know about a loss: its name (for errors) and its parts
/// in the embedding precision.
pub(crate) struct DenseSpec<'a, T: Float> {
    /// The loss's name, for errors.
    pub(crate) name: &'a str,
    pub(crate) distance: &'a dyn Distance<T>,
    pub(crate) reducer: &'a dyn Reducer<T>,
    /// The config's `remove_diagonal` (combined with the input's rule).
    pub(crate) remove_diagonal: bool,
}

/// The dense losses' driver: validates, fills D (`n x m`), calls
/// `row(view, grad_row, scratch)` for each anchor (returning ℓᵢ and writing ∂ℓᵢ/∂Dᵢ· into
/// `grad_row`, zeroed beforehand), reduces with the reducer, scales each gradient row by the
/// reducer's ∂L/∂ℓᵢ and pushes the whole matrix through [`Distance::dense_vjp`].
///
/// A row whose loss or gradient is not finite (scores overflowing the dtype, or a
/// hyper-parameter that rounds to 0 in f32) is [`LossError::Unsupported`] naming the
/// anchor; a weighted loss or a gradient entry that overflows afterwards is
/// [`LossError::NonFiniteResult`]. Never a NaN.
pub(crate) fn run_dense<T: Float>(
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
    spec: DenseSpec<'_, T>,
    row: impl Fn(&RowView<'_, T>, &mut [T]) -> T + Sync,
) -> Result<(), LossError> {
    let DenseSpec {
        name,
        distance,
        reducer,
        remove_diagonal,
    } = spec;
    let scratch = workspace.get::<DenseScratch<T>>();
    let Some(CallShape {
        n,
        m,
        same,
        gradient,
        ..
    }) = full_distance_matrix(
        input,
        distance,
        2,
        out,
        &mut scratch.row_stats,
        &mut scratch.distances,
    )?
    else {
        return Ok(());
    };
    let (queries, keys) = (input.queries(), input.keys());
    scratch.dist_grad.clear();
    scratch.dist_grad.resize(n * m, T::ZERO);
    let self_rule = same || input.removes_diagonal();
    let (distances, labels) = (&scratch.distances, (queries.labels(), keys.labels()));
    // Rows are independent: split over threads, each row's numbers are the sequential
    // ones, and the lowest failing row's error wins.
    for_row_chunks(
        &mut out.per_example,
        &mut vec![(); n],
        &mut scratch.dist_grad,
        m,
        |first, values, _, grads| {
            for (t, (value, grad_row)) in
                values.iter_mut().zip(grads.chunks_exact_mut(m)).enumerate()
            {
                let i = first + t;
                let view = RowView {
                    d: &distances[i * m..(i + 1) * m],
                    ctx: RowContext {
                        anchor: i,
                        anchor_label: labels.0[i],
                        key_labels: labels.1,
                        remove_diagonal: input.removes_diagonal() && remove_diagonal,
                    },
                    self_col: (self_rule && i < m).then_some(i),
                };
                let v = row(&view, grad_row);
                if !v.is_finite() || grad_row.iter().any(|g| !g.is_finite()) {
                    return Err(overflow(name, i, view.d));
                }
                *value = v;
            }
            Ok(())
        },
    )?;
    scratch.scales.clear();
    scratch.scales.resize(n, T::ZERO);
    out.loss = reduce_checked(
        reducer,
        &out.per_example,
        &input.sample_weight(),
        &mut scratch.scales,
    )?;
    if gradient {
        dense_gradient(input, distance, scratch, out);
    }
    // Each row is finite, but a sample weight times a row, the reduced sum or the
    // gradient (a huge weight, or a distance VJP at the edge of the dtype) can still
    // overflow: an error, never a silent ±∞ or NaN.
    out.check_finite(AllowNonFinite::Never)
}

/// The error of a row whose loss or gradient overflows the dtype.
fn overflow<T: Float>(loss: &str, anchor: usize, row: &[T]) -> LossError {
    let largest = row.iter().fold(T::ZERO, |a, b| a.max(b.abs()));
    LossError::Unsupported {
        loss: loss.to_owned(),
        message: format!(
            "the loss of anchor {anchor} overflows {} (its largest distance is {largest}); rescale the embeddings (for example L2-normalise) or use milder hyper-parameters",
            T::DTYPE
        ),
    }
}

/// Scales each row of ∂ℓ/∂D by the reducer's ∂L/∂ℓᵢ, and pushes the matrix through
/// [`Distance::dense_vjp`] into `out` (which consumes the scaled matrix).
fn dense_gradient<T: Float>(
    input: &LossInput<'_, T>,
    distance: &dyn Distance<T>,
    scratch: &mut DenseScratch<T>,
    out: &mut LossOutput<T>,
) {
    let (q, k) = (input.queries().embeddings(), input.keys().embeddings());
    let m = k.rows();
    let same = input.keys_are_queries();
    for (g_row, &g) in scratch.dist_grad.chunks_exact_mut(m).zip(&scratch.scales) {
        for v in g_row.iter_mut() {
            *v = if g == T::ZERO { T::ZERO } else { *v * g };
        }
    }
    if same {
        distance.dense_vjp_same(
            q,
            &scratch.distances,
            &mut scratch.dist_grad,
            &mut out.grad_queries,
            &mut scratch.key_grad,
        );
    } else {
        distance.dense_vjp(
            q,
            k,
            &scratch.distances,
            &mut scratch.dist_grad,
            &mut out.grad_queries,
            &mut out.grad_keys,
        );
    }
}

/// A dense loss's `with_parts` (documented by the attributes given) and `parts`.
macro_rules! dense_parts_methods {
    ($(#[$doc:meta])*) => {
        $(#[$doc])*
        pub fn with_parts(&self, parts: metric_loss_triplet::DenseParts) -> Self {
            Self {
                parts,
                ..self.clone()
            }
        }

        /// The distance and reducer (each readable there: `loss.parts().distance_kind()`).
        pub fn parts(&self) -> &metric_loss_triplet::DenseParts {
            &self.parts
        }
    };
}
pub(crate) use dense_parts_methods;

/// Implements `MetricLoss` for a loss with a generic `run` method.
macro_rules! impl_metric_loss {
    ($ty:ty) => {
        impl metric_loss_core::MetricLoss for $ty {
            fn name(&self) -> &str {
                &self.name
            }

            fn compute_f32(
                &self,
                input: &metric_loss_core::LossInput<'_, f32>,
                workspace: &mut metric_loss_core::Workspace,
                out: &mut metric_loss_core::LossOutput<f32>,
            ) -> Result<(), metric_loss_core::LossError> {
                self.run(input, workspace, out)
            }

            fn compute_f64(
                &self,
                input: &metric_loss_core::LossInput<'_, f64>,
                workspace: &mut metric_loss_core::Workspace,
                out: &mut metric_loss_core::LossOutput<f64>,
            ) -> Result<(), metric_loss_core::LossError> {
                self.run(input, workspace, out)
            }

            fn reduction(&self) -> metric_loss_core::Reduction {
                self.parts
                    .keras_reduction()
                    .unwrap_or(metric_loss_core::Reduction::Auto)
            }

            fn keras_reduction(&self) -> Option<metric_loss_core::Reduction> {
                self.parts.keras_reduction()
            }
        }
    };
}
pub(crate) use impl_metric_loss;

#[cfg(feature = "serde")]
pub(crate) fn is_true(v: &bool) -> bool {
    *v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_log1p_sum_exp_is_stable() {
        let sides = [Side::Positive, Side::Negative, Side::Neither];
        let mut s = [-200.0f32, -300.0, 5.0];
        let (p, n) = two_log1p_sum_exp(&mut s, |j| sides[j]);
        assert!(
            (0.0..1e-30).contains(&p) && (0.0..1e-30).contains(&n),
            "{p} {n}"
        );
        assert_eq!(s[2], 0.0);
        let sides = [Side::Positive, Side::Neither, Side::Positive];
        let mut s = [200.0f32, 7.0, 200.0];
        let (p, n) = two_log1p_sum_exp(&mut s, |j| sides[j]);
        assert!((p - (200.0 + 2f32.ln())).abs() < 1e-4, "{p}");
        assert_eq!(n, 0f32.exp().ln());
        assert!((s[0] - 0.5).abs() < 1e-6 && s[1] == 0.0);
    }

    #[test]
    fn exp_flushes_subnormals() {
        assert_eq!(exp_ftz(-88.0f32), 0.0);
        assert!(exp_ftz(-87.0f32) > 0.0);
        assert!(exp_ftz(-88.0f64) > 0.0);
    }
}
