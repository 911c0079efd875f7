//! Test support shared by the tests of every crate of the workspace (a dev-dependency
//! only; not published): the proptest configuration, hostile float values, and a
//! finite-difference check of any loss's gradient ([`check_gradient`]), and an allocator
//! that counts allocations ([`CountingAllocator`]).
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

pub use alloc_count::{allocations, CountingAllocator};
pub use finite_differences::{check_gradient, GradientPoint};

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
