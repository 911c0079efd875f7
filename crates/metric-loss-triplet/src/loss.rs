//! `TripletLoss`: mining, the per-anchor loss, the reduction and the gradient.

use std::any::Any;
use std::sync::Arc;

use metric_loss_core::{
    AllowNonFinite, AnyDistance, AnyMiner, AnyReducer, Distance, Float, LossError, LossInput,
    LossOutput, MeanOverNonZero, MetricLoss, Miner, MiningView, NegativeStrategy, PartConfig,
    PositiveStrategy, Reducer, Reduction, RegisteredDistance, RegisteredMiner, RegisteredReducer,
    RowContext, Threshold, UpperTriangleView, Workspace,
};
use metric_loss_distances::parallel::{threads_for, triangle_bounds};
use metric_loss_distances::{mirror_upper, DistanceKind};
use metric_loss_mining::{gather_upper_row, route_gradient, Mined, StrategyMiner};

use crate::gradient::GradientTerms;
use crate::{Margin, TripletLossBuilder, TripletLossConfig};

/// The largest distance matrix a call may allocate, in bytes (16 GiB): larger batches get
/// [`LossError::TooLarge`] instead of an allocation failure.
pub const MAX_DISTANCE_MATRIX_BYTES: u128 = 16 << 30;

/// TF Similarity's `TripletLoss`: for each anchor, a mined positive distance pᵢ and negative
/// distance qᵢ, and ℓᵢ = max(pᵢ − qᵢ + m, 0) or soft-plus(pᵢ − qᵢ).
///
/// It is a distance, a miner and a reducer composed with the triplet formula: build it
/// from typed parts with [`TripletLoss::builder`] (any [`Distance`], [`Miner`] and
/// [`Reducer`], yours included), from a [`TripletLossConfig`] (TF Similarity's argument
/// strings, validated once), or take the default (cosine, hard positives, semi-hard
/// negatives, margin 1.0):
///
/// ```
/// use metric_loss_core::{MetricLossExt, NegativeStrategy};
/// use metric_loss_triplet::TripletLoss;
///
/// // e0 = (1, 0), e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, -0.8).
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let loss = TripletLoss::builder().margin(0.5).negative_mining(NegativeStrategy::Hard).build()?;
/// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
/// assert!((out.per_example[1] - 0.3).abs() < 1e-6);
/// assert!((out.loss - 0.099999756).abs() < 1e-7);
/// assert_eq!(out.grad_queries.len(), 8);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
///
/// Anchors with no positive or no negative follow TF Similarity (a ±1e-6 sentinel
/// triplet, see `metric-loss-mining`) unless `exclude_degenerate_anchors` is set; anchors
/// a miner leaves out ([`Mined::none`](metric_loss_core::Mined::none)) give 0.
///
/// Two losses are equal when their arguments are; a user part is equal only to itself
/// (the same `Arc`).
#[derive(Debug, Clone)]
pub struct TripletLoss {
    pub(crate) distance: Arc<dyn AnyDistance>,
    pub(crate) miner: Arc<dyn AnyMiner>,
    pub(crate) reducer: Arc<dyn AnyReducer>,
    /// The parts a config file names by class name.
    pub(crate) registered: RegisteredParts,
    pub(crate) margin: Margin,
    pub(crate) name: String,
    pub(crate) exclude_degenerate_anchors: bool,
    pub(crate) stable_soft_margin: bool,
}

impl PartialEq for TripletLoss {
    fn eq(&self, other: &Self) -> bool {
        same_part(
            self.distance.as_any(),
            other.distance.as_any(),
            Arc::ptr_eq(&self.distance, &other.distance),
        ) && same_part(
            self.miner.as_any(),
            other.miner.as_any(),
            Arc::ptr_eq(&self.miner, &other.miner),
        ) && same_part(
            self.reducer.as_any(),
            other.reducer.as_any(),
            Arc::ptr_eq(&self.reducer, &other.reducer),
        ) && self.margin == other.margin
            && self.name == other.name
            && self.exclude_degenerate_anchors == other.exclude_degenerate_anchors
            && self.stable_soft_margin == other.stable_soft_margin
    }
}

/// The user parts a loss was given as registered (config-file) parts, kept to write its
/// config back.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegisteredParts {
    pub(crate) distance: Option<Arc<dyn RegisteredDistance>>,
    pub(crate) miner: Option<Arc<dyn RegisteredMiner>>,
    pub(crate) reducer: Option<Arc<dyn RegisteredReducer>>,
}

