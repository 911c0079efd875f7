//! The driver every loss on mined anchors runs on: validate → distances → mine → the
//! loss's per-anchor formula → reduce → gradient back to the embeddings.

use std::fmt::Debug;

use metric_loss_core::{
    reduce_checked, AllowNonFinite, Distance, Embeddings, Float, LossError, LossInput, LossOutput,
    MiningView, RowContext, UpperTriangleView, Workspace,
};
use metric_loss_distances::mirror_upper;
use metric_loss_distances::parallel::{threads_for, triangle_bounds};
use metric_loss_mining::{gather_upper_row, route_gradient, Mined};

use crate::gradient::GradientTerms;
use crate::MinedParts;

/// The largest distance matrix a call may allocate, in bytes (16 GiB): larger batches get
/// [`LossError::TooLarge`] instead of an allocation failure.
pub const MAX_DISTANCE_MATRIX_BYTES: u128 = 16 << 30;

/// A loss on mined anchors: its [`MinedParts`] pick each anchor's positive distance pᵢ and
/// negative distance qᵢ, and the loss gives ℓᵢ and its derivatives from them. Everything
/// else (validation, the distance matrix and its fast paths, mining, reduction, routing the
/// gradient through ties and the distance, threads, finite checks) is [`compute_mined`]'s.
///
/// [`mined_metric_loss!`](crate::mined_metric_loss) implements
/// [`MetricLoss`](metric_loss_core::MetricLoss) for such a loss. A whole loss, the
/// Hoffer–Ailon distance-ratio loss ℓ = σ(p − q)², with ∂ℓ/∂p = 2σ²(1 − σ) = −∂ℓ/∂q:
///
/// ```
/// use metric_loss_core::{Float, LossError, MetricLossExt};
/// use metric_loss_triplet::{mined_metric_loss, AnchorScore, AnchorView, MinedLoss, MinedParts};
///
/// #[derive(Debug, Default)]
/// struct RatioLoss { parts: MinedParts }
///
/// impl MinedLoss for RatioLoss {
///     fn name(&self) -> &str { "ratio" }
///     fn parts(&self) -> &MinedParts { &self.parts }
///     fn anchor<T: Float>(&self, a: &mut AnchorView<'_, T>) -> Result<AnchorScore<T>, LossError> {
///         let s = T::ONE / (T::ONE + (a.mined.negative - a.mined.positive).exp());
///         let slope = T::from_f64(2.0) * s * s * (T::ONE - s);
///         Ok(AnchorScore::new(s * s, slope, -slope))
///     }
/// }
/// mined_metric_loss!(RatioLoss);
///
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let out = RatioLoss::default().evaluate(&[0, 0, 1, 1], &x, 2)?;
/// assert!(out.per_example.iter().all(|l| (0.0..1.0).contains(l)));
/// # Ok::<(), LossError>(())
/// ```
pub trait MinedLoss: Debug + Send + Sync {
    /// The loss's name (Keras's `name`), used in errors.
    fn name(&self) -> &str;

    /// The distance, miner and reducer.
    fn parts(&self) -> &MinedParts;

    /// Anchor `view.index`'s loss and its derivatives with respect to the mined distances.
    /// Called for each anchor the miner kept ([`Mined::active`]), in order; the others get
    /// a loss and gradient of 0.
    ///
    /// # Errors
    /// Whatever the formula cannot compute (for instance an overflow it does not document).
    fn anchor<T: Float>(&self, view: &mut AnchorView<'_, T>) -> Result<AnchorScore<T>, LossError>;

    /// Whether the self pair is kept out of the positives when the input asks for it
    /// ([`LossInput::remove_diagonal`]); default `true`.
    fn remove_diagonal(&self) -> bool {
        true
    }

    /// The non-finite per-example values the loss documents (default none).
    fn allow_non_finite(&self) -> AllowNonFinite {
        AllowNonFinite::Never
    }
}

/// One anchor, as [`MinedLoss::anchor`] sees it.
pub struct AnchorView<'a, T> {
    /// The anchor's index among the queries.
    pub index: usize,
    /// What the miner picked: pᵢ, qᵢ, their columns and whether the anchor had any
    /// positive and negative.
    pub mined: &'a Mined<T>,
    keys: KeyDistances<'a, T>,
}

