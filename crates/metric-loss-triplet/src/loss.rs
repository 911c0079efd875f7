//! `TripletLoss`: mining, the per-anchor loss, the reduction and the gradient.

use metric_loss_core::{
    reduce, AllowNonFinite, Distance, Float, LossError, LossInput, LossOutput, MetricLoss,
    NegativeStrategy, PositiveStrategy, Reduction, Workspace,
};
use metric_loss_distances::parallel::{for_each_item, threads_for, triangle_bounds};
use metric_loss_distances::DistanceKind;
use metric_loss_mining::{
    gather_upper_row, mine_row_grouped, route_gradient, KeyClasses, Mined, RowContext,
    TriangleMiner, UpperTriangle,
};

use crate::gradient::GradientTerms;
use crate::{Margin, TripletLossConfig};

/// The largest distance matrix a call may allocate, in bytes (16 GiB): larger batches get
/// [`LossError::TooLarge`] instead of an allocation failure.
pub const MAX_DISTANCE_MATRIX_BYTES: u128 = 16 << 30;

/// TF Similarity's `TripletLoss`: for each anchor, a mined positive distance pᵢ and negative
/// distance qᵢ, and ℓᵢ = max(pᵢ − qᵢ + m, 0) or soft-plus(pᵢ − qᵢ).
///
/// Build it from a [`TripletLossConfig`] (validated once) or take the default (cosine,
/// hard positives, semi-hard negatives, margin 1.0):
///
/// ```
/// use metric_loss_core::MetricLossExt;
/// use metric_loss_triplet::TripletLoss;
///
/// // The spec's golden batch: e0 = (1, 0), e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, -0.8).
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let loss = TripletLoss::builder().margin(0.5).negative_mining_strategy("hard").build()?;
/// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
/// assert!((out.per_example[1] - 0.3).abs() < 1e-6);
/// assert!((out.loss - 0.099999756).abs() < 1e-7);
/// assert_eq!(out.grad_queries.len(), 8);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
///
/// Anchors with no positive or no negative follow TF Similarity (a ±1e-6 sentinel
/// triplet, see `metric-loss-mining`) unless `exclude_degenerate_anchors` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TripletLoss {
    pub(crate) distance: DistanceKind,
    pub(crate) positive: PositiveStrategy,
    pub(crate) negative: NegativeStrategy,
    pub(crate) margin: Margin,
    pub(crate) name: String,
    pub(crate) reduction: Reduction,
    pub(crate) exclude_degenerate_anchors: bool,
    pub(crate) stable_soft_margin: bool,
}

impl Default for TripletLoss {
    fn default() -> Self {
        TripletLossConfig::default()
            .build()
            .expect("the default config is valid")
    }
}

impl TripletLoss {
    /// The default arguments, to adjust and `build`.
    pub fn builder() -> TripletLossConfig {
        TripletLossConfig::default()
    }

    /// The loss's arguments (`get_config`): building them again gives an identical loss.
    pub fn config(&self) -> TripletLossConfig {
        let (soft_margin, margin) = match self.margin {
            Margin::Hinge(m) => (false, Some(m)),
            Margin::Soft | Margin::SoftStable => (true, Some(1.0)),
        };
        TripletLossConfig {
            distance: self.distance.name().into(),
            positive_mining_strategy: self.positive.name().into(),
            negative_mining_strategy: self.negative.name().into(),
            soft_margin,
            margin,
            name: self.name.clone(),
            reduction: self.reduction.name().into(),
            exclude_degenerate_anchors: self.exclude_degenerate_anchors,
            stable_soft_margin: self.stable_soft_margin,
        }
    }

    /// The distance.
    pub fn distance(&self) -> DistanceKind {
        self.distance
    }

    /// The positive mining strategy.
    pub fn positive_mining_strategy(&self) -> PositiveStrategy {
        self.positive
    }

    /// The negative mining strategy.
    pub fn negative_mining_strategy(&self) -> NegativeStrategy {
        self.negative
    }