/// Two parts are the same: one value, or equal built-ins.
fn same_part(a: &dyn Any, b: &dyn Any, one_value: bool) -> bool {
    fn equal<K: PartialEq + 'static>(a: &dyn Any, b: &dyn Any) -> Option<bool> {
        Some(a.downcast_ref::<K>()? == b.downcast_ref::<K>()?)
    }
    one_value
        || equal::<DistanceKind>(a, b)
            .or_else(|| equal::<StrategyMiner>(a, b))
            .or_else(|| equal::<Reduction>(a, b))
            .or_else(|| equal::<MeanOverNonZero>(a, b))
            .or_else(|| equal::<Threshold>(a, b))
            .unwrap_or(false)
}

impl Default for TripletLoss {
    fn default() -> Self {
        TripletLossBuilder::default()
            .build()
            .expect("the default arguments are valid")
    }
}

impl TripletLoss {
    /// TF Similarity's defaults, to adjust with typed parts and `build`.
    pub fn builder() -> TripletLossBuilder {
        TripletLossBuilder::default()
    }

    /// The loss's arguments (`get_config`): building them again gives an equal loss.
    ///
    /// # Errors
    /// [`LossError::Unsupported`] when a part is neither a built-in one nor registered
    /// (given with `registered_distance` and friends): a config could not name it.
    pub fn config(&self) -> Result<TripletLossConfig, LossError> {
        let (soft_margin, margin) = match self.margin {
            Margin::Hinge(m) => (false, Some(m)),
            Margin::Soft | Margin::SoftStable => (true, Some(1.0)),
        };
        let not_built_in = |part: &str, name: &str| LossError::Unsupported {
            loss: self.name.clone(),
            message: format!(
                "the {part} `{name}` is not a built-in one and has no config-file spelling here"
            ),
        };
        let distance = match (&self.registered.distance, self.distance_kind()) {
            (Some(part), _) => PartConfig::Registered(part.clone()),
            (None, Some(kind)) => kind.name().into(),
            (None, None) => {
                return Err(not_built_in(
                    "distance",
                    Distance::<f32>::name(&*self.distance),
                ))
            }
        };
        let (strategies, miner) = match (&self.registered.miner, self.strategies()) {
            (Some(part), _) => (
                StrategyMiner::default(),
                Some(PartConfig::Registered(part.clone())),
            ),
            (None, Some(strategies)) => (strategies, None),
            (None, None) => return Err(not_built_in("miner", Miner::<f32>::name(&*self.miner))),
        };
        let reduction = match &self.registered.reducer {
            Some(part) => PartConfig::Registered(part.clone()),
            None => {
                let any = self.reducer.as_any();
                if let Some(reduction) = any.downcast_ref::<Reduction>() {
                    Reduction::name(*reduction).into()
                } else if any.is::<MeanOverNonZero>() {
                    MeanOverNonZero::NAME.into()
                } else {
                    return Err(not_built_in(
                        "reducer",
                        Reducer::<f32>::name(&*self.reducer),
                    ));
                }
            }
        };
        Ok(TripletLossConfig {
            distance,
            positive_mining_strategy: strategies.positive.name().into(),
            negative_mining_strategy: strategies.negative.name().into(),
            miner,
            soft_margin,
            margin,
            name: self.name.clone(),
            reduction,
            exclude_degenerate_anchors: self.exclude_degenerate_anchors,
            stable_soft_margin: self.stable_soft_margin,
        })
    }

    /// The distance.
    pub fn distance(&self) -> &dyn AnyDistance {
        &*self.distance
    }

    /// The distance, if it is one of TF Similarity's.
    pub fn distance_kind(&self) -> Option<DistanceKind> {
        self.distance
            .as_any()
            .downcast_ref::<DistanceKind>()
            .copied()
    }

    /// The miner's strategies when it is the built-in one.
    fn strategies(&self) -> Option<StrategyMiner> {
        self.miner.as_any().downcast_ref::<StrategyMiner>().copied()
    }

    /// The miner.
    pub fn miner(&self) -> &dyn AnyMiner {
        &*self.miner
    }

    /// The reducer.
    pub fn reducer(&self) -> &dyn AnyReducer {
        &*self.reducer
    }

    /// The positive mining strategy, if the miner is TF Similarity's.
    pub fn positive_mining_strategy(&self) -> Option<PositiveStrategy> {
        self.strategies().map(|s| s.positive)
    }

    /// The negative mining strategy, if the miner is TF Similarity's.
    pub fn negative_mining_strategy(&self) -> Option<NegativeStrategy> {
        self.strategies().map(|s| s.negative)
    }

    /// The margin rule.
    pub fn margin(&self) -> Margin {
        self.margin
    }

