//! The core of the `metric-loss` workspace: the [`MetricLoss`] trait and the pieces every
//! metric-learning loss shares.
//!
//! - [`MetricLoss`]: labels and embeddings in; per-example losses, the reduced loss and the
//!   gradient with respect to the embeddings out; `f32` and `f64`.
//! - [`LossInput`], [`Batch`], [`Embeddings`]: borrowed inputs, with an optional separate
//!   key set (a memory bank) and sample weights.
//! - The three parts a loss is composed of, each a trait a user implements and plugs into
//!   the built-in losses:
//!   - [`Distance`]: a pairwise distance with its vector-Jacobian products (and the
//!     optional symmetric fast path);
//!   - [`Miner`]: each anchor's positive and negative ([`Mined`], [`Pick`]); the strategy
//!     names [`PositiveStrategy`], [`NegativeStrategy`] of the built-in miner;
//!   - [`Reducer`]: per-example losses to the scalar and each example's gradient scale;
//!     Keras's [`Reduction`]s, [`MeanOverNonZero`], [`Threshold`].
//!
//!   A loss holds each as `Arc<dyn AnyDistance>` / `Arc<dyn AnyMiner>` /
//!   `Arc<dyn AnyReducer>`, one value for both precisions; [`Float::distance`],
//!   [`Float::miner`] and [`Float::reducer`] give generic code the precision it runs in.
//! - [`RegisteredDistance`], [`RegisteredMiner`], [`RegisteredReducer`], [`PartConfig`]:
//!   user parts a config file can name (`"distance": {"class_name": "MyDistance", ...}`)
//!   beside the built-ins' names.
//! - [`SampleWeight`], [`reduce`]: Keras's sample weights and reduction arithmetic.
//! - [`Parameters`], [`ParameterShape`]: a loss's learnable matrix (set and read through
//!   [`MetricLoss::set_parameters`] / [`MetricLoss::read_parameters`], its gradient in
//!   [`LossOutput::grad_parameters`]), seeded by [`normal_values`].
//! - [`Workspace`], [`LossOutput`]: reusable buffers, so that training allocates nothing in
//!   steady state.
//! - [`config_setters!`]: a config struct's chained setters, written once.
//! - [`LossError`]: the one error type; [`LossOutput::check_finite`] turns a result that
//!   overflowed into [`LossError::NonFiniteResult`].
//!
//! Implementations live in their own crates: `metric-loss-distances`, `metric-loss-mining`,
//! `metric-loss-triplet`, and so on. A new loss needs only this crate.
//!
//! # Feature flags
//! - `serde` (off by default): `typetag` registration of [`RegisteredDistance`],
//!   [`RegisteredMiner`] and [`RegisteredReducer`], and serde for [`PartConfig`], so that a
//!   config file names user parts. `metric-loss-registry` turns it on.
//!
//! [`Float::gemm`] is single-threaded: the implementation crates split work over
//! threads themselves (`metric-loss-distances`'s `threads`), by rows, so that one thread
//! pool never nests inside another.
//!
//! # Supported Rust versions
//! The minimum supported Rust version is 1.89 (nalgebra 0.35 requires it). Raising it is a minor-version change.

mod distance;
mod embeddings;
mod error;
mod float;
mod input;
mod loss;
mod miner;
mod output;
mod parameters;
pub mod params;
mod part_config;
mod reducer;
mod reduction;
mod setters;
mod strategy;
mod workspace;

pub use distance::{dense_vjp_by_halves, AnyDistance, Distance};
pub use embeddings::{Batch, Embeddings, RowMajorBuffer};
pub use error::{LossError, StrategyRole};
pub use float::Float;
pub use input::LossInput;
pub use loss::{MetricLoss, MetricLossExt};
pub use miner::{
    AnyMiner, Mined, Miner, MiningView, Pick, PickMask, RowContext, UpperTriangleView,
};
pub use output::{AllowNonFinite, LossOutput};
pub use parameters::{normal_values, ParameterShape, Parameters, SplitMix64};
pub use part_config::{PartConfig, RegisteredDistance, RegisteredMiner, RegisteredReducer};
pub use reducer::{reduce_checked, AnyReducer, MeanOverNonZero, Reducer, Threshold};
pub use reduction::{reduce, Reduction, SampleWeight};
pub use strategy::{NegativeStrategy, PositiveStrategy};
pub use workspace::Workspace;
