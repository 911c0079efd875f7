//! [`GivenTriplets`]: triplets formed by the caller, as a [`Miner`].

use metric_loss_core::{Float, LossError, Mined, Miner, MiningView, Workspace};

/// Explicit (anchor, positive, negative) index triplets, the tuples pytorch-metric-learning
/// users pass as `indices_tuple`: a loss built with this miner scores exactly these and
/// gives every other anchor a loss and a gradient of 0 ([`Mined::none`]).
///
/// Indices are rows of the queries (anchors) and of the keys (positives, negatives). A
/// loss takes one triplet per anchor, so an anchor may appear at most once; labels are
/// not consulted (the caller decided what is positive).
///
/// ```
/// use metric_loss_core::{Mined, Miner, MiningView, Workspace};
/// use metric_loss_mining::GivenTriplets;
///
/// let miner = GivenTriplets::new(vec![(0, 1, 2)])?;
/// let mut d = [0.0f32, 0.2, 0.9, 0.2, 0.0, 0.5, 0.9, 0.5, 0.0];
/// let view = MiningView { distances: &mut d, query_labels: &[0, 0, 1],
///     key_labels: &[0, 0, 1], remove_diagonal: true, distance: "cosine" };
/// let mut out = vec![Mined::placeholder(); 3];
/// miner.mine(view, &mut Workspace::new(), &mut out)?;
/// assert_eq!((out[0].positive, out[0].negative), (0.2, 0.9));
/// assert!(!out[1].active && !out[2].active);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenTriplets {
    triplets: Vec<(usize, usize, usize)>,
}

impl GivenTriplets {
    /// The triplets `(anchor, positive, negative)`.
    ///
    /// # Errors
    /// [`LossError::InvalidPartOutput`] if an anchor appears twice.
    pub fn new(mut triplets: Vec<(usize, usize, usize)>) -> Result<Self, LossError> {
        triplets.sort_by_key(|t| t.0);
        if let Some(w) = triplets.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(LossError::InvalidPartOutput {
                part: "miner",
                name: "given_triplets".into(),
                problem: format!(
                    "anchor {} appears in two triplets; a loss takes one triplet per anchor",
                    w[0].0
                ),
            });
        }
        Ok(Self { triplets })
    }

    /// The triplets, ordered by anchor.
    pub fn triplets(&self) -> &[(usize, usize, usize)] {
        &self.triplets
    }
}

impl<T: Float> Miner<T> for GivenTriplets {
    fn name(&self) -> &str {
        "given_triplets"
    }

    fn mine(
        &self,
        view: MiningView<'_, T>,
        _: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<(), LossError> {
        let (n, m) = (view.queries(), view.keys());
        out.fill(Mined::none());
        for &(a, p, q) in &self.triplets {
            if a >= n || p >= m || q >= m {
                return Err(LossError::InvalidPartOutput {
                    part: "miner",
                    name: "given_triplets".into(),
                    problem: format!(
                        "triplet ({a}, {p}, {q}) is out of range for {n} queries and {m} keys"
                    ),
                });
            }
            let row = view.row(a);
            out[a] = Mined::triplet(p, row[p], q, row[q]);
        }
        Ok(())
    }
}
