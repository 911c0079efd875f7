//! The driver every pair-based loss runs on, PML's and yours: validate → distance matrix →
//! the loss's elements (per pair or per row) → one reducer per sub-loss → ∂/∂M → the
//! distance's vector-Jacobian product. A loss supplies its [`PairFormula`].

use std::ops::Range;

use metric_loss_core::{
    AllowNonFinite, Distance, Embeddings, Float, LossError, LossInput, LossOutput, SampleWeight,
    Workspace,
};
use metric_loss_distances::lanes::DenseFloat;
use metric_loss_distances::parallel::{for_row_chunks_with_scratch, for_rows_on, threads_for};
use metric_loss_distances::wide::with_avx2;
use metric_loss_triplet::{
    check_matrix_size, finite_distances, start_call, CallShape, DenseParts,
    MAX_DISTANCE_MATRIX_BYTES,
};

/// The smallest normal number of `T`: PML's `tiny`, added where it divides or takes a log.
pub(crate) fn tiny<T: Float>() -> T {
    if T::DTYPE == "f32" {
        T::from_f64(f64::from(f32::MIN_POSITIVE))
    } else {
        T::from_f64(f64::MIN_POSITIVE)
    }
}

/// Rows of the distance matrix and the pair masks of one call, as a [`PairFormula`] sees
/// them: the whole `n x m` matrix, or a strip of its rows ([`Scores::rows`]).
#[derive(Debug)]
pub struct Scores<'a, T> {
    /// The distances (or similarities) of the anchors [`Scores::rows`] to every key,
    /// row-major: the whole `n x m` matrix, or one strip of its rows.
    pub(crate) m: &'a [T],
    /// The first anchor whose row `m` holds.
    first: usize,
    /// Number of columns (keys).
    pub(crate) cols: usize,
    /// Whether larger entries mean closer.
    pub(crate) similarity: bool,
    query_labels: &'a [i64],
    key_labels: &'a [i64],
    remove_diagonal: bool,
}

