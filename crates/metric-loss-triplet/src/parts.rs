//! [`MinedParts`]: the distance, miner and reducer a mined loss composes, typed in code and
//! spelled as strings (or registered parts) only in config files.

use std::any::Any;
use std::sync::Arc;

use metric_loss_core::{
    AnyDistance, AnyMiner, AnyReducer, Distance, LossError, MeanOverNonZero, Miner,
    NegativeStrategy, PartConfig, PositiveStrategy, Reducer, Reduction, RegisteredDistance,
    RegisteredMiner, RegisteredReducer, Threshold,
};
use metric_loss_distances::DistanceKind;
use metric_loss_mining::StrategyMiner;

/// One part as a loss holds it: the value both precisions run, and the registered part it
/// came from, if any (so that the loss's config can name it).
#[derive(Debug)]
struct Slot<A: ?Sized, R: ?Sized> {
    value: Arc<A>,
    registered: Option<Arc<R>>,
}

impl<A: ?Sized, R: ?Sized> Clone for Slot<A, R> {
    fn clone(&self) -> Self {
        Self {
            value: Arc::clone(&self.value),
            registered: self.registered.clone(),
        }
    }
}

impl<A: ?Sized, R: ?Sized> Slot<A, R> {
    fn plain(value: Arc<A>) -> Self {
        Self {
            value,
            registered: None,
        }
    }
}

type DistanceSlot = Slot<dyn AnyDistance, dyn RegisteredDistance>;
type MinerSlot = Slot<dyn AnyMiner, dyn RegisteredMiner>;
type ReducerSlot = Slot<dyn AnyReducer, dyn RegisteredReducer>;

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

fn not_built_in(loss: &str, part: &str, name: &str) -> LossError {
    LossError::Unsupported {
        loss: loss.to_owned(),
        message: format!(
            "the {part} `{name}` is not a built-in one and has no config-file spelling here"
        ),
    }
}

fn distance_config(
    slot: &DistanceSlot,
    loss: &str,
) -> Result<PartConfig<dyn RegisteredDistance>, LossError> {
    let kind = slot.value.as_any().downcast_ref::<DistanceKind>();
    match (&slot.registered, kind) {
        (Some(part), _) => Ok(PartConfig::Registered(part.clone())),
        (None, Some(kind)) => Ok(DistanceKind::name(*kind).into()),
        (None, None) => Err(not_built_in(
            loss,
            "distance",
            Distance::<f32>::name(&*slot.value),
        )),
    }
}

fn distance_from_config(
    config: &PartConfig<dyn RegisteredDistance>,
) -> Result<DistanceSlot, LossError> {
    Ok(match config {
        PartConfig::Name(name) => Slot::plain(Arc::new(DistanceKind::from_name(name)?)),
        PartConfig::Registered(part) => Slot {
            value: part.clone(),
            registered: Some(part.clone()),
        },
    })
}

fn reducer_config(
    slot: &ReducerSlot,
    loss: &str,
) -> Result<PartConfig<dyn RegisteredReducer>, LossError> {
    if let Some(part) = &slot.registered {
        return Ok(PartConfig::Registered(part.clone()));
    }
    let any = slot.value.as_any();
    if let Some(reduction) = any.downcast_ref::<Reduction>() {
        Ok(Reduction::name(*reduction).into())
    } else if any.is::<MeanOverNonZero>() {
        Ok(MeanOverNonZero::NAME.into())
    } else {
        Err(not_built_in(
            loss,
            "reducer",
            Reducer::<f32>::name(&*slot.value),
        ))
    }
}

fn reducer_from_config(
    config: &PartConfig<dyn RegisteredReducer>,
) -> Result<ReducerSlot, LossError> {
    Ok(match config {
        PartConfig::Name(name) if name == MeanOverNonZero::NAME => {
            Slot::plain(Arc::new(MeanOverNonZero))
        }
        PartConfig::Name(name) => Slot::plain(Arc::new(name.parse::<Reduction>()?)),
        PartConfig::Registered(part) => Slot {
            value: part.clone(),
            registered: Some(part.clone()),
        },
    })
}