    /// The margin rule.
    pub fn margin(&self) -> Margin {
        self.margin
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        input.validate()?;
        let (queries, keys) = (input.queries(), input.keys());
        let (n, m, dims) = (queries.len(), keys.len(), queries.embeddings().cols());
        let same = input.keys_are_queries();
        let gradient = input.wants_gradient();
        out.reset(n, 0, dims, gradient);
        if gradient && !same {
            // The keys' own width: it may differ from the queries' when either set is empty.
            out.grad_keys.resize(m * keys.embeddings().cols(), T::ZERO);
        }
        if n == 0 {
            return Ok(());
        }
        if m == 0 {
            return Err(LossError::Unsupported {
                loss: self.name.clone(),
                message: format!(
                    "the key set is empty but there are {n} queries; give at least one key"
                ),
            });
        }
        let bytes = (n as u128) * (m as u128) * std::mem::size_of::<T>() as u128;
        if bytes > MAX_DISTANCE_MATRIX_BYTES {
            return Err(LossError::TooLarge {
                what: "the distance matrix",
                rows: n,
                cols: m,
                bytes,
                limit: MAX_DISTANCE_MATRIX_BYTES,
            });
        }

        let scratch = workspace.get::<Scratch<T>>();
        // `matrix` writes every entry: no need to zero the buffer first (resize only fills
        // when the buffer grows; a memset of the whole matrix was ~3% of a call).
        scratch.distances.resize(n * m, T::ZERO);
        let (q, k) = (queries.embeddings(), keys.embeddings());
        // Against itself, a batch under a distance symmetric entry by entry needs only the
        // upper triangle, mined in place: no mirror, half the product on any thread count.
        triangle_bounds(n, threads_for(n), &mut scratch.bounds);
        let upper = same
            && self
                .distance
                .upper_triangle(q, &scratch.bounds, &mut scratch.distances)?;
        if !upper {
            self.distance
                .matrix(q, k, same, &mut scratch.row_stats, &mut scratch.distances)?;
        }

        // Grouping the keys by label once makes each anchor's positives a short list.
        scratch.classes.rebuild(keys.labels());
        scratch.mined.clear();
        scratch.mined.resize(n, Mined::placeholder());
        if upper {
            let triangle = UpperTriangle {
                distances: &mut scratch.distances,
                n,
                labels: queries.labels(),
                remove_diagonal: input.removes_diagonal(),
            };
            scratch
                .miner
                .mine(
                    triangle,
                    &scratch.classes,
                    self.positive,
                    self.negative,
                    &scratch.bounds,
                    |parts, task| for_each_item(parts, task),
                    &mut scratch.mined,
                )
                .map_err(|(i, e)| e.into_loss_error::<T>(self.distance.name(), i, n))?;
        } else {
            self.mine_rows(input, scratch)?;
        }
        scratch.slopes.clear();
        for (loss, mined) in out.per_example.iter_mut().zip(&scratch.mined) {
            let (value, slope) = self.score(mined);
            *loss = value;
            scratch.slopes.push(slope);
        }
        out.loss = reduce(&out.per_example, &input.sample_weight(), self.reduction);

        if gradient {
            // The pairs first, in anchor order; then each gradient row adds its own.
            let scale = T::from_f64(self.reduction.example_scale(n));
            scratch.terms.clear(n);
            for i in 0..n {
                scratch.terms.next_query();
                let g = input.sample_weight().get(i) * scale * scratch.slopes[i];
                if g == T::ZERO {
                    continue;
                }
                let (pos, neg) = (&scratch.mined[i].pos, &scratch.mined[i].neg);
                // The whole row is read only to share a gradient among exact ties.
                let row: &[T] = if pos.ties <= 1 && neg.ties <= 1 {
                    &[]
                } else if !upper {
                    &scratch.distances[i * m..(i + 1) * m]
                } else {
                    gather_upper_row(&scratch.distances, n, i, &mut scratch.gathered);
                    &scratch.gathered
                };
                let ctx = self.context(input, i);
                let terms = &mut scratch.terms;
                for (pick, g) in [(pos, g), (neg, -g)] {
                    route_gradient(row, &ctx, pick, g, |j, share| {
                        // A lone pick's entry holds its target: no read of the matrix.
                        let value = if pick.ties <= 1 { pick.target } else { row[j] };
                        terms.push(j, value, share);
                    });
                }
            }
            let (grad_q, grad_k) = (&mut out.grad_queries, &mut out.grad_keys);
            let temps = &mut scratch.gradient_rows;
            scratch.terms.apply(
                threads_for(n),
                self.distance,
                q,
                k,
                same,
                grad_q,
                grad_k,
                temps,
            );
        }
        // Finite inputs can still overflow (a huge margin, a weight times a huge loss, a
        // gradient): an error, never a silent ±∞ or NaN, except for the documented +∞ of TF
        // Similarity's soft-plus and the loss it makes infinite.
        out.check_finite(if self.margin == Margin::Soft {
            AllowNonFinite::PositiveInfinitePerExample
        } else {
            AllowNonFinite::Never
        })
    }

