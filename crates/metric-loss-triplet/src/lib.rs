//! TF Similarity's `TripletLoss`, number for number, with its gradient.
//!
//! ```
//! use metric_loss_core::MetricLossExt;
//! use metric_loss_triplet::TripletLoss;
//!
//! let loss = TripletLoss::default(); // cosine, hard / semi-hard, margin 1.0
//! let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
//! let out = loss.evaluate(&[0, 0, 1, 1], &x, 2)?;
//! assert!(out.loss.is_finite());
//! # Ok::<(), metric_loss_core::LossError>(())
//! ```
//!
//! For each anchor i: D = distance(queries, keys); pᵢ, qᵢ mined as in
//! `metric-loss-mining`; ℓᵢ = max(pᵢ − qᵢ + m, 0) (hinge) or ln(e^{−x} + 1) + x with
//! x = pᵢ − qᵢ (soft margin). The gradient is analytic: after the distance matrix it costs
//! O(n·dims) (each anchor sends its gradient to one positive and one negative entry, or
//! splits it among exact ties).
//!
//! # Drivers for your own losses
//! [`MinedLoss`] (an anchor's loss from its mined distances, run by [`compute_mined`]) and
//! [`RowLoss`] (an anchor's loss from its whole row of distances, run by
//! [`compute_rows`]): a loss gives its parts and its formula with its derivative, the
//! driver the rest; [`mined_metric_loss!`] and [`row_metric_loss!`] implement
//! [`MetricLoss`](metric_loss_core::MetricLoss) with them.
//!
//! # Differences from TF Similarity 0.17.1
//! - The signature is 0.16's: `soft_margin: bool` plus `margin` (a config's
//!   `margin: null` still means soft margin). `soft_margin = true` with a margin other
//!   than 1.0 is an error; so is a non-finite margin.
//! - Euclidean works in f64 (TF Similarity raises a `TypeError` there).
//! - Invalid input is an error, never a NaN: non-finite embeddings or weights, an snr
//!   query row with zero variance, distances that overflow.
//! - Opt-ins: `exclude_degenerate_anchors`, `stable_soft_margin`.
//!
//! # Feature flags
//! - `serde` (default): `Serialize` / `Deserialize` for [`TripletLossConfig`].
//! - `threads`: the distance matrix and mining split over rows, on the calling thread and
//!   a pool of helper threads (`metric-loss-distances`'s `threads`);
//!   `METRIC_LOSS_THREADS` caps the thread count. Results are identical bit for bit.
//!
//! # Performance
//! Against the batch itself (no separate keys) under cosine or inner product, whose
//! entry (j, i) equals entry (i, j) bit for bit, a call computes the distance matrix's
//! upper triangle only ([`Distance::upper_triangle`](metric_loss_core::Distance::upper_triangle))
//! and mines it in place ([`Miner::mine_upper`](metric_loss_core::Miner::mine_upper), which
//! the built-in [`StrategyMiner`](metric_loss_mining::StrategyMiner) implements): half a
//! matrix product on any thread count, and no mirrored lower triangle. The other distances
//! and query/key batches compute the full matrix and mine it row by row. Either way the
//! results are the same bit for bit.
//!
//! # Supported Rust versions
//! 1.89 or newer (nalgebra 0.35 requires it).

mod builder;
mod config;
mod full_matrix;
mod gradient;
mod loss;
mod macros;
mod margin;
mod parts;
mod pipeline;
mod rows;

pub use builder::TripletLossBuilder;
pub use config::TripletLossConfig;
pub use full_matrix::{finite_distances, full_distance_matrix, start_call, CallShape};
pub use loss::TripletLoss;
pub use margin::Margin;
pub use parts::{DenseParts, MinedParts, MinedPartsConfig};
pub use pipeline::{
    check_matrix_size, compute_mined, AnchorScore, AnchorView, MinedLoss, MAX_DISTANCE_MATRIX_BYTES,
};
pub use rows::{compute_rows, RowLoss, RowView};

/// What [`mined_metric_loss!`] and [`row_metric_loss!`] expand to refers to; not part of the
/// API.
#[doc(hidden)]
pub mod __private {
    pub use metric_loss_core::{
        LossError, LossInput, LossOutput, MetricLoss, Reduction, Workspace,
    };
}