impl<'a, T: Float> Scores<'a, T> {
    /// The same masks over `m`, the rows of anchors `first..` (whole rows of `cols`).
    fn holding<'m>(&self, m: &'m [T], first: usize) -> Scores<'m, T>
    where
        'a: 'm,
    {
        Scores { m, first, ..*self }
    }

    /// The anchors whose rows are held.
    pub fn rows(&self) -> Range<usize> {
        self.first..self.first + self.m.len() / self.cols.max(1)
    }

    /// The number of keys (the matrix's columns).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Whether larger entries mean closer (a similarity such as
    /// [`CosineSimilarity`](crate::CosineSimilarity)): a formula written for distances
    /// flips its comparisons then, as PML's `is_inverted` does.
    pub fn is_similarity(&self) -> bool {
        self.similarity
    }

    /// Row `i` of the matrix.
    ///
    /// # Panics
    /// If `i` is not one of [`Scores::rows`].
    pub fn row(&self, i: usize) -> &[T] {
        let at = i - self.first;
        &self.m[at * self.cols..(at + 1) * self.cols]
    }

    /// Anchor `i`'s row of `grad`, a matrix of the shape of the held rows.
    ///
    /// # Panics
    /// If `i` is not one of [`Scores::rows`], or `grad` is smaller than the held rows.
    pub fn grad_row<'g>(&self, grad: &'g mut [T], i: usize) -> &'g mut [T] {
        let at = i - self.first;
        &mut grad[at * self.cols..(at + 1) * self.cols]
    }

    /// (i, j) is a positive pair: same label, and not the anchor itself when the keys are
    /// the batch.
    pub fn positive(&self, i: usize, j: usize) -> bool {
        self.query_labels[i] == self.key_labels[j] && !(self.remove_diagonal && i == j)
    }

    /// Anchor `i`'s label, every key's label, and the key the diagonal rule takes out of
    /// the positives (`usize::MAX` for none): key j is a positive if its label equals the
    /// anchor's and j is not that key, a negative if its label differs. For a pass over a
    /// whole row without a lookup per pair.
    pub fn row_labels(&self, i: usize) -> (i64, &'a [i64], usize) {
        let diag = if self.remove_diagonal { i } else { usize::MAX };
        (self.query_labels[i], self.key_labels, diag)
    }

    /// (i, j) is a negative pair: different labels.
    pub fn negative(&self, i: usize, j: usize) -> bool {
        self.query_labels[i] != self.key_labels[j]
    }

    /// The numbers of positive and of negative pairs of the whole batch, each counted up
    /// to 2.
    fn pair_counts(&self) -> (usize, usize) {
        let (mut pos, mut neg) = (0, 0);
        for i in 0..self.query_labels.len() {
            for j in 0..self.key_labels.len() {
                pos += usize::from(self.positive(i, j));
                neg += usize::from(self.negative(i, j));
                if pos >= 2 && neg >= 2 {
                    return (pos, neg);
                }
            }
        }
        (pos, neg)
    }

    /// The exact number of positive pairs of the whole batch, from the key labels sorted
    /// into `sorted` (reused memory): no pass over the `n x m` pairs.
    fn positive_pairs(&self, sorted: &mut Vec<i64>) -> u128 {
        sorted.clear();
        sorted.extend_from_slice(self.key_labels);
        sorted.sort_unstable();
        let mut count = 0u128;
        for (i, &y) in self.query_labels.iter().enumerate() {
            let same = sorted.partition_point(|&v| v <= y) - sorted.partition_point(|&v| v < y);
            let own = self.remove_diagonal && self.key_labels.get(i) == Some(&y);
            count += (same - usize::from(own)) as u128;
        }
        count
    }

    /// Whether the batch has a positive pair and a negative pair (the losses that need
    /// both are 0 without them).
    pub fn has_both(&self) -> bool {
        let (pos, neg) = self.pair_counts();
        pos > 0 && neg > 0
    }

    /// Row `i`'s logits ([`Scores::logit`]) into `out`, −∞ where `kept(j)` is false: the
    /// input of a softmax over the kept columns (e^−∞ = 0 drops the others).
    #[inline(always)]
    pub fn kept_logits(
        &self,
        i: usize,
        temperature: T,
        out: &mut [T],
        kept: impl Fn(usize) -> bool,
    ) {
        let none = T::from_f64(f64::NEG_INFINITY);
        for (j, (o, v)) in out.iter_mut().zip(self.row(i)).enumerate() {
            let l = self.logit(*v, temperature);
            *o = if kept(j) { l } else { none };
        }
    }

    /// Row `i`'s logits into `out`, −∞ where `kept(positive, negative)` is false for the
    /// key: [`Scores::kept_logits`] for a rule on the pair's sides, from the labels
    /// ([`Scores::sides`]) without a lookup per pair, so that the pass vectorises.
    #[inline(always)]
    pub fn kept_logits_by_side(
        &self,
        i: usize,
        temperature: T,
        out: &mut [T],
        kept: impl Fn(bool, bool) -> bool,
    ) {
        let none = T::from_f64(f64::NEG_INFINITY);
        for ((o, v), (positive, negative)) in out.iter_mut().zip(self.row(i)).zip(self.sides(i)) {
            let l = self.logit(*v, temperature);
            *o = if kept(positive, negative) { l } else { none };
        }
    }

    /// Each key's ([`Scores::positive`], [`Scores::negative`]) for anchor `i`, in column
    /// order, from the labels without a lookup per pair.
    #[inline(always)]
    pub fn sides(&self, i: usize) -> impl Iterator<Item = (bool, bool)> + 'a {
        let (label, keys, diag) = self.row_labels(i);
        keys.iter()
            .enumerate()
            .map(move |(j, &k)| (k == label && j != diag, k != label))
    }

    /// The score a softmax runs over: the entry for a similarity, its negation for a
    /// distance, divided by `temperature`.
    pub fn logit(&self, v: T, temperature: T) -> T {
        (if self.similarity { v } else { -v }) / temperature
    }
}

/// The elements of one sub-loss: one per pair or per anchor row, each with the anchor it
/// belongs to, a column and two numbers the formula keeps for its gradient. The reducer
/// sees the values in the order they were pushed (anchor by anchor) and writes each
/// element's ∂L/∂element into [`Elements::scales`] for the formula's backward pass.
#[derive(Debug, Default)]
pub struct Elements<T> {
    pub(crate) values: Vec<T>,
    pub(crate) anchors: Vec<u32>,
    pub(crate) cols: Vec<u32>,
    pub(crate) aux: Vec<[T; 2]>,
    /// ∂L/∂element, written by the reducer.
    pub(crate) scales: Vec<T>,
    weights: Vec<T>,
    /// A row's worth of memory the formula may use as it likes (kept across calls).
    pub(crate) row: Vec<T>,
    /// [`Elements::fill_row`]'s slots, kept across rows and calls.
    slot_values: Vec<T>,
    slot_cols: Vec<u32>,
}