/// The distance and reducer setters and accessors both kinds of parts have.
macro_rules! distance_and_reducer {
    () => {
        /// The distance between embeddings: a [`DistanceKind`] or your own [`Distance`]
        /// (implemented for `f32` and `f64`).
        pub fn distance(self, distance: impl AnyDistance) -> Self {
            self.shared_distance(Arc::new(distance))
        }

        /// A distance shared with other losses.
        pub fn shared_distance(mut self, distance: Arc<dyn AnyDistance>) -> Self {
            self.distance = Slot::plain(distance);
            self
        }

        /// A registered distance: the loss's config names it, so a config file written
        /// from the loss reads back to it (see `metric-loss-registry`).
        pub fn registered_distance(mut self, distance: Arc<dyn RegisteredDistance>) -> Self {
            self.distance = Slot {
                value: distance.clone(),
                registered: Some(distance),
            };
            self
        }

        /// Any [`Reducer`]: a Keras [`Reduction`], [`MeanOverNonZero`], [`Threshold`] or
        /// your own.
        pub fn reducer(mut self, reducer: impl AnyReducer) -> Self {
            self.reducer = Slot::plain(Arc::new(reducer));
            self
        }

        /// A registered reducer (see [`Self::registered_distance`]).
        pub fn registered_reducer(mut self, reducer: Arc<dyn RegisteredReducer>) -> Self {
            self.reducer = Slot {
                value: reducer.clone(),
                registered: Some(reducer),
            };
            self
        }

        /// The distance.
        pub fn distance_part(&self) -> &dyn AnyDistance {
            &*self.distance.value
        }

        /// The distance, if it is one of TF Similarity's.
        pub fn distance_kind(&self) -> Option<DistanceKind> {
            self.distance
                .value
                .as_any()
                .downcast_ref::<DistanceKind>()
                .copied()
        }

        /// The reducer.
        pub fn reducer_part(&self) -> &dyn AnyReducer {
            &*self.reducer.value
        }

        /// The reducer as a Keras reduction, if it is one.
        pub fn keras_reduction(&self) -> Option<Reduction> {
            Reducer::<f32>::as_keras(&*self.reducer.value)
        }
    };
}

/// The three parts of a loss on mined anchors ([`TripletLoss`](crate::TripletLoss),
/// `PNLoss`, or a [`MinedLoss`](crate::MinedLoss) of your own): any [`Distance`], any
/// [`Miner`] and any [`Reducer`], built-in or yours, each shared behind an `Arc`.
///
/// `Default` is TF Similarity's: cosine, hard positives, semi-hard negatives, Keras's
/// `auto` reduction.
///
/// ```
/// use metric_loss_core::{MeanOverNonZero, NegativeStrategy};
/// use metric_loss_distances::DistanceKind;
/// use metric_loss_triplet::MinedParts;
///
/// let parts = MinedParts::default()
///     .distance(DistanceKind::Euclidean)
///     .negative_mining(NegativeStrategy::Hard)
///     .reducer(MeanOverNonZero);
/// assert_eq!(parts.distance_kind(), Some(DistanceKind::Euclidean));
/// assert_eq!(parts.negative_mining_strategy(), Some(NegativeStrategy::Hard));
/// assert_eq!(parts.keras_reduction(), None);
/// ```
///
/// Two sets of parts are equal when each part is: equal built-ins, or one shared user part
/// (the same `Arc`).
#[derive(Debug, Clone)]
pub struct MinedParts {
    distance: DistanceSlot,
    miner: MinerSlot,
    reducer: ReducerSlot,
}

impl Default for MinedParts {
    fn default() -> Self {
        Self {
            distance: Slot::plain(Arc::new(DistanceKind::Cosine)),
            miner: Slot::plain(Arc::new(StrategyMiner::default())),
            reducer: Slot::plain(Arc::new(Reduction::Auto)),
        }
    }
}

