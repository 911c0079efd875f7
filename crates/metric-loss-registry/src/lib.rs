//! Read any registered metric loss — TF Similarity's [`TripletLoss`], `PNLoss`,
//! `MultiSimilarityLoss`, `CircleLoss`, `SoftNearestNeighborLoss`, `XBM`, or your own — from
//! a JSON, TOML or YAML config file, and write its config back.
//!
//! A config has Keras's shape: the class name and the constructor arguments.
//!
//! ```toml
//! class_name = "TripletLoss"
//!
//! [config]
//! distance = "cosine"                     # a name, an alias ("l2") or a class name
//! positive_mining_strategy = "hard"       # "easy" | "hard"
//! negative_mining_strategy = "semi-hard"  # "easy" | "hard" | "semi-hard"
//! margin = 1.0
//! ```
//!
//! ```
//! use metric_loss_core::MetricLossExt;
//! use metric_loss_registry::{from_str, Format};
//!
//! let loss = from_str(r#"{"class_name": "TripletLoss", "config": {"margin": 0.5}}"#, Format::Json)?;
//! let out = loss.evaluate(&[0, 0, 1, 1], &[1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], 2)?;
//! assert!(out.loss.is_finite());
//! // get_config gives the Keras-shaped value back, every key filled in.
//! let config = loss.get_config()?;
//! assert_eq!(config["config"]["negative_mining_strategy"], "semi-hard");
//! println!("{}", loss.to_config_string(Format::Yaml)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Entry points: [`load`] (a file, format from its extension), [`from_str`] (text and a
//! [`Format`]), [`from_value`] (an already-parsed `serde_json::Value`), [`read_config`]
//! (the value of a file, unbuilt). Back: `get_config`, `to_config_string` and `save` on
//! `dyn RegisteredLoss` (and the same through [`ConfigExt`] on a concrete loss). Names: [`registered_names`], [`catalog`] (losses,
//! distances with their aliases, strategies, reductions), [`duplicate_names`].
//!
//! # Registered losses
//! | class name | loss | config (its keys and defaults) |
//! | --- | --- | --- |
//! | `TripletLoss` | [`TripletLoss`] | [`metric_loss_triplet::TripletLossConfig`] |
//! | `PNLoss` | [`PNLoss`] | [`metric_loss_losses::PNLossConfig`] |
//! | `MultiSimilarityLoss` | [`MultiSimilarityLoss`] | [`metric_loss_losses::MultiSimilarityLossConfig`] |
//! | `CircleLoss` | [`CircleLoss`] | [`metric_loss_losses::CircleLossConfig`] |
//! | `SoftNearestNeighborLoss` | [`SoftNearestNeighborLoss`] | [`metric_loss_losses::SoftNearestNeighborLossConfig`] |
//! | `XBM` | [`XBM`] | [`metric_loss_losses::XBMConfig`] |
//! | `ContrastiveLoss` | [`ContrastiveLoss`] | [`metric_loss_pml::ContrastiveLossConfig`] (pytorch-metric-learning's keywords) |
//! | `NTXentLoss` | [`NTXentLoss`] | [`metric_loss_pml::NTXentLossConfig`] |
//! | `SupConLoss` | [`SupConLoss`] | [`metric_loss_pml::SupConLossConfig`] |
//! | `ArcFaceLoss` | [`ArcFaceLoss`] | [`metric_loss_pml::ArcFaceLossConfig`] (owns its weights `W`; `seed`) |
//! | `CosFaceLoss` | [`CosFaceLoss`] | [`metric_loss_pml::CosFaceLossConfig`] (owns `W`) |
//! | `SubCenterArcFaceLoss` | [`SubCenterArcFaceLoss`] | [`metric_loss_pml::SubCenterArcFaceLossConfig`] (owns `W`) |
//! | `ProxyAnchorLoss` | [`ProxyAnchorLoss`] | [`metric_loss_pml::ProxyAnchorLossConfig`] (owns its `proxies`) |
//! | `MultiNegativesRankLoss` | [`MultiNegativesRankLoss`] | [`metric_loss_views::MultiNegativesRankLossConfig`] (two views: `LossInput::views`) |
//! | `SimCLRLoss` | [`SimCLRLoss`] | [`metric_loss_views::SimCLRLossConfig`] |
//! | `SimSiamLoss` | [`SimSiamLoss`] | [`metric_loss_views::SimSiamLossConfig`] |
//! | `Barlow` | [`Barlow`] | [`metric_loss_views::BarlowConfig`] |
//! | `VicReg` | [`VicReg`] | [`metric_loss_views::VicRegConfig`] |
//!
//! Each is read through its config's `build()`, so an invalid value is a
//! [`RegistryError::InvalidValue`] carrying the loss's [`LossError`], and `get_config`
//! writes the loss's `config()` back (distance names resolved: `"l2"` is written
//! `"euclidean"`). `PNLoss`'s soft margin (`margin: null` in TF Similarity) is written by
//! leaving `margin` out, which reads back as the soft margin in every format.
//!
//! `XBM`'s `loss` is the wrapped loss, either flat (`{"class_name": "TripletLoss",
//! "margin": 0.5}`, what `get_config` writes, canonical) or as Keras serialises it
//! (`{"class_name": "Similarity>TripletLoss", "config": {"margin": 0.5}}`); `memory_size`
//! and `loss` are required, and TF's `name: null` reads as the default name. The memory is
//! state, not config: a loaded `XBM` starts empty. An `XBM` made with `XBM::new` around a
//! loss value has no config; its `get_config` is a [`RegistryError::Write`].
//!
//! # Config keys
//! Inside `config`, the keys are TF Similarity's constructor arguments. For `TripletLoss`:
//! `distance`, `positive_mining_strategy`, `negative_mining_strategy`, `soft_margin`,
//! `margin`, `name`, `reduction` with Keras's values `auto` / `sum_over_batch_size` / `sum`
//! / `none`, plus this project's `exclude_degenerate_anchors` and `stable_soft_margin`; for
//! the other losses, see their config structs above. Missing keys take the defaults
//! (except `XBM`'s required `memory_size` and `loss`); unknown keys are an error naming the
//! key.
//!
//! Configs written by TF Similarity are read as they are: `margin: null` is the soft
//! margin; `distance` may be a Keras object (`{"class_name": "CosineDistance", "config":
//! {...}}`, the object becomes its class name); the class name may be the registered
//! `"Similarity>TripletLoss"`; TF 2.13's extra top-level `module` and `registered_name`
//! keys are ignored.
//!
//! # Errors
//! Bad input is a [`RegistryError`], never a panic: unknown class name (listing the
//! registered ones), unknown key (named), missing key, wrong value type, invalid value
//! (wrapping the loss's [`LossError`]), non-finite number, syntax error (with line and
//! column), empty or missing file (naming it), file larger than [`MAX_CONFIG_BYTES`].
//!
//! # Registering your own loss
//! Implement [`MetricLoss`] (see its docs), derive `Serialize` and `Deserialize` for the
//! config, and register the type with typetag under its class name. It is then read and
//! written like the built-in losses, through the same calls:
//!
//! ```
//! use metric_loss_core::{LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, Workspace};
//! use metric_loss_registry::{from_str, Format, RegisteredLoss};
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Zero { name: String }
//!
//! impl Default for Zero {
//!     fn default() -> Self { Zero { name: "zero".into() } }
//! }
//!
//! impl MetricLoss for Zero {
//!     fn name(&self) -> &str { &self.name }
//!     fn compute_f32(&self, i: &LossInput<'_, f32>, _: &mut Workspace, o: &mut LossOutput<f32>)
//!         -> Result<(), LossError> {
//!         let x = i.queries().embeddings();
//!         o.reset(x.rows(), 0, x.cols(), i.wants_gradient());
//!         Ok(())
//!     }
//!     fn compute_f64(&self, i: &LossInput<'_, f64>, _: &mut Workspace, o: &mut LossOutput<f64>)
//!         -> Result<(), LossError> {
//!         let x = i.queries().embeddings();
//!         o.reset(x.rows(), 0, x.cols(), i.wants_gradient());
//!         Ok(())
//!     }
//! }
//!
//! #[typetag::serde(name = "Zero")]
//! impl RegisteredLoss for Zero {}
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let loss = from_str("class_name: Zero\nconfig: {name: nothing}\n", Format::Yaml)?;
//!     assert_eq!(loss.name(), "nothing");
//!     assert_eq!(loss.evaluate(&[0, 1], &[1.0f32, 2.0], 1)?.loss, 0.0);
//!     assert!(metric_loss_registry::registered_names().contains(&"Zero"));
//!     Ok(())
//! }
//! ```
//!
//! Validate in `Deserialize` so that a bad config is an error: deserialize the config
//! struct, build the loss, and map its [`LossError`] with [`invalid_config`], which keeps
//! the error typed in [`RegistryError::InvalidValue`] (`examples/custom_loss.rs` does this;
//! `#[serde(try_from = ...)]` works too but keeps only the message).
//!
//! ## Registering a loss from another crate: the linker trap
//! typetag collects registrations with `inventory`, at program start, from every crate
//! *linked* into the binary. Cargo passes each dependency to rustc, but rustc links a
//! crate only when the code names it: a binary that depends on `my-losses` only to read
//! `class_name = "MyLoss"` from a config file, and never mentions `my_losses`, does not
//! contain the registration, and loading fails with [`RegistryError::UnknownClass`]. (The
//! test `tests/unlinked.rs` shows exactly this.)
//!
//! The fix is to name the crate once, anywhere in the binary:
//!
//! ```ignore
//! metric_loss_registry::link!(my_losses);   // i.e. `use my_losses as _;`
//! ```
//!
//! or to call any of its functions (a `my_losses::register()` that does nothing is a
//! common convention). The workspace's test crate `metric-loss-registry-testloss` is
//! loaded that way in `tests/separate_crate.rs`.
//!
//! # Why these format crates
//! JSON uses `serde_json` and TOML the `toml` crate (v1). YAML uses `serde_norway`, the
//! maintained fork of `serde_yaml`: `serde_yaml` is deprecated and unmaintained, and the
//! other fork, `serde_yml`, has a security advisory (RUSTSEC-2025-0068). All three parse
//! into one Keras-shaped `serde_json::Value`, so every format accepts exactly the same
//! configs. `serde_json`'s `float_roundtrip` feature is on, so that a margin read back
//! from JSON is the same `f64`, bit for bit (its default parser can be one ulp off); TOML
//! and YAML round-trip exactly as they are. Input is bounded: a config larger than
//! [`MAX_CONFIG_BYTES`] (1 MiB) is refused before parsing.
//!
//! # Feature flags
//! - `toml` (default): TOML configs, through the `toml` crate.
//! - `yaml` (default): YAML configs, through `serde_norway`.
//!
//! JSON is always available. Without a format's feature, reading or writing it is a
//! [`RegistryError`] naming the feature.
//!
//! # Supported Rust versions
//! The minimum supported Rust version is the workspace's, 1.89 (set by nalgebra 0.35,
//! which `metric-loss-core` uses); this crate's own code needs only 1.85. Raising it is a
//! minor-version change.