    /// The same loss with another miner (for instance
    /// [`GivenTriplets`](metric_loss_mining::GivenTriplets) for this batch's triplets): the
    /// other parts are shared, not copied.
    pub fn with_miner(&self, miner: impl AnyMiner) -> TripletLoss {
        TripletLoss {
            miner: Arc::new(miner),
            ..self.clone()
        }
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

        // The scratch leaves the workspace while the parts use it.
        let mut scratch = std::mem::take(workspace.get::<Scratch<T>>());
        let result = self.run_with(input, workspace, &mut scratch, out);
        *workspace.get::<Scratch<T>>() = scratch;
        result
    }

    fn run_with<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        scratch: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let (queries, keys) = (input.queries(), input.keys());
        let (n, m) = (queries.len(), keys.len());
        let same = input.keys_are_queries();
        let gradient = input.wants_gradient();
        let distance = T::distance(&*self.distance);
        let miner = T::miner(&*self.miner);
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
        if self.distance_kind().is_none() {
            check_user_distances(distance.name(), &scratch.distances, n, m, upper)?;
        }

        scratch.mined.clear();
        scratch.mined.resize(n, Mined::placeholder());
        let mined_upper = upper
            && miner.mine_upper(
                UpperTriangleView {
                    distances: &mut scratch.distances,
                    labels: queries.labels(),
                    remove_diagonal: input.removes_diagonal(),
                    parts: &scratch.bounds,
                    distance: distance.name(),
                },
                workspace,
                &mut scratch.mined,
            )?;
        if !mined_upper {
            if upper {
                // A miner that wants whole rows.
                mirror_upper(&mut scratch.distances, n);
            }
            let view = MiningView {
                distances: &mut scratch.distances,
                query_labels: queries.labels(),
                key_labels: keys.labels(),
                remove_diagonal: input.removes_diagonal(),
                distance: distance.name(),
            };
            miner.mine(view, workspace, &mut scratch.mined)?;
        }
        if self.strategies().is_none() {
            check_user_mined(miner.name(), &scratch.mined, m)?;
        }
        scratch.slopes.clear();
        for (loss, mined) in out.per_example.iter_mut().zip(&scratch.mined) {
            let (value, slope) = self.score(mined);
            *loss = value;
            scratch.slopes.push(slope);
        }
        scratch.scales.resize(n, T::ZERO);
        let reducer = T::reducer(&*self.reducer);
        out.loss = reducer.reduce(
            &out.per_example,
            &input.sample_weight(),
            &mut scratch.scales,
        );
        if let Some(i) = scratch.scales.iter().position(|s| !s.is_finite()) {
            return Err(LossError::InvalidPartOutput {
                part: "reducer",
                name: reducer.name().to_owned(),
                problem: format!(
                    "the gradient scale of example {i} is {}; scales must be finite",
                    scratch.scales[i]
                ),
            });
        }

        if gradient {
            // The pairs first, in anchor order; then each gradient row adds its own.
            scratch.terms.clear(n);
            for i in 0..n {
                scratch.terms.next_query();
                let g = scratch.scales[i] * scratch.slopes[i];
                if g == T::ZERO {
                    continue;
                }
                let (pos, neg) = (&scratch.mined[i].pos, &scratch.mined[i].neg);
                // The whole row is read only to share a gradient among exact ties.
                let row: &[T] = if pos.ties <= 1 && neg.ties <= 1 {
                    &[]
                } else if !mined_upper {
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
            scratch
                .terms
                .apply(threads_for(n), distance, q, k, same, grad_q, grad_k, temps);
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

    /// An anchor's loss ℓᵢ and slope dℓᵢ/dxᵢ from its mined pair.
    fn score<T: Float>(&self, mined: &Mined<T>) -> (T, T) {
        if !mined.active
            || (self.exclude_degenerate_anchors && !(mined.has_positive && mined.has_negative))
        {
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
    /// Per anchor: its mined pair, dℓᵢ/dxᵢ, and the reducer's ∂L/∂ℓᵢ.
    mined: Vec<Mined<T>>,
    slopes: Vec<T>,
    scales: Vec<T>,
    terms: GradientTerms<T>,
    /// One gradient row per thread (a self pair's key share).
    gradient_rows: Vec<T>,
    /// The row ranges of the threads (upper-triangle path).
    bounds: Vec<usize>,
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

    /// The reducer as a Keras reduction; `Auto` for a reducer that is not one (see
    /// [`MetricLoss::keras_reduction`]).
    fn reduction(&self) -> Reduction {
        self.keras_reduction().unwrap_or(Reduction::Auto)
    }

    fn keras_reduction(&self) -> Option<Reduction> {
        Reducer::<f32>::as_keras(&*self.reducer)
    }
}