impl<T: Float> Elements<T> {
    fn clear(&mut self) {
        self.values.clear();
        self.anchors.clear();
        self.cols.clear();
        self.aux.clear();
        self.scales.clear();
        self.weights.clear();
    }

    /// Appends `other`'s elements (those of later anchors) after these.
    fn append(&mut self, other: &Elements<T>) {
        self.values.extend_from_slice(&other.values);
        self.anchors.extend_from_slice(&other.anchors);
        self.cols.extend_from_slice(&other.cols);
        self.aux.extend_from_slice(&other.aux);
    }

    /// The elements' values, in the order they were pushed.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Each element's anchor (non-decreasing).
    pub fn anchors(&self) -> &[u32] {
        &self.anchors
    }

    /// Each element's column (a key, or whatever the formula records).
    pub fn cols(&self) -> &[u32] {
        &self.cols
    }

    /// Each element's two numbers kept for the gradient (empty for a formula that pushes
    /// with [`Elements::push_plain`]).
    pub fn aux(&self) -> &[[T; 2]] {
        &self.aux
    }

    /// Each element's ∂L/∂element, written by the reducer (for `backward`).
    pub fn scales(&self) -> &[T] {
        &self.scales
    }

    /// A buffer the formula may use as it likes, kept across calls (its contents on entry
    /// are whatever the formula left there).
    pub fn row_memory(&mut self) -> &mut Vec<T> {
        &mut self.row
    }

    /// Adds an element of anchor `anchor`.
    pub fn push(&mut self, anchor: usize, col: usize, value: T, aux: [T; 2]) {
        self.push_plain(anchor, col, value);
        self.aux.push(aux);
    }

    /// Adds an element of anchor `anchor` with no `aux` numbers, for a formula whose
    /// gradient needs none: a pair loss has n·m elements, and every byte of each counts.
    /// A formula uses either this or [`Elements::push`], never both.
    pub fn push_plain(&mut self, anchor: usize, col: usize, value: T) {
        self.values.push(value);
        // 32 bits each (a pair loss has n·m elements, and every byte of each is written and
        // read again): anchors and keys fit, as a call holds at most 2³² distances.
        self.anchors.push(anchor as u32);
        self.cols.push(col as u32);
    }

    /// Appends up to `max` elements of anchor `anchor` at once: `fill` writes the values
    /// and columns of the first k of the `max` slots it is given and returns k; the other
    /// slots are dropped. For a formula with an element per pair, whose pushes one at a
    /// time keep each vector's length in memory (the three vectors may alias as far as the
    /// compiler knows), so that every push waits on the previous one's store. The slots
    /// are memory of their own, kept across rows and calls, and the k kept elements are
    /// copied from them: slots at the end of the element vectors, zeroed for every row and
    /// trimmed, cost a row's worth of stores even for a side that keeps a few pairs.
    pub(crate) fn fill_row(
        &mut self,
        anchor: usize,
        max: usize,
        fill: impl FnOnce(&mut [T], &mut [u32]) -> usize,
    ) {
        if self.slot_values.len() < max {
            self.slot_values.resize(max, T::ZERO);
            self.slot_cols.resize(max, 0);
        }
        let count = fill(&mut self.slot_values[..max], &mut self.slot_cols[..max]).min(max);
        self.values.extend_from_slice(&self.slot_values[..count]);
        self.cols.extend_from_slice(&self.slot_cols[..count]);
        self.anchors
            .resize(self.anchors.len() + count, anchor as u32);
    }

    /// The indices of the elements of anchors `rows` (elements are pushed anchor by
    /// anchor, in order).
    pub fn span(&self, rows: Range<usize>) -> Range<usize> {
        let below = |end: usize| self.anchors.partition_point(|&a| (a as usize) < end);
        below(rows.start)..below(rows.end)
    }

    /// The elements of anchors `rows` with their reducer scales:
    /// `(anchor, col, value, aux, scale)` (`aux` zero for elements added by
    /// [`Elements::push_plain`]).
    pub fn of_rows(
        &self,
        rows: Range<usize>,
    ) -> impl Iterator<Item = (usize, usize, T, [T; 2], T)> + '_ {
        self.span(rows).map(|e| {
            (
                self.anchors[e] as usize,
                self.cols[e] as usize,
                self.values[e],
                self.aux.get(e).copied().unwrap_or([T::ZERO; 2]),
                self.scales[e],
            )
        })
    }
}