mod de;
mod error;
mod format;
mod load;
mod names;
mod shared;

use metric_loss_core::{LossError, LossInput, LossOutput, MetricLoss, Reduction, Workspace};
use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, PNLoss, SoftNearestNeighborLoss, XBM};
use metric_loss_pml::{
    ArcFaceLoss, ContrastiveLoss, CosFaceLoss, NTXentLoss, ProxyAnchorLoss, SubCenterArcFaceLoss,
    SupConLoss,
};
use metric_loss_triplet::TripletLoss;
use metric_loss_views::{Barlow, MultiNegativesRankLoss, SimCLRLoss, SimSiamLoss, VicReg};

pub use error::RegistryError;
pub use format::Format;
pub use load::{
    duplicate_names, from_str, from_value, invalid_config, load, read_config, registered_names,
    KERAS_PACKAGE_PREFIX, MAX_CONFIG_BYTES,
};
pub use names::{catalog, Catalog, DistanceNames};
pub use shared::SharedLoss;

/// typetag, re-exported so that `#[typetag::serde]` works through
/// `use metric_loss_registry::typetag;` (adding `typetag` to your dependencies works too).
pub use typetag;

/// A [`MetricLoss`] that can be read from and written to a config file.
///
/// Its serialised form is Keras's: `{"class_name": <registered name>, "config": <the
/// loss's fields>}`. Register a type with `#[typetag::serde(name = "ClassName")] impl
/// RegisteredLoss for MyLoss {}`; the type must implement `Serialize` and `Deserialize` (as
/// its config). See the crate docs for an example and for the linker trap.
///
/// Besides the [`MetricLoss`] methods, `dyn RegisteredLoss` has `get_config`,
/// `to_config_string`, `save` and `into_metric_loss` (listed under "Implementations"
/// below).
#[typetag::serde(tag = "class_name", content = "config")]
pub trait RegisteredLoss: MetricLoss {}

