//! Machinery the losses share: the distance matrix in the workspace and the dense-loss
//! driver.

use metric_loss_core::{
    reduce_checked, AllowNonFinite, Distance, Float, LossError, LossInput, LossOutput, Reducer,
    Workspace,
};
use metric_loss_distances::parallel::for_row_chunks_with_scratch;
use metric_loss_distances::wide::with_avx2;

/// The largest distance matrix a call may allocate, in bytes (16 GiB, as for `TripletLoss`):
/// larger batches get [`LossError::TooLarge`] instead of an allocation failure. The dense
/// losses keep two `n x m` matrices (distances and their gradient) and count both.
pub const MAX_MATRIX_BYTES: u128 = metric_loss_triplet::MAX_DISTANCE_MATRIX_BYTES;

use metric_loss_triplet::{full_distance_matrix, CallShape};

use crate::lanes::{all_finite, Side};

/// One anchor's row, as a dense loss sees it.
pub(crate) struct RowView<'a, T> {
    /// Dᵢⱼ for every key j.
    pub(crate) d: &'a [T],
    /// The key that is the anchor itself (the diagonal), when keys start with the queries.
    pub(crate) self_col: Option<usize>,
    /// Each key's class number (equal numbers for equal labels).
    pub(crate) key_classes: &'a [u32],
    /// The anchor's class number (one no key has when no key shares its label).
    pub(crate) anchor_class: u32,
    /// The key the diagonal rule takes out of the positives, or `usize::MAX`.
    pub(crate) diag: usize,
}

/// Scratch of the dense losses, kept in the [`Workspace`].
#[derive(Debug, Default)]
struct DenseScratch<T> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    dist_grad: Vec<T>,
    key_grad: Vec<T>,
    scales: Vec<T>,
    rows: Vec<RowScratch>,
    classes: KeyClasses,
}

/// The keys' labels as small class numbers: the row formulas compare 32-bit numbers, which
/// vectorise on every x86-64 (64-bit lane comparisons need SSE4.1).
#[derive(Debug, Default)]
struct KeyClasses {
    /// Each key's class.
    of_key: Vec<u32>,
    /// (label, class) for each distinct label, by label.
    by_label: Vec<(i64, u32)>,
}

impl KeyClasses {
    /// Numbers the distinct labels of `keys` (allocation-free once the buffers are grown).
    fn assign(&mut self, keys: &[i64]) {
        self.by_label.clear();
        self.by_label.extend(keys.iter().map(|&l| (l, 0)));
        self.by_label.sort_unstable();
        self.by_label.dedup_by_key(|e| e.0);
        for (c, e) in self.by_label.iter_mut().enumerate() {
            e.1 = c as u32;
        }
        self.of_key.clear();
        let by_label = &self.by_label;
        self.of_key
            .extend(keys.iter().map(|l| Self::lookup(by_label, *l)));
    }

    /// The class of `label`: its number, or `u32::MAX` when no key has it.
    fn of(&self, label: i64) -> u32 {
        Self::lookup(&self.by_label, label)
    }

    fn lookup(by_label: &[(i64, u32)], label: i64) -> u32 {
        by_label
            .binary_search_by_key(&label, |e| e.0)
            .map_or(u32::MAX, |at| by_label[at].1)
    }
}

/// A row formula's reusable memory, one per thread: what it holds on entry is whatever
/// the previous row left, so a formula overwrites what it reads.
#[derive(Debug, Default)]
pub(crate) struct RowScratch {
    /// One side per key ([`crate::lanes::POSITIVE`], ...).
    pub(crate) side: Vec<Side>,
}

impl RowScratch {
    /// The side buffer, `m` long (contents unspecified).
    pub(crate) fn sides(&mut self, m: usize) -> &mut [Side] {
        self.side.resize(m, crate::lanes::NEITHER);
        &mut self.side[..m]
    }
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
/// `grad_row`, every entry of it: it holds the previous call's values on entry; `scratch` is
/// the thread's [`RowScratch`]), reduces with the reducer, scales each gradient row by the
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
    row: impl Fn(&RowView<'_, T>, &mut [T], &mut RowScratch) -> T + Sync,
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
    // Not zeroed: every row formula writes its whole row.
    scratch.dist_grad.resize(n * m, T::ZERO);
    let self_rule = same || input.removes_diagonal();
    scratch.classes.assign(keys.labels());
    let (distances, query_labels) = (&scratch.distances, queries.labels());
    let classes = &scratch.classes;
    let removes_diagonal = input.removes_diagonal() && remove_diagonal;
    // Rows are independent: split over threads, each row's numbers are the sequential
    // ones, and the lowest failing row's error wins.
    for_row_chunks_with_scratch(
        &mut out.per_example,
        &mut scratch.dist_grad,
        m,
        &mut scratch.rows,
        |first, values, row_scratch, grads| {
            with_avx2(
                #[inline(always)]
                || {
                    for (t, (value, grad_row)) in
                        values.iter_mut().zip(grads.chunks_exact_mut(m)).enumerate()
                    {
                        let i = first + t;
                        let view = RowView {
                            d: &distances[i * m..(i + 1) * m],
                            self_col: (self_rule && i < m).then_some(i),
                            key_classes: &classes.of_key,
                            anchor_class: classes.of(query_labels[i]),
                            diag: if removes_diagonal { i } else { usize::MAX },
                        };
                        let v = row(&view, grad_row, row_scratch);
                        if !v.is_finite() || !all_finite(grad_row) {
                            return Err(overflow(name, i, view.d));
                        }
                        *value = v;
                    }
                    Ok(())
                },
            )
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
        distance.dense_vjp_with_scratch(
            q,
            k,
            &scratch.distances,
            &mut scratch.dist_grad,
            &mut out.grad_queries,
            &mut out.grad_keys,
            &mut scratch.key_grad,
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
