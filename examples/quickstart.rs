//! TripletLoss on a small batch: loss, per-example losses and the gradient, in f32, with
//! the embeddings L2-normalised first as cosine distance expects.
//!
//! Run: `cargo run --example quickstart`

use metric_loss_core::{Batch, Embeddings, LossInput, LossOutput, MetricLossExt, Workspace};
use metric_loss_distances::{l2_normalize, l2_normalize_vjp, DistanceKind};
use metric_loss_triplet::TripletLoss;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let labels = [0i64, 0, 1, 1, 2, 2];
    let raw = [
        0.9f32, 0.1, 0.0, 1.0, 0.3, 0.1, 0.1, 1.0, 0.2, 0.2, 0.8, 0.1, 0.0, 0.1, 1.0, 0.5, 0.1, 0.4,
    ];
    let dims = 3;

    // Cosine distance expects unit rows: normalise, as TF Similarity's L2Embedding does.
    let mut x = vec![0.0f32; raw.len()];
    l2_normalize(&raw, dims, &mut x)?;

    let loss = TripletLoss::builder()
        .distance(DistanceKind::Cosine)
        .margin(0.2)
        .build()?;
    let batch = Batch::new(&labels, Embeddings::from_row_major(&x, labels.len(), dims)?)?;

    // Reuse the workspace and output across training steps: no allocation after the first.
    let mut workspace = Workspace::new();
    let mut out = LossOutput::new();
    loss.compute_into(&LossInput::new(batch), &mut workspace, &mut out)?;

    // Chain the gradient through the normalisation to get d loss / d raw embeddings.
    let mut grad_raw = vec![0.0f32; raw.len()];
    l2_normalize_vjp(&raw, dims, &out.grad_queries, &mut grad_raw)?;

    println!("loss = {:.6}", out.loss);
    println!("per-example = {:?}", out.per_example);
    for (i, g) in grad_raw.chunks(dims).enumerate() {
        println!("d loss / d x[{i}] = {g:?}");
    }
    Ok(())
}
