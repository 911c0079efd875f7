//! The miner abstraction: which positive and negative each anchor is paired with.

use std::any::Any;
use std::fmt::Debug;

use crate::{Float, LossError, Workspace};

/// What one anchor's row is mined against.
#[derive(Debug, Clone, Copy)]
pub struct RowContext<'a> {
    /// The anchor's index among the queries (for the diagonal rule).
    pub anchor: usize,
    /// The anchor's label.
    pub anchor_label: i64,
    /// One label per key (column of the row).
    pub key_labels: &'a [i64],
    /// Whether key `anchor` is excluded from the positives.
    pub remove_diagonal: bool,
}

impl RowContext<'_> {
    /// Key `j` is a positive of the anchor.
    #[inline(always)]
    pub fn is_positive(&self, j: usize) -> bool {
        self.key_labels[j] == self.anchor_label && !(self.remove_diagonal && j == self.anchor)
    }

    /// Key `j` is a negative of the anchor.
    #[inline(always)]
    pub fn is_negative(&self, j: usize) -> bool {
        self.key_labels[j] != self.anchor_label
    }
}

/// Which row entries share a mined value's gradient (those equal to [`Pick::target`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PickMask<T> {
    /// The anchor's positives.
    Positive,
    /// The anchor's negatives.
    Negative,
    /// Negatives strictly farther than the threshold (semi-hard).
    NegativeBeyond(T),
    /// The single column [`Pick::first`] (the semi-hard fallback).
    Column,
    /// Any entry: an empty masked maximum, attributed to the row minimum.
    RowMin,
    /// Any entry: an empty masked minimum, attributed to the row maximum.
    RowMax,
}

/// Where a mined distance came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick<T> {
    /// The column TF Similarity's arg-extremum returns: the first selected entry, or 0 for
    /// an empty mask (PN loss reads distances at these columns).
    pub index: usize,
    /// The entries the gradient goes to: those in `mask` equal to `target`.
    pub mask: PickMask<T>,
    /// The distance value of the entries that receive the gradient.
    pub target: T,
    /// The first entry that receives the gradient.
    pub first: usize,
    /// How many entries share the gradient (exact ties).
    pub ties: u32,
}

impl<T: Float> Pick<T> {
    /// The single row entry `column`, of distance `value`, which receives the whole
    /// gradient.
    pub fn at(column: usize, value: T) -> Self {
        Pick {
            index: column,
            mask: PickMask::Column,
            target: value,
            first: column,
            ties: 1,
        }
    }

    /// True when the mask was empty and the value is a ±1e-6 sentinel.
    pub fn is_sentinel(&self) -> bool {
        matches!(self.mask, PickMask::RowMin | PickMask::RowMax)
    }
}

/// The mined pair of one anchor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mined<T> {
    /// The positive distance pᵢ.
    pub positive: T,
    /// The negative distance qᵢ.
    pub negative: T,
    /// Where pᵢ came from.
    pub pos: Pick<T>,
    /// Where qᵢ came from.
    pub neg: Pick<T>,
    /// The anchor has at least one positive.
    pub has_positive: bool,
    /// The anchor has at least one negative.
    pub has_negative: bool,
    /// The anchor forms a triplet; `false` ([`Mined::none`]) leaves it out with a loss and
    /// a gradient of 0.
    pub active: bool,
}

impl<T: Float> Mined<T> {
    /// A value to size buffers with before mining overwrites them (no positive, no
    /// negative, every distance 0).
    pub fn placeholder() -> Self {
        let pick = Pick {
            index: 0,
            mask: PickMask::Column,
            target: T::ZERO,
            first: 0,
            ties: 0,
        };
        Self {
            positive: T::ZERO,
            negative: T::ZERO,
            pos: pick,
            neg: pick,
            has_positive: false,
            has_negative: false,
            active: true,
        }
    }

    /// The anchor forms no triplet: it contributes a loss and a gradient of 0, whatever the
    /// loss's rules for degenerate anchors (a miner's way to leave an anchor out).
    pub fn none() -> Self {
        Self {
            active: false,
            ..Self::placeholder()
        }
    }

    /// The triplet (anchor, key `positive` at distance `p`, key `negative` at distance
    /// `q`): each pick is a single entry of the anchor's row, which receives the whole
    /// gradient. This is what a user miner usually returns.
    pub fn triplet(positive: usize, p: T, negative: usize, q: T) -> Self {
        Self {
            positive: p,
            negative: q,
            pos: Pick::at(positive, p),
            neg: Pick::at(negative, q),
            has_positive: true,
            has_negative: true,
            active: true,
        }
    }
}

/// A distance matrix and labels, as a miner sees them.
///
/// Row i of `distances` (`queries x keys`, row-major) holds anchor i's distances to every
/// key. A miner may overwrite entries while it works but must restore them before it
/// returns: the loss reads them again for the gradient.
#[derive(Debug)]
pub struct MiningView<'a, T> {
    /// The `queries x keys` distances, row-major.
    pub distances: &'a mut [T],
    /// One label per query (anchor).
    pub query_labels: &'a [i64],
    /// One label per key.
    pub key_labels: &'a [i64],
    /// Whether key i is excluded from anchor i's positives (the keys start with the
    /// queries).
    pub remove_diagonal: bool,
    /// The distance's name, for errors.
    pub distance: &'static str,
}

