//! What the five losses share: TF's row L2 normalisation, Keras's sample weights and
//! reduction, the matrix products, and the `MetricLoss` / serde plumbing.

use metric_loss_core::{Embeddings, Float, LossError, LossInput, Reduction, SampleWeight};
use metric_loss_distances::lanes::{total, LANES};

/// `tf.math.l2_normalize`'s epsilon: rows are divided by √max(‖x‖², 10⁻¹²).
pub(crate) const NORM_EPSILON: f64 = 1e-12;

/// The rows of one view divided by their norms, as `tf.math.l2_normalize` does (its
/// buffers reused from call to call).
#[derive(Debug, Default)]
pub(crate) struct Normalized<T> {
    /// x̂, row-major.
    pub(crate) rows: Vec<T>,
    /// rᵢ = 1/√max(sᵢ, ε).
    scale: Vec<T>,
    /// Whether sᵢ ≥ ε: the norm, not the clamp, takes the gradient (a tie goes to sᵢ).
    by_norm: Vec<bool>,
}

impl<T: Float> Normalized<T> {
    /// Normalises every row of `x` into this value's buffers, reused from the previous
    /// call. A zero row stays zero (times 10⁶); a row whose squared norm overflows gets
    /// r = 0 and becomes a zero row, as in TF.
    pub(crate) fn fill(&mut self, x: Embeddings<'_, T>) {
        let eps = T::from_f64(NORM_EPSILON);
        self.rows.clear();
        self.scale.clear();
        self.by_norm.clear();
        for i in 0..x.rows() {
            let row = x.row(i);
            let s = row.iter().fold(T::ZERO, |acc, v| acc + *v * *v);
            let r = T::ONE / s.max(eps).sqrt();
            self.rows.extend(row.iter().map(|v| *v * r));
            self.scale.push(r);
            self.by_norm.push(s >= eps);
        }
    }

    /// The gradient with respect to x given `g` = ∂/∂x̂ (row i of `g` starting at
    /// `i · g_stride`, `out` row-major like `x`): gᵢrᵢ − xᵢrᵢ³(gᵢ·xᵢ) where the norm was
    /// used, gᵢrᵢ where the clamp was.
    pub(crate) fn backward(&self, x: Embeddings<'_, T>, g: &[T], g_stride: usize, out: &mut [T]) {
        let d = x.cols();
        for i in 0..x.rows() {
            let (row, gi) = (x.row(i), &g[i * g_stride..i * g_stride + d]);
            let r = self.scale[i];
            let along = if self.by_norm[i] {
                let dot = row
                    .iter()
                    .zip(gi)
                    .fold(T::ZERO, |acc, (a, b)| acc + *a * *b);
                r * r * r * dot
            } else {
                T::ZERO
            };
            for ((o, gv), xv) in out[i * d..(i + 1) * d].iter_mut().zip(gi).zip(row) {
                *o = *gv * r - *xv * along;
            }
        }
    }
}

/// Keras's weighting and reduction of a loss's output tensor, flattened row-major with
/// `per_row` entries per example (a weight of shape `[n]` weights rows, a scalar weight
/// everything). Returns the reduced loss (summed in f64) and the factor each weighted entry
/// has in it, which is also each entry's upstream gradient over its weight.
pub(crate) fn keras_reduce<T: Float>(
    values: &[T],
    per_row: usize,
    weights: &SampleWeight<'_, T>,
    reduction: Reduction,
) -> (T, T) {
    let scale = reduction.example_scale(values.len());
    // Row by row (each row's weight looked up once, not by a division per entry), in f64
    // lanes so that the sum vectorises; a zero weight removes its entries even where they
    // are huge.
    let mut acc = [0.0f64; LANES];
    for (r, row) in values.chunks(per_row.max(1)).enumerate() {
        let w = weights.get(r);
        if w == T::ZERO {
            continue;
        }
        let mut blocks = row.chunks_exact(LANES);
        for b in &mut blocks {
            for l in 0..LANES {
                acc[l] += (w * b[l]).to_f64();
            }
        }
        for (l, v) in blocks.remainder().iter().enumerate() {
            acc[l] += (w * *v).to_f64();
        }
    }
    let sum = total(acc);
    (T::from_f64(sum * scale), T::from_f64(scale))
}