/// What a pair-based loss computes: its elements from the distances and labels, and
/// their derivatives. The driver ([`compute_pairs`]) handles everything around it.
///
/// A loss that is one [`PairFormula`] with its parts implements [`PairLoss`] too, and
/// [`pair_metric_loss!`](crate::pair_metric_loss) implements
/// [`MetricLoss`](metric_loss_core::MetricLoss) for it; see [`PairLoss`] for a whole loss.
pub trait PairFormula: Sync {
    /// How many sub-losses, 1 or 2 (each reduced by its own copy of the reducer, then
    /// summed); any other number is [`LossError::Unsupported`] at the call.
    const SUB_LOSSES: usize;

    /// Whether the loss keeps few elements (one per anchor or per positive pair, not one
    /// per entry of the matrix), so that a large batch may run in strips of rows: the
    /// matrix is then computed a strip at a time, twice (forward, then gradient), and
    /// never held whole. Such a loss's forward pass also splits its rows over threads,
    /// each thread's elements appended in row order afterwards (for a loss with an
    /// element per entry, that copy would cost about what the second thread saves).
    const STRIPS: bool = false;

    /// Pushes the elements of the anchors `s.rows()` of each sub-loss into `subs`
    /// (`SUB_LOSSES` of them), after those of earlier anchors. Returns `false` for PML's
    /// zero path: the loss is 0 with no gradient.
    fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool;

    /// Adds Σₑ scaleₑ · ∂elementₑ/∂M for the elements of the anchors `s.rows()` into
    /// `grad` (the shape of `s.m`, zeroed beforehand).
    fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]);
}

/// A pair-based loss: a [`PairFormula`] with its name and parts (any distance, any
/// reducer, yours included). [`pair_metric_loss!`](crate::pair_metric_loss) implements
/// [`MetricLoss`](metric_loss_core::MetricLoss) for it with [`compute_pairs`].
///
/// A whole loss, the squared contrastive loss of Hadsell, Chopra and LeCun (2006): each
/// positive pair costs d², each negative pair relu(1 − d)², each set reduced on its own:
///
/// ```
/// use metric_loss_core::{Float, MetricLossExt};
/// use metric_loss_distances::lanes::DenseFloat;
/// use metric_loss_pml::{pair_metric_loss, Elements, PairFormula, PairLoss, Scores};
/// use metric_loss_triplet::DenseParts;
///
/// #[derive(Debug, Default)]
/// struct SquaredContrastive { parts: DenseParts }
///
/// impl PairFormula for SquaredContrastive {
///     const SUB_LOSSES: usize = 2;
///
///     fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
///         let (pos, neg) = subs.split_at_mut(1);
///         for i in s.rows() {
///             for (j, &d) in s.row(i).iter().enumerate() {
///                 if s.positive(i, j) {
///                     pos[0].push_plain(i, j, d * d);
///                 } else if s.negative(i, j) {
///                     let h = (T::ONE - d).max(T::ZERO);
///                     neg[0].push_plain(i, j, h * h);
///                 }
///             }
///         }
///         true
///     }
///
///     fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
///         for (i, j, _, _, scale) in subs[0].of_rows(s.rows()) {
///             let d = s.row(i)[j];
///             s.grad_row(grad, i)[j] += scale * (d + d);
///         }
///         for (i, j, _, _, scale) in subs[1].of_rows(s.rows()) {
///             let h = (T::ONE - s.row(i)[j]).max(T::ZERO);
///             s.grad_row(grad, i)[j] -= scale * (h + h);
///         }
///     }
/// }
///
/// impl PairLoss for SquaredContrastive {
///     fn name(&self) -> &str { "squared_contrastive" }
///     fn parts(&self) -> &DenseParts { &self.parts }
/// }
/// pair_metric_loss!(SquaredContrastive);
///
/// let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let out = SquaredContrastive::default().evaluate(&[0, 0, 1, 1], &x, 2)?;
/// assert!(out.loss > 0.0 && out.grad_queries.iter().all(|g| g.is_finite()));
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
pub trait PairLoss: PairFormula + std::fmt::Debug + Send + Sync {
    /// The loss's name, used in errors.
    fn name(&self) -> &str;

    /// The distance, and the reducer each sub-loss is reduced with.
    fn parts(&self) -> &DenseParts;
}

