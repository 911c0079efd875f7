//! `TripletLossConfig`: the unchecked arguments, as a config file or TF Similarity writes
//! them; `build` validates them once into a [`TripletLoss`].

use metric_loss_core::{
    config_setters, LossError, PartConfig, RegisteredDistance, RegisteredMiner, RegisteredReducer,
};

use crate::{MinedPartsConfig, TripletLoss};

/// TripletLoss's arguments with TF Similarity's names and defaults, not yet validated:
/// the config-file edge, where parts are strings. In code, prefer the typed
/// [`TripletLoss::builder`].
///
/// `margin: None` (a config's `margin: null`, TF Similarity 0.17's spelling) means soft
/// margin, like `soft_margin: true`.
///
/// ```
/// use metric_loss_distances::DistanceKind;
/// use metric_loss_triplet::TripletLossConfig;
///
/// let loss = TripletLossConfig::default()
///     .distance("l2")
///     .negative_mining_strategy("hard")
///     .margin(0.2)
///     .build()
///     .unwrap();
/// assert_eq!(loss.parts().distance_kind(), Some(DistanceKind::Euclidean));
/// assert!(TripletLossConfig::default().soft_margin(true).margin(0.2).build().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct TripletLossConfig {
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
    /// Soft-plus instead of the hinge (default `false`).
    pub soft_margin: bool,
    /// The hinge margin (default `Some(1.0)`); `None` means soft margin.
    pub margin: Option<f64>,
    /// The loss's name (default `"TripletLoss"`).
    pub name: String,
    /// Keras's reduction name (default `"auto"`), `"mean_over_non_zero"`, or a registered
    /// user reducer.
    pub reduction: PartConfig<dyn RegisteredReducer>,
    /// Give anchors with no positive or no negative a loss and gradient of 0 instead of
    /// TF Similarity's ±1e-6 sentinel triplets (default `false`). They still count in the
    /// batch size of the mean.
    pub exclude_degenerate_anchors: bool,
    /// Compute the soft margin as ln(1 + e^−|x|) + max(x, 0), which never overflows,
    /// instead of TF Similarity's ln(e^−x + 1) + x, which is +∞ below x ≈ −88.7 in f32
    /// (default `false`).
    pub stable_soft_margin: bool,
}

impl Default for TripletLossConfig {
    fn default() -> Self {
        Self {
            distance: "cosine".into(),
            positive_mining_strategy: "hard".into(),
            negative_mining_strategy: "semi-hard".into(),
            miner: None,
            soft_margin: false,
            margin: Some(1.0),
            name: "TripletLoss".into(),
            reduction: "auto".into(),
            exclude_degenerate_anchors: false,
            stable_soft_margin: false,
        }
    }
}

impl TripletLossConfig {
    config_setters! {
        /// Sets `distance` (a name, or a registered part).
        distance: impl Into<PartConfig<dyn RegisteredDistance>>,
        /// Sets `positive_mining_strategy`.
        positive_mining_strategy: impl Into<String>,
        /// Sets `negative_mining_strategy`.
        negative_mining_strategy: impl Into<String>,
        /// Sets `soft_margin`.
        soft_margin: bool,
        /// Sets the hinge `margin`.
        margin: f64,
        /// Sets `name`.
        name: impl Into<String>,
        /// Sets `reduction` (a Keras reduction, or a registered user reducer's `Arc`).
        reduction: impl Into<PartConfig<dyn RegisteredReducer>>,
        /// Sets `exclude_degenerate_anchors`.
        exclude_degenerate_anchors: bool,
        /// Sets `stable_soft_margin`.
        stable_soft_margin: bool,
    }

    /// Sets `miner` to a registered user miner.
    pub fn registered_miner(mut self, miner: std::sync::Arc<dyn RegisteredMiner>) -> Self {
        self.miner = Some(PartConfig::Registered(miner));
        self
    }

    /// Validates the arguments, in TF Similarity's order (distance, positive strategy,
    /// negative strategy), then the margin.
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`], [`LossError::InvalidStrategy`],
    /// [`LossError::UnknownReduction`], [`LossError::MarginWithSoftMargin`] (soft margin
    /// with a margin other than 1.0), [`LossError::InvalidParameter`] (non-finite margin).
    pub fn build(&self) -> Result<TripletLoss, LossError> {
        let parts = MinedPartsConfig {
            distance: self.distance.clone(),
            positive_mining_strategy: self.positive_mining_strategy.clone(),
            negative_mining_strategy: self.negative_mining_strategy.clone(),
            miner: self.miner.clone(),
            reduction: self.reduction.clone(),
        }
        .build(&self.name)?;
        let builder = TripletLoss::builder().parts(parts);
        if let (true, Some(m)) = (self.soft_margin, self.margin) {
            if m != 1.0 {
                return Err(LossError::MarginWithSoftMargin { margin: m });
            }
        }
        let builder = builder
            .name(self.name.clone())
            .exclude_degenerate_anchors(self.exclude_degenerate_anchors)
            .stable_soft_margin(self.stable_soft_margin);
        match (self.soft_margin, self.margin) {
            (false, Some(m)) => builder.margin(m),
            (true, Some(_)) | (_, None) => builder.soft_margin(),
        }
        .build()
    }
}

impl TryFrom<TripletLossConfig> for TripletLoss {
    type Error = LossError;

    /// [`TripletLossConfig::build`].
    fn try_from(config: TripletLossConfig) -> Result<Self, LossError> {
        config.build()
    }
}

impl TryFrom<&TripletLoss> for TripletLossConfig {
    type Error = LossError;

    /// [`TripletLoss::config`].
    fn try_from(loss: &TripletLoss) -> Result<Self, LossError> {
        loss.config()
    }
}

/// A `TripletLoss` serialises as its [`TripletLossConfig`] (`get_config`).
#[cfg(feature = "serde")]
impl serde::Serialize for TripletLoss {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.config()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

/// A `TripletLoss` deserialises from a [`TripletLossConfig`], validated by
/// [`TripletLossConfig::build`]: invalid arguments are a deserialisation error.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for TripletLoss {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        TripletLossConfig::deserialize(deserializer)?
            .build()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metric_loss_core::Reduction;

    #[test]
    fn get_config_round_trips() {
        let configs = [
            TripletLossConfig::default(),
            TripletLossConfig::default().soft_margin(true),
            TripletLossConfig {
                margin: None,
                ..TripletLossConfig::default()
            },
            TripletLossConfig::default()
                .distance("SQL2")
                .positive_mining_strategy("easy")
                .negative_mining_strategy("hard")
                .margin(-0.5)
                .name("mine")
                .reduction(Reduction::Sum)
                .exclude_degenerate_anchors(true),
            TripletLossConfig::default()
                .soft_margin(true)
                .stable_soft_margin(true),
        ];
        for config in configs {
            let loss = config.build().unwrap();
            assert_eq!(loss.config().unwrap().build().unwrap(), loss, "{config:?}");
        }
    }
}
