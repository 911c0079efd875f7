//! `train_digits`'s recipe through burn instead of candle: the same data, split, model,
//! initial weights, batches and Adam, with the loss as a burn autodiff op
//! (`metric-loss-burn`) on burn's Flex CPU backend.
//!
//! - Data: `examples/data/uci-digits/digits.csv.gz`, split per class 70 / 30 with the seed.
//! - Model: 64 -> 64 ReLU -> 16, then L2 normalisation; pixels scaled by 1/16; weights
//!   Glorot-uniform drawn in `train_digits`'s order, biases zero.
//! - Loss: `examples/configs/triplet_default.toml` (TripletLoss: cosine, hard positives,
//!   semi-hard negatives, margin 1.0).
//! - Training: Keras's Adam (lr 1e-3) on the host, batches of 10 classes x 8 distinct
//!   examples, 1500 steps; each step runs the model forward and backward in burn.
//! - Evaluation: recall@1 and mAP@R of leave-one-out cosine retrieval on the test split.
//!
//! Run: `cargo run --release --example train_digits_burn -- --help`

#[path = "digits/data.rs"]
mod data;
#[path = "digits/keras_adam.rs"]
mod keras_adam;
#[path = "digits/metrics.rs"]
mod metrics;
#[path = "digits/recipe.rs"]
mod recipe;
#[path = "digits/sampler.rs"]
mod sampler;

use std::time::Instant;

use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use clap::Parser;
use metric_loss_burn::BurnLoss;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use data::{Digits, PIXELS};
use recipe::{EMBEDDING, HIDDEN};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Train a digit embedding with TripletLoss (burn) and evaluate retrieval")]
struct Args {
    /// The loss, data, steps, seed and learning rate.
    #[command(flatten)]
    recipe: recipe::Recipe,
}

fn main() {
    if let Err(message) = run(&Args::parse()) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let loss = BurnLoss::from_config(&args.recipe.config).map_err(|e| e.to_string())?;
    let (train, test) = args.recipe.split_data(&loss.metric_loss())?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.recipe.seed);
    let mut model = Model::new(&mut rng);
    let before = metrics::evaluate(&model.embed_values(&test), EMBEDDING, &test.labels);

    let start = Instant::now();
    let losses = train_model(&mut model, &loss, &train, args, &mut rng)?;
    let seconds = start.elapsed().as_secs_f64();
    let after = metrics::evaluate(&model.embed_values(&test), EMBEDDING, &test.labels);

    let tail = &losses[losses.len().saturating_sub(100)..];
    println!(
        "training: {} steps in {seconds:.3} s ({:.0} µs/step), mean loss of the last {} steps {:.4}",
        args.recipe.steps,
        seconds * 1e6 / args.recipe.steps.max(1) as f64,
        tail.len(),
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    );
    println!(
        "test: mAP@R={:.3} recall@1={:.3} recall@5={:.3} (before: mAP@R={:.3})",
        after.map_at_r, after.recall_at_1, after.recall_at_5, before.map_at_r
    );
    Ok(())
}

/// 64 -> 64 ReLU -> 16, then L2 normalisation; the weights live on the host, where Adam
/// updates them, and go to burn each step.
struct Model {
    /// `[w1 (64 x 64, outputs x inputs), b1, w2 (16 x 64), b2]`, row-major.
    params: [Vec<f32>; 4],
}

/// The parameters' shapes, in `Model::params`' order; biases are `1 x width` rows,
/// broadcast over the batch.
const SHAPES: [[usize; 2]; 4] = [
    [HIDDEN, PIXELS],
    [1, HIDDEN],
    [EMBEDDING, HIDDEN],
    [1, EMBEDDING],
];

impl Model {
    /// Glorot-uniform weights (Keras's default) and zero biases, drawn from `rng` in the
    /// order `train_digits` draws them, so that one seed starts both demos alike.
    fn new(rng: &mut ChaCha8Rng) -> Self {
        let mut glorot = |inputs: usize, outputs: usize| -> Vec<f32> {
            let bound = (6.0 / (inputs + outputs) as f32).sqrt();
            (0..inputs * outputs)
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        };
        let w1 = glorot(PIXELS, HIDDEN);
        let w2 = glorot(HIDDEN, EMBEDDING);
        Self {
            params: [w1, vec![0.0; HIDDEN], w2, vec![0.0; EMBEDDING]],
        }
    }

