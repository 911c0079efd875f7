//! What a loss is evaluated on: queries, optional keys, weights.

use crate::{Batch, Embeddings, Float, LossError, SampleWeight};

const LABELLED: &str = "labelled embeddings (LossInput::new)";
const VIEWS: &str = "two unlabelled views paired by row (LossInput::views)";

/// The input of one loss evaluation.
///
/// By default the keys are the queries themselves (TF Similarity's `MetricLoss.call`), and
/// the self-pair (i, i) is not a positive. Give separate keys (for example a memory bank)
/// with [`LossInput::with_keys`]; the distance matrix is then `queries x keys`.
///
/// ```
/// use metric_loss_core::{Batch, Embeddings, LossInput, SampleWeight};
/// let labels = [0, 0, 1, 1];
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let batch = Batch::new(&labels, Embeddings::from_row_major(&x, 4, 2).unwrap()).unwrap();
/// let weights = [1.0f32, 2.0, 0.0, 1.0];
/// let input = LossInput::new(batch).with_sample_weight(SampleWeight::PerExample(&weights));
/// assert!(input.validate().is_ok());
/// ```
///
/// # Two views
/// Self-supervised losses (TF Similarity's `SimCLRLoss`, `Barlow`, ...) take no labels but
/// two embedding sets, row i of one paired with row i of the other:
/// [`LossInput::views`]. View A is [`LossInput::queries`] and view B
/// [`LossInput::keys`]; the output's `grad_queries` and `grad_keys` are the gradients with
/// respect to each. A labelled loss rejects such an input ([`LossInput::validate`]), and a
/// two-view loss rejects a labelled one ([`LossInput::validate_views`]), with
/// [`LossError::InputKind`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossInput<'a, T> {
    queries: Batch<'a, T>,
    keys: Option<Batch<'a, T>>,
    remove_diagonal: bool,
    sample_weight: SampleWeight<'a, T>,
    gradient: bool,
    views: bool,
}

impl<'a, T: Float> LossInput<'a, T> {
    /// Queries that are also the keys; no weights; gradient requested.
    pub fn new(queries: Batch<'a, T>) -> Self {
        Self {
            queries,
            keys: None,
            remove_diagonal: true,
            sample_weight: SampleWeight::None,
            gradient: true,
            views: false,
        }
    }

    /// Two unlabelled views of the same examples: `a` (the queries) and `b` (the keys),
    /// row i of `a` paired with row i of `b`. Whether their row counts must match is the
    /// loss's rule (a ranking loss may take more keys than queries). No weights; gradient
    /// requested.
    ///
    /// ```
    /// use metric_loss_core::{Embeddings, LossError, LossInput};
    /// let a = [1.0f32, 0.0, 0.8, 0.6];
    /// let b = [0.8f32, 0.6, 0.0, 1.0];
    /// let input = LossInput::views(
    ///     Embeddings::from_row_major(&a, 2, 2)?,
    ///     Embeddings::from_row_major(&b, 2, 2)?,
    /// );
    /// assert!(input.is_views());
    /// assert_eq!(input.keys().embeddings().row(0), &[0.8, 0.6]);
    /// assert!(input.validate_views().is_ok());
    /// // A labelled loss refuses it.
    /// assert!(matches!(input.validate(), Err(LossError::InputKind { .. })));
    /// # Ok::<(), LossError>(())
    /// ```
    pub fn views(a: Embeddings<'a, T>, b: Embeddings<'a, T>) -> Self {
        Self {
            queries: Batch::unlabelled(a),
            keys: Some(Batch::unlabelled(b)),
            remove_diagonal: false,
            sample_weight: SampleWeight::None,
            gradient: true,
            views: true,
        }
    }

    /// True for a two-view input ([`LossInput::views`]).
    pub fn is_views(&self) -> bool {
        self.views
    }

