//! Trains a small embedding model on the UCI handwritten digits with TripletLoss through
//! candle, and evaluates it by leave-one-out cosine retrieval on a held-out split.
//!
//! - Data: `examples/data/uci-digits/digits.csv.gz` (1797 8x8 images, CC BY 4.0, see the
//!   README next to it), split per class 70 / 30 with a fixed seed.
//! - Model (candle-nn): 64 -> 64 ReLU -> 16, then L2 normalisation; pixels scaled by 1/16.
//! - Loss: read from `examples/configs/triplet_default.toml` with `metric-loss-registry`
//!   (TripletLoss: cosine, hard positives, semi-hard negatives, margin 1.0), run as a
//!   candle op with its analytic gradient (`metric-loss-candle`). `--config` takes any
//!   registered loss; one with a parameter matrix (`examples/configs/arcface_digits.yaml`:
//!   ArcFace's class weights) has it trained by the same Adam as the model.
//! - Training: Adam with Keras's update rule and defaults (lr 1e-3, β₁ 0.9, β₂ 0.999,
//!   ε 1e-7, no weight decay; `digits/adam.rs`), batches of 10 classes x 8 distinct examples
//!   (TF Similarity's `MultiShotMemorySampler`), 1500 steps. Weights Glorot-uniform, biases
//!   zero (Keras's `Dense`).
//! - Evaluation on the test split: recall@1, recall@5 and mAP@R before and after
//!   training, and for PCA to 16 dimensions (fitted on the training split) as a baseline.
//! - Figure: an SVG with the loss curve and PCA-2 views of the test embeddings before and
//!   after training.
//!
//! The reference, the same recipe in TF Similarity 0.17.1 over 5 seeds: test mAP@R
//! 0.951 ± 0.008, recall@1 ≈ 0.985, 1500 steps in about 1.3 s of training; PCA-16 mAP@R
//! 0.563. Measured here (seeds 1..=10, `--seed N`): mAP@R 0.921-0.971, mean 0.947 (sd
//! 0.018), recall@1 mean 0.974; training 0.50-0.87 s (load average 1.0-1.4, 2 cores).
//! Seeds 1, 2 and 7 stay below 0.93: the spread comes mostly from the split (with the
//! split of seed 2, six training seeds gave 0.921-0.934; with seed 42's, 0.941-0.964,
//! measured with candle's AdamW, which scored as this Adam does over seeds 1..=10),
//! not from a difference from the recipe (initialisation, Adam, scaling, sampler and
//! metric were checked against Keras / TF Similarity).
//!
//! Run: `cargo run --release --example train_digits -- --help`

