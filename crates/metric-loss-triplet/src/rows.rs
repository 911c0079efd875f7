//! The driver every loss over whole rows of the distance matrix runs on: validate →
//! distances → the loss's per-row formula (ℓᵢ and ∂ℓᵢ/∂Dᵢ·) → reduce → the distance's
//! vector-Jacobian product back to the embeddings.

use std::fmt::Debug;

use metric_loss_core::{
    reduce_checked, AllowNonFinite, Distance, Float, LossError, LossInput, LossOutput, Workspace,
};
use metric_loss_distances::lanes::{all_finite, DenseFloat};
use metric_loss_distances::parallel::{for_row_chunks_with_scratch, for_rows_on, threads_for};
use metric_loss_distances::wide::with_avx2;

use crate::{full_distance_matrix, CallShape, DenseParts};

/// A loss over whole rows: anchor i's loss ℓᵢ is a function of its row of distances
/// Dᵢ· and of which keys share its label (MultiSimilarity, Circle, SoftNearestNeighbor).
/// The loss gives ℓᵢ and ∂ℓᵢ/∂Dᵢ· for one row; everything else (validation, the size
/// check, the distance matrix, threads, the reduction, the gradient through
/// [`Distance::dense_vjp`], the finite checks) is [`compute_rows`]'s.
///
/// [`row_metric_loss!`](crate::row_metric_loss) implements
/// [`MetricLoss`](metric_loss_core::MetricLoss) for such a loss. A whole loss, the mean
/// distance to the anchor's positives, ℓᵢ = (1/|Pᵢ|) Σ_{j∈Pᵢ} Dᵢⱼ:
///
/// ```
/// use metric_loss_core::{LossError, MetricLossExt};
/// use metric_loss_distances::lanes::DenseFloat;
/// use metric_loss_triplet::{row_metric_loss, DenseParts, RowLoss, RowView};
///
/// #[derive(Debug, Default)]
/// struct MeanPositiveDistance { parts: DenseParts }
///
/// impl RowLoss for MeanPositiveDistance {
///     type Scratch = ();
///     fn name(&self) -> &str { "mean_positive_distance" }
///     fn parts(&self) -> &DenseParts { &self.parts }
///     fn row<T: DenseFloat>(&self, row: &RowView<'_, T>, grad: &mut [T], _: &mut ()) -> T {
///         let count = (0..row.distances.len()).filter(|&j| row.is_positive(j)).count();
///         let share = if count == 0 { T::ZERO } else { T::ONE / T::from_f64(count as f64) };
///         let mut loss = T::ZERO;
///         for (j, (g, &d)) in grad.iter_mut().zip(row.distances).enumerate() {
///             *g = if row.is_positive(j) { share } else { T::ZERO };
///             loss += *g * d;
///         }
///         loss
///     }
/// }
/// row_metric_loss!(MeanPositiveDistance);
///
/// // Cosine distances 1 - cos: anchor 0's only positive is at 90 degrees.
/// let x = [1.0f64, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0];
/// let out = MeanPositiveDistance::default().evaluate(&[0, 1, 0, 1], &x, 2)?;
/// assert!((out.per_example[0] - 1.0).abs() < 1e-12);
/// # Ok::<(), LossError>(())
/// ```
pub trait RowLoss: Debug + Send + Sync {
    /// Reusable memory for [`RowLoss::row`], one per thread, kept in the caller's
    /// [`Workspace`] between calls (`()` for none). What it holds on entry is whatever the
    /// thread's previous row left.
    type Scratch: Default + Send + 'static;

    /// The loss's name (Keras's `name`), used in errors.
    fn name(&self) -> &str;

    /// The distance and reducer.
    fn parts(&self) -> &DenseParts;

    /// Anchor `row.anchor`'s loss ℓᵢ; writes ∂ℓᵢ/∂Dᵢⱼ into `grad[j]` for every key j
    /// (every entry: `grad` holds an earlier row's values on entry). Called for each
    /// anchor, on several threads at once for large batches.
    ///
    /// The driver runs its row loop in a copy compiled for AVX2 when the CPU has it: mark
    /// the implementation `#[inline(always)]` for its loops to be compiled there too. A
    /// row whose value or gradient is not finite is an error naming the anchor
    /// ([`LossError::Unsupported`]), never a NaN in the output.
    fn row<T: DenseFloat>(
        &self,
        row: &RowView<'_, T>,
        grad: &mut [T],
        scratch: &mut Self::Scratch,
    ) -> T;

    /// Whether the self pair is kept out of the positives when the input asks for it
    /// ([`LossInput::remove_diagonal`]); default `true`.
    fn remove_diagonal(&self) -> bool {
        true
    }
}

/// One anchor's row, as [`RowLoss::row`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RowView<'a, T> {
    /// The anchor's index among the queries.
    pub anchor: usize,
    /// Dᵢⱼ for every key j.
    pub distances: &'a [T],
    /// The key that is the anchor itself (the diagonal), when the keys are the queries or
    /// begin with them.
    pub self_col: Option<usize>,
    /// Each key's class number: equal numbers for equal labels.
    pub key_classes: &'a [u32],
    /// The anchor's class number (one no key has when no key shares its label).
    pub anchor_class: u32,
    /// The key the diagonal rule takes out of the positives, or `usize::MAX`.
    pub diag: usize,
}