    /// Mines every row of the full distance matrix into `scratch.mined`, rows split over
    /// threads.
    fn mine_rows<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        scratch: &mut Scratch<T>,
    ) -> Result<(), LossError> {
        let (n, m) = (input.queries().len(), input.keys().len());
        let classes = &scratch.classes;
        let query_labels = input.queries().labels();
        metric_loss_distances::parallel::for_row_chunks(
            &mut scratch.mined,
            &mut vec![(); n],
            &mut scratch.distances,
            m,
            |start, mined, _, rows| {
                for (t, (slot, row)) in mined.iter_mut().zip(rows.chunks_exact_mut(m)).enumerate() {
                    let i = start + t;
                    let ctx = self.context(input, i);
                    let members = classes.members(query_labels[i]);
                    *slot = mine_row_grouped(row, &ctx, members, self.positive, self.negative)
                        .map_err(|e| e.into_loss_error::<T>(self.distance.name(), i, n))?;
                }
                Ok(())
            },
        )
    }

    /// An anchor's loss ℓᵢ and slope dℓᵢ/dxᵢ from its mined pair.
    fn score<T: Float>(&self, mined: &Mined<T>) -> (T, T) {
        if self.exclude_degenerate_anchors && !(mined.has_positive && mined.has_negative) {
            (T::ZERO, T::ZERO)
        } else {
            self.margin.apply(mined.positive - mined.negative)
        }
    }

    fn context<'a, T: Float>(&self, input: &LossInput<'a, T>, anchor: usize) -> RowContext<'a> {
        RowContext {
            anchor,
            anchor_label: input.queries().labels()[anchor],
            key_labels: input.keys().labels(),
            remove_diagonal: input.removes_diagonal(),
        }
    }
}

/// Per-call scratch kept in the [`Workspace`].
#[derive(Debug, Default)]
struct Scratch<T> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    /// Per anchor: its mined pair, and dℓᵢ/dxᵢ.
    mined: Vec<Mined<T>>,
    slopes: Vec<T>,
    terms: GradientTerms<T>,
    /// One gradient row per thread (a self pair's key share).
    gradient_rows: Vec<T>,
    classes: KeyClasses,
    /// The row ranges of the threads (upper-triangle path).
    bounds: Vec<usize>,
    miner: TriangleMiner<T>,
    /// One row gathered from the upper triangle.
    gathered: Vec<T>,
}

impl MetricLoss for TripletLoss {
    fn name(&self) -> &str {
        &self.name
    }

    fn compute_f32(
        &self,
        input: &LossInput<'_, f32>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f32>,
    ) -> Result<(), LossError> {
        self.run(input, workspace, out)
    }

    fn compute_f64(
        &self,
        input: &LossInput<'_, f64>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f64>,
    ) -> Result<(), LossError> {
        self.run(input, workspace, out)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}
