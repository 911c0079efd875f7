//! pytorch-metric-learning 2.9.0's pair-based losses — [`ContrastiveLoss`],
//! [`NTXentLoss`] and [`SupConLoss`] — with its distances ([`LpDistance`],
//! [`CosineSimilarity`], [`DotProductSimilarity`]) and reducers ([`MeanReducer`],
//! [`SumReducer`], [`AvgNonZeroReducer`], [`ThresholdReducer`]).
//!
//! The distances and reducers are parts like any other: every loss of the workspace takes
//! them (a `TripletLoss` on [`LpDistance`], a `ContrastiveLoss` on TF Similarity's
//! `"cosine"` distance), and configs name them as PML's constructors are called:
//!
//! ```
//! use metric_loss_pml::{ContrastiveLossConfig, CosineSimilarity, MeanReducer};
//!
//! let config: ContrastiveLossConfig = serde_json::from_str(r#"{
//!     "pos_margin": 1.0, "neg_margin": 0.0,
//!     "distance": {"class_name": "CosineSimilarity", "config": {}},
//!     "reducer": {"class_name": "MeanReducer", "config": {}}
//! }"#)?;
//! let in_code = ContrastiveLossConfig::default()
//!     .pos_margin(1.0)
//!     .neg_margin(0.0)
//!     .distance(CosineSimilarity::default())
//!     .reducer(MeanReducer {});
//! assert_eq!(config.build()?.config().pos_margin, in_code.build()?.config().pos_margin);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semantics
//! Each loss computes what PML's does on the same call, to float rounding: pairs are
//! (anchor, key) with equal labels (positives, the anchor itself excluded when the keys are
//! the batch) or different labels (negatives). Keys given separately (`LossInput::with_keys`)
//! play PML's `ref_emb` with `ref_labels`; call `remove_diagonal(false)` then, as PML
//! removes nothing once ref labels are passed.
//!
//! Beyond PML: sample weights multiply every element (pair or row) of their anchor, and
//! `per_example[i]` is anchor i's share of the loss (its elements times their reducer
//! scales), so the per-example values sum to the loss. Where PML returns NaN (a
//! temperature of 0) the config is rejected instead.
//!
//! # Your own pair loss
//! The driver these losses run on is public: a [`PairFormula`] (the elements of one or two
//! sub-losses from a [`Scores`] view of the distances and labels, pushed into
//! [`Elements`], and their derivatives) with a [`PairLoss`] (name and parts) is a whole
//! loss once [`pair_metric_loss!`] implements `MetricLoss` for it with [`compute_pairs`]:
//! any distance and reducer, sample weights, per-example shares, threads and finite checks
//! come with it. [`PairLoss`] shows one.
//!
//! # Memory
//! [`ContrastiveLoss`] keeps one element per pair, so its memory is O(n·m). [`NTXentLoss`]
//! and [`SupConLoss`] keep one per positive pair or per anchor: above 4096 × 4096
//! distances they run in strips of rows (16 Mi distances each, 256 rows against 65,536
//! keys), computing each strip's distances for the forward pass and again for the
//! gradient, so the n×m matrix is never held whole. Each row goes through the same
//! arithmetic as on the whole matrix; the key gradient is summed strip by strip (unit
//! tests hold the two paths to 1e-12 relative in f64, 2e-5 in f32). A batch whose
//! positive pairs alone would pass the 16 GiB cap is refused with `LossError::TooLarge`.
//!
//! # Feature flags
//! - `threads`: the distance and gradient products, the pair losses' gradient rows and
//!   NTXent's and SupCon's forward rows split over threads (the same bits whatever the
//!   thread count; `METRIC_LOSS_THREADS` caps it).
//!
//! serde and the config registration are always on (the parts are named in configs).
//!
//! # Supported Rust versions
//! The workspace's MSRV, Rust 1.89.

mod arcface;
mod classifier;
mod contrastive;
mod cosface;
mod distance;
mod learnable;
mod loss_config;
mod ntxent;
mod pairs;
mod proxy_anchor;
mod reducer;
mod supcon;

pub use arcface::{
    ArcFaceLoss, ArcFaceLossConfig, SubCenterArcFaceLoss, SubCenterArcFaceLossConfig,
};
pub use contrastive::{ContrastiveLoss, ContrastiveLossConfig};
pub use cosface::{CosFaceLoss, CosFaceLossConfig};
pub use distance::{CosineSimilarity, DotProductSimilarity, LpDistance};
pub use ntxent::{NTXentLoss, NTXentLossConfig};
pub use pairs::{compute_pairs, Elements, PairFormula, PairLoss, Scores};
pub use proxy_anchor::{ProxyAnchorLoss, ProxyAnchorLossConfig};
pub use reducer::{AvgNonZeroReducer, DivisorReducer, MeanReducer, SumReducer, ThresholdReducer};
pub use supcon::{SupConLoss, SupConLossConfig};

/// What [`pair_metric_loss!`] expands to; not part of the API.
#[doc(hidden)]
pub use metric_loss_triplet::__driver_metric_loss;