impl<T: Float> Debug for AnchorView<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorView")
            .field("index", &self.index)
            .field("mined", self.mined)
            .field("keys", &self.keys)
            .finish()
    }
}

impl<T: Float> AnchorView<'_, T> {
    /// The distance between keys `a` and `b` (for instance the mined positive and the mined
    /// negative, [`Pick::index`](metric_loss_core::Pick::index)): read from the batch's
    /// matrix when the keys are the queries, computed for the pair otherwise. A formula
    /// that uses it sends that distance's gradient back with
    /// [`AnchorScore::with_key_pair`].
    ///
    /// # Errors
    /// [`LossError::Unsupported`] for a key out of range; the distance's own error, or
    /// [`LossError::NonFiniteDistance`] for a value that is not finite.
    pub fn key_distance(&mut self, a: usize, b: usize) -> Result<T, LossError> {
        let keys = &mut self.keys;
        let m = keys.keys.rows();
        if a >= m || b >= m {
            return Err(LossError::Unsupported {
                loss: keys.loss.to_owned(),
                message: format!("key pair ({a}, {b}) is out of range for {m} keys"),
            });
        }
        let value = if keys.same {
            let (i, j) = if keys.upper {
                (a.min(b), a.max(b))
            } else {
                (a, b)
            };
            keys.distances[i * m + j]
        } else {
            let mut r = [T::ZERO];
            let (ka, kb) = (one_row(keys.keys, a), one_row(keys.keys, b));
            keys.distance
                .matrix(ka, kb, false, keys.row_stats, &mut r)?;
            r[0]
        };
        if !value.is_finite() {
            return Err(LossError::NonFiniteDistance {
                distance: keys.distance.name(),
                row: a,
                col: b,
                value: value.to_f64(),
                dtype: T::DTYPE,
            });
        }
        Ok(value)
    }
}

/// Where [`AnchorView::key_distance`] reads or computes.
struct KeyDistances<'a, T> {
    loss: &'a str,
    distance: &'a dyn Distance<T>,
    keys: Embeddings<'a, T>,
    same: bool,
    /// The batch's matrix holds only its upper triangle.
    upper: bool,
    distances: &'a [T],
    row_stats: &'a mut Vec<T>,
}

impl<T: Float> Debug for KeyDistances<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyDistances")
            .field("distance", &self.distance.name())
            .field("same", &self.same)
            .finish_non_exhaustive()
    }
}

/// An anchor's loss ℓᵢ and its derivatives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorScore<T> {
    /// ℓᵢ.
    pub value: T,
    /// ∂ℓᵢ/∂pᵢ, routed to the mined positive entry (split among exact ties).
    pub d_positive: T,
    /// ∂ℓᵢ/∂qᵢ, routed to the mined negative entry (split among exact ties).
    pub d_negative: T,
    /// A distance between two keys the formula read with [`AnchorView::key_distance`]:
    /// (a, b, its value, ∂ℓᵢ/∂D[a, b]).
    pub key_pair: Option<(usize, usize, T, T)>,
}

impl<T: Float> AnchorScore<T> {
    /// ℓᵢ with ∂ℓᵢ/∂pᵢ and ∂ℓᵢ/∂qᵢ.
    pub fn new(value: T, d_positive: T, d_negative: T) -> Self {
        Self {
            value,
            d_positive,
            d_negative,
            key_pair: None,
        }
    }

    /// A loss of 0 that sends no gradient.
    pub fn zero() -> Self {
        Self::new(T::ZERO, T::ZERO, T::ZERO)
    }

    /// Adds ∂ℓᵢ/∂D[a, b] = `slope` for the key distance D[a, b] = `value`.
    pub fn with_key_pair(mut self, a: usize, b: usize, value: T, slope: T) -> Self {
        self.key_pair = Some((a, b, value, slope));
        self
    }
}

