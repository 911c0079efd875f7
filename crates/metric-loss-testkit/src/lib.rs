//! Test support shared by the tests of every crate of the workspace (a dev-dependency
//! only; not published): the proptest configuration, hostile float values, and a
//! finite-difference check of any loss's gradient ([`check_gradient`]), an allocator
//! that counts allocations ([`CountingAllocator`]), and distances written as a user would
//! ([`HandSquaredL2`], [`PoisonedAtZeroOne`]).
//!
//! ```
//! use metric_loss_testkit::cases;
//! let config = cases(64); // 64 cases unless PROPTEST_CASES is set
//! assert!(config.max_global_rejects >= 1024);
//! ```
//!
//! # Feature flags
//! None.
//!
//! # Supported Rust versions
//! 1.89 or newer (the workspace's `rust-version`).

mod alloc_count;
mod finite_differences;
mod user_distance;

pub use alloc_count::{allocations, assert_steady_state_does_not_allocate, CountingAllocator};
pub use finite_differences::{check_gradient, check_views_gradient, GradientPoint};
pub use user_distance::{HandSquaredL2, PoisonedAtZeroOne};

use metric_loss_core::LossOutput;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// A proptest configuration running `default` cases unless the `PROPTEST_CASES`
/// environment variable says otherwise (CI keeps the defaults; raise it for a long run),
/// allowing up to 4 rejects per case, and writing no regression files (findings are kept
/// as named regression tests instead).
pub fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        max_global_rejects: cases.saturating_mul(4).max(1024),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

/// Values a hostile caller may pass: ordinary numbers, and every special float
/// (NaN, ±∞, signed zeros, subnormals in f32 and f64, huge values, `f64::MAX`, any bits).
pub fn nasty() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -3.0..3.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(-0.0),
        1 => Just(1e-40),          // subnormal in f32
        1 => Just(-4e-320),        // subnormal in f64 (0 in f32)
        1 => Just(1e30),
        1 => Just(-1e30),
        1 => Just(1e19),
        1 => Just(f64::MAX),
        1 => any::<f64>(),
    ]
}

/// `n` deterministic pseudo-random values in [-1, 1) from `seed` (SplitMix64): the same
/// test data on every platform without a random-number dependency.
///
/// ```
/// let x = metric_loss_testkit::values(4, 7);
/// assert_eq!(x, metric_loss_testkit::values(4, 7));
/// assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
/// ```
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = metric_loss_core::SplitMix64::new(seed);
    (0..n)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0)
        .collect()
}

/// The rows of `x` (`dims` wide, none all zero) scaled to unit length.
///
/// ```
/// let y = metric_loss_testkit::unit_rows(&[3.0, 4.0, 0.0, -2.0], 2);
/// assert_eq!(y, vec![0.6, 0.8, 0.0, -1.0]);
/// ```
pub fn unit_rows(x: &[f64], dims: usize) -> Vec<f64> {
    x.chunks(dims)
        .flat_map(|row| {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            row.iter().map(move |v| v / norm)
        })
        .collect()
}

/// The loss, the per-example values and the query gradient of an f32 output, as bits: two
/// runs that must agree bit for bit (on any thread count) compare these.
///
/// ```
/// use metric_loss_core::LossOutput;
/// assert_eq!(metric_loss_testkit::bits(&LossOutput::<f32>::new()), vec![0]);
/// ```
pub fn bits(out: &LossOutput<f32>) -> Vec<u32> {
    std::iter::once(out.loss)
        .chain(out.per_example.iter().copied())
        .chain(out.grad_queries.iter().copied())
        .map(f32::to_bits)
        .collect()
}