/// Runs `loss` on `input`: the whole call of a [`PairLoss`], into `out`. `per_example[i]`
/// is anchor i's share of the loss (its elements times their reducer scales), so the
/// per-example values sum to the loss; a sample weight multiplies each element of its
/// anchor. A batch with at most one positive and one negative pair is loss 0 (PML's
/// shortcut). Backward rows are split over threads with the same bits on any count.
///
/// # Errors
/// [`LossError::Unsupported`] for a formula with other than 1 or 2 sub-losses; invalid
/// input ([`LossInput::validate`]), [`LossError::TooLarge`],
/// [`LossError::NonFiniteDistance`], or [`LossError::NonFiniteResult`] when the result
/// overflows (a formula's NaN included).
pub fn compute_pairs<T: DenseFloat, L: PairLoss>(
    loss: &L,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
) -> Result<(), LossError> {
    if !(1..=2).contains(&L::SUB_LOSSES) {
        return Err(LossError::Unsupported {
            loss: loss.name().to_owned(),
            message: format!(
                "its formula declares {} sub-losses; the pair driver runs 1 or 2",
                L::SUB_LOSSES
            ),
        });
    }
    run_pairs(loss, loss.parts(), input, workspace, out)
}

/// Implements [`MetricLoss`](metric_loss_core::MetricLoss) for a [`PairLoss`]: both
/// precisions run [`compute_pairs`], and the reduction is the reducer's as a Keras
/// reduction (`Auto` for one that is not, such as PML's).
#[macro_export]
macro_rules! pair_metric_loss {
    ($ty:ty) => {
        $crate::__driver_metric_loss!($ty, $crate::PairLoss, $crate::compute_pairs);
    };
}

/// When and how a formula with [`PairFormula::STRIPS`] runs in strips.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Strips {
    /// Batches with more matrix entries than this run in strips.
    pub(crate) above: usize,
    /// Matrix entries per strip (whole rows, at least one).
    pub(crate) entries: usize,
}

/// Strips above 4096 x 4096 entries (a 64 MiB f32 matrix), 16 Mi entries each: 256 rows
/// against 65,536 keys. Each strip reads every key again (normalisation, packing, the key
/// half of the gradient); at N = 65,536 strips of 64 rows took 164 s forward+backward
/// against 96 s for 256 rows, for 100 MB less peak memory.
pub(crate) const STRIPS: Strips = Strips {
    above: 1 << 24,
    entries: 1 << 24,
};

/// Reusable memory of [`run_pairs`].
#[derive(Default)]
struct PairScratch<T> {
    matrix: Vec<T>,
    stats: Vec<T>,
    grad: Vec<T>,
    key_grad: Vec<T>,
    labels: Vec<i64>,
    subs: [Elements<T>; 2],
    /// Each thread's elements of a forward pass split over threads.
    thread_subs: Vec<[Elements<T>; 2]>,
}

/// Runs `formula` on `parts` (its distance and reducer). `per_example[i]` is anchor i's
/// share of the loss (its elements times their reducer scales), so the per-example values
/// sum to the loss. A sample weight multiplies each element of its anchor.
///
/// # Errors
/// Invalid input ([`LossInput::validate`]), [`LossError::TooLarge`],
/// [`LossError::NonFiniteDistance`], or [`LossError::NonFiniteResult`] when the result
/// overflows.
pub(crate) fn run_pairs<T: DenseFloat, F: PairFormula>(
    formula: &F,
    parts: &DenseParts,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
) -> Result<(), LossError> {
    run_pairs_in_strips(formula, parts, input, workspace, out, STRIPS)
}