#[path = "digits/adam.rs"]
mod adam;
#[path = "digits/data.rs"]
mod data;
#[path = "digits/keras_adam.rs"]
mod keras_adam;
#[path = "digits/metrics.rs"]
mod metrics;
#[path = "digits/pca.rs"]
mod pca;
#[path = "digits/plot.rs"]
mod plot;
#[path = "digits/recipe.rs"]
mod recipe;
#[path = "digits/sampler.rs"]
mod sampler;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::Linear;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use metric_loss_candle::{CandleInput, CandleLoss};
use metric_loss_core::MetricLoss;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use data::{Digits, PIXELS};
use metrics::Retrieval;
use recipe::{EMBEDDING, HIDDEN};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Train a digit embedding with TripletLoss (candle) and evaluate retrieval")]
struct Args {
    /// The loss, data, steps, seed and learning rate.
    #[command(flatten)]
    recipe: recipe::Recipe,
    /// Output folder for the figure.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/demo"))]
    out: PathBuf,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() {
    // One thread unless the caller chose: candle sizes its own pool and rayon's global one
    // separately, and left to their defaults on a 2-core machine seed 42 trained in
    // 0.74-1.10 s (4 runs, load average 0.5); with RAYON_NUM_THREADS=1, 0.33-0.52 s (8 runs,
    // =2 gave 0.33-0.52 s too). The matrices (80 x 64) are too small to gain from splitting.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    if let Err(message) = run(&Args::parse()) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let loss = load_loss(&args.recipe.config)?;
    let (train, test) = args.recipe.split_data(&loss)?;
    let dev = Device::Cpu;
    let candle_err = |e: candle_core::Error| format!("candle: {e}");

    let mut rng = ChaCha8Rng::seed_from_u64(args.recipe.seed);
    let model = Model::new(&mut rng, &dev).map_err(candle_err)?;
    let x_train = scaled(&train, &dev).map_err(candle_err)?;
    let x_test = scaled(&test, &dev).map_err(candle_err)?;

    let before_embeddings = model.embed_values(&x_test).map_err(candle_err)?;
    let before = metrics::evaluate(&before_embeddings, EMBEDDING, &test.labels);
    let pca16 = pca::Pca::fit(&pixels_scaled(&train), PIXELS, EMBEDDING);
    println!(
        "PCA-16 (fitted on the training pixels) keeps {:.1}% of their variance",
        100.0 * pca16.explained_variance_ratio()
    );
    let baseline = metrics::evaluate(
        &pca16.transform(&pixels_scaled(&test)),
        EMBEDDING,
        &test.labels,
    );

    let loss = CandleLoss::from(loss);
    let start = Instant::now();
    let losses =
        train_model(&model, &loss, &x_train, &train, args, &mut rng).map_err(candle_err)?;
    let seconds = start.elapsed().as_secs_f64();

    let after_embeddings = model.embed_values(&x_test).map_err(candle_err)?;
    let after = metrics::evaluate(&after_embeddings, EMBEDDING, &test.labels);

    println!(
        "training: {} steps in {seconds:.3} s ({:.0} µs/step)",
        args.recipe.steps,
        seconds * 1e6 / args.recipe.steps.max(1) as f64
    );
    println!(
        "{:<22} {:>8} {:>9} {:>9}",
        "test retrieval", "mAP@R", "recall@1", "recall@5"
    );
    for (name, r) in [
        ("before training", before),
        ("PCA-16 of the pixels", baseline),
        ("after training", after),
    ] {
        println!(
            "{name:<22} {:>8.3} {:>9.3} {:>9.3}",
            r.map_at_r, r.recall_at_1, r.recall_at_5
        );
    }

    let figure = write_figure(
        args,
        &losses,
        &before_embeddings,
        &after_embeddings,
        &test,
        (before, after),
    )?;
    println!("figure: {}", figure.display());
    println!(
        "test: mAP@R={:.3} recall@1={:.3} (before: mAP@R={:.3}; PCA-16: mAP@R={:.3})",
        after.map_at_r, after.recall_at_1, before.map_at_r, baseline.map_at_r
    );
    Ok(())
}

/// Reads the loss from a Keras-shaped config file (`class_name` and a `[config]` table) with
/// the workspace's registry.
fn load_loss(path: &Path) -> Result<Box<dyn MetricLoss>, String> {
    metric_loss_registry::load(path)
        .map(|loss| loss.into_metric_loss())
        .map_err(|e| e.to_string())
}

/// 64 -> 64 ReLU -> 16, then L2 normalisation.
struct Model {
    hidden: Linear,
    output: Linear,
    vars: Vec<Var>,
}

impl Model {
    /// Glorot-uniform weights (Keras's default) and zero biases, from `rng`.
    fn new(rng: &mut ChaCha8Rng, dev: &Device) -> candle_core::Result<Self> {
        let mut vars = Vec::new();
        let mut layer = |inputs: usize, outputs: usize| -> candle_core::Result<Linear> {
            let bound = (6.0 / (inputs + outputs) as f32).sqrt();
            let w: Vec<f32> = (0..inputs * outputs)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let w = Var::from_vec(w, (outputs, inputs), dev)?;
            let b = Var::zeros(outputs, DType::F32, dev)?;
            let linear = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
            vars.extend([w, b]);
            Ok(linear)
        };
        let hidden = layer(PIXELS, HIDDEN)?;
        let output = layer(HIDDEN, EMBEDDING)?;
        Ok(Self {
            hidden,
            output,
            vars,
        })
    }

    /// Unit-length embeddings of `x` (`n x 64`).
    fn embed(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.output.forward(&self.hidden.forward(x)?.relu()?)?;
        // TF's l2_normalize: y / sqrt(max(|y|², 1e-12)).
        let norm = y.sqr()?.sum_keepdim(D::Minus1)?.maximum(1e-12)?.sqrt()?;
        y.broadcast_div(&norm)
    }

