//! The driver every pair-based loss of this crate runs on: validate → distance matrix →
//! the loss's elements (per pair or per row) → one reducer per sub-loss → ∂/∂M → the
//! distance's vector-Jacobian product. A loss supplies its [`PairFormula`].

use metric_loss_core::{
    AllowNonFinite, Float, LossError, LossInput, LossOutput, SampleWeight, Workspace,
};
use metric_loss_distances::lanes::DenseFloat;
use metric_loss_triplet::{full_distance_matrix, CallShape, DenseParts};

/// The smallest normal number of `T`: PML's `tiny`, added where it divides or takes a log.
pub(crate) fn tiny<T: Float>() -> T {
    if T::DTYPE == "f32" {
        T::from_f64(f64::from(f32::MIN_POSITIVE))
    } else {
        T::from_f64(f64::MIN_POSITIVE)
    }
}

/// The distance matrix and the pair masks of one call.
pub(crate) struct Scores<'a, T> {
    /// The `n x m` distance (or similarity) matrix, row-major.
    pub(crate) m: &'a [T],
    /// Its number of columns (keys).
    pub(crate) cols: usize,
    /// Whether larger entries mean closer.
    pub(crate) similarity: bool,
    query_labels: &'a [i64],
    key_labels: &'a [i64],
    remove_diagonal: bool,
}

impl<T: Float> Scores<'_, T> {
    /// Number of anchors.
    pub(crate) fn rows(&self) -> usize {
        self.query_labels.len()
    }

    /// Row `i` of the matrix.
    pub(crate) fn row(&self, i: usize) -> &[T] {
        &self.m[i * self.cols..(i + 1) * self.cols]
    }

    /// (i, j) is a positive pair: same label, and not the anchor itself when the keys are
    /// the batch.
    pub(crate) fn positive(&self, i: usize, j: usize) -> bool {
        self.query_labels[i] == self.key_labels[j] && !(self.remove_diagonal && i == j)
    }

    /// (i, j) is a negative pair: different labels.
    pub(crate) fn negative(&self, i: usize, j: usize) -> bool {
        self.query_labels[i] != self.key_labels[j]
    }

    /// The numbers of positive and of negative pairs, each counted up to 2.
    fn pair_counts(&self) -> (usize, usize) {
        let (mut pos, mut neg) = (0, 0);
        for i in 0..self.rows() {
            for j in 0..self.cols {
                pos += usize::from(self.positive(i, j));
                neg += usize::from(self.negative(i, j));
                if pos >= 2 && neg >= 2 {
                    return (pos, neg);
                }
            }
        }
        (pos, neg)
    }

    /// Whether the batch has a positive pair and a negative pair (the losses that need
    /// both are 0 without them).
    pub(crate) fn has_both(&self) -> bool {
        let (pos, neg) = self.pair_counts();
        pos > 0 && neg > 0
    }

    /// Row `i`'s logits ([`Scores::logit`]) into `out`, −∞ where `kept(j)` is false: the
    /// input of a softmax over the kept columns (e^−∞ = 0 drops the others).
    pub(crate) fn kept_logits(
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

    /// The score a softmax runs over: the entry for a similarity, its negation for a
    /// distance, divided by `temperature`.
    pub(crate) fn logit(&self, v: T, temperature: T) -> T {
        (if self.similarity { v } else { -v }) / temperature
    }
}

/// The elements of one sub-loss: one per pair or per anchor row, each with the row it
/// belongs to, a column and two numbers the formula keeps for its gradient.
#[derive(Debug, Default)]
pub(crate) struct Elements<T> {
    pub(crate) values: Vec<T>,
    pub(crate) anchors: Vec<usize>,
    pub(crate) cols: Vec<usize>,
    pub(crate) aux: Vec<[T; 2]>,
    /// ∂L/∂element, written by the reducer.
    pub(crate) scales: Vec<T>,
    weights: Vec<T>,
    /// A row's worth of memory the formula may use as it likes (kept across calls).
    pub(crate) row: Vec<T>,
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

    /// Adds an element of anchor `anchor`.
    pub(crate) fn push(&mut self, anchor: usize, col: usize, value: T, aux: [T; 2]) {
        self.push_plain(anchor, col, value);
        self.aux.push(aux);
    }