impl PartialEq for MinedParts {
    fn eq(&self, other: &Self) -> bool {
        DenseParts::same(
            &self.distance,
            &self.reducer,
            &other.distance,
            &other.reducer,
        ) && same_part(
            self.miner.value.as_any(),
            other.miner.value.as_any(),
            Arc::ptr_eq(&self.miner.value, &other.miner.value),
        )
    }
}

impl MinedParts {
    distance_and_reducer!();

    /// TF Similarity's positive strategy (replaces a miner set with [`Self::miner`]).
    pub fn positive_mining(self, positive: PositiveStrategy) -> Self {
        let mut s = self.strategy_miner().unwrap_or_default();
        s.positive = positive;
        self.miner(s)
    }

    /// TF Similarity's negative strategy (replaces a miner set with [`Self::miner`]).
    pub fn negative_mining(self, negative: NegativeStrategy) -> Self {
        let mut s = self.strategy_miner().unwrap_or_default();
        s.negative = negative;
        self.miner(s)
    }

    /// Any [`Miner`]: your own, or
    /// [`GivenTriplets`](metric_loss_mining::GivenTriplets) for triplets you formed.
    pub fn miner(mut self, miner: impl AnyMiner) -> Self {
        self.miner = Slot::plain(Arc::new(miner));
        self
    }

    /// A registered miner (see [`Self::registered_distance`]).
    pub fn registered_miner(mut self, miner: Arc<dyn RegisteredMiner>) -> Self {
        self.miner = Slot {
            value: miner.clone(),
            registered: Some(miner),
        };
        self
    }

    /// The miner.
    pub fn miner_part(&self) -> &dyn AnyMiner {
        &*self.miner.value
    }

    /// The miner, if it is TF Similarity's strategies.
    pub fn strategy_miner(&self) -> Option<StrategyMiner> {
        self.miner
            .value
            .as_any()
            .downcast_ref::<StrategyMiner>()
            .copied()
    }

    /// The positive mining strategy, if the miner is TF Similarity's.
    pub fn positive_mining_strategy(&self) -> Option<PositiveStrategy> {
        self.strategy_miner().map(|s| s.positive)
    }

    /// The negative mining strategy, if the miner is TF Similarity's.
    pub fn negative_mining_strategy(&self) -> Option<NegativeStrategy> {
        self.strategy_miner().map(|s| s.negative)
    }

    /// The parts as a config file spells them.
    ///
    /// # Errors
    /// [`LossError::Unsupported`] naming `loss` when a part is neither built-in nor
    /// registered: a config could not name it.
    pub fn config(&self, loss: &str) -> Result<MinedPartsConfig, LossError> {
        let distance = distance_config(&self.distance, loss)?;
        let (strategies, miner) = match (&self.miner.registered, self.strategy_miner()) {
            (Some(part), _) => (
                StrategyMiner::default(),
                Some(PartConfig::Registered(part.clone())),
            ),
            (None, Some(strategies)) => (strategies, None),
            (None, None) => {
                return Err(not_built_in(
                    loss,
                    "miner",
                    Miner::<f32>::name(&*self.miner.value),
                ))
            }
        };
        Ok(MinedPartsConfig {
            distance,
            positive_mining_strategy: strategies.positive.name().into(),
            negative_mining_strategy: strategies.negative.name().into(),
            miner,
            reduction: reducer_config(&self.reducer, loss)?,
        })
    }
}

/// [`MinedParts`] as a config file spells them, not yet validated: TF Similarity's keys
/// (`distance`, `positive_mining_strategy`, `negative_mining_strategy`, `reduction`) and
/// an optional registered `miner`. A loss's config holds these keys beside its own.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct MinedPartsConfig {
    /// A distance name or alias (default `"cosine"`), or a registered user distance.
    pub distance: PartConfig<dyn RegisteredDistance>,
    /// `"easy"` or `"hard"` (default).
    pub positive_mining_strategy: String,
    /// `"easy"`, `"hard"` or `"semi-hard"` (default).
    pub negative_mining_strategy: String,
    /// A registered user miner, which replaces the two strategies (default none: not
    /// written to a config, as TF Similarity has no such key).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub miner: Option<PartConfig<dyn RegisteredMiner>>,
    /// Keras's reduction name (default `"auto"`), `"mean_over_non_zero"`, or a registered
    /// user reducer.
    pub reduction: PartConfig<dyn RegisteredReducer>,
}