/// [`run_pairs`] with the strip shape given.
pub(crate) fn run_pairs_in_strips<T: DenseFloat, F: PairFormula>(
    formula: &F,
    parts: &DenseParts,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
    strips: Strips,
) -> Result<(), LossError> {
    let distance = T::distance(parts.distance_part());
    let reducer = T::reducer(parts.reducer_part());
    let PairScratch {
        matrix,
        stats,
        grad,
        key_grad,
        labels,
        subs,
        thread_subs,
    } = workspace.get::<PairScratch<T>>();
    let Some(CallShape {
        n,
        m,
        dims,
        same,
        gradient,
    }) = start_call(input, out)?
    else {
        return Ok(());
    };
    let (queries, keys) = (input.queries(), input.keys());
    let (q, k) = (queries.embeddings(), keys.embeddings());
    // The labels and masks; each strip's `Scores` adds its rows of the matrix.
    let base = Scores {
        m: &[],
        first: 0,
        cols: m,
        similarity: distance.is_similarity(),
        query_labels: queries.labels(),
        key_labels: keys.labels(),
        remove_diagonal: same || input.removes_diagonal(),
    };
    let striped = F::STRIPS && n.saturating_mul(m) > strips.above;
    let strip = if striped {
        (strips.entries / m.max(1)).clamp(1, n)
    } else {
        n
    };
    check_matrix_size::<T>(strip, m, 2)?;
    if striped {
        check_element_count::<T>(base.positive_pairs(labels) + n as u128, n, m)?;
    }
    let subs = &mut subs[..F::SUB_LOSSES];
    subs.iter_mut().for_each(Elements::clear);
    let strip_starts = (0..n).step_by(strip);
    for first in strip_starts.clone() {
        let rows = first..(first + strip).min(n);
        distances(distance, q, k, same, rows, stats, matrix)?;
        // PML's shortcut for every pair loss: at most one positive and one negative pair
        // is no loss at all (a batch that large cannot run in strips).
        if first == 0 {
            let (positives, negatives) = base.pair_counts();
            if positives <= 1 && negatives <= 1 {
                return Ok(());
            }
        }
        if !forward_rows(formula, &base, matrix, first, subs, thread_subs) {
            return Ok(());
        }
    }
    let weights = input.sample_weight();
    out.loss = T::ZERO;
    for sub in subs.iter_mut() {
        if sub.values.is_empty() {
            continue;
        }
        // Unweighted, every element weighs 1: no per-element copy of the weights.
        let element_weights = if let SampleWeight::None = weights {
            SampleWeight::None
        } else {
            sub.weights
                .extend(sub.anchors.iter().map(|&a| weights.get(a as usize)));
            SampleWeight::PerExample(&sub.weights)
        };
        sub.scales.resize(sub.values.len(), T::ZERO);
        out.loss += reducer.reduce(&sub.values, &element_weights, &mut sub.scales);
        for ((&anchor, &value), &scale) in sub.anchors.iter().zip(&sub.values).zip(&sub.scales) {
            if scale != T::ZERO {
                out.per_example[anchor as usize] += scale * value;
            }
        }
    }
    if gradient {
        // The batch against itself in strips: the key half of the gradient is gathered
        // here and added to the query half at the end. (Whole, it takes one call below.)
        let key_grad: &mut [T] = match (same, striped) {
            (false, _) => &mut out.grad_keys,
            (true, true) => {
                key_grad.clear();
                key_grad.resize(n * dims, T::ZERO);
                key_grad
            }
            (true, false) => &mut [],
        };
        for first in strip_starts {
            let rows = first..(first + strip).min(n);
            if striped {
                distances(distance, q, k, same, rows.clone(), stats, matrix)?;
            }
            grad.clear();
            grad.resize(matrix.len(), T::ZERO);
            // Rows split over threads: a formula's backward writes only its rows of `grad`
            // and reads the elements, so every row gets the same arithmetic on any split.
            let (matrix, subs) = (&matrix[..], &subs[..]);
            for_rows_on(threads_for(rows.len()), grad, m, |r0, grad| {
                let scores = base.holding(&matrix[r0 * m..r0 * m + grad.len()], first + r0);
                with_avx2(
                    #[inline(always)]
                    || formula.backward(&scores, subs, grad),
                );
            });
            if same && !striped {
                // Both halves at once: one product with G + Gᵀ where the distance can.
                distance.dense_vjp_same(q, matrix, grad, &mut out.grad_queries, stats);
            } else {
                distance.dense_vjp_with_scratch(
                    q.row_range(rows.clone()),
                    k,
                    matrix,
                    grad,
                    &mut out.grad_queries[rows.start * dims..rows.end * dims],
                    key_grad,
                    stats,
                );
            }
        }
        if same && striped {
            for (o, v) in out.grad_queries.iter_mut().zip(key_grad.iter()) {
                *o += *v;
            }
        }
    }
    out.check_finite(AllowNonFinite::Never)
}

