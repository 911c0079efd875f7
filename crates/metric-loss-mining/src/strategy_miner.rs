//! [`StrategyMiner`]: TF Similarity's mining strategies as a [`Miner`].

use metric_loss_core::{
    Float, LossError, Mined, Miner, MiningView, NegativeStrategy, PositiveStrategy,
    UpperTriangleView, Workspace,
};
use metric_loss_distances::parallel::{for_each_item, for_row_chunks};

use crate::{mine_row_grouped, KeyClasses, TriangleMiner, UpperTriangle};

/// TF Similarity's mining: each anchor's easiest or hardest positive and its easiest,
/// hardest or semi-hard negative, with TF's ±1e-6 sentinels for anchors without a
/// positive or a negative and the gradient shared among exact ties (see the crate docs).
///
/// The default is TF Similarity's default, hard positives with semi-hard negatives. Rows
/// are split over threads (the `threads` feature of `metric-loss-distances`), with the
/// same results bit for bit on any thread count; against the batch itself under a
/// symmetric distance it mines the upper triangle in place ([`TriangleMiner`]).
///
/// ```
/// use metric_loss_core::{Mined, Miner, MiningView, NegativeStrategy, PositiveStrategy, Workspace};
/// use metric_loss_mining::StrategyMiner;
///
/// let miner = StrategyMiner::new(PositiveStrategy::Hard, NegativeStrategy::Hard);
/// // Cosine distances of four rows with labels [0, 0, 1, 2].
/// let mut d = [0.0f32, 0.2, 1.0, 1.6, 0.2, 0.0, 0.4, 1.8, 1.0, 0.4, 0.0, 1.8, 1.6, 1.8, 1.8, 0.0];
/// let view = MiningView { distances: &mut d, query_labels: &[0, 0, 1, 2],
///     key_labels: &[0, 0, 1, 2], remove_diagonal: true, distance: "cosine" };
/// let mut out = vec![Mined::placeholder(); 4];
/// miner.mine(view, &mut Workspace::new(), &mut out)?;
/// assert_eq!((out[1].positive, out[1].negative), (0.2, 0.4));
/// assert!(!out[2].has_positive); // its positive is the -1e-6 sentinel below the row minimum
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StrategyMiner {
    /// Which positive each anchor takes.
    pub positive: PositiveStrategy,
    /// Which negative each anchor takes.
    pub negative: NegativeStrategy,
}

impl StrategyMiner {
    /// The miner of the two strategies.
    pub fn new(positive: PositiveStrategy, negative: NegativeStrategy) -> Self {
        Self { positive, negative }
    }
}

/// Per-call buffers kept in the [`Workspace`].
#[derive(Debug, Default)]
struct Scratch<T> {
    /// The keys grouped by label: each anchor's positives are a short list.
    classes: KeyClasses,
    triangle: TriangleMiner<T>,
}

impl<T: Float> Miner<T> for StrategyMiner {
    fn name(&self) -> &str {
        "tf_similarity_strategies"
    }

    fn mine(
        &self,
        view: MiningView<'_, T>,
        workspace: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<(), LossError> {
        let (n, m) = (view.queries(), view.keys());
        if m == 0 && n > 0 {
            return Err(LossError::EmptyKeys { queries: n });
        }
        let scratch = workspace.get::<Scratch<T>>();
        scratch.classes.rebuild(view.key_labels);
        let classes = &scratch.classes;
        let (positive, negative) = (self.positive, self.negative);
        let MiningView {
            distances,
            query_labels,
            key_labels,
            remove_diagonal,
            distance,
        } = view;
        for_row_chunks(
            out,
            &mut vec![(); n],
            distances,
            m,
            |start, mined, _, rows| {
                for (t, (slot, row)) in mined.iter_mut().zip(rows.chunks_exact_mut(m)).enumerate() {
                    let i = start + t;
                    let ctx = metric_loss_core::RowContext {
                        anchor: i,
                        anchor_label: query_labels[i],
                        key_labels,
                        remove_diagonal,
                    };
                    let members = classes.members(query_labels[i]);
                    *slot = mine_row_grouped(row, &ctx, members, positive, negative)
                        .map_err(|e| e.into_loss_error::<T>(distance, i, n))?;
                }
                Ok(())
            },
        )
    }

    fn mine_upper(
        &self,
        view: UpperTriangleView<'_, T>,
        workspace: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<bool, LossError> {
        let n = view.labels.len();
        let scratch = workspace.get::<Scratch<T>>();
        scratch.classes.rebuild(view.labels);
        let triangle = UpperTriangle {
            distances: view.distances,
            n,
            labels: view.labels,
            remove_diagonal: view.remove_diagonal,
        };
        scratch
            .triangle
            .mine(
                triangle,
                &scratch.classes,
                self.positive,
                self.negative,
                view.parts,
                |parts, task| for_each_item(parts, task),
                out,
            )
            .map_err(|(i, e)| e.into_loss_error::<T>(view.distance, i, n))?;
        Ok(true)
    }
}