/// Runs `loss` on `input`: the whole call of a [`MinedLoss`], into `out`.
///
/// Against the batch itself, a distance that declares
/// [`Distance::upper_triangle`] gives only the upper triangle, and a miner that implements
/// [`Miner::mine_upper`](metric_loss_core::Miner::mine_upper) mines it in place (half a matrix product, no mirror); otherwise
/// the full matrix is mined row by row. The gradient rows are split over threads and are
/// the same bit for bit on any thread count.
///
/// # Errors
/// Invalid input ([`LossInput::validate`]), a matrix larger than
/// [`MAX_DISTANCE_MATRIX_BYTES`], a part's or the formula's error, a user part that breaks
/// its contract ([`LossError::InvalidPartOutput`]), and values that overflow
/// ([`LossError::NonFiniteResult`]) beyond what [`MinedLoss::allow_non_finite`] documents.
pub fn compute_mined<T: Float, L: MinedLoss + ?Sized>(
    loss: &L,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
) -> Result<(), LossError> {
    input.validate()?;
    let (queries, keys) = (input.queries(), input.keys());
    let (n, m, dims) = (queries.len(), keys.len(), queries.embeddings().cols());
    let same = input.keys_are_queries();
    out.reset(n, 0, dims, input.wants_gradient());
    if input.wants_gradient() && !same {
        // The keys' own width: it may differ from the queries' when either set is empty.
        out.grad_keys.resize(m * keys.embeddings().cols(), T::ZERO);
    }
    if n == 0 {
        return Ok(());
    }
    check_matrix_size::<T>(n, m, 1)?;
    let distance = T::distance(loss.parts().distance_part());
    if distance.is_similarity() {
        return Err(LossError::Unsupported {
            loss: loss.name().to_owned(),
            message: format!(
                "`{}` is a similarity (larger is closer), but this loss mines and compares distances; use a distance, such as TF Similarity's \"cosine\" (1 − cos) or LpDistance",
                distance.name()
            ),
        });
    }
    // The scratch leaves the workspace while the parts use it.
    let mut scratch = std::mem::take(workspace.get::<Scratch<T>>());
    let result = run(loss, input, workspace, &mut scratch, out);
    *workspace.get::<Scratch<T>>() = scratch;
    result
}

/// Errors with [`LossError::TooLarge`] when `count` matrices of `n x m` entries of `T`
/// would exceed [`MAX_DISTANCE_MATRIX_BYTES`] (checked before allocating them).
///
/// # Errors
/// [`LossError::TooLarge`].
pub fn check_matrix_size<T>(n: usize, m: usize, count: u128) -> Result<(), LossError> {
    let bytes = (n as u128) * (m as u128) * std::mem::size_of::<T>() as u128 * count;
    if bytes > MAX_DISTANCE_MATRIX_BYTES {
        return Err(LossError::TooLarge {
            what: "the distance matrix",
            rows: n,
            cols: m,
            bytes,
            limit: MAX_DISTANCE_MATRIX_BYTES,
        });
    }
    Ok(())
}