/// `formula`'s forward pass on the rows of `matrix` (anchors from `first` on, the masks of
/// `base`), its elements appended to `subs`; `false` for PML's zero path. A formula with
/// few elements ([`PairFormula::STRIPS`]) splits the rows over threads, each thread
/// pushing into its own `thread_subs`, then appended in row order: the elements, and so
/// every number after them, are those of one pass over the rows.
fn forward_rows<T: DenseFloat, F: PairFormula>(
    formula: &F,
    base: &Scores<'_, T>,
    matrix: &[T],
    first: usize,
    subs: &mut [Elements<T>],
    thread_subs: &mut Vec<[Elements<T>; 2]>,
) -> bool {
    let rows = matrix.len().checked_div(base.cols).unwrap_or(0);
    let scores = |r0: usize, count: usize| {
        base.holding(
            &matrix[r0 * base.cols..(r0 + count) * base.cols],
            first + r0,
        )
    };
    if !F::STRIPS || threads_for(rows) == 1 {
        let scores = scores(0, rows);
        return with_avx2(
            #[inline(always)]
            || formula.forward(&scores, subs),
        );
    }
    thread_subs.iter_mut().flatten().for_each(Elements::clear);
    // One unit per row: the split is by rows, with nothing to write per row.
    let (mut units, mut also_units) = (vec![(); rows], vec![(); rows]);
    let zero_path = for_row_chunks_with_scratch(
        &mut units,
        &mut also_units,
        1,
        thread_subs,
        |r0, chunk, own: &mut [Elements<T>; 2], _| {
            let scores = scores(r0, chunk.len());
            if with_avx2(
                #[inline(always)]
                || formula.forward(&scores, &mut own[..F::SUB_LOSSES]),
            ) {
                Ok(())
            } else {
                Err(())
            }
        },
    );
    if zero_path.is_err() {
        return false;
    }
    for own in thread_subs.iter() {
        for (sub, part) in subs.iter_mut().zip(own) {
            sub.append(part);
        }
    }
    true
}

/// The distances of the queries `rows` to every key into `matrix`, checked finite (an
/// error names the entry's row in the whole batch).
fn distances<T: Float>(
    distance: &dyn Distance<T>,
    q: Embeddings<'_, T>,
    k: Embeddings<'_, T>,
    same: bool,
    rows: Range<usize>,
    stats: &mut Vec<T>,
    matrix: &mut Vec<T>,
) -> Result<(), LossError> {
    let m = k.rows();
    let whole = rows.len() == q.rows();
    let first = rows.start;
    // Not zeroed: `Distance::matrix` writes every entry.
    matrix.resize(rows.len() * m, T::ZERO);
    stats.clear();
    distance.matrix(q.row_range(rows), k, same && whole, stats, matrix)?;
    finite_distances(distance.name(), matrix, m).map_err(|e| match e {
        LossError::NonFiniteDistance {
            distance,
            row,
            col,
            value,
            dtype,
        } => LossError::NonFiniteDistance {
            distance,
            row: row + first,
            col,
            value,
            dtype,
        },
        other => other,
    })
}

/// Checks that `count` elements fit in the memory one distance matrix may take.
fn check_element_count<T>(count: u128, n: usize, m: usize) -> Result<(), LossError> {
    // Each element: its value, aux pair, scale and weight, its anchor and column.
    let each = (5 * std::mem::size_of::<T>() + 2 * std::mem::size_of::<u32>()) as u128;
    let bytes = count * each;
    if bytes > MAX_DISTANCE_MATRIX_BYTES {
        return Err(LossError::TooLarge {
            what: "the positive pairs' elements",
            rows: n,
            cols: m,
            bytes,
            limit: MAX_DISTANCE_MATRIX_BYTES,
        });
    }
    Ok(())
}

/// What a temperature accepts: the scores are divided by it.
pub(crate) const TEMPERATURE: &str =
    "a finite, non-zero number (the similarities are divided by it)";

/// The strip path against the whole matrix, for the formulas that allow strips.
#[cfg(test)]
mod strip_checks {
    use metric_loss_core::{
        Batch, PartConfig, RegisteredDistance, RegisteredReducer, SampleWeight,
    };
    use metric_loss_testkit::values;

    use super::*;
    use crate::{
        AvgNonZeroReducer, CosineSimilarity, DotProductSimilarity, LpDistance, MeanReducer,
        SumReducer,
    };

    fn run<T: DenseFloat, F: PairFormula>(
        formula: &F,
        parts: &DenseParts,
        input: &LossInput<'_, T>,
        strips: Strips,
    ) -> LossOutput<T> {
        let mut out = LossOutput::new();
        run_pairs_in_strips(
            formula,
            parts,
            input,
            &mut Workspace::new(),
            &mut out,
            strips,
        )
        .unwrap();
        out
    }