/// TF Similarity's `TripletLoss`, under the class name `"TripletLoss"`; its config is
/// [`metric_loss_triplet::TripletLossConfig`], validated by `TripletLossConfig::build`.
#[typetag::serde(name = "TripletLoss")]
impl RegisteredLoss for TripletLoss {}

/// TF Similarity's `PNLoss`, under the class name `"PNLoss"`; its config is
/// [`metric_loss_losses::PNLossConfig`], validated by `PNLossConfig::build`.
#[typetag::serde(name = "PNLoss")]
impl RegisteredLoss for PNLoss {}

/// TF Similarity's `MultiSimilarityLoss`, under the class name `"MultiSimilarityLoss"`; its
/// config is [`metric_loss_losses::MultiSimilarityLossConfig`], validated by its `build`.
#[typetag::serde(name = "MultiSimilarityLoss")]
impl RegisteredLoss for MultiSimilarityLoss {}

/// TF Similarity's `CircleLoss`, under the class name `"CircleLoss"`; its config is
/// [`metric_loss_losses::CircleLossConfig`], validated by `CircleLossConfig::build`.
#[typetag::serde(name = "CircleLoss")]
impl RegisteredLoss for CircleLoss {}

/// TF Similarity's `SoftNearestNeighborLoss`, under the class name
/// `"SoftNearestNeighborLoss"`; its config is
/// [`metric_loss_losses::SoftNearestNeighborLossConfig`], validated by its `build`.
#[typetag::serde(name = "SoftNearestNeighborLoss")]
impl RegisteredLoss for SoftNearestNeighborLoss {}