    /// Uses a separate key set: distances are `queries x keys`, and the gradient with
    /// respect to the keys is returned in [`crate::LossOutput::grad_keys`].
    ///
    /// The diagonal rule still applies (entry (i, i) is not a positive for i below both
    /// lengths), which is right when the keys start with the queries (cross-batch memory).
    /// For keys that do not contain the queries, call `remove_diagonal(false)`.
    pub fn with_keys(mut self, keys: Batch<'a, T>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Per-example weights.
    pub fn with_sample_weight(mut self, weights: SampleWeight<'a, T>) -> Self {
        self.sample_weight = weights;
        self
    }

    /// Whether the pair (i, i) is removed from the positives (default `true`).
    pub fn remove_diagonal(mut self, remove: bool) -> Self {
        self.remove_diagonal = remove;
        self
    }

    /// Skips the gradient: only the loss values are computed.
    pub fn without_gradient(mut self) -> Self {
        self.gradient = false;
        self
    }

    /// The queries (anchors).
    pub fn queries(&self) -> Batch<'a, T> {
        self.queries
    }

    /// The keys: the separate key set, or the queries.
    pub fn keys(&self) -> Batch<'a, T> {
        self.keys.unwrap_or(self.queries)
    }

    /// True when the keys are the queries themselves.
    pub fn keys_are_queries(&self) -> bool {
        self.keys.is_none()
    }

    /// Whether (i, i) is excluded from the positives.
    pub fn removes_diagonal(&self) -> bool {
        self.remove_diagonal
    }

    /// The sample weights.
    pub fn sample_weight(&self) -> SampleWeight<'a, T> {
        self.sample_weight
    }

    /// Whether the gradient is wanted.
    pub fn wants_gradient(&self) -> bool {
        self.gradient
    }

    /// Checks everything a loss relies on: equal widths, at least one column when there
    /// are rows, at least one key when there are queries, finite values, weights that fit.
    ///
    /// # Errors
    /// The first [`LossError`] found.
    ///
    /// [`LossError::InputKind`] for a two-view input: it has no labels.
    pub fn validate(&self) -> Result<(), LossError> {
        if self.views {
            return Err(LossError::InputKind {
                expected: LABELLED,
                got: VIEWS,
            });
        }
        let q = self.queries.embeddings();
        if q.cols() == 0 && q.rows() > 0 {
            return Err(LossError::ZeroWidth {
                what: "query embeddings",
                rows: q.rows(),
            });
        }
        q.check_finite("query embeddings")?;
        if let Some(keys) = &self.keys {
            let k = keys.embeddings();
            if k.cols() == 0 && k.rows() > 0 {
                return Err(LossError::ZeroWidth {
                    what: "key embeddings",
                    rows: k.rows(),
                });
            }
            if k.rows() == 0 && q.rows() > 0 {
                return Err(LossError::EmptyKeys { queries: q.rows() });
            }
            // Also with no queries: the key gradient has the keys' rows and the queries' width.
            if k.cols() != q.cols() && k.rows() > 0 {
                return Err(LossError::DimensionMismatch {
                    queries: q.cols(),
                    keys: k.cols(),
                });
            }
            k.check_finite("key embeddings")?;
        }
        self.sample_weight.check(self.queries.len())
    }

    /// What a two-view loss relies on: a two-view input whose views have the same
    /// width, at least one column when there are rows, finite values, finite weights.
    /// Row counts and the shape of the weights are each loss's rule.
    ///
    /// # Errors
    /// [`LossError::InputKind`] for a labelled input, then the first shape or value error.
    pub fn validate_views(&self) -> Result<(), LossError> {
        if !self.views {
            return Err(LossError::InputKind {
                expected: VIEWS,
                got: LABELLED,
            });
        }
        let (a, b) = (self.queries.embeddings(), self.keys().embeddings());
        for (x, what) in [(a, "view A"), (b, "view B")] {
            if x.cols() == 0 && x.rows() > 0 {
                return Err(LossError::ZeroWidth {
                    what,
                    rows: x.rows(),
                });
            }
        }
        if a.cols() != b.cols() && a.rows() > 0 && b.rows() > 0 {
            return Err(LossError::DimensionMismatch {
                queries: a.cols(),
                keys: b.cols(),
            });
        }
        a.check_finite("view A")?;
        b.check_finite("view B")?;
        match self.sample_weight {
            SampleWeight::PerExample(w) => SampleWeight::PerExample(w).check(w.len()),
            other => other.check(0),
        }
    }
}
