//! A loss of your own, written outside the workspace's loss crates against the core
//! `MetricLoss` trait, registered with `metric-loss-registry`, read from a config file and
//! run.
//!
//! The loss is a batch "center loss": ℓᵢ = scale · ‖xᵢ − cᵧᵢ‖², where cᵧ is the mean of the
//! batch's embeddings with label y, treated as a constant (as center loss does), so
//! ∂ℓᵢ/∂xᵢ = 2 · scale · (xᵢ − cᵧᵢ).
//!
//! Run with `cargo run -p metric-loss-examples --example custom_loss [CONFIG]`; the default
//! config is `examples/configs/center_loss.toml`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use metric_loss_core::{
    reduce, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, Reduction,
    Workspace,
};
use metric_loss_registry::{ConfigExt, Format, RegisteredLoss};
use serde::{Deserialize, Serialize};

/// The config: the key names a config file uses, with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CenterLossConfig {
    /// Multiplies every per-example loss (finite and positive).
    scale: f64,
    /// Keras's reduction name.
    reduction: String,
    /// The loss's name.
    name: String,
}

impl Default for CenterLossConfig {
    fn default() -> Self {
        Self {
            scale: 0.5,
            reduction: "auto".into(),
            name: "center_loss".into(),
        }
    }
}

/// The validated loss. It (de)serialises as its config; invalid configs are errors.
#[derive(Debug, Clone)]
struct CenterLoss {
    config: CenterLossConfig,
    reduction: Reduction,
}

impl TryFrom<CenterLossConfig> for CenterLoss {
    type Error = LossError;

    fn try_from(config: CenterLossConfig) -> Result<Self, LossError> {
        if !(config.scale.is_finite() && config.scale > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "scale",
                value: config.scale,
                expected: "a finite positive number",
            });
        }
        let reduction = config.reduction.parse()?;
        Ok(Self { config, reduction })
    }
}

impl Serialize for CenterLoss {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CenterLoss {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `invalid_config` keeps the typed LossError for the registry's error.
        CenterLoss::try_from(CenterLossConfig::deserialize(deserializer)?)
            .map_err(metric_loss_registry::invalid_config)
    }
}

impl CenterLoss {
    /// One implementation, generic over the precision.
    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        input.validate()?;
        let batch = input.queries();
        let (x, labels) = (batch.embeddings(), batch.labels());
        let (n, dims) = (x.rows(), x.cols());
        out.reset(n, 0, dims, input.wants_gradient());

        // Class centroids of the batch (in f64).
        let mut sums: HashMap<i64, (Vec<f64>, usize)> = HashMap::new();
        for (i, label) in labels.iter().enumerate() {
            let (sum, count) = sums.entry(*label).or_insert_with(|| (vec![0.0; dims], 0));
            for (s, v) in sum.iter_mut().zip(x.row(i)) {
                *s += v.to_f64();
            }
            *count += 1;
        }

        let scale = self.config.scale;
        let batch_scale = self.reduction.example_scale(n);
        for i in 0..n {
            let (sum, count) = &sums[&labels[i]];
            let diff: Vec<f64> = x
                .row(i)
                .iter()
                .zip(sum)
                .map(|(v, s)| v.to_f64() - s / *count as f64)
                .collect();
            out.per_example[i] = T::from_f64(scale * diff.iter().map(|d| d * d).sum::<f64>());
            if input.wants_gradient() {
                let g = 2.0 * scale * input.sample_weight().get(i).to_f64() * batch_scale;
                for (o, d) in out.grad_queries[i * dims..(i + 1) * dims]
                    .iter_mut()
                    .zip(&diff)
                {
                    *o = T::from_f64(g * d);
                }
            }
        }
        out.loss = reduce(&out.per_example, &input.sample_weight(), self.reduction);
        Ok(())
    }
}

impl MetricLoss for CenterLoss {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn compute_f32(
        &self,
        input: &LossInput<'_, f32>,
        _: &mut Workspace,
        out: &mut LossOutput<f32>,
    ) -> Result<(), LossError> {
        self.run(input, out)
    }

    fn compute_f64(
        &self,
        input: &LossInput<'_, f64>,
        _: &mut Workspace,
        out: &mut LossOutput<f64>,
    ) -> Result<(), LossError> {
        self.run(input, out)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

// The registration: `class_name = "CenterLoss"` in a config file now builds a CenterLoss.
#[typetag::serde(name = "CenterLoss")]
impl RegisteredLoss for CenterLoss {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/center_loss.toml"),
        PathBuf::from,
    );
    run(&path)
}

/// Loads the loss from `path`, runs it, writes its config back.
pub(crate) fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "registered losses: {:?}",
        metric_loss_registry::registered_names()
    );

    // Read the loss from the file, through the same call as the built-in losses.
    let loss = metric_loss_registry::load(path)?;
    println!("loaded {} from {}", loss.name(), path.display());

    // Run it: two classes in 2-D.
    let labels = [0, 0, 0, 1, 1];
    let x = [1.0f32, 0.0, 0.8, 0.6, 0.9, -0.1, -1.0, 0.2, -0.6, -0.8];
    let out = loss.evaluate(&labels, &x, 2)?;
    println!("per-example losses: {:?}", out.per_example);
    println!("loss ({}): {}", loss.reduction(), out.loss);
    for i in 0..labels.len() {
        println!("  d loss / d x{i} = {:?}", out.grad_query_row(i, 2));
    }

    // The same numbers as the loss built in code from the same arguments.
    let in_code = CenterLoss::try_from(CenterLossConfig {
        scale: 0.25,
        reduction: "sum".into(),
        name: "center_loss".into(),
    })?;
    if path.ends_with("configs/center_loss.toml") {
        let expected = in_code.evaluate(&labels, &x, 2)?;
        assert_eq!(out, expected, "the config and the code disagree");
        println!("same numbers as CenterLoss built in code");
    }

    // get_config writes it back; a bad config is a typed error.
    println!("get_config:\n{}", loss.to_config_string(Format::Json)?);
    println!("in TOML:\n{}", in_code.to_config_string(Format::Toml)?);
    let err = metric_loss_registry::from_str(
        "class_name = \"CenterLoss\"\n[config]\nscale = -1.0\n",
        Format::Toml,
    )
    .unwrap_err();
    println!("a bad config: {err}");
    assert!(matches!(
        err.loss_error(),
        Some(LossError::InvalidParameter { name: "scale", .. })
    ));
    Ok(())
}