impl<T> RowView<'_, T> {
    /// Key `j` is a positive: it shares the anchor's label and is not the anchor itself
    /// (when the diagonal is removed).
    #[inline(always)]
    pub fn is_positive(&self, j: usize) -> bool {
        self.key_classes[j] == self.anchor_class && j != self.diag
    }

    /// Key `j` is a negative: its label differs from the anchor's.
    #[inline(always)]
    pub fn is_negative(&self, j: usize) -> bool {
        self.key_classes[j] != self.anchor_class
    }
}

/// Scratch of the row driver, kept in the [`Workspace`].
#[derive(Debug)]
struct RowsScratch<T, S> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    dist_grad: Vec<T>,
    key_grad: Vec<T>,
    scales: Vec<T>,
    rows: Vec<S>,
    classes: ClassNumbers,
}

impl<T, S> Default for RowsScratch<T, S> {
    fn default() -> Self {
        Self {
            distances: Vec::new(),
            row_stats: Vec::new(),
            dist_grad: Vec::new(),
            key_grad: Vec::new(),
            scales: Vec::new(),
            rows: Vec::new(),
            classes: ClassNumbers::default(),
        }
    }
}

/// The keys' labels as small class numbers: row formulas compare 32-bit numbers, which
/// vectorise on every x86-64 (64-bit lane comparisons need SSE4.1). Not the mining crate's
/// `KeyClasses`, which lists each label's keys: a row formula reads every key anyway and
/// wants one number per key.
#[derive(Debug, Default)]
struct ClassNumbers {
    /// Each key's class.
    of_key: Vec<u32>,
    /// (label, class) for each distinct label, by label.
    by_label: Vec<(i64, u32)>,
}

impl ClassNumbers {
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

/// Runs `loss` on `input`: the whole call of a [`RowLoss`], into `out`.
///
/// Fills D (`n x m`), calls [`RowLoss::row`] for each anchor (rows split over threads, each
/// row's numbers those of one thread, so the results are the same bit for bit on any
/// thread count), reduces with the reducer, scales each gradient row by the reducer's
/// ∂L/∂ℓᵢ and pushes the whole matrix through [`Distance::dense_vjp`] (against the batch
/// itself, one product with G + Gᵀ: [`Distance::dense_vjp_same`]).
///
/// # Errors
/// Invalid input ([`LossInput::validate`]); [`LossError::Unsupported`] for a similarity
/// (the formulas compare distances) and for a row whose loss or gradient is not finite
/// (scores overflowing the dtype, or a hyper-parameter that rounds to 0 in f32), naming
/// the anchor; [`LossError::TooLarge`]; the distance's error or
/// [`LossError::NonFiniteDistance`]; and [`LossError::NonFiniteResult`] for a weighted
/// loss or a gradient entry that overflows afterwards. Never a NaN.
pub fn compute_rows<T: DenseFloat, L: RowLoss>(
    loss: &L,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
) -> Result<(), LossError> {
    let name = loss.name();
    let distance = T::distance(loss.parts().distance_part());
    let reducer = T::reducer(loss.parts().reducer_part());
    if distance.is_similarity() {
        return Err(LossError::Unsupported {
            loss: name.to_owned(),
            message: format!(
                "`{}` is a similarity (larger is closer), but this loss's formula is written for distances; use a distance, such as TF Similarity's \"cosine\" (1 − cos) or LpDistance",
                distance.name()
            ),
        });
    }
    let scratch = workspace.get::<RowsScratch<T, L::Scratch>>();
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
    let removes_diagonal = input.removes_diagonal() && loss.remove_diagonal();
    // Rows are independent: split over threads, each row's numbers are the sequential
    // ones, and the lowest failing row's error wins.
    for_row_chunks_with_scratch(
        &mut out.per_example,
        &mut scratch.dist_grad,
        m,
        &mut scratch.rows,
        |first, values, row_scratch, grads| {
            // Entered on each thread: a closure the pool runs is compiled outside the
            // caller's AVX2 copy.
            with_avx2(
                #[inline(always)]
                || {
                    for (t, (value, grad_row)) in
                        values.iter_mut().zip(grads.chunks_exact_mut(m)).enumerate()
                    {
                        let i = first + t;
                        let view = RowView {
                            anchor: i,
                            distances: &distances[i * m..(i + 1) * m],
                            self_col: (self_rule && i < m).then_some(i),
                            key_classes: &classes.of_key,
                            anchor_class: classes.of(query_labels[i]),
                            diag: if removes_diagonal { i } else { usize::MAX },
                        };
                        let v = loss.row(&view, grad_row, row_scratch);
                        if !v.is_finite() || !all_finite(grad_row) {
                            return Err(overflow(name, i, view.distances));
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
        matrix_gradient(input, distance, scratch, out);
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
fn matrix_gradient<T: Float, S>(
    input: &LossInput<'_, T>,
    distance: &dyn Distance<T>,
    scratch: &mut RowsScratch<T, S>,
    out: &mut LossOutput<T>,
) {
    let (q, k) = (input.queries().embeddings(), input.keys().embeddings());
    let m = k.rows();
    let scales = &scratch.scales;
    for_rows_on(
        threads_for(scales.len()),
        &mut scratch.dist_grad,
        m,
        |r0, rows| {
            for (g_row, &g) in rows.chunks_exact_mut(m).zip(&scales[r0..]) {
                for v in g_row.iter_mut() {
                    *v = if g == T::ZERO { T::ZERO } else { *v * g };
                }
            }
        },
    );
    if input.keys_are_queries() {
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