    /// The embeddings as plain values, outside autograd.
    fn embed_values(&self, x: &Tensor) -> candle_core::Result<Vec<f32>> {
        self.embed(x)?.detach().flatten_all()?.to_vec1()
    }
}

/// The pixels scaled to [0, 1].
fn pixels_scaled(digits: &Digits) -> Vec<f32> {
    digits.pixels.iter().map(|p| p / 16.0).collect()
}

fn scaled(digits: &Digits, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(pixels_scaled(digits), (digits.len(), PIXELS), dev)
}

/// Runs the optimiser for `args.recipe.steps` batches; returns the loss of each step.
fn train_model(
    model: &Model,
    loss: &CandleLoss,
    x_train: &Tensor,
    train: &Digits,
    args: &Args,
    rng: &mut ChaCha8Rng,
) -> candle_core::Result<Vec<f32>> {
    // A loss with a parameter matrix (ArcFace's class weights, ProxyAnchor's proxies) trains
    // it with the model: its Var goes to the optimiser and into every call.
    let parameters = loss.parameters_var(x_train.device(), DType::F32)?;
    let mut vars = model.vars.clone();
    vars.extend(parameters.iter().cloned());
    let mut optimiser = adam::Adam::new(vars, args.recipe.lr);
    let mut by_class = sampler::members_by_class(train);
    // Every batch has the same label layout: 8 of class 0, 8 of class 1, ...
    let labels = Tensor::new(sampler::batch_labels().as_slice(), x_train.device())?;

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.recipe.steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} train [{bar:30}] {pos}/{len} {per_sec} {msg}")
            .map_err(candle_core::Error::wrap)?
            .progress_chars("=> "),
    );
    let mut losses = Vec::with_capacity(args.recipe.steps);
    let mut indices = Vec::new();
    for step in 0..args.recipe.steps {
        sampler::draw_batch(&mut by_class, rng, &mut indices);
        let idx = Tensor::new(indices.as_slice(), x_train.device())?;
        let x = x_train.index_select(&idx, 0)?;
        let embeddings = model.embed(&x)?;
        let value = match &parameters {
            Some(w) => {
                let input = CandleInput::new(&embeddings, &labels).with_parameters(w.as_tensor());
                loss.compute(&input)?.loss
            }
            None => loss.loss(&embeddings, &labels)?,
        };
        optimiser.backward_step(&value)?;
        losses.push(value.to_scalar::<f32>()?);
        if step % 10 == 9 || step + 1 == args.recipe.steps {
            bar.set_position(step as u64 + 1);
            bar.set_message(format!(
                "loss {:.4}",
                running_mean(&losses, 100).last().copied().unwrap_or(0.0)
            ));
        }
    }
    bar.finish_and_clear();
    Ok(losses)
}

/// The mean of the last `window` values at each step.
fn running_mean(values: &[f32], window: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0f64;
    for (i, v) in values.iter().enumerate() {
        sum += f64::from(*v);
        if i >= window {
            sum -= f64::from(values[i - window]);
        }
        out.push((sum / (i + 1).min(window) as f64) as f32);
    }
    out
}

/// Draws the loss curve and the PCA-2 views; returns the figure's path.
fn write_figure(
    args: &Args,
    losses: &[f32],
    before: &[f32],
    after: &[f32],
    test: &Digits,
    scores: (Retrieval, Retrieval),
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(&args.out).map_err(|e| {
        format!(
            "cannot create the output folder {}: {e}",
            args.out.display()
        )
    })?;
    let dir = args.out.canonicalize().unwrap_or_else(|_| args.out.clone());
    let path = dir.join("train_digits.svg");
    let project = |x: &[f32]| pca::Pca::fit(x, EMBEDDING, 2).transform(x);
    let (before_2d, after_2d) = (project(before), project(after));
    let panels = [
        plot::Projection {
            title: format!(
                "test embeddings before training (mAP@R {:.3})",
                scores.0.map_at_r
            ),
            points: &before_2d,
            labels: &test.labels,
        },
        plot::Projection {
            title: format!(
                "after {} steps (mAP@R {:.3})",
                losses.len(),
                scores.1.map_at_r
            ),
            points: &after_2d,
            labels: &test.labels,
        },
    ];
    plot::write_svg(&path, losses, &running_mean(losses, 100), &panels)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_mean_by_hand() {
        assert_eq!(
            running_mean(&[1.0, 3.0, 5.0, 7.0], 2),
            vec![1.0, 2.0, 4.0, 6.0]
        );
    }

    #[test]
    fn the_shipped_config_is_the_default_triplet_loss() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/triplet_default.toml");
        let loss = load_loss(&path).unwrap();
        assert_eq!(
            format!("{loss:?}"),
            format!("{:?}", metric_loss_triplet::TripletLoss::default())
        );
    }

    #[test]
    fn the_arcface_config_fits_the_demo_model() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/arcface_digits.yaml");
        let loss = load_loss(&path).unwrap();
        let shape = loss
            .parameter_shape()
            .expect("ArcFace owns its class weights");
        // W is embedding width x classes.
        assert_eq!((shape.rows, shape.cols), (EMBEDDING, 10));
    }

    #[test]
    fn config_errors_name_the_file_and_problem() {
        let err = load_loss(Path::new("no/such/loss.toml")).unwrap_err();
        assert!(err.contains("no/such/loss.toml"), "{err}");
        let bad =
            std::env::temp_dir().join(format!("train_digits_bad_{}.toml", std::process::id()));
        std::fs::write(
            &bad,
            "class_name = \"TripletLoss\"\n[config]\ndistance = \"nope\"\n",
        )
        .unwrap();
        let err = load_loss(&bad).unwrap_err();
        std::fs::remove_file(&bad).ok();
        assert!(
            err.contains("train_digits_bad") && err.contains("nope"),
            "{err}"
        );
    }
}
