//! A pair loss of your own, pytorch-metric-learning style: its elements, their derivatives
//! and a registration.
//!
//! The loss is the contrastive loss of Hadsell, Chopra and LeCun (*Dimensionality
//! reduction by learning an invariant mapping*, 2006): each positive pair costs d², each
//! negative pair relu(margin − d)², and each set is reduced on its own by the reducer (two
//! sub-losses, as in PML's `ContrastiveLoss`). Everything else (validation, the distance
//! matrix, the reductions, per-example shares and sample weights, the gradient through the
//! distance, threads, finite checks, the config keys of the distance and reducer) is the
//! shared [`PairLoss`] driver's.
//!
//! Run with `cargo run -p metric-loss-examples --example custom_pair_loss [CONFIG]`; the
//! default config is `examples/configs/squared_contrastive.json`.

use metric_loss_distances::lanes::DenseFloat;
use metric_loss_pml::{pair_metric_loss, Elements, PairFormula, PairLoss, Scores};
use metric_loss_registry::RegisteredLoss;
use metric_loss_triplet::DenseParts;
use serde::{Deserialize, Serialize};

/// The loss: the shared `distance` and `reduction` keys (flattened) and its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SquaredContrastiveLoss {
    /// The distance, and the reducer of each sub-loss.
    #[serde(flatten)]
    pub(crate) parts: DenseParts,
    /// The distance beyond which a negative pair costs nothing (default 1.0).
    pub(crate) margin: Margin,
}

/// The negative pairs' margin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Margin(pub f64);

impl Default for Margin {
    fn default() -> Self {
        Margin(1.0)
    }
}

impl PairFormula for SquaredContrastiveLoss {
    /// Positive pairs, then negative pairs.
    const SUB_LOSSES: usize = 2;

    fn forward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &mut [Elements<T>]) -> bool {
        let margin = T::from_f64(self.margin.0);
        let (pos, neg) = subs.split_at_mut(1);
        for i in s.rows() {
            // `sides` reads the row's labels once (no label lookup per pair).
            for (j, (&d, (positive, negative))) in s.row(i).iter().zip(s.sides(i)).enumerate() {
                if positive {
                    pos[0].push_plain(i, j, d * d);
                } else if negative {
                    let h = (margin - d).max(T::ZERO);
                    neg[0].push_plain(i, j, h * h);
                }
            }
        }
        true
    }

    /// ∂(d²)/∂d = 2d; ∂relu(margin − d)²/∂d = −2·relu(margin − d).
    fn backward<T: DenseFloat>(&self, s: &Scores<'_, T>, subs: &[Elements<T>], grad: &mut [T]) {
        let margin = T::from_f64(self.margin.0);
        for (i, j, _, _, scale) in subs[0].of_rows(s.rows()) {
            let d = s.row(i)[j];
            s.grad_row(grad, i)[j] += scale * (d + d);
        }
        for (i, j, _, _, scale) in subs[1].of_rows(s.rows()) {
            let h = (margin - s.row(i)[j]).max(T::ZERO);
            s.grad_row(grad, i)[j] -= scale * (h + h);
        }
    }
}

impl PairLoss for SquaredContrastiveLoss {
    fn name(&self) -> &str {
        "squared_contrastive"
    }

    fn parts(&self) -> &DenseParts {
        &self.parts
    }
}

pair_metric_loss!(SquaredContrastiveLoss);

// The registration: `"class_name": "SquaredContrastiveLoss"` in a config file builds this
// loss.
#[typetag::serde(name = "SquaredContrastiveLoss")]
impl RegisteredLoss for SquaredContrastiveLoss {}

#[path = "shared/config_demo.rs"]
mod config_demo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    config_demo::run(&config_demo::config_path("squared_contrastive.json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt, SampleWeight};
    use metric_loss_distances::DistanceKind;
    use metric_loss_pml::{AvgNonZeroReducer, LpDistance, MeanReducer};
    use metric_loss_testkit::{check_gradient, values, GradientPoint};

    fn with_parts(parts: DenseParts) -> SquaredContrastiveLoss {
        SquaredContrastiveLoss {
            parts,
            margin: Margin(1.0),
        }
    }

    #[test]
    fn the_config_file_builds_the_loss_written_in_code() {
        let in_code = with_parts(
            DenseParts::default()
                .distance(LpDistance::default())
                .reducer(AvgNonZeroReducer {}),
        );
        let bad = r#"{"class_name": "SquaredContrastiveLoss", "config": {"reduction": "nope"}}"#;
        let err = config_demo::check_config_file("squared_contrastive.json", &in_code, bad);
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_loss_is_the_formula_written_out_and_its_gradient_matches_finite_differences() {
        let (n, dims) = (10, 3);
        let x = values(n * dims, 5);
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        let loss = with_parts(
            DenseParts::default()
                .distance(DistanceKind::Euclidean)
                .reducer(MeanReducer {}),
        );
        let out = loss.evaluate(&labels, &x, dims).unwrap();
        // Written out: the mean over the positive pairs plus the mean over the negatives.
        let d = |i: usize, j: usize| -> f64 {
            (0..dims)
                .map(|t| (x[i * dims + t] - x[j * dims + t]).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for i in 0..n {
            for j in (0..n).filter(|&j| j != i) {
                if labels[i] == labels[j] {
                    pos.push(d(i, j).powi(2));
                } else {
                    neg.push((1.0 - d(i, j)).max(0.0).powi(2));
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let want = mean(&pos) + mean(&neg);
        assert!(
            (out.loss - want).abs() <= 1e-12 * want,
            "{} vs {want}",
            out.loss
        );
        // Each anchor's share: the per-example values sum to the loss.
        let shares: f64 = out.per_example.iter().sum();
        assert!((shares - out.loss).abs() <= 1e-12 * want);

        check_gradient(&loss, GradientPoint::new(&labels, &x, dims), 1e-7, 1e-6).unwrap();
        let weights: Vec<f64> = (0..n).map(|i| 0.5 + i as f64 / 10.0).collect();
        let point = GradientPoint::new(&labels, &x, dims).with_weights(&weights);
        check_gradient(&loss, point, 1e-7, 1e-6).unwrap();
    }

    #[test]
    fn a_weight_of_zero_removes_its_anchor_s_pairs() {
        let (n, dims) = (6, 2);
        let x = values(n * dims, 9);
        let labels = [0, 0, 1, 1, 2, 2];
        let loss = with_parts(DenseParts::default().reducer(metric_loss_pml::SumReducer {}));
        let batch = Batch::new(&labels, Embeddings::from_row_major(&x, n, dims).unwrap()).unwrap();
        let plain = loss.compute(&LossInput::new(batch)).unwrap();
        let w = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        let input = LossInput::new(batch).with_sample_weight(SampleWeight::PerExample(&w));
        let dropped = loss.compute(&input).unwrap();
        assert!((dropped.loss - (plain.loss - plain.per_example[2])).abs() < 1e-12);
    }
}