    /// Adds an element of anchor `anchor` with no `aux` numbers, for a formula whose
    /// gradient needs none: a pair loss has n·m elements, and every byte of each counts.
    /// A formula uses either this or [`Elements::push`], never both.
    pub(crate) fn push_plain(&mut self, anchor: usize, col: usize, value: T) {
        self.values.push(value);
        self.anchors.push(anchor);
        self.cols.push(col);
    }

    /// The elements with their reducer scales: `(anchor, col, value, aux, scale)` (`aux`
    /// zero for elements added by [`Elements::push_plain`]).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, usize, T, [T; 2], T)> + '_ {
        (0..self.values.len()).map(|e| {
            (
                self.anchors[e],
                self.cols[e],
                self.values[e],
                self.aux.get(e).copied().unwrap_or([T::ZERO; 2]),
                self.scales[e],
            )
        })
    }
}

/// What a pair-based loss computes. The driver handles everything around it.
pub(crate) trait PairFormula {
    /// How many sub-losses (each reduced by its own copy of the reducer, then summed).
    const SUB_LOSSES: usize;

    /// Pushes the elements of each sub-loss into `subs` (`SUB_LOSSES` of them, empty).
    /// Returns `false` for PML's zero path: the loss is 0 with no gradient.
    fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool;

    /// Adds Σₑ scaleₑ · ∂elementₑ/∂M into `grad` (`n x m`, zeroed beforehand).
    fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]);
}

/// Reusable memory of [`run_pairs`].
#[derive(Default)]
struct PairScratch<T> {
    matrix: Vec<T>,
    stats: Vec<T>,
    grad: Vec<T>,
    key_grad: Vec<T>,
    subs: [Elements<T>; 2],
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
    let distance = T::distance(parts.distance_part());
    let reducer = T::reducer(parts.reducer_part());
    let scratch = workspace.get::<PairScratch<T>>();
    let Some(CallShape {
        n,
        m,
        dims,
        same,
        gradient,
    }) = full_distance_matrix(
        input,
        distance,
        2,
        out,
        &mut scratch.stats,
        &mut scratch.matrix,
    )?
    else {
        return Ok(());
    };
    let (queries, keys) = (input.queries(), input.keys());
    let (q, k) = (queries.embeddings(), keys.embeddings());
    let scores = Scores {
        m: &scratch.matrix,
        cols: m,
        similarity: distance.is_similarity(),
        query_labels: queries.labels(),
        key_labels: keys.labels(),
        remove_diagonal: same || input.removes_diagonal(),
    };
    let subs = &mut scratch.subs[..F::SUB_LOSSES];
    subs.iter_mut().for_each(Elements::clear);
    // PML's shortcut for every pair loss: at most one positive and one negative pair is
    // no loss at all.
    let (positives, negatives) = scores.pair_counts();
    if (positives <= 1 && negatives <= 1) || !formula.forward(&scores, subs) {
        return Ok(());
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
                .extend(sub.anchors.iter().map(|&a| weights.get(a)));
            SampleWeight::PerExample(&sub.weights)
        };
        sub.scales.resize(sub.values.len(), T::ZERO);
        out.loss += reducer.reduce(&sub.values, &element_weights, &mut sub.scales);
        for ((&anchor, &value), &scale) in sub.anchors.iter().zip(&sub.values).zip(&sub.scales) {
            if scale != T::ZERO {
                out.per_example[anchor] += scale * value;
            }
        }
    }
    if gradient {
        scratch.grad.clear();
        scratch.grad.resize(n * m, T::ZERO);
        formula.backward(&scores, subs, &mut scratch.grad);
        if same {
            scratch.key_grad.clear();
            scratch.key_grad.resize(n * dims, T::ZERO);
            distance.dense_vjp_with_scratch(
                q,
                k,
                &scratch.matrix,
                &mut scratch.grad,
                &mut out.grad_queries,
                &mut scratch.key_grad,
                &mut scratch.stats,
            );
            for (o, v) in out.grad_queries.iter_mut().zip(&scratch.key_grad) {
                *o += *v;
            }
        } else {
            distance.dense_vjp_with_scratch(
                q,
                k,
                &scratch.matrix,
                &mut scratch.grad,
                &mut out.grad_queries,
                &mut out.grad_keys,
                &mut scratch.stats,
            );
        }
    }
    out.check_finite(AllowNonFinite::Never)
}

/// What a temperature accepts: the scores are divided by it.
pub(crate) const TEMPERATURE: &str =
    "a finite, non-zero number (the similarities are divided by it)";
