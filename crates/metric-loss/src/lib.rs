//! TensorFlow Similarity's `TripletLoss` and the `MetricLoss` framework around it, in Rust:
//! the same numbers as the real package, an analytic gradient, `f32` and `f64`, query/key
//! batches for memory banks, and a pluggable trait for your own losses, loadable from JSON,
//! TOML or YAML config files.
//!
//! This crate gathers the workspace's crates behind features, so that one dependency
//! (`cargo add metric-loss`) and one import (`use metric_loss::prelude::*`) are enough:
//!
//! ```
//! use metric_loss::prelude::*;
//!
//! // cosine distance, hard positives, semi-hard negatives, margin 1.0 (TF Similarity's defaults)
//! let loss = TripletLoss::default();
//! let embeddings = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8]; // 4 rows x 2 dims, unit rows
//! let out = loss.evaluate(&[0, 0, 1, 1], &embeddings, 2)?;
//! assert!(out.loss.is_finite());
//! assert_eq!(out.per_example.len(), 4);
//! assert_eq!(out.grad_queries.len(), 8); // d loss / d embeddings, row-major like the input
//!
//! // Any registered loss from a Keras-shaped config, here TOML text (`registry::load` reads a file).
//! let config = "class_name = \"MultiSimilarityLoss\"\n[config]\ndistance = \"cosine\"\n";
//! let loss = metric_loss::registry::from_str(config, Format::Toml)?;
//! assert!(loss.evaluate(&[0, 0, 1, 1], &embeddings, 2)?.loss.is_finite());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is where
//! | path | crate | what it is |
//! | --- | --- | --- |
//! | the crate root, [`prelude`] | `metric-loss-core` | the [`MetricLoss`] trait, [`LossInput`], [`LossOutput`], [`Workspace`], [`LossError`], and the parts a loss composes: the [`Distance`], [`Miner`] and [`Reducer`] traits ([`Reduction`], [`MeanOverNonZero`], [`Threshold`]) |
//! | `distances` | `metric-loss-distances` | TF Similarity's six distances (`DistanceKind`), L2 normalisation, the row splitting of the `threads` feature |
//! | `mining` | `metric-loss-mining` | TF Similarity's mining (`StrategyMiner`: easy, hard, semi-hard) and `GivenTriplets` |
//! | `triplet` | `metric-loss-triplet` | `TripletLoss`, its typed `TripletLossBuilder` and its `TripletLossConfig`; the drivers of the losses on mined anchors (`MinedLoss`, `MinedParts`, `mined_metric_loss!`) and over whole rows (`RowLoss`, `DenseParts`, `row_metric_loss!`) |
//! | `losses` | `metric-loss-losses` | `PNLoss`, `MultiSimilarityLoss`, `CircleLoss`, `SoftNearestNeighborLoss`, `XBM` |
//! | `pml` | `metric-loss-pml` | pytorch-metric-learning's `ContrastiveLoss`, `NTXentLoss`, `SupConLoss`, the losses owning a parameter matrix (`ArcFaceLoss`, `CosFaceLoss`, `SubCenterArcFaceLoss`, `ProxyAnchorLoss`), its distances and reducers, and the driver of pair losses (`PairFormula`, `PairLoss`, `pair_metric_loss!`) |
//! | `views` | `metric-loss-views` | TF Similarity's two-view losses: `MultiNegativesRankLoss`, `SimCLRLoss`, `SimSiamLoss`, `Barlow`, `VicReg` (on `LossInput::views`) |
//! | `registry` | `metric-loss-registry` | any loss, yours included, from a config file (`load`, `from_str`) and back (`get_config`) |
//! | `candle` | `metric-loss-candle` | any loss as a candle operation with its backward pass |
//! | `burn` | `metric-loss-burn` | any loss as a burn autodiff operation with its backward pass |
//!
//! The [`prelude`] holds what a training loop names: the trait and its inputs and outputs,
//! the part traits and built-in parts, the loss types, `DistanceKind` and `l2_normalize`, the registry's `Format`,
//! `RegisteredLoss` and `ConfigExt`, `CandleLoss` with the `candle` feature and `BurnLoss`
//! with the `burn` feature.
//!
//! # Feature flags
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `distances` | yes (through `triplet`) | `metric_loss::distances` |
//! | `mining` | yes (through `triplet`) | `metric_loss::mining` |
//! | `triplet` | yes | `metric_loss::triplet` (`TripletLoss`); turns on `distances` and `mining` |
//! | `losses` | yes | `metric_loss::losses`; turns on `triplet` |
//! | `pml` | yes | `metric_loss::pml`; turns on `triplet` and `serde` |
//! | `views` | yes | `metric_loss::views`; turns on `serde` |
//! | `registry` | yes | `metric_loss::registry`, JSON configs; turns on `losses`, `pml`, `views` and `serde` |
//! | `serde` | yes | `Serialize` / `Deserialize` for the loss configs and the losses |
//! | `toml` | yes | TOML configs in the registry |
//! | `yaml` | yes | YAML configs in the registry |
//! | `threads` | no | distance matrices, mining and gradient products split by rows over threads; results identical bit for bit (`METRIC_LOSS_THREADS` caps the thread count) |
//! | `candle` | no | `metric_loss::candle`: any loss as a [candle](https://docs.rs/candle-core) operation |
//! | `burn` | no | `metric_loss::burn`: any loss as a [burn](https://docs.rs/burn) autodiff operation (Rust 1.95 or newer, burn's minimum) |
//!
//! With `default-features = false` only the core is left: the trait and the types to
//! write a loss of your own. The example above needs the default features.
//!
//! # Supported Rust versions
//! The minimum supported Rust version is 1.89 (nalgebra 0.35 requires it). Raising it is a
//! minor-version change.

