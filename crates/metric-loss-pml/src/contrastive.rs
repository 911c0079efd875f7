//! [`ContrastiveLoss`]: pytorch-metric-learning's pairwise contrastive loss.

use metric_loss_core::Float;
use metric_loss_distances::lanes::DenseFloat;

use crate::loss_config::pair_loss;
use metric_loss_core::params::finite;

use crate::pairs::{Elements, PairFormula, Scores};
use crate::{AvgNonZeroReducer, LpDistance};

/// The hinges of the contrastive loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Contrastive {
    pos_margin: f64,
    neg_margin: f64,
}

/// `relu(a − b)` for a distance, `relu(b − a)` for a similarity: PML's `margin(a, b)`
/// hinge, whose derivative in `a` is ±1 where it is positive.
fn hinge<T: Float>(similarity: bool, a: T, b: T) -> T {
    let v = if similarity { b - a } else { a - b };
    v.max(T::ZERO)
}

impl PairFormula for Contrastive {
    const SUB_LOSSES: usize = 2;

    fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
        let (pos, neg) = subs.split_at_mut(1);
        let (pos, neg) = (&mut pos[0], &mut neg[0]);
        let (pm, nm) = (T::from_f64(self.pos_margin), T::from_f64(self.neg_margin));
        for i in s.rows() {
            let row = s.row(i);
            pos.fill_row(i, row.len(), |pos_values, pos_cols| {
                let mut kept_pos = 0;
                neg.fill_row(i, row.len(), |neg_values, neg_cols| {
                    let mut kept_neg = 0;
                    for (j, (&d, (positive, negative))) in row.iter().zip(s.sides(i)).enumerate() {
                        if negative {
                            neg_values[kept_neg] = hinge(s.similarity, nm, d);
                            neg_cols[kept_neg] = j as u32;
                            kept_neg += 1;
                        } else if positive {
                            pos_values[kept_pos] = hinge(s.similarity, d, pm);
                            pos_cols[kept_pos] = j as u32;
                            kept_pos += 1;
                        }
                    }
                    kept_neg
                });
                kept_pos
            });
        }
        true
    }

    fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
        // ∂hinge/∂d: +1 / −1 for a positive pair of a distance / similarity, the opposite
        // for a negative pair; 0 where the hinge is not positive (relu'(0) = 0).
        let up = if s.similarity { -T::ONE } else { T::ONE };
        for (sub, sign) in subs.iter().zip([up, -up]) {
            for (i, j, value, _, scale) in sub.of_rows(s.rows()) {
                if value > T::ZERO {
                    s.grad_row(grad, i)[j] += sign * scale;
                }
            }
        }
    }
}

pair_loss! {
    /// pytorch-metric-learning's `ContrastiveLoss(pos_margin=0, neg_margin=1)`: every
    /// positive pair is pulled within `pos_margin`, every negative pair pushed beyond
    /// `neg_margin`, each set reduced on its own and the two summed:
    ///
    /// L = reduce{relu(dᵢⱼ − pos_margin) : (i, j) positive} + reduce{relu(neg_margin − dᵢⱼ) : (i, j) negative}
    ///
    /// (the hinges flip for a similarity, such as [`CosineSimilarity`](crate::CosineSimilarity)).
    /// Defaults: [`LpDistance`] (normalised euclidean) and [`AvgNonZeroReducer`] for each
    /// part. A batch with at most one positive and one negative pair has loss 0.
    ///
    /// ```
    /// use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt};
    /// use metric_loss_pml::ContrastiveLoss;
    ///
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let labels = [0, 0, 1, 1];
    /// let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2)?)?;
    /// let out = ContrastiveLoss::new().compute(&LossInput::new(batch))?;
    /// assert!((out.loss - 1.3704839).abs() < 1e-6); // pytorch-metric-learning's value
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: ContrastiveLoss,
    /// [`ContrastiveLoss`]'s arguments, with PML's keyword names.
    config: ContrastiveLossConfig,
    class: "ContrastiveLoss",
    distance: LpDistance::default(),
    reducer: AvgNonZeroReducer {},
    fields: {
        /// The distance below which a positive pair costs nothing (default 0).
        pos_margin: f64 = 0.0,
        /// The distance beyond which a negative pair costs nothing (default 1).
        neg_margin: f64 = 1.0,
    },
    build: |c| -> Contrastive {
        Contrastive {
            pos_margin: finite("pos_margin", c.pos_margin)?,
            neg_margin: finite("neg_margin", c.neg_margin)?,
        }
    }
}
