//! Machinery the losses share: validation of hyper-parameters, the distance matrix in the
//! workspace, the dense-loss driver and numerically careful exponentials.

use metric_loss_core::{
    reduce_checked, AllowNonFinite, Distance, Float, LossError, LossInput, LossOutput, Reducer,
    Workspace,
};
use metric_loss_mining::RowContext;

/// The largest distance matrix a call may allocate, in bytes (16 GiB, as for `TripletLoss`):
/// larger batches get [`LossError::TooLarge`] instead of an allocation failure. The dense
/// losses keep two `n x m` matrices (distances and their gradient) and count both.
pub const MAX_MATRIX_BYTES: u128 = metric_loss_triplet::MAX_DISTANCE_MATRIX_BYTES;

/// A finite hyper-parameter, or [`LossError::InvalidParameter`].
pub(crate) fn finite(name: &'static str, value: f64) -> Result<f64, LossError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(LossError::InvalidParameter {
            name,
            value,
            expected: "a finite number",
        })
    }
}

/// A finite, non-zero hyper-parameter (one the loss divides by).
pub(crate) fn finite_nonzero(
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<f64, LossError> {
    let v = finite(name, value)?;
    if v == 0.0 {
        return Err(LossError::InvalidParameter {
            name,
            value,
            expected,
        });
    }
    Ok(v)
}

pub(crate) use metric_loss_triplet::check_matrix_size as check_size;

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

/// ln(1 + Σⱼ e^{sⱼ}) over the scores `s` selected by `keep`, shifted by
/// c = max(0, max kept sⱼ) so that it never overflows nor underflows to −∞. Writes the
/// softmax weights ∂/∂sⱼ = e^{sⱼ−c} / (e^{−c} + Σ e^{sₖ−c}) into `weights` (0 where not
/// kept) and returns the value.
pub(crate) fn log1p_sum_exp<T: Float>(
    scores: impl Iterator<Item = (usize, T)> + Clone,
    weights: &mut [T],
) -> T {
    let mut c = T::ZERO;
    for (_, s) in scores.clone() {
        c = c.max(s);
    }
    let mut sum = (-c).exp();
    for (j, s) in scores.clone() {
        let e = (s - c).exp();
        weights[j] = e;
        sum += e;
    }
    for (j, _) in scores {
        weights[j] = weights[j] / sum;
    }
    sum.ln() + c
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

/// Per-row buffers of the dense losses (each loss uses what it needs), reused across rows
/// and calls.
#[derive(Debug, Default)]
pub(crate) struct RowScratch<T> {
    pub(crate) a: Vec<T>,
    pub(crate) b: Vec<T>,
    pub(crate) c: Vec<T>,
    pub(crate) d: Vec<T>,
}

impl<T: Float> RowScratch<T> {
    /// Zeroes `a`, `b`, `c` and `d` to length `m`.
    pub(crate) fn reset(&mut self, m: usize) {
        for v in [&mut self.a, &mut self.b, &mut self.c, &mut self.d] {
            v.clear();
            v.resize(m, T::ZERO);
        }
    }
}

/// Scratch of the dense losses, kept in the [`Workspace`].
#[derive(Debug, Default)]
struct DenseScratch<T> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    dist_grad: Vec<T>,
    key_grad: Vec<T>,
    scales: Vec<T>,
    rows: RowScratch<T>,
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
    mut row: impl FnMut(&RowView<'_, T>, &mut [T], &mut RowScratch<T>) -> T,
) -> Result<(), LossError> {
    let DenseSpec {
        name,
        distance,
        reducer,
        remove_diagonal,
    } = spec;
    input.validate()?;
    let (queries, keys) = (input.queries(), input.keys());
    let (n, m, dims) = (queries.len(), keys.len(), queries.embeddings().cols());
    let same = input.keys_are_queries();
    let gradient = input.wants_gradient();
    out.reset(n, if same { 0 } else { m }, dims, gradient);
    if n == 0 {
        return Ok(());
    }
    check_size::<T>(n, m, 2)?;
    let scratch = workspace.get::<DenseScratch<T>>();
    scratch.distances.clear();
    scratch.distances.resize(n * m, T::ZERO);
    let (q, k) = (queries.embeddings(), keys.embeddings());
    scratch.row_stats.clear();
    distance.matrix(q, k, same, &mut scratch.row_stats, &mut scratch.distances)?;
    if let Some(at) = scratch.distances.iter().position(|v| !v.is_finite()) {
        return Err(LossError::NonFiniteDistance {
            distance: distance.name(),
            row: at / m,
            col: at % m,
            value: scratch.distances[at].to_f64(),
            dtype: T::DTYPE,
        });
    }
    scratch.dist_grad.clear();
    scratch.dist_grad.resize(n * m, T::ZERO);
    let self_rule = same || input.removes_diagonal();
    for i in 0..n {
        let view = RowView {
            d: &scratch.distances[i * m..(i + 1) * m],
            ctx: RowContext {
                anchor: i,
                anchor_label: queries.labels()[i],
                key_labels: keys.labels(),
                remove_diagonal: input.removes_diagonal() && remove_diagonal,
            },
            self_col: (self_rule && i < m).then_some(i),
        };
        let grad_row = &mut scratch.dist_grad[i * m..(i + 1) * m];
        let value = row(&view, grad_row, &mut scratch.rows);
        if !value.is_finite() || grad_row.iter().any(|g| !g.is_finite()) {
            let largest = view.d.iter().fold(T::ZERO, |a, b| a.max(b.abs()));
            return Err(LossError::Unsupported {
                loss: name.to_owned(),
                message: format!(
                    "the loss of anchor {i} overflows {} (its largest distance is {largest}); rescale the embeddings (for example L2-normalise) or use milder hyper-parameters",
                    T::DTYPE
                ),
            });
        }
        out.per_example[i] = value;
    }
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

/// Scales each row of ∂ℓ/∂D by the reducer's ∂L/∂ℓᵢ, and pushes the matrix through
/// [`Distance::dense_vjp`] into `out` (which consumes the scaled matrix).
fn dense_gradient<T: Float>(
    input: &LossInput<'_, T>,
    distance: &dyn Distance<T>,
    scratch: &mut DenseScratch<T>,
    out: &mut LossOutput<T>,
) {
    let (q, k) = (input.queries().embeddings(), input.keys().embeddings());
    let (n, m, dims) = (q.rows(), k.rows(), q.cols());
    let same = input.keys_are_queries();
    for (g_row, &g) in scratch.dist_grad.chunks_exact_mut(m).zip(&scratch.scales) {
        for v in g_row.iter_mut() {
            *v = if g == T::ZERO { T::ZERO } else { *v * g };
        }
    }
    if same {
        scratch.key_grad.clear();
        scratch.key_grad.resize(n * dims, T::ZERO);
        distance.dense_vjp(
            q,
            k,
            &scratch.distances,
            &mut scratch.dist_grad,
            &mut out.grad_queries,
            &mut scratch.key_grad,
        );
        for (o, v) in out.grad_queries.iter_mut().zip(&scratch.key_grad) {
            *o += *v;
        }
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
    fn log1p_sum_exp_is_stable() {
        let mut w = [0.0f32; 3];
        let s = [(0usize, -200.0f32), (1, -300.0)];
        let v = log1p_sum_exp(s.iter().copied(), &mut w);
        assert!((0.0..1e-30).contains(&v), "{v}");
        let s = [(0usize, 200.0f32), (2, 200.0)];
        let v = log1p_sum_exp(s.iter().copied(), &mut w);
        assert!((v - (200.0 + 2f32.ln())).abs() < 1e-4, "{v}");
        assert!((w[0] - 0.5).abs() < 1e-6 && w[1] == 0.0);
    }

    #[test]
    fn exp_flushes_subnormals() {
        assert_eq!(exp_ftz(-88.0f32), 0.0);
        assert!(exp_ftz(-87.0f32) > 0.0);
        assert!(exp_ftz(-88.0f64) > 0.0);
    }
}