impl Default for MinedPartsConfig {
    fn default() -> Self {
        Self {
            distance: "cosine".into(),
            positive_mining_strategy: "hard".into(),
            negative_mining_strategy: "semi-hard".into(),
            miner: None,
            reduction: "auto".into(),
        }
    }
}

impl MinedPartsConfig {
    /// Validates the parts in TF Similarity's order (distance, positive strategy, negative
    /// strategy), then the miner and the reduction; `loss` names the loss in errors.
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`], [`LossError::InvalidStrategy`],
    /// [`LossError::UnknownReduction`], or [`LossError::Unsupported`] for a `miner` given
    /// as a string.
    pub fn build(&self, loss: &str) -> Result<MinedParts, LossError> {
        let distance = distance_from_config(&self.distance)?;
        let positive: PositiveStrategy = self.positive_mining_strategy.parse()?;
        let negative: NegativeStrategy = self.negative_mining_strategy.parse()?;
        let miner = match &self.miner {
            None => {
                Slot::plain(Arc::new(StrategyMiner::new(positive, negative)) as Arc<dyn AnyMiner>)
            }
            Some(PartConfig::Registered(part)) => Slot {
                value: part.clone() as Arc<dyn AnyMiner>,
                registered: Some(part.clone()),
            },
            Some(PartConfig::Name(name)) => {
                return Err(LossError::Unsupported {
                    loss: loss.to_owned(),
                    message: format!(
                    "`miner` names a registered miner ({{\"class_name\": ..., \"config\": ...}}), \
                         not a string like `{name}`; TF Similarity's strategies are \
                         `positive_mining_strategy` and `negative_mining_strategy`"
                ),
                })
            }
        };
        Ok(MinedParts {
            distance,
            miner,
            reducer: reducer_from_config(&self.reduction)?,
        })
    }
}

/// The two parts of a dense loss (MultiSimilarity, Circle, SoftNearestNeighbor, or one of
/// your own): any [`Distance`] and any [`Reducer`], built-in or yours. `Default` is cosine
/// with Keras's `auto` reduction.
///
/// ```
/// use metric_loss_core::Reduction;
/// use metric_loss_distances::DistanceKind;
/// use metric_loss_triplet::DenseParts;
///
/// let parts = DenseParts::default().distance(DistanceKind::SquaredEuclidean).reducer(Reduction::Sum);
/// assert_eq!(parts.keras_reduction(), Some(Reduction::Sum));
/// ```
#[derive(Debug, Clone)]
pub struct DenseParts {
    distance: DistanceSlot,
    reducer: ReducerSlot,
}

impl Default for DenseParts {
    fn default() -> Self {
        Self {
            distance: Slot::plain(Arc::new(DistanceKind::Cosine)),
            reducer: Slot::plain(Arc::new(Reduction::Auto)),
        }
    }
}

impl PartialEq for DenseParts {
    fn eq(&self, other: &Self) -> bool {
        Self::same(
            &self.distance,
            &self.reducer,
            &other.distance,
            &other.reducer,
        )
    }
}

impl DenseParts {
    distance_and_reducer!();

    fn same(d1: &DistanceSlot, r1: &ReducerSlot, d2: &DistanceSlot, r2: &ReducerSlot) -> bool {
        same_part(
            d1.value.as_any(),
            d2.value.as_any(),
            Arc::ptr_eq(&d1.value, &d2.value),
        ) && same_part(
            r1.value.as_any(),
            r2.value.as_any(),
            Arc::ptr_eq(&r1.value, &r2.value),
        )
    }