    fn assert_close<T: Float>(what: &str, a: &[T], b: &[T], tol: f64) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let (x, y) = (x.to_f64(), y.to_f64());
            let bound = tol * x.abs().max(y.abs()).max(1.0);
            assert!((x - y).abs() <= bound, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// Every input shape (the batch against itself, separate keys with and without the
    /// diagonal rule, weights, no gradient) in one precision.
    fn check_precision<T: DenseFloat, F: PairFormula>(formula: &F, parts: &DenseParts, tol: f64) {
        const DIMS: usize = 5;
        let cast = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect::<Vec<T>>();
        let (x, keys) = (cast(values(23 * DIMS, 7)), cast(values(29 * DIMS, 11)));
        let labels: Vec<i64> = (0..23).map(|i| [0, 1, 2, 3, 1, 9][i % 6]).collect();
        let key_labels: Vec<i64> = (0..29).map(|i| [2, 0, 4, 1][i % 4]).collect();
        let weights = cast(values(23, 3).into_iter().map(|v| v + 1.5).collect());
        let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 23, DIMS).unwrap()).unwrap();
        let ref_set = Batch::new(
            &key_labels,
            Embeddings::from_row_major(&keys, 29, DIMS).unwrap(),
        )
        .unwrap();
        let inputs = [
            LossInput::new(batch),
            LossInput::new(batch).with_sample_weight(SampleWeight::PerExample(&weights)),
            LossInput::new(batch).without_gradient(),
            LossInput::new(batch).with_keys(ref_set),
            LossInput::new(batch)
                .with_keys(ref_set)
                .remove_diagonal(false),
            LossInput::new(batch)
                .with_keys(ref_set)
                .with_sample_weight(SampleWeight::PerExample(&weights)),
        ];
        for (case, input) in inputs.iter().enumerate() {
            let m = input.keys().len();
            let whole = run(formula, parts, input, STRIPS);
            // One row per strip, three rows per strip (the last strip shorter), and strips
            // no larger than the batch.
            for rows in [1, 3, 23] {
                let strips = Strips {
                    above: 0,
                    entries: rows * m,
                };
                let striped = run(formula, parts, input, strips);
                let what = |part: &str| format!("case {case}, {rows} rows per strip: {part}");
                assert_close(&what("loss"), &[whole.loss], &[striped.loss], tol);
                assert_close(
                    &what("per example"),
                    &whole.per_example,
                    &striped.per_example,
                    tol,
                );
                assert_close(
                    &what("queries"),
                    &whole.grad_queries,
                    &striped.grad_queries,
                    tol,
                );
                assert_close(&what("keys"), &whole.grad_keys, &striped.grad_keys, tol);
            }
            let scores = Scores {
                m: &[T::ZERO; 0],
                first: 0,
                cols: m,
                similarity: false,
                query_labels: input.queries().labels(),
                key_labels: input.keys().labels(),
                remove_diagonal: input.keys_are_queries() || input.removes_diagonal(),
            };
            let brute = (0..23)
                .flat_map(|i| (0..m).map(move |j| (i, j)))
                .filter(|&(i, j)| scores.positive(i, j))
                .count();
            assert_eq!(scores.positive_pairs(&mut Vec::new()), brute as u128);
        }
    }

    /// Asserts that running in strips gives the whole-matrix path's numbers, for every
    /// PML distance and reducer: `build` makes the formula and parts for a pair of them.
    fn assert_strips_match<F: PairFormula>(
        build: impl Fn(
            PartConfig<dyn RegisteredDistance>,
            PartConfig<dyn RegisteredReducer>,
        ) -> (F, DenseParts),
    ) {
        let distances: [PartConfig<dyn RegisteredDistance>; 4] = [
            CosineSimilarity::default().into(),
            LpDistance::default().into(),
            LpDistance::new(true, 1, 1).unwrap().into(),
            DotProductSimilarity::new(false, 2).unwrap().into(),
        ];
        for distance in distances {
            let reducers: [PartConfig<dyn RegisteredReducer>; 3] = [
                MeanReducer {}.into(),
                SumReducer {}.into(),
                AvgNonZeroReducer {}.into(),
            ];
            for reducer in reducers {
                let (formula, parts) = build(distance.clone(), reducer);
                check_precision::<f64, F>(&formula, &parts, 1e-12);
                check_precision::<f32, F>(&formula, &parts, 2e-5);
            }
        }
    }

    #[test]
    fn strips_give_the_whole_matrix_numbers() {
        macro_rules! check {
            ($config:ty) => {
                assert_strips_match(|distance, reducer| {
                    let loss = <$config>::default()
                        .temperature(0.1)
                        .distance(distance)
                        .reducer(reducer)
                        .build()
                        .unwrap();
                    (*loss.formula(), loss.parts().clone())
                })
            };
        }
        check!(crate::NTXentLossConfig);
        check!(crate::SupConLossConfig);
    }

    #[test]
    fn element_memory_past_the_limit_is_an_error() {
        assert!(check_element_count::<f32>(1 << 20, 1024, 1024).is_ok());
        assert!(matches!(
            check_element_count::<f32>(1 << 40, 1 << 20, 1 << 20),
            Err(LossError::TooLarge { .. })
        ));
    }
}
