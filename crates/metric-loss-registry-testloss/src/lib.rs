//! Test fixture for `metric-loss-registry`: a loss registered from a crate of its own.
//!
//! `ScaledNorm` (class name `"ScaledNorm"`) is ℓᵢ = scale · ‖xᵢ‖², reduced by Keras's
//! mean. The registry's tests load it through the same call as the built-in losses, which
//! proves that registrations in another crate are found once that crate is linked (and,
//! in `tests/unlinked.rs`, that they are not when nothing names it).

use metric_loss_core::{
    reduce, Float, LossError, LossInput, LossOutput, MetricLoss, Reduction, Workspace,
};
use metric_loss_registry::RegisteredLoss;
use serde::{Deserialize, Serialize};

/// The arguments of [`ScaledNorm`], unchecked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaledNormConfig {
    /// The factor (finite, positive; default 1).
    pub scale: f64,
    /// The loss's name (default `"scaled_norm"`).
    pub name: String,
}

impl Default for ScaledNormConfig {
    fn default() -> Self {
        Self {
            scale: 1.0,
            name: "scaled_norm".into(),
        }
    }
}

/// ℓᵢ = scale · ‖xᵢ‖², mean-reduced.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaledNorm {
    config: ScaledNormConfig,
}

impl ScaledNorm {
    /// Validates `config`.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for a scale that is not finite and positive.
    pub fn new(config: ScaledNormConfig) -> Result<Self, LossError> {
        if !(config.scale.is_finite() && config.scale > 0.0) {
            return Err(LossError::InvalidParameter {
                name: "scale",
                value: config.scale,
                expected: "a finite positive number",
            });
        }
        Ok(Self { config })
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        input.validate()?;
        let x = input.queries().embeddings();
        out.reset(x.rows(), 0, x.cols(), input.wants_gradient());
        let scale = T::from_f64(self.config.scale);
        let batch = T::from_f64(Reduction::Auto.example_scale(x.rows()));
        for i in 0..x.rows() {
            out.per_example[i] = scale * x.row(i).iter().map(|v| *v * *v).sum::<T>();
            if input.wants_gradient() {
                let g = T::from_f64(2.0) * scale * input.sample_weight().get(i) * batch;
                let cols = x.cols();
                for (o, v) in out.grad_queries[i * cols..(i + 1) * cols]
                    .iter_mut()
                    .zip(x.row(i))
                {
                    *o = g * *v;
                }
            }
        }
        out.loss = reduce(&out.per_example, &input.sample_weight(), Reduction::Auto);
        Ok(())
    }
}

impl Serialize for ScaledNorm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(serializer)
    }
}

// Validate while deserialising; `invalid_config` keeps the typed `LossError` for the registry.
impl<'de> Deserialize<'de> for ScaledNorm {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ScaledNorm::new(ScaledNormConfig::deserialize(deserializer)?)
            .map_err(metric_loss_registry::invalid_config)
    }
}

impl MetricLoss for ScaledNorm {
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
}

#[typetag::serde(name = "ScaledNorm")]
impl RegisteredLoss for ScaledNorm {}

/// Does nothing; calling it names this crate, so that the linker keeps its registration
/// (the alternative to `metric_loss_registry::link!(metric_loss_registry_testloss)`).
pub fn register() {}