    /// Validates a config's `distance` and `reduction` (in that order).
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`], [`LossError::UnknownReduction`].
    pub fn from_config(
        distance: &PartConfig<dyn RegisteredDistance>,
        reduction: &PartConfig<dyn RegisteredReducer>,
    ) -> Result<Self, LossError> {
        Ok(Self {
            distance: distance_from_config(distance)?,
            reducer: reducer_from_config(reduction)?,
        })
    }

    /// The `distance` and `reduction` a config file spells.
    ///
    /// # Errors
    /// [`LossError::Unsupported`] naming `loss` when a part is neither built-in nor
    /// registered.
    #[allow(clippy::type_complexity)]
    pub fn config(
        &self,
        loss: &str,
    ) -> Result<
        (
            PartConfig<dyn RegisteredDistance>,
            PartConfig<dyn RegisteredReducer>,
        ),
        LossError,
    > {
        Ok((
            distance_config(&self.distance, loss)?,
            reducer_config(&self.reducer, loss)?,
        ))
    }
}

/// `MinedParts` serialise as their [`MinedPartsConfig`]; a part with no config-file
/// spelling is an error, not a panic.
#[cfg(feature = "serde")]
impl serde::Serialize for MinedParts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.config("this loss")
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// `MinedParts` deserialise from a [`MinedPartsConfig`], validated by
/// [`MinedPartsConfig::build`]. A loss of your own takes TF Similarity's keys by
/// flattening them into its config (`#[serde(flatten)] parts: MinedParts`).
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for MinedParts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        MinedPartsConfig::deserialize(deserializer)?
            .build("this loss")
            .map_err(serde::de::Error::custom)
    }
}

/// A config's `distance` and `reduction` keys, as [`DenseParts`] read and write them.
#[cfg(feature = "serde")]
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct DensePartsKeys {
    distance: PartConfig<dyn RegisteredDistance>,
    reduction: PartConfig<dyn RegisteredReducer>,
}

#[cfg(feature = "serde")]
impl Default for DensePartsKeys {
    fn default() -> Self {
        Self {
            distance: "cosine".into(),
            reduction: "auto".into(),
        }
    }
}

/// `DenseParts` serialise as a config's `distance` and `reduction` keys; a part with no
/// config-file spelling is an error, not a panic.
#[cfg(feature = "serde")]
impl serde::Serialize for DenseParts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (distance, reduction) = self
            .config("this loss")
            .map_err(serde::ser::Error::custom)?;
        DensePartsKeys {
            distance,
            reduction,
        }
        .serialize(serializer)
    }
}

/// `DenseParts` deserialise from a config's `distance` and `reduction` keys (defaults
/// `"cosine"` and `"auto"`), validated by [`DenseParts::from_config`]. A row loss of your
/// own takes them by flattening them into its config (`#[serde(flatten)] parts:
/// DenseParts`).
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for DenseParts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys = DensePartsKeys::deserialize(deserializer)?;
        Self::from_config(&keys.distance, &keys.reduction).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_the_built_in_parts() {
        let parts = MinedParts::default()
            .distance(DistanceKind::SquaredEuclidean)
            .positive_mining(PositiveStrategy::Easy)
            .negative_mining(NegativeStrategy::Hard)
            .reducer(MeanOverNonZero);
        let config = parts.config("loss").unwrap();
        assert_eq!(config.negative_mining_strategy, "hard");
        assert_eq!(config.build("loss").unwrap(), parts);
        assert_eq!(
            MinedPartsConfig::default().build("loss").unwrap(),
            MinedParts::default()
        );
    }

    #[test]
    fn a_miner_named_by_a_string_is_an_error_naming_the_keys() {
        let config = MinedPartsConfig {
            miner: Some("hard".into()),
            ..MinedPartsConfig::default()
        };
        let err = config.build("MyLoss").unwrap_err().to_string();
        assert!(err.contains("positive_mining_strategy"), "{err}");
    }
}