fn run<T: Float, L: MinedLoss + ?Sized>(
    loss: &L,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    scratch: &mut Scratch<T>,
    out: &mut LossOutput<T>,
) -> Result<(), LossError> {
    let (queries, keys) = (input.queries(), input.keys());
    let (n, m) = (queries.len(), keys.len());
    let same = input.keys_are_queries();
    let parts = loss.parts();
    let distance = T::distance(parts.distance_part());
    let miner = T::miner(parts.miner_part());
    let remove_diagonal = input.removes_diagonal() && loss.remove_diagonal();
    // `matrix` writes every entry: no need to zero the buffer first (resize only fills
    // when the buffer grows; a memset of the whole matrix was ~3% of a call).
    scratch.distances.resize(n * m, T::ZERO);
    let (q, k) = (queries.embeddings(), keys.embeddings());
    // Against itself, a batch under a distance symmetric entry by entry needs only the
    // upper triangle, mined in place: no mirror, half the product on any thread count.
    triangle_bounds(n, threads_for(n), &mut scratch.bounds);
    let upper = same && distance.upper_triangle(q, &scratch.bounds, &mut scratch.distances)?;
    if !upper {
        distance.matrix(q, k, same, &mut scratch.row_stats, &mut scratch.distances)?;
    }
    if parts.distance_kind().is_none() {
        check_user_distances(distance.name(), &scratch.distances, n, m, upper)?;
    }

    scratch.mined.clear();
    scratch.mined.resize(n, Mined::placeholder());
    let mined_upper = upper
        && miner.mine_upper(
            UpperTriangleView {
                distances: &mut scratch.distances,
                labels: queries.labels(),
                remove_diagonal,
                parts: &scratch.bounds,
                distance: distance.name(),
            },
            workspace,
            &mut scratch.mined,
        )?;
    if upper && !mined_upper {
        // A miner that wants whole rows.
        mirror_upper(&mut scratch.distances, n);
    }
    if !mined_upper {
        let view = MiningView {
            distances: &mut scratch.distances,
            query_labels: queries.labels(),
            key_labels: keys.labels(),
            remove_diagonal,
            distance: distance.name(),
        };
        miner.mine(view, workspace, &mut scratch.mined)?;
    }
    if parts.strategy_miner().is_none() {
        check_user_mined(miner.name(), &scratch.mined, m)?;
    }

    scratch.scores.clear();
    for (i, mined) in scratch.mined.iter().enumerate() {
        let score = if mined.active {
            let mut view = AnchorView {
                index: i,
                mined,
                keys: KeyDistances {
                    loss: loss.name(),
                    distance,
                    keys: k,
                    same,
                    upper: mined_upper,
                    distances: &scratch.distances,
                    row_stats: &mut scratch.row_stats,
                },
            };
            loss.anchor(&mut view)?
        } else {
            AnchorScore::zero()
        };
        out.per_example[i] = score.value;
        scratch.scores.push(score);
    }
    scratch.scales.resize(n, T::ZERO);
    out.loss = reduce_checked(
        T::reducer(parts.reducer_part()),
        &out.per_example,
        &input.sample_weight(),
        &mut scratch.scales,
    )?;
    if input.wants_gradient() {
        gradient(input, remove_diagonal, mined_upper, distance, scratch, out);
    }
    // Finite inputs can still overflow (a huge margin, a weight times a huge loss, a
    // gradient): an error, never a silent ±∞ or NaN, except what the loss documents.
    out.check_finite(loss.allow_non_finite())
}

/// Routes each anchor's scaled derivatives to the mined entries (split among exact ties),
/// then through the distance to the embeddings.
fn gradient<T: Float>(
    input: &LossInput<'_, T>,
    remove_diagonal: bool,
    mined_upper: bool,
    distance: &dyn Distance<T>,
    scratch: &mut Scratch<T>,
    out: &mut LossOutput<T>,
) {
    let (q, k) = (input.queries().embeddings(), input.keys().embeddings());
    let (n, m) = (q.rows(), k.rows());
    let same = input.keys_are_queries();
    // The pairs first, in anchor order; then each gradient row adds its own.
    scratch.terms.clear(n);
    scratch.key_pairs.clear();
    for i in 0..n {
        scratch.terms.next_query();
        let (scale, score) = (scratch.scales[i], &scratch.scores[i]);
        if scale == T::ZERO {
            continue;
        }
        let (g_pos, g_neg) = (scale * score.d_positive, scale * score.d_negative);
        if let Some((a, b, value, slope)) = score.key_pair {
            let g = scale * slope;
            if g != T::ZERO {
                scratch.key_pairs.push((a, b, value, g));
            }
        }
        if g_pos == T::ZERO && g_neg == T::ZERO {
            continue;
        }
        let mined = &scratch.mined[i];
        let (pos, neg) = (&mined.pos, &mined.neg);
        // The whole row is read only to share a gradient among exact ties.
        let row: &[T] = if pos.ties <= 1 && neg.ties <= 1 {
            &[]
        } else if !mined_upper {
            &scratch.distances[i * m..(i + 1) * m]
        } else {
            gather_upper_row(&scratch.distances, n, i, &mut scratch.gathered);
            &scratch.gathered
        };
        let ctx = RowContext {
            anchor: i,
            anchor_label: input.queries().labels()[i],
            key_labels: input.keys().labels(),
            remove_diagonal,
        };
        let terms = &mut scratch.terms;
        for (pick, g) in [(pos, g_pos), (neg, g_neg)] {
            if g == T::ZERO {
                continue;
            }
            route_gradient(row, &ctx, pick, g, |j, share| {
                // A lone pick's entry holds its target: no read of the matrix.
                let value = if pick.ties <= 1 { pick.target } else { row[j] };
                terms.push(j, value, share);
            });
        }
    }
    let (grad_q, grad_k) = (&mut out.grad_queries, &mut out.grad_keys);
    let temps = &mut scratch.gradient_rows;
    scratch
        .terms
        .apply(threads_for(n), distance, q, k, same, grad_q, grad_k, temps);
    // Distances between two keys: key a plays the query's part.
    let dims = k.cols();
    let target = if same { grad_q } else { grad_k };
    for &(a, b, value, g) in &scratch.key_pairs {
        scratch.pair_a.clear();
        scratch.pair_a.resize(dims, T::ZERO);
        scratch.pair_b.clear();
        scratch.pair_b.resize(dims, T::ZERO);
        distance.pair_vjp(
            k.row(a),
            k.row(b),
            value,
            g,
            &mut scratch.pair_a,
            &mut scratch.pair_b,
        );
        for (row, add) in [(a, &scratch.pair_a), (b, &scratch.pair_b)] {
            for (t, v) in target[row * dims..(row + 1) * dims].iter_mut().zip(add) {
                *t += *v;
            }
        }
    }
}

