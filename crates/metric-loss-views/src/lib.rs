//! TF Similarity 0.17.1's two-view losses — [`MultiNegativesRankLoss`], [`SimCLRLoss`],
//! [`SimSiamLoss`], [`Barlow`] and [`VicReg`] — with TF's numbers, analytic gradients
//! with respect to both views, in `f32` and `f64`.
//!
//! These losses take no labels: two embedding sets whose row i belong together (two
//! augmentations of one image, a query and its answer). Give them as
//! [`metric_loss_core::LossInput::views`]: view A is the input's queries, view B its keys,
//! and the output's `grad_queries` / `grad_keys` are ∂L/∂A and ∂L/∂B. A labelled input is
//! [`metric_loss_core::LossError::InputKind`], and so is a two-view input given to a
//! labelled loss.
//!
//! ```
//! use metric_loss_core::{Embeddings, LossInput, MetricLoss, MetricLossExt};
//! use metric_loss_views::{Barlow, MultiNegativesRankLoss, SimCLRLoss, SimSiamLoss, VicReg};
//!
//! let a = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0];
//! let b = [0.8f64, 0.6, 0.0, 1.0, -0.6, -0.8];
//! let input = LossInput::views(
//!     Embeddings::from_row_major(&a, 3, 2)?,
//!     Embeddings::from_row_major(&b, 3, 2)?,
//! );
//! let losses: [Box<dyn MetricLoss>; 5] = [
//!     Box::new(MultiNegativesRankLoss::default()),
//!     Box::new(SimCLRLoss::default()),
//!     Box::new(SimSiamLoss::default()),
//!     Box::new(Barlow::default()),
//!     Box::new(VicReg::default()),
//! ];
//! for loss in losses {
//!     let out = loss.compute(&input)?;
//!     assert_eq!((out.grad_queries.len(), out.grad_keys.len()), (6, 6));
//! }
//! # Ok::<(), metric_loss_core::LossError>(())
//! ```
//!
//! # Configs
//! Each loss has a config struct with TF's constructor arguments as keys (its
//! `get_config`), TF's defaults, serde, and a `build` that validates it; the loss
//! serialises as its config. Keras's reductions (`"auto"`, `"sum_over_batch_size"`,
//! `"sum"`, `"none"`) apply as Keras applies them to each loss's output tensor; with
//! `"none"`, [`metric_loss_core::LossOutput::loss`] and the gradient are those of the sum
//! of the (weighted) outputs, which is what TF's tape differentiates.
//!
//! # Where TF returns NaN
//! On finite input these losses return a finite value or a typed error, never NaN or ±∞;
//! each loss's docs list where that differs from TF.
//!
//! # Memory
//! [`SimCLRLoss`] on more than 2048 rows per view runs in tiles: the logits are recomputed
//! block by block (an online log-sum-exp, then the gradient per tile) and never stored
//! whole, so memory grows with n·d rather than n². The other losses hold their n×m (or
//! d×d) matrices.
//!
//! # Feature flags
//! - `threads`: MultiNegativesRank's and SimCLR's products and rows (SimCLR's tiles too)
//!   split over threads (the same bits whatever the thread count; `METRIC_LOSS_THREADS`
//!   caps it).
//!
//! serde is always on (the configs are what the registry reads).
//!
//! # Supported Rust versions
//! The workspace's MSRV, Rust 1.89.

mod barlow;
mod common;
mod multinegrank;
mod simclr;
mod simclr_tiles;
mod simsiam;
mod vicreg;

pub use barlow::{Barlow, BarlowConfig};
pub use multinegrank::{MultiNegativesRankLoss, MultiNegativesRankLossConfig};
pub use simclr::{SimCLRLoss, SimCLRLossConfig};
pub use simsiam::{SimSiamLoss, SimSiamLossConfig};
pub use vicreg::{VicReg, VicRegConfig};