/// TF Similarity's `XBM` (cross-batch memory), under the class name `"XBM"`; its config is
/// [`metric_loss_losses::XBMConfig`] (the wrapped loss in `loss`), validated by
/// `XBMConfig::build`. The memory is state, not config: a loaded `XBM` starts empty. An
/// `XBM` made with `XBM::new` around a loss value has no config, and `get_config` on it is a
/// [`RegistryError::Write`].
#[typetag::serde(name = "XBM")]
impl RegisteredLoss for XBM {}

/// pytorch-metric-learning's `ContrastiveLoss`; its config is
/// [`metric_loss_pml::ContrastiveLossConfig`] (PML's keyword arguments, its distances and
/// reducers named as PML's classes).
#[typetag::serde(name = "ContrastiveLoss")]
impl RegisteredLoss for ContrastiveLoss {}

/// pytorch-metric-learning's `NTXentLoss`; its config is
/// [`metric_loss_pml::NTXentLossConfig`].
#[typetag::serde(name = "NTXentLoss")]
impl RegisteredLoss for NTXentLoss {}

/// pytorch-metric-learning's `SupConLoss`; its config is
/// [`metric_loss_pml::SupConLossConfig`].
#[typetag::serde(name = "SupConLoss")]
impl RegisteredLoss for SupConLoss {}

/// pytorch-metric-learning's `ArcFaceLoss` (it owns its weight matrix `W`); its config is
/// [`metric_loss_pml::ArcFaceLossConfig`] (`num_classes` and `embedding_size` required,
/// `seed` for the initial `W`). The config carries no parameter values: a loaded loss
/// starts from its seed.
#[typetag::serde(name = "ArcFaceLoss")]
impl RegisteredLoss for ArcFaceLoss {}

/// pytorch-metric-learning's `CosFaceLoss`; its config is
/// [`metric_loss_pml::CosFaceLossConfig`].
#[typetag::serde(name = "CosFaceLoss")]
impl RegisteredLoss for CosFaceLoss {}

/// pytorch-metric-learning's `SubCenterArcFaceLoss`; its config is
/// [`metric_loss_pml::SubCenterArcFaceLossConfig`].
#[typetag::serde(name = "SubCenterArcFaceLoss")]
impl RegisteredLoss for SubCenterArcFaceLoss {}

/// pytorch-metric-learning's `ProxyAnchorLoss` (it owns its `proxies`); its config is
/// [`metric_loss_pml::ProxyAnchorLossConfig`].
#[typetag::serde(name = "ProxyAnchorLoss")]
impl RegisteredLoss for ProxyAnchorLoss {}

/// TF Similarity's `MultiNegativesRankLoss` (a two-view loss); its config is
/// [`metric_loss_views::MultiNegativesRankLossConfig`], which keeps `scale`.
#[typetag::serde(name = "MultiNegativesRankLoss")]
impl RegisteredLoss for MultiNegativesRankLoss {}