fn one_row<T: Float>(k: Embeddings<'_, T>, j: usize) -> Embeddings<'_, T> {
    Embeddings::from_row_major(k.row(j), 1, k.cols()).expect("one row of the keys")
}

/// A user distance's matrix holds no NaN or ±∞ (the built-ins report their own errors):
/// the whole `n x m` matrix, or its upper triangle.
fn check_user_distances<T: Float>(
    name: &str,
    distances: &[T],
    n: usize,
    m: usize,
    upper: bool,
) -> Result<(), LossError> {
    for i in 0..n {
        let from = if upper { i } else { 0 };
        let row = &distances[i * m + from..(i + 1) * m];
        if let Some(j) = row.iter().position(|d| !d.is_finite()) {
            return Err(LossError::InvalidPartOutput {
                part: "distance",
                name: name.to_owned(),
                problem: format!(
                    "entry ({i}, {}) is {}; distances must be finite",
                    from + j,
                    row[j]
                ),
            });
        }
    }
    Ok(())
}

/// A user miner's picks are columns of the row, with finite values and at least one
/// entry sharing each gradient (the gradient routing indexes the row with them).
fn check_user_mined<T: Float>(name: &str, mined: &[Mined<T>], m: usize) -> Result<(), LossError> {
    for (i, anchor) in mined.iter().enumerate().filter(|(_, a)| a.active) {
        for (side, pick, value) in [
            ("positive", &anchor.pos, anchor.positive),
            ("negative", &anchor.neg, anchor.negative),
        ] {
            let problem = if pick.index >= m || pick.first >= m {
                format!(
                    "its column {} is out of range for {m} keys",
                    pick.first.max(pick.index)
                )
            } else if pick.ties == 0 {
                "no entry receives its gradient (ties = 0)".to_owned()
            } else if !(value.is_finite() && pick.target.is_finite()) {
                format!("its distance is {value}")
            } else {
                continue;
            };
            return Err(LossError::InvalidPartOutput {
                part: "miner",
                name: name.to_owned(),
                problem: format!("anchor {i}'s {side}: {problem}"),
            });
        }
    }
    Ok(())
}

/// Per-call scratch kept in the [`Workspace`].
#[derive(Debug, Default)]
struct Scratch<T> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    /// Per anchor: its mined pair, its score, and the reducer's ∂L/∂ℓᵢ.
    mined: Vec<Mined<T>>,
    scores: Vec<AnchorScore<T>>,
    scales: Vec<T>,
    terms: GradientTerms<T>,
    /// Key-to-key distances the formula read: (a, b, value, scaled gradient).
    key_pairs: Vec<(usize, usize, T, T)>,
    pair_a: Vec<T>,
    pair_b: Vec<T>,
    /// One gradient row per thread (a self pair's key share).
    gradient_rows: Vec<T>,
    /// The row ranges of the threads (upper-triangle path).
    bounds: Vec<usize>,
    /// One row gathered from the upper triangle.
    gathered: Vec<T>,
}
