//! A loss of your own on mined anchors: its formula, its derivative and a registration.
//!
//! The loss is Hoffer & Ailon's distance-ratio loss (*Deep metric learning using triplet
//! network*, 2015): with pᵢ and qᵢ the mined positive and negative distances,
//! d⁺ = e^p / (e^p + e^q) = σ(p − q) and ℓᵢ = (d⁺)², or d⁺ itself with `squared = false`.
//! Everything else (validation, the distance matrix and its fast paths, mining, the
//! reduction, routing the gradient through ties and the distance, threads, finite checks,
//! the config keys of the distance, miner and reducer) is the shared [`MinedLoss`] driver's.
//!
//! Run with `cargo run -p metric-loss-examples --example custom_loss [CONFIG]`; the default
//! config is `examples/configs/distance_ratio.toml`.

use metric_loss_core::{Float, LossError};
use metric_loss_registry::RegisteredLoss;
use metric_loss_triplet::{mined_metric_loss, AnchorScore, AnchorView, MinedLoss, MinedParts};
use serde::{Deserialize, Serialize};

/// The loss: TF Similarity's part keys (flattened) and its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct DistanceRatioLoss {
    /// The distance, miner and reducer (`distance`, `positive_mining_strategy`, ...).
    #[serde(flatten)]
    pub(crate) parts: MinedParts,
    /// ℓ = (d⁺)² when `true` (the paper's form), d⁺ otherwise.
    pub(crate) squared: Squared,
}

/// Whether the ratio is squared (default `true`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Squared(pub bool);

impl Default for Squared {
    fn default() -> Self {
        Squared(true)
    }
}

impl MinedLoss for DistanceRatioLoss {
    fn name(&self) -> &str {
        "distance_ratio"
    }

    fn parts(&self) -> &MinedParts {
        &self.parts
    }

    /// d⁺ = σ(p − q), so ∂d⁺/∂p = d⁺(1 − d⁺) = −∂d⁺/∂q; squaring multiplies it by 2d⁺.
    fn anchor<T: Float>(&self, a: &mut AnchorView<'_, T>) -> Result<AnchorScore<T>, LossError> {
        let d = T::ONE / (T::ONE + (a.mined.negative - a.mined.positive).exp());
        let slope = d * (T::ONE - d);
        Ok(if self.squared.0 {
            let slope = T::from_f64(2.0) * d * slope;
            AnchorScore::new(d * d, slope, -slope)
        } else {
            AnchorScore::new(d, slope, -slope)
        })
    }
}

mined_metric_loss!(DistanceRatioLoss);

// The registration: `class_name = "DistanceRatioLoss"` in a config file builds this loss.
#[typetag::serde(name = "DistanceRatioLoss")]
impl RegisteredLoss for DistanceRatioLoss {}

#[path = "shared/config_demo.rs"]
mod config_demo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    config_demo::run(&config_demo::config_path("distance_ratio.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metric_loss_core::{MetricLossExt, NegativeStrategy, Reduction};
    use metric_loss_distances::DistanceKind;
    use metric_loss_testkit::{check_gradient, GradientPoint};

    fn in_code() -> DistanceRatioLoss {
        DistanceRatioLoss {
            parts: MinedParts::default()
                .distance(DistanceKind::Euclidean)
                .negative_mining(NegativeStrategy::Hard)
                .reducer(Reduction::Sum),
            squared: Squared(true),
        }
    }

    #[test]
    fn the_config_file_builds_the_loss_written_in_code() {
        let bad = r#"{"class_name": "DistanceRatioLoss", "config": {"distance": "nope"}}"#;
        config_demo::check_config_file("distance_ratio.toml", &in_code(), bad);
    }

    #[test]
    fn the_formula_is_the_paper_s_and_its_gradient_matches_finite_differences() {
        // One anchor with p = 0 and q = ln 3: d⁺ = 1/(1 + 3) = 0.25.
        let loss = in_code();
        let x = [0.0f64, 0.0, 0.0, 0.0, 3f64.ln(), 0.0];
        let out = loss.evaluate(&[0, 0, 1], &x, 2).unwrap();
        assert!((out.per_example[0] - 0.0625).abs() < 1e-15, "{out:?}");
        let x = [
            1.0, 0.2, 0.8, 0.6, 0.1, 1.0, -0.6, -0.8, 0.3, -0.9, 0.5, 0.5,
        ];
        for squared in [true, false] {
            let loss = DistanceRatioLoss {
                squared: Squared(squared),
                ..in_code()
            };
            let point = GradientPoint::new(&[0, 0, 1, 1, 2, 2], &x, 2);
            check_gradient(&loss, point, 1e-7, 1e-6).unwrap();
        }
    }
}