/// TF Similarity's `SimCLRLoss` (a two-view loss); its config is
/// [`metric_loss_views::SimCLRLossConfig`].
#[typetag::serde(name = "SimCLRLoss")]
impl RegisteredLoss for SimCLRLoss {}

/// TF Similarity's `SimSiamLoss` (a two-view loss); its config is
/// [`metric_loss_views::SimSiamLossConfig`].
#[typetag::serde(name = "SimSiamLoss")]
impl RegisteredLoss for SimSiamLoss {}

/// TF Similarity's `Barlow` (a two-view loss); its config is
/// [`metric_loss_views::BarlowConfig`].
#[typetag::serde(name = "Barlow")]
impl RegisteredLoss for Barlow {}

/// TF Similarity's `VicReg` (a two-view loss); its config is
/// [`metric_loss_views::VicRegConfig`].
#[typetag::serde(name = "VicReg")]
impl RegisteredLoss for VicReg {}

impl dyn RegisteredLoss {
    /// The loss as a plain `Box<dyn MetricLoss>`, for APIs that take one (the same as the
    /// trait upcast `loss as Box<dyn MetricLoss>` on Rust 1.86 and later).
    pub fn into_metric_loss(self: Box<Self>) -> Box<dyn MetricLoss> {
        Box::new(self)
    }
}

impl MetricLoss for Box<dyn RegisteredLoss> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn compute_f32(
        &self,
        input: &LossInput<'_, f32>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f32>,
    ) -> Result<(), LossError> {
        (**self).compute_f32(input, workspace, out)
    }

    fn compute_f64(
        &self,
        input: &LossInput<'_, f64>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f64>,
    ) -> Result<(), LossError> {
        (**self).compute_f64(input, workspace, out)
    }

    fn reduction(&self) -> Reduction {
        (**self).reduction()
    }

    fn reset_state(&self) {
        (**self).reset_state();
    }

    fn parameter_shape(&self) -> Option<metric_loss_core::ParameterShape> {
        (**self).parameter_shape()
    }

    fn read_parameters(&self, out: &mut [f64]) -> Result<(), LossError> {
        (**self).read_parameters(out)
    }

    fn set_parameters(&self, values: &[f64]) -> Result<(), LossError> {
        (**self).set_parameters(values)
    }
}

/// `get_config` and friends on a concrete registered loss (the same methods exist on
/// `dyn RegisteredLoss`).
///
/// ```
/// use metric_loss_distances::DistanceKind;
/// use metric_loss_registry::ConfigExt;
/// use metric_loss_triplet::TripletLoss;
///
/// let loss = TripletLoss::builder().distance(DistanceKind::Euclidean).build()?;
/// let config = loss.get_config()?;
/// assert_eq!(config["class_name"], "TripletLoss");
/// assert_eq!(config["config"]["distance"], "euclidean");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait ConfigExt: RegisteredLoss + Sized + 'static {
    /// The Keras-shaped config, `{"class_name": ..., "config": {...}}`; reading it back
    /// with [`from_value`] gives an identical loss.
    ///
    /// # Errors
    /// [`RegistryError::Write`].
    fn get_config(&self) -> Result<serde_json::Value, RegistryError> {
        (self as &dyn RegisteredLoss).get_config()
    }

    /// The config as text in `format`.
    ///
    /// # Errors
    /// [`RegistryError::Write`].
    fn to_config_string(&self, format: Format) -> Result<String, RegistryError> {
        (self as &dyn RegisteredLoss).to_config_string(format)
    }

    /// Writes the config to `path`, in the format of its extension.
    ///
    /// # Errors
    /// [`RegistryError::UnknownFormat`], [`RegistryError::Write`], [`RegistryError::Io`].
    fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), RegistryError> {
        (self as &dyn RegisteredLoss).save(path)
    }
}

impl<L: RegisteredLoss + 'static> ConfigExt for L {}

/// Makes sure the losses registered in other crates are linked into this binary (see
/// "the linker trap" in the crate docs): `link!(my_losses, other_losses);` expands to
/// `use my_losses as _;` for each crate.
///
/// ```
/// metric_loss_registry::link!(metric_loss_triplet);
/// assert!(metric_loss_registry::registered_names().contains(&"TripletLoss"));
/// ```
#[macro_export]
macro_rules! link {
    ($($krate:ident),+ $(,)?) => {
        $(
            #[allow(unused_imports)]
            use $krate as _;
        )+
    };
}
