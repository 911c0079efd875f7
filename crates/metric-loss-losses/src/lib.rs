//! TF Similarity 0.17.1's other metric losses, number for number, with analytic gradients
//! with respect to the embeddings, in `f32` and `f64`, on the [`metric_loss_core::MetricLoss`]
//! trait:
//!
//! | loss | TF class name | kind | gradient path |
//! | --- | --- | --- | --- |
//! | [`PNLoss`] | `PNLoss` | triplet mining + positive-to-negative distance | `pair_vjp` on mined entries |
//! | [`MultiSimilarityLoss`] | `MultiSimilarityLoss` | dense, mined pairs | `dense_vjp` (matrix products) |
//! | [`CircleLoss`] | `CircleLoss` | dense | `dense_vjp` |
//! | [`SoftNearestNeighborLoss`] | `SoftNearestNeighborLoss` | dense | `dense_vjp` |
//! | [`XBM`] | `XBM` | cross-batch memory around another loss | the wrapped loss's, memory detached |
//!
//! Each loss has a config struct with TF Similarity's argument names and defaults
//! (`Default` = TF's defaults), validated once by `build()`; `config()` gives it back
//! (`get_config`). With the `serde` feature (default) configs are `Serialize` /
//! `Deserialize` with unknown keys rejected, and the losses themselves serialise as their
//! config and deserialise through `build()` (invalid arguments are deserialisation errors),
//! as `TripletLoss` does; `metric-loss-registry` reads and writes them by class name. Sample weights and reductions behave as for
//! `TripletLoss` (Keras: Σ wᵢℓᵢ / n for `auto`).
//!
//! ```
//! use metric_loss_core::MetricLossExt;
//! use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, PNLoss, SoftNearestNeighborLoss};
//!
//! let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
//! let labels = [0, 1, 0, 1];
//! for loss in [
//!     Box::new(PNLoss::default()) as Box<dyn metric_loss_core::MetricLoss>,
//!     Box::new(MultiSimilarityLoss::default()),
//!     Box::new(CircleLoss::default()),
//!     Box::new(SoftNearestNeighborLoss::default()),
//! ] {
//!     let out = loss.evaluate(&labels, &x, 2)?;
//!     assert!(out.loss.is_finite() && out.grad_queries.len() == 8);
//! }
//! # Ok::<(), metric_loss_core::LossError>(())
//! ```
//!
//! # Where TF Similarity returns NaN or ±∞
//! These losses never do; each deviation is documented on its type:
//! - `PNLoss`: the soft margin's +∞ for z < −88.7 (f32) becomes the stable soft-plus value;
//! - `MultiSimilarityLoss`: excluded anchors give 0 (not 0·∞ = NaN), the log-sum-exp is
//!   shifted by the kept maximum (no −∞); α = 0 / β = 0 are rejected at build;
//! - `SoftNearestNeighborLoss`: rows whose exponentials all underflow are recomputed
//!   shifted (TF: NaN); a batch of one gives 0 (TF: NaN); T = 0 is rejected at build.
//!
//! Every non-finite hyper-parameter is a build error, and a loss that would still overflow
//! its dtype (absurdly large embeddings, a hyper-parameter that rounds to 0 in f32) returns
//! [`metric_loss_core::LossError::Unsupported`] naming the anchor. Every loss ends with
//! [`metric_loss_core::LossOutput::check_finite`]: a weighted loss, a reduced sum or a
//! gradient entry that overflows afterwards (huge sample weights, embeddings near the
//! dtype's maximum) is [`metric_loss_core::LossError::NonFiniteResult`]. No entry point
//! returns ±∞ or NaN, except `XBM` passing on a wrapped `TripletLoss`'s documented +∞.
//!
//! # Configs and class names
//! | Keras class name | config (serde, `deny_unknown_fields`) | built loss |
//! | --- | --- | --- |
//! | `PNLoss` | [`PNLossConfig`] | [`PNLoss`] |
//! | `MultiSimilarityLoss` | [`MultiSimilarityLossConfig`] | [`MultiSimilarityLoss`] |
//! | `CircleLoss` | [`CircleLossConfig`] | [`CircleLoss`] |
//! | `SoftNearestNeighborLoss` | [`SoftNearestNeighborLossConfig`] | [`SoftNearestNeighborLoss`] |
//! | `XBM` | [`XBMConfig`] (its `loss` is a [`WrappedLossConfig`], tagged by `class_name`) | [`XBM`] |
//!
//! # Feature flags
//! - `serde` (default): `Serialize` / `Deserialize` for the configs and the losses (an
//!   `XBM` made with `XBM::new`, which has no config, fails to serialise).
//!
//! # Supported Rust versions
//! 1.89 or newer (nalgebra 0.35 requires it).

mod circle;
mod common;
#[cfg(feature = "serde")]
mod config_serde;
mod dense_loss;
mod lanes;
mod multisim;
mod pn;
mod softnn;
mod xbm;

pub use circle::{CircleLoss, CircleLossConfig};
pub use common::{RowScratch, MAX_MATRIX_BYTES};
pub use multisim::{MultiSimilarityLoss, MultiSimilarityLossConfig};
pub use pn::{PNLoss, PNLossConfig};
pub use softnn::{SoftNearestNeighborLoss, SoftNearestNeighborLossConfig};
pub use xbm::{WrappedLossConfig, XBMConfig, XBM};
