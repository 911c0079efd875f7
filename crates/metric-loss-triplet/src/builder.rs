//! [`TripletLossBuilder`]: a `TripletLoss` from typed parts.

use std::sync::Arc;

use metric_loss_core::{
    AnyDistance, AnyMiner, AnyReducer, LossError, NegativeStrategy, PositiveStrategy, Reduction,
    RegisteredDistance, RegisteredMiner, RegisteredReducer,
};
use metric_loss_distances::DistanceKind;
use metric_loss_mining::StrategyMiner;

use crate::loss::RegisteredParts;
use crate::{Margin, TripletLoss};

/// Builds a [`TripletLoss`] from typed parts: any distance, miner and reducer, built-in or
/// your own. Start from [`TripletLoss::builder`] (TF Similarity's defaults); strings are
/// only for config files ([`TripletLossConfig`](crate::TripletLossConfig)).
///
/// ```
/// use metric_loss_core::{MeanOverNonZero, MetricLossExt, NegativeStrategy};
/// use metric_loss_distances::DistanceKind;
/// use metric_loss_triplet::TripletLoss;
///
/// let loss = TripletLoss::builder()
///     .distance(DistanceKind::Euclidean)
///     .negative_mining(NegativeStrategy::Hard)
///     .margin(0.2)
///     .reducer(MeanOverNonZero)
///     .build()?;
/// let out = loss.evaluate(&[0, 0, 1, 1], &[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], 2)?;
/// assert!(out.loss > 0.0);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TripletLossBuilder {
    distance: Arc<dyn AnyDistance>,
    miner: Arc<dyn AnyMiner>,
    reducer: Arc<dyn AnyReducer>,
    registered: RegisteredParts,
    margin: Option<f64>,
    stable_soft_margin: bool,
    name: String,
    exclude_degenerate_anchors: bool,
}

impl Default for TripletLossBuilder {
    /// TF Similarity's defaults: cosine, hard positives, semi-hard negatives, margin 1.0,
    /// Keras's `auto` reduction, named `"TripletLoss"`.
    fn default() -> Self {
        Self {
            distance: Arc::new(DistanceKind::Cosine),
            miner: Arc::new(StrategyMiner::default()),
            reducer: Arc::new(Reduction::Auto),
            registered: RegisteredParts::default(),
            margin: Some(1.0),
            stable_soft_margin: false,
            name: "TripletLoss".into(),
            exclude_degenerate_anchors: false,
        }
    }
}

impl TripletLossBuilder {
    /// The distance between embeddings: a [`DistanceKind`] or your own
    /// [`Distance`](metric_loss_core::Distance) (implemented for `f32` and `f64`).
    pub fn distance(mut self, distance: impl AnyDistance) -> Self {
        self.distance = Arc::new(distance);
        self.registered.distance = None;
        self
    }

    /// A distance shared with other losses.
    pub fn shared_distance(mut self, distance: Arc<dyn AnyDistance>) -> Self {
        self.distance = distance;
        self.registered.distance = None;
        self
    }

    /// A registered distance: the loss's config names it, so a config file written from
    /// the loss reads back to it (see `metric-loss-registry`).
    pub fn registered_distance(mut self, distance: Arc<dyn RegisteredDistance>) -> Self {
        self.distance = distance.clone();
        self.registered.distance = Some(distance);
        self
    }

    /// TF Similarity's positive strategy (replaces a miner set with [`Self::miner`]).
    pub fn positive_mining(self, positive: PositiveStrategy) -> Self {
        let mut s = self.strategies().unwrap_or_default();
        s.positive = positive;
        self.set_strategies(s)
    }

    /// TF Similarity's negative strategy (replaces a miner set with [`Self::miner`]).
    pub fn negative_mining(self, negative: NegativeStrategy) -> Self {
        let mut s = self.strategies().unwrap_or_default();
        s.negative = negative;
        self.set_strategies(s)
    }

    /// The miner's strategies when it is the built-in one.
    fn strategies(&self) -> Option<StrategyMiner> {
        self.miner.as_any().downcast_ref::<StrategyMiner>().copied()
    }

    fn set_strategies(mut self, strategies: StrategyMiner) -> Self {
        self.miner = Arc::new(strategies);
        self.registered.miner = None;
        self
    }

    /// Any [`Miner`](metric_loss_core::Miner): your own, or
    /// [`GivenTriplets`](metric_loss_mining::GivenTriplets) for triplets you formed.
    pub fn miner(mut self, miner: impl AnyMiner) -> Self {
        self.miner = Arc::new(miner);
        self.registered.miner = None;
        self
    }

    /// A registered miner (see [`Self::registered_distance`]).
    pub fn registered_miner(mut self, miner: Arc<dyn RegisteredMiner>) -> Self {
        self.miner = miner.clone();
        self.registered.miner = Some(miner);
        self
    }

    /// Any [`Reducer`](metric_loss_core::Reducer): a Keras [`Reduction`],
    /// [`MeanOverNonZero`](metric_loss_core::MeanOverNonZero),
    /// [`Threshold`](metric_loss_core::Threshold) or your own.
    pub fn reducer(mut self, reducer: impl AnyReducer) -> Self {
        self.reducer = Arc::new(reducer);
        self.registered.reducer = None;
        self
    }

    /// A registered reducer (see [`Self::registered_distance`]).
    pub fn registered_reducer(mut self, reducer: Arc<dyn RegisteredReducer>) -> Self {
        self.reducer = reducer.clone();
        self.registered.reducer = Some(reducer);
        self
    }

    /// The hinge ℓ = max(p − q + margin, 0) with this margin (default 1.0).
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = Some(margin);
        self
    }

    /// The soft margin ℓ = soft-plus(p − q) instead of the hinge.
    pub fn soft_margin(mut self) -> Self {
        self.margin = None;
        self
    }

    /// Compute the soft margin as ln(1 + e^−|x|) + max(x, 0), which never overflows,
    /// instead of TF Similarity's ln(e^−x + 1) + x, which is +∞ below x ≈ −88.7 in f32
    /// (default `false`; no effect on the hinge).
    pub fn stable_soft_margin(mut self, stable: bool) -> Self {
        self.stable_soft_margin = stable;
        self
    }

    /// The loss's name (Keras's `name`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Give anchors with no positive or no negative a loss and gradient of 0 instead of TF
    /// Similarity's ±1e-6 sentinel triplets. They still count in the batch size of a mean.
    pub fn exclude_degenerate_anchors(mut self, exclude: bool) -> Self {
        self.exclude_degenerate_anchors = exclude;
        self
    }

    /// The loss.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for a non-finite margin.
    pub fn build(self) -> Result<TripletLoss, LossError> {
        let margin = match self.margin {
            Some(m) if !m.is_finite() => {
                return Err(LossError::InvalidParameter {
                    name: "margin",
                    value: m,
                    expected: "a finite number (or null for the soft margin)",
                })
            }
            Some(m) => Margin::Hinge(m),
            None if self.stable_soft_margin => Margin::SoftStable,
            None => Margin::Soft,
        };
        Ok(TripletLoss {
            distance: self.distance,
            miner: self.miner,
            reducer: self.reducer,
            registered: self.registered,
            margin,
            name: self.name,
            exclude_degenerate_anchors: self.exclude_degenerate_anchors,
            stable_soft_margin: self.stable_soft_margin,
        })
    }
}