#[doc(inline)]
pub use metric_loss_core::*;

#[cfg(feature = "distances")]
#[doc(inline)]
pub use metric_loss_distances as distances;

#[cfg(feature = "mining")]
#[doc(inline)]
pub use metric_loss_mining as mining;

#[cfg(feature = "triplet")]
#[doc(inline)]
pub use metric_loss_triplet as triplet;

#[cfg(feature = "triplet")]
pub use metric_loss_triplet::{TripletLoss, TripletLossConfig};

#[cfg(feature = "losses")]
#[doc(inline)]
pub use metric_loss_losses as losses;

#[cfg(feature = "pml")]
#[doc(inline)]
pub use metric_loss_pml as pml;

#[cfg(feature = "views")]
#[doc(inline)]
pub use metric_loss_views as views;

#[cfg(feature = "registry")]
#[doc(inline)]
pub use metric_loss_registry as registry;

#[cfg(feature = "candle")]
#[doc(inline)]
pub use metric_loss_candle as candle;

#[cfg(feature = "burn")]
#[doc(inline)]
pub use metric_loss_burn as burn;

/// What a training loop names, for `use metric_loss::prelude::*`: the [`MetricLoss`]
/// trait with [`MetricLossExt::evaluate`], inputs and outputs, and each enabled loss.
pub mod prelude {
    pub use metric_loss_core::{
        Batch, Distance, Embeddings, LossError, LossInput, LossOutput, MeanOverNonZero, MetricLoss,
        MetricLossExt, Miner, NegativeStrategy, ParameterShape, PositiveStrategy, Reducer,
        Reduction, SampleWeight, Threshold, Workspace,
    };

    #[cfg(feature = "distances")]
    pub use metric_loss_distances::{l2_normalize, l2_normalize_vjp, DistanceKind};

    #[cfg(feature = "mining")]
    pub use metric_loss_mining::{GivenTriplets, StrategyMiner};

    #[cfg(feature = "triplet")]
    pub use metric_loss_triplet::{
        mined_metric_loss, row_metric_loss, AnchorScore, AnchorView, DenseParts, Margin, MinedLoss,
        MinedParts, RowLoss, RowView, TripletLoss, TripletLossBuilder, TripletLossConfig,
    };

    #[cfg(feature = "losses")]
    pub use metric_loss_losses::{
        CircleLoss, MultiSimilarityLoss, PNLoss, SoftNearestNeighborLoss, XBM,
    };

    #[cfg(feature = "pml")]
    pub use metric_loss_pml::{
        pair_metric_loss, ArcFaceLoss, ContrastiveLoss, CosFaceLoss, Elements, NTXentLoss,
        PairFormula, PairLoss, ProxyAnchorLoss, Scores, SubCenterArcFaceLoss, SupConLoss,
    };

    #[cfg(feature = "views")]
    pub use metric_loss_views::{Barlow, MultiNegativesRankLoss, SimCLRLoss, SimSiamLoss, VicReg};

    #[cfg(feature = "registry")]
    pub use metric_loss_registry::{ConfigExt, Format, RegisteredLoss};

    #[cfg(feature = "candle")]
    pub use metric_loss_candle::CandleLoss;

    #[cfg(feature = "burn")]
    pub use metric_loss_burn::BurnLoss;
}

// The README's examples run as doctests, so the page crates.io shows stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The other crates' READMEs lie outside this package, so they are doctested only in the
// repository, where `.ci/run` sets `--cfg metric_loss_readmes` (a packaged copy of this
// crate would not find the files). The candle README is left to candle's own doctest,
// which it copies, so that this crate needs no candle dev-dependency; the burn README too.
#[cfg(all(doctest, metric_loss_readmes))]
mod workspace_readmes {
    #[doc = include_str!("../../metric-loss-core/README.md")]
    struct Core;
    #[doc = include_str!("../../metric-loss-distances/README.md")]
    struct Distances;
    #[doc = include_str!("../../metric-loss-mining/README.md")]
    struct Mining;
    #[doc = include_str!("../../metric-loss-triplet/README.md")]
    struct Triplet;
    #[doc = include_str!("../../metric-loss-losses/README.md")]
    struct Losses;
    #[doc = include_str!("../../metric-loss-pml/README.md")]
    struct Pml;
    #[doc = include_str!("../../metric-loss-views/README.md")]
    struct Views;
    #[doc = include_str!("../../metric-loss-registry/README.md")]
    struct Registry;
}