impl<'a, T: Float> MiningView<'a, T> {
    /// The number of queries (anchors, rows).
    pub fn queries(&self) -> usize {
        self.query_labels.len()
    }

    /// The number of keys (columns).
    pub fn keys(&self) -> usize {
        self.key_labels.len()
    }

    /// Anchor i's row.
    pub fn row(&self, i: usize) -> &[T] {
        let m = self.keys();
        &self.distances[i * m..(i + 1) * m]
    }

    /// Anchor i's labels and diagonal rule.
    pub fn context(&self, i: usize) -> RowContext<'_> {
        RowContext {
            anchor: i,
            anchor_label: self.query_labels[i],
            key_labels: self.key_labels,
            remove_diagonal: self.remove_diagonal,
        }
    }
}

/// A batch against itself whose distance matrix holds only its upper triangle (entries
/// (i, j ≥ i) of an `n x n` row-major buffer), for a distance that declared itself
/// symmetric ([`crate::Distance::upper_triangle`]).
#[derive(Debug)]
pub struct UpperTriangleView<'a, T> {
    /// The `n x n` buffer; only entries on and above the diagonal are meaningful, and a
    /// miner may use the others as scratch.
    pub distances: &'a mut [T],
    /// One label per row.
    pub labels: &'a [i64],
    /// Whether key i is excluded from anchor i's positives.
    pub remove_diagonal: bool,
    /// The row ranges `parts[p]..parts[p + 1]` the distance split its work by.
    pub parts: &'a [usize],
    /// The distance's name, for errors.
    pub distance: &'static str,
}

/// Picks each anchor's positive and negative from its row of distances.
///
/// The loss then scores each anchor's pair (its own formula) and sends the gradient back
/// through the picks: to the picked entry, or shared among exact ties ([`Pick`]). The
/// built-in is `metric-loss-mining`'s `StrategyMiner` (TF Similarity's easy / hard /
/// semi-hard strategies); `GivenTriplets` takes triplets formed by the caller.
///
/// ```
/// use metric_loss_core::{Float, LossError, Mined, Miner, MiningView, Workspace};
///
/// /// Batch-hard, written out: the farthest positive and the closest negative.
/// #[derive(Debug)]
/// struct BatchHard;
///
/// impl<T: Float> Miner<T> for BatchHard {
///     fn name(&self) -> &str { "batch_hard" }
///     fn mine(&self, view: MiningView<'_, T>, _: &mut Workspace, out: &mut [Mined<T>])
///         -> Result<(), LossError> {
///         for (i, slot) in out.iter_mut().enumerate() {
///             let (row, ctx) = (view.row(i), view.context(i));
///             let pos = (0..row.len()).filter(|&j| ctx.is_positive(j))
///                 .reduce(|a, b| if row[b] > row[a] { b } else { a });
///             let neg = (0..row.len()).filter(|&j| ctx.is_negative(j))
///                 .reduce(|a, b| if row[b] < row[a] { b } else { a });
///             *slot = match (pos, neg) {
///                 (Some(p), Some(n)) => Mined::triplet(p, row[p], n, row[n]),
///                 _ => Mined::none(),
///             };
///         }
///         Ok(())
///     }
/// }
///
/// let mut d = [0.0f32, 0.2, 0.9, 0.2, 0.0, 0.5, 0.9, 0.5, 0.0];
/// let view = MiningView { distances: &mut d, query_labels: &[0, 0, 1], key_labels: &[0, 0, 1],
///     remove_diagonal: true, distance: "cosine" };
/// let mut out = vec![Mined::placeholder(); 3];
/// BatchHard.mine(view, &mut Workspace::new(), &mut out)?;
/// assert_eq!((out[1].pos.index, out[1].neg.index), (0, 2));
/// assert!(!out[2].active); // no positive
/// # Ok::<(), LossError>(())
/// ```
pub trait Miner<T: Float>: Debug + Send + Sync {
    /// The miner's name.
    fn name(&self) -> &str;

    /// Writes each anchor's mined pair into `out` (one entry per query, overwritten).
    /// Keep per-call buffers in `workspace` (`workspace.get::<MyScratch>()`) so that steady
    /// state allocates nothing.
    ///
    /// # Errors
    /// A [`LossError`] for a row that cannot be mined (non-finite distances, no keys).
    fn mine(
        &self,
        view: MiningView<'_, T>,
        workspace: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<(), LossError>;

    /// Mines a batch against itself from the upper triangle alone and returns `true`, with
    /// the same results as [`Miner::mine`] on the full matrix. The default returns `false`
    /// and writes nothing: the loss then computes the full matrix and calls `mine`.
    ///
    /// # Errors
    /// As [`Miner::mine`].
    fn mine_upper(
        &self,
        view: UpperTriangleView<'_, T>,
        workspace: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<bool, LossError> {
        let _ = (view, workspace, out);
        Ok(false)
    }
}

/// A miner in both precisions: what a loss holds (`Arc<dyn AnyMiner>`). Implemented for
/// every type that implements [`Miner`] for `f32` and `f64`.
pub trait AnyMiner: Miner<f32> + Miner<f64> + Any {
    /// The value as [`Any`], to recover a concrete miner (`downcast_ref`).
    fn as_any(&self) -> &dyn Any;
}

impl<M: Miner<f32> + Miner<f64> + Any> AnyMiner for M {
    fn as_any(&self) -> &dyn Any {
        self
    }
}
