//! Shared test data (included with `mod common;`).

#![allow(dead_code, unreachable_pub)]

use metric_loss_core::{LossOutput, MetricLoss, MetricLossExt};

/// A small batch with a singleton label (a degenerate anchor) and varied rows.
pub const LABELS: [i64; 8] = [0, 0, 1, 1, 2, 0, 1, 3];
pub const DIMS: usize = 3;

pub fn embeddings() -> Vec<f64> {
    // A fixed linear congruential sequence in [-1, 1).
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..LABELS.len() * DIMS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

/// Both precisions' outputs.
pub fn run(loss: &(impl MetricLoss + ?Sized)) -> (LossOutput<f32>, LossOutput<f64>) {
    let x64 = embeddings();
    let x32: Vec<f32> = x64.iter().map(|v| *v as f32).collect();
    let a = loss.evaluate(&LABELS, &x32, DIMS).expect("f32 evaluation");
    let b = loss.evaluate(&LABELS, &x64, DIMS).expect("f64 evaluation");
    (a, b)
}

/// Bitwise equality of per-example losses, reduced loss and gradients (NaN-aware).
pub fn assert_same(
    a: &(LossOutput<f32>, LossOutput<f64>),
    b: &(LossOutput<f32>, LossOutput<f64>),
    what: &str,
) {
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits64 = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits32(&a.0.per_example),
        bits32(&b.0.per_example),
        "{what}: f32 per-example"
    );
    assert_eq!(a.0.loss.to_bits(), b.0.loss.to_bits(), "{what}: f32 loss");
    assert_eq!(
        bits32(&a.0.grad_queries),
        bits32(&b.0.grad_queries),
        "{what}: f32 gradient"
    );
    assert_eq!(
        bits64(&a.1.per_example),
        bits64(&b.1.per_example),
        "{what}: f64 per-example"
    );
    assert_eq!(a.1.loss.to_bits(), b.1.loss.to_bits(), "{what}: f64 loss");
    assert_eq!(
        bits64(&a.1.grad_queries),
        bits64(&b.1.grad_queries),
        "{what}: f64 gradient"
    );
}

pub fn examples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/configs")
}
