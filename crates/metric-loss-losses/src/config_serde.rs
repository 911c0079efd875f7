//! `Serialize` / `Deserialize` for the built losses, through their configs (as
//! `metric_loss_triplet::TripletLoss` does): a loss serialises as its `config()` and
//! deserialises from its config struct, validated by `build()`, so that invalid arguments
//! are a deserialisation error (carrying the [`metric_loss_core::LossError`]'s message).

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    CircleLoss, CircleLossConfig, MultiSimilarityLoss, MultiSimilarityLossConfig, PNLoss,
    PNLossConfig, SoftNearestNeighborLoss, SoftNearestNeighborLossConfig, WrappedLossConfig,
    XBMConfig, XBM,
};

macro_rules! serde_via_config {
    ($loss:ident, $config:ident) => {
        #[doc = concat!("A `", stringify!($loss), "` serialises as its [`", stringify!($config), "`] (`get_config`).")]
        impl Serialize for $loss {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.config()
                    .map_err(S::Error::custom)?
                    .serialize(serializer)
            }
        }

        #[doc = concat!("A `", stringify!($loss), "` deserialises from a [`", stringify!($config), "`], validated by [`", stringify!($config), "::build`]: invalid arguments are a deserialisation error.")]
        impl<'de> Deserialize<'de> for $loss {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $config::deserialize(deserializer)?
                    .build()
                    .map_err(D::Error::custom)
            }
        }
    };
}

serde_via_config!(PNLoss, PNLossConfig);
serde_via_config!(MultiSimilarityLoss, MultiSimilarityLossConfig);
serde_via_config!(CircleLoss, CircleLossConfig);
serde_via_config!(SoftNearestNeighborLoss, SoftNearestNeighborLossConfig);

impl WrappedLossConfig {
    /// The config as the built loss gives it back (canonical distance names, the triplet
    /// loss's soft margin as `soft_margin = true, margin = 1.0`, ...), or `None` if it does
    /// not build.
    fn canonical(&self) -> Option<Self> {
        Some(match self {
            WrappedLossConfig::TripletLoss(c) => {
                WrappedLossConfig::TripletLoss(c.build().ok()?.config().ok()?)
            }
            WrappedLossConfig::PNLoss(c) => {
                WrappedLossConfig::PNLoss(c.build().ok()?.config().ok()?)
            }
            WrappedLossConfig::MultiSimilarityLoss(c) => {
                WrappedLossConfig::MultiSimilarityLoss(c.build().ok()?.config().ok()?)
            }
            WrappedLossConfig::CircleLoss(c) => {
                WrappedLossConfig::CircleLoss(c.build().ok()?.config().ok()?)
            }
            WrappedLossConfig::SoftNearestNeighborLoss(c) => {
                WrappedLossConfig::SoftNearestNeighborLoss(c.build().ok()?.config().ok()?)
            }
        })
    }
}

/// An `XBM` serialises as its [`XBMConfig`], with the wrapped loss's config in its
/// canonical form (as that loss's own `config()` writes it); the memory and the step
/// counter are state, not config.
///
/// An `XBM` made with [`XBM::new`] around an arbitrary loss has no config: serialising it
/// is an error (`S::Error::custom`), not a panic.
impl Serialize for XBM {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut config = self.config().ok_or_else(|| {
            S::Error::custom(
                "this XBM was made with XBM::new around a loss given as a value, so it has no config; build it from an XBMConfig to write its config",
            )
        })?;
        if let Some(canonical) = config.loss.canonical() {
            config.loss = canonical;
        }
        config.serialize(serializer)
    }
}

/// An `XBM` deserialises from an [`XBMConfig`], validated by [`XBMConfig::build`]; the new
/// loss starts with an empty memory.
impl<'de> Deserialize<'de> for XBM {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        XBMConfig::deserialize(deserializer)?
            .build()
            .map_err(D::Error::custom)
    }
}
