//! [`TripletLossBuilder`]: a `TripletLoss` from typed parts.

use std::sync::Arc;

use metric_loss_core::{
    AnyDistance, AnyMiner, AnyReducer, LossError, NegativeStrategy, PositiveStrategy,
    RegisteredDistance, RegisteredMiner, RegisteredReducer,
};

use crate::{Margin, MinedParts, TripletLoss};

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
    parts: MinedParts,
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
            parts: MinedParts::default(),
            margin: Some(1.0),
            stable_soft_margin: false,
            name: "TripletLoss".into(),
            exclude_degenerate_anchors: false,
        }
    }
}

/// Each part setter replaces that part of the [`MinedParts`].
macro_rules! part_setters {
    ($($(#[$doc:meta])* $setter:ident($arg:ty);)*) => {
        $(
            $(#[$doc])*
            pub fn $setter(mut self, part: $arg) -> Self {
                self.parts = self.parts.$setter(part);
                self
            }
        )*
    };
}

impl TripletLossBuilder {
    /// All three parts at once (for instance parts shared with another loss).
    pub fn parts(mut self, parts: MinedParts) -> Self {
        self.parts = parts;
        self
    }

    part_setters! {
        /// The distance between embeddings: a [`DistanceKind`](metric_loss_distances::DistanceKind)
        /// or your own [`Distance`](metric_loss_core::Distance) (implemented for `f32` and `f64`).
        distance(impl AnyDistance);
        /// A distance shared with other losses.
        shared_distance(Arc<dyn AnyDistance>);
        /// A registered distance: the loss's config names it, so a config file written from
        /// the loss reads back to it (see `metric-loss-registry`).
        registered_distance(Arc<dyn RegisteredDistance>);
        /// TF Similarity's positive strategy (replaces a miner set with [`Self::miner`]).
        positive_mining(PositiveStrategy);
        /// TF Similarity's negative strategy (replaces a miner set with [`Self::miner`]).
        negative_mining(NegativeStrategy);
        /// Any [`Miner`](metric_loss_core::Miner): your own, or
        /// [`GivenTriplets`](metric_loss_mining::GivenTriplets) for triplets you formed.
        miner(impl AnyMiner);
        /// A registered miner (see [`Self::registered_distance`]).
        registered_miner(Arc<dyn RegisteredMiner>);
        /// Any [`Reducer`](metric_loss_core::Reducer): a Keras
        /// [`Reduction`](metric_loss_core::Reduction),
        /// [`MeanOverNonZero`](metric_loss_core::MeanOverNonZero),
        /// [`Threshold`](metric_loss_core::Threshold) or your own.
        reducer(impl AnyReducer);
        /// A registered reducer (see [`Self::registered_distance`]).
        registered_reducer(Arc<dyn RegisteredReducer>);
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
            parts: self.parts,
            margin,
            name: self.name,
            exclude_degenerate_anchors: self.exclude_degenerate_anchors,
            stable_soft_margin: self.stable_soft_margin,
        })
    }
}
