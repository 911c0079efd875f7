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
    distance: Arc<dyn AnyDistance>,
    miner: Arc<dyn AnyMiner>,
    reducer: Arc<dyn AnyReducer>,
    /// The user parts given as registered parts, kept to write a config back.
    registered: RegisteredParts,
}

#[derive(Debug, Clone, Default)]
struct RegisteredParts {
    distance: Option<Arc<dyn RegisteredDistance>>,
    miner: Option<Arc<dyn RegisteredMiner>>,
    reducer: Option<Arc<dyn RegisteredReducer>>,
}

impl Default for MinedParts {
    fn default() -> Self {
        Self {
            distance: Arc::new(DistanceKind::Cosine),
            miner: Arc::new(StrategyMiner::default()),
            reducer: Arc::new(Reduction::Auto),
            registered: RegisteredParts::default(),
        }
    }
}

impl PartialEq for MinedParts {
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
        )
    }
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

impl MinedParts {
    /// The distance between embeddings: a [`DistanceKind`] or your own [`Distance`]
    /// (implemented for `f32` and `f64`).
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

    /// Any [`Reducer`]: a Keras [`Reduction`], [`MeanOverNonZero`], [`Threshold`] or your
    /// own.
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

    /// The distance.
    pub fn distance_part(&self) -> &dyn AnyDistance {
        &*self.distance
    }

    /// The distance, if it is one of TF Similarity's.
    pub fn distance_kind(&self) -> Option<DistanceKind> {
        self.distance
            .as_any()
            .downcast_ref::<DistanceKind>()
            .copied()
    }

    /// The miner.
    pub fn miner_part(&self) -> &dyn AnyMiner {
        &*self.miner
    }

    /// The miner, if it is TF Similarity's strategies.
    pub fn strategy_miner(&self) -> Option<StrategyMiner> {
        self.miner.as_any().downcast_ref::<StrategyMiner>().copied()
    }

    /// The positive mining strategy, if the miner is TF Similarity's.
    pub fn positive_mining_strategy(&self) -> Option<PositiveStrategy> {
        self.strategy_miner().map(|s| s.positive)
    }

    /// The negative mining strategy, if the miner is TF Similarity's.
    pub fn negative_mining_strategy(&self) -> Option<NegativeStrategy> {
        self.strategy_miner().map(|s| s.negative)
    }

    /// The reducer.
    pub fn reducer_part(&self) -> &dyn AnyReducer {
        &*self.reducer
    }

    /// The reducer as a Keras reduction, if it is one.
    pub fn keras_reduction(&self) -> Option<Reduction> {
        Reducer::<f32>::as_keras(&*self.reducer)
    }

    /// The parts as a config file spells them.
    ///
    /// # Errors
    /// [`LossError::Unsupported`] naming `loss` when a part is neither built-in nor
    /// registered: a config could not name it.
    pub fn config(&self, loss: &str) -> Result<MinedPartsConfig, LossError> {
        let not_built_in = |part: &str, name: &str| LossError::Unsupported {
            loss: loss.to_owned(),
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
        let (strategies, miner) = match (&self.registered.miner, self.strategy_miner()) {
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
        Ok(MinedPartsConfig {
            distance,
            positive_mining_strategy: strategies.positive.name().into(),
            negative_mining_strategy: strategies.negative.name().into(),
            miner,
            reduction,
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
        let mut parts = MinedParts::default();
        parts = match &self.distance {
            PartConfig::Name(name) => parts.distance(DistanceKind::from_name(name)?),
            PartConfig::Registered(part) => parts.registered_distance(part.clone()),
        };
        let positive: PositiveStrategy = self.positive_mining_strategy.parse()?;
        let negative: NegativeStrategy = self.negative_mining_strategy.parse()?;
        parts = match &self.miner {
            None => parts.miner(StrategyMiner::new(positive, negative)),
            Some(PartConfig::Registered(part)) => parts.registered_miner(part.clone()),
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
        Ok(match &self.reduction {
            PartConfig::Name(name) if name == MeanOverNonZero::NAME => {
                parts.reducer(MeanOverNonZero)
            }
            PartConfig::Name(name) => parts.reducer(name.parse::<Reduction>()?),
            PartConfig::Registered(part) => parts.registered_reducer(part.clone()),
        })
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
