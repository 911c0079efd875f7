//! TF Similarity's six distances, exactly: cosine, inner product, euclidean, squared
//! euclidean, manhattan and signal-to-noise ratio, each with its vector-Jacobian product.
//!
//! [`DistanceKind`] names a distance (with TF Similarity 0.17.1's aliases, matched
//! case-insensitively after trimming) and implements [`metric_loss_core::Distance`] for
//! `f32` and `f64`.
//!
//! | name | Dᵢⱼ | aliases |
//! | --- | --- | --- |
//! | `cosine` | max(1 − qᵢ·kⱼ, 0) — expects unit rows, see [`l2_normalize`] | |
//! | `inner_product` | qᵢ·kⱼ (a similarity) | `ip` |
//! | `euclidean` | √s · [s ≥ 1e-18], s = (‖qᵢ‖² − 2qᵢ·kⱼ) + ‖kⱼ‖² | `l2`, `pythagorean` |
//! | `squared_euclidean` | max(s, 0) | `sql2`, `sqeuclidean` |
//! | `manhattan` | Σₜ \|qᵢₜ − kⱼₜ\| | `l1`, `taxicab` |
//! | `snr` | Var(qᵢ − kⱼ) / Var(qᵢ) | `signal-to-noise-ratio` |
//!
//! The norm expansion of the euclidean distances is TF Similarity's: it cancels in float32
//! for close points (distances below about 3e-4·‖x‖ come out as 0), and its gradient at a
//! self-pair is exactly 0. Matrix products use `matrixmultiply`; when the keys are the
//! queries only one triangle is computed, and for cosine and inner product
//! [`Distance::upper_triangle`](metric_loss_core::Distance::upper_triangle) stops there (no mirror) for callers that read the
//! upper triangle only. Manhattan and snr never build an
//! `n x m x dims` temporary (snr goes through the centred Gram matrix).
//!
//! ```
//! use metric_loss_core::{Distance, Embeddings};
//! use metric_loss_distances::DistanceKind;
//!
//! let x = [1.0f32, 0.0, 0.0, 1.0];
//! let e = Embeddings::from_row_major(&x, 2, 2).unwrap();
//! let mut d = [0.0f32; 4];
//! DistanceKind::from_name("l2").unwrap().matrix(e, e, true, &mut Vec::new(), &mut d).unwrap();
//! assert!((d[1] - 2f32.sqrt()).abs() < 1e-6);
//! ```
//!
//! # Feature flags
//! - `threads` (off by default): matrix products, distance matrices and the gradient
//!   products split by rows over threads ([`parallel`]); `METRIC_LOSS_THREADS` caps the
//!   thread count. Results are identical bit for bit with and without it.
//!
//! # Supported Rust versions
//! 1.89 or newer (nalgebra 0.35 requires it).

mod bands;
mod dense;
mod gram;
mod kernels;
mod kind;
pub mod lanes;
mod normalize;
pub mod parallel;
mod transpose;
pub mod wide;

pub use gram::mirror_upper;
pub use kind::DistanceKind;
pub use normalize::{l2_normalize, l2_normalize_vjp};
pub use transpose::add_transpose;
