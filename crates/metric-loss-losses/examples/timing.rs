//! Rough per-call timings of each loss (forward + gradient) on a random batch.
//!
//! `cargo run --release -p metric-loss-losses --example timing -- [n] [dims]`

use std::time::Instant;

use metric_loss_core::{
    Batch, Embeddings, LossInput, LossOutput, MetricLoss, MetricLossExt, Workspace,
};
use metric_loss_losses::{CircleLoss, MultiSimilarityLoss, PNLoss, SoftNearestNeighborLoss};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, dims) = (
        args.first().copied().unwrap_or(1024),
        args.get(1).copied().unwrap_or(128),
    );
    let mut s = 1u64;
    let mut x: Vec<f32> = (0..n * dims)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    for row in x.chunks_exact_mut(dims) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let labels: Vec<i64> = (0..n as i64).map(|i| i % (n as i64 / 4).max(1)).collect();
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, n, dims).unwrap()).unwrap();
    let input = LossInput::new(batch);
    let losses: [Box<dyn MetricLoss>; 4] = [
        Box::new(PNLoss::default()),
        Box::new(MultiSimilarityLoss::default()),
        Box::new(CircleLoss::default()),
        Box::new(SoftNearestNeighborLoss::default()),
    ];
    for loss in &losses {
        let (mut ws, mut out) = (Workspace::new(), LossOutput::new());
        loss.compute_into(&input, &mut ws, &mut out).unwrap();
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            loss.compute_into(&input, &mut ws, &mut out).unwrap();
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "{:<24} n={n} dims={dims}: {ms:8.2} ms/call (loss {})",
            loss.name(),
            out.loss
        );
    }
}