    /// The parameters as burn tensors on `device`, requiring their gradient when
    /// `device` records one.
    fn tensors(&self, device: &Device) -> [Tensor<2>; 4] {
        std::array::from_fn(|i| {
            let data = TensorData::new(self.params[i].clone(), SHAPES[i]);
            let t = Tensor::from_data(data, (device, DType::F32));
            if device.is_autodiff() {
                t.require_grad()
            } else {
                t
            }
        })
    }

    /// Unit-length embeddings of `x` (`n x 64`) with parameters `p`.
    fn embed(x: Tensor<2>, p: &[Tensor<2>; 4]) -> Tensor<2> {
        let hidden = relu(x.matmul(p[0].clone().transpose()) + p[1].clone());
        let y = hidden.matmul(p[2].clone().transpose()) + p[3].clone();
        // TF's l2_normalize: y / sqrt(max(|y|², 1e-12)).
        let norm = (y.clone() * y.clone()).sum_dim(1).clamp_min(1e-12).sqrt();
        y / norm
    }

    /// The embeddings of `digits` as plain values, outside autodiff.
    fn embed_values(&self, digits: &Digits) -> Vec<f32> {
        let device = Device::flex();
        let out = Self::embed(pixels(digits, &device), &self.tensors(&device));
        out.to_data().try_to_vec::<f32>().unwrap_or_default()
    }
}

/// The pixels of `digits` scaled to [0, 1], `n x 64`.
fn pixels(digits: &Digits, device: &Device) -> Tensor<2> {
    let scaled: Vec<f32> = digits.pixels.iter().map(|p| p / 16.0).collect();
    Tensor::from_data(
        TensorData::new(scaled, [digits.len(), PIXELS]),
        (device, DType::F32),
    )
}

/// Runs Adam for `args.recipe.steps` batches; returns the loss of each step.
fn train_model(
    model: &mut Model,
    loss: &BurnLoss,
    train: &Digits,
    args: &Args,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<f32>, String> {
    let device = Device::flex().autodiff();
    let x_train = pixels(train, &device);
    let mut optimiser =
        keras_adam::KerasAdam::new(model.params.iter().map(Vec::len), args.recipe.lr);
    let mut by_class = sampler::members_by_class(train);
    let batch_labels: Vec<i64> = sampler::batch_labels().into_iter().map(i64::from).collect();
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(batch_labels.clone(), [batch_labels.len()]),
        &device,
    );
    let mut losses = Vec::with_capacity(args.recipe.steps);
    let mut indices = Vec::new();
    for _ in 0..args.recipe.steps {
        sampler::draw_batch(&mut by_class, rng, &mut indices);
        let rows: Vec<i64> = indices.iter().map(|&i| i64::from(i)).collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [indices.len()]), &device);
        let params = model.tensors(&device);
        let embeddings = Model::embed(x_train.clone().select(0, rows), &params);
        let value = loss
            .loss(embeddings, labels.clone())
            .map_err(|e| e.to_string())?;
        let grads = value.backward();
        losses.push(value.into_scalar::<f32>());
        optimiser.begin_step();
        for (i, (tensor, values)) in params.iter().zip(&mut model.params).enumerate() {
            // A parameter without a gradient is left as it is, as Keras does.
            if let Some(grad) = tensor.grad(&grads) {
                let grad = grad
                    .to_data()
                    .try_to_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))?;
                optimiser.update(i, values, &grad);
            }
        }
    }
    Ok(losses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_steps_train_and_keep_the_embeddings_unit_length() {
        let mut digits = Digits::default();
        for i in 0..200u32 {
            let label = i % data::CLASSES as u32;
            let image: Vec<f32> = (0..PIXELS as u32)
                .map(|p| ((p * 7 + i * 3 + label * 5) % 17) as f32)
                .collect();
            digits.pixels.extend_from_slice(&image);
            digits.labels.push(label);
        }
        let args = Args::parse_from(["train_digits_burn", "--steps", "5"]);
        let loss = BurnLoss::from_config(&args.recipe.config).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut model = Model::new(&mut rng);
        let start = model.params.clone();
        let losses = train_model(&mut model, &loss, &digits, &args, &mut rng).unwrap();
        assert_eq!(losses.len(), 5);
        assert!(losses.iter().all(|l| l.is_finite()));
        assert_ne!(model.params, start, "Adam moved the weights");
        let embeddings = model.embed_values(&digits);
        for row in embeddings.chunks(EMBEDDING) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
    }
}
