//! Positive and negative mining with TF Similarity 0.17.1's exact semantics.
//!
//! For one anchor's row of distances, [`mine_row`] returns the mined positive and negative
//! distances and where they came from; [`route_gradient`] sends a gradient back to the
//! distance entries they were taken from.
//!
//! The rules (TF Similarity's `masked_max` / `masked_min` in float64):
//! - Positives of anchor i: keys with the same label, minus key i when the diagonal is
//!   removed. Negatives: keys with another label (never the diagonal).
//! - A masked maximum over an **empty** mask is `rowmin − 1e-6` (computed in f64, then
//!   rounded), attributed to the row minimum; a masked minimum over an empty mask is
//!   `rowmax + 1e-6`, attributed to the row maximum. Row extremes cover the whole row,
//!   diagonal included.
//! - Otherwise the value is `(d − a) + a` in f64 with a the offset, which is `d` exactly
//!   for f32 input.
//! - The first index wins ties in the forward pass; the gradient is split equally among
//!   exact ties, as `reduce_max` / `reduce_min` gradients are in TensorFlow.
//! - Semi-hard: threshold tᵢ = the hardest positive (whatever the positive strategy);
//!   qᵢ = min{d : negative, d > tᵢ} if any, else the farthest negative; with no negative at
//!   all, the fallback column is 0, giving D[i, 0] if D[i, 0] ≤ tᵢ, else `rowmax + 1e-6`.
//!
//! ```
//! use metric_loss_core::{NegativeStrategy, PositiveStrategy};
//! use metric_loss_mining::{mine_row, RowContext};
//!
//! // Row 0 of the spec's golden cosine matrix, labels [0, 0, 1, 2].
//! let row = [0.0f32, 0.19999999, 1.0, 1.6];
//! let ctx = RowContext { anchor: 0, anchor_label: 0, key_labels: &[0, 0, 1, 2], remove_diagonal: true };
//! let m = mine_row(&row, &ctx, PositiveStrategy::Hard, NegativeStrategy::SemiHard).unwrap();
//! assert_eq!((m.positive, m.negative), (0.19999999, 1.0));
//! ```
//!
//! # Performance
//! [`mine_row_grouped`] scans a row in explicit AVX2 when the CPU has it (detected at run
//! time, so one binary runs everywhere) and in portable code otherwise; both give the same
//! result, which a test checks.
//!
//! [`TriangleMiner`] mines a batch against itself from the upper triangle of its distance
//! matrix alone, for distances whose entry (j, i) is entry (i, j): the lower triangle is
//! neither computed, mirrored nor read, and the rows can be split over threads. Its
//! results are [`mine_row_grouped`]'s bit for bit.
//!
//! [`StrategyMiner`] is all of this as a [`Miner`](metric_loss_core::Miner), the part a loss
//! holds; [`GivenTriplets`] is the miner of triplets the caller formed.
//!
//! # Feature flags
//! None (rows are split over threads when `metric-loss-distances`'s `threads` is on).
//!
//! # Supported Rust versions
//! 1.89 or newer (nalgebra 0.35 requires it).

mod classes;
mod extreme;
mod given;
mod grouped;
#[cfg(test)]
mod reference;
mod route;
mod row;
mod simd;
mod strategy_miner;
#[cfg(test)]
mod testing;
mod triangle;

pub use classes::KeyClasses;
pub use given::GivenTriplets;
pub use grouped::mine_row_grouped;
pub use route::route_gradient;
pub use row::{mine_row, Mined, MiningError, Pick, PickMask, RowContext};
pub use strategy_miner::StrategyMiner;
pub use triangle::{gather_upper_row, TriangleMiner, TrianglePart, UpperTriangle};

/// TF Similarity's offset for empty masked extrema.
pub const SENTINEL_OFFSET: f64 = 1e-6;