/// Checks that both views have `n` rows (view A's count).
pub(crate) fn same_rows<T: Float>(
    a: Embeddings<'_, T>,
    b: Embeddings<'_, T>,
) -> Result<usize, LossError> {
    if a.rows() == b.rows() {
        Ok(a.rows())
    } else {
        Err(LossError::LengthMismatch {
            what: "view B",
            got: b.rows(),
            reference: "view A",
            expected: a.rows(),
        })
    }
}

/// The two views of a validated two-view input and their common width, checked also
/// when one view is empty (each view's gradient has its own width).
pub(crate) fn two_views<'a, T: Float>(
    input: &LossInput<'a, T>,
) -> Result<(Embeddings<'a, T>, Embeddings<'a, T>, usize), LossError> {
    input.validate_views()?;
    let (a, b) = (input.queries().embeddings(), input.keys().embeddings());
    if a.cols() != b.cols() {
        return Err(LossError::DimensionMismatch {
            queries: a.cols(),
            keys: b.cols(),
        });
    }
    Ok((a, b, a.cols()))
}

/// The column sums of the row-major `x` (`d` columns) into `out`: each column summed down
/// its rows in order (the bits of a column-by-column loop), reading `x` row by row.
pub(crate) fn column_sums<T: Float>(x: &[T], d: usize, out: &mut Vec<T>) {
    out.clear();
    out.resize(d, T::ZERO);
    if d == 0 {
        return;
    }
    for row in x.chunks_exact(d) {
        for (s, v) in out.iter_mut().zip(row) {
            *s += *v;
        }
    }
}

/// [`column_sums`] divided by the row count `n`.
pub(crate) fn column_means<T: Float>(x: &[T], n: usize, d: usize, out: &mut Vec<T>) {
    column_sums(x, d, out);
    let nt = T::from_f64(n as f64);
    out.iter_mut().for_each(|s| *s = *s / nt);
}

/// `MetricLoss` for a two-view loss with a generic `run(&self, input, workspace, out)`, its name
/// (the configured one, or the class name) and its Keras reduction.
macro_rules! view_metric_loss {
    ($loss:ident, $config:ident) => {
        impl metric_loss_core::MetricLoss for $loss {
            fn name(&self) -> &str {
                self.name.as_deref().unwrap_or(stringify!($loss))
            }

            fn compute_f32(
                &self,
                input: &metric_loss_core::LossInput<'_, f32>,
                workspace: &mut metric_loss_core::Workspace,
                out: &mut metric_loss_core::LossOutput<f32>,
            ) -> Result<(), metric_loss_core::LossError> {
                self.run(input, workspace, out)?;
                out.check_finite(metric_loss_core::AllowNonFinite::Never)
            }

            fn compute_f64(
                &self,
                input: &metric_loss_core::LossInput<'_, f64>,
                workspace: &mut metric_loss_core::Workspace,
                out: &mut metric_loss_core::LossOutput<f64>,
            ) -> Result<(), metric_loss_core::LossError> {
                self.run(input, workspace, out)?;
                out.check_finite(metric_loss_core::AllowNonFinite::Never)
            }

            fn reduction(&self) -> metric_loss_core::Reduction {
                self.reduction
            }
        }

        #[doc = concat!("A `", stringify!($loss), "` serialises as its config (TF Similarity's `get_config`).")]
        impl serde::Serialize for $loss {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.config().serialize(serializer)
            }
        }

        #[doc = concat!("A `", stringify!($loss), "` deserialises from its config, validated by `build`: invalid arguments are a deserialisation error.")]
        impl<'de> serde::Deserialize<'de> for $loss {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                $config::deserialize(deserializer)?
                    .build()
                    .map_err(D::Error::custom)
            }
        }
    };
}

pub(crate) use view_metric_loss;
