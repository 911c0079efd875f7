//! A loss of your own over whole rows of the distance matrix: its formula, its derivative
//! and a registration.
//!
//! The loss is neighbourhood components analysis (Goldberger, Roweis, Hinton and
//! Salakhutdinov, 2004): anchor i picks key j with probability e^{−s·Dᵢⱼ} / Σ_{k≠i} e^{−s·Dᵢₖ},
//! and ℓᵢ = −ln of the probability that it picks a positive. Everything else (validation,
//! the distance matrix, threads, the reduction, the gradient through the distance, finite
//! checks, the config keys of the distance and reducer) is the shared [`RowLoss`] driver's.
//!
//! Run with `cargo run -p metric-loss-examples --example custom_row_loss [CONFIG]`; the
//! default config is `examples/configs/nca.toml`.

use metric_loss_distances::lanes::DenseFloat;
use metric_loss_registry::RegisteredLoss;
use metric_loss_triplet::{row_metric_loss, DenseParts, RowLoss, RowView};
use serde::{Deserialize, Serialize};

/// The loss: the shared `distance` and `reduction` keys (flattened) and its own.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct NcaLoss {
    /// The distance and reducer.
    #[serde(flatten)]
    pub(crate) parts: DenseParts,
    /// The factor s on the distances (default 1.0).
    pub(crate) scale: Scale,
}

/// The factor on the distances.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Scale(pub f64);

impl Default for Scale {
    fn default() -> Self {
        Scale(1.0)
    }
}

impl RowLoss for NcaLoss {
    type Scratch = ();

    fn name(&self) -> &str {
        "nca"
    }

    fn parts(&self) -> &DenseParts {
        &self.parts
    }

    /// With xⱼ = −s·Dᵢⱼ, ℓᵢ = lse_{j≠i}(xⱼ) − lse_{j∈P}(xⱼ), so ∂ℓᵢ/∂Dᵢⱼ =
    /// s·(softmax over the positives − softmax over all keys)ⱼ. Each log-sum-exp is shifted
    /// by its largest term, so neither sum underflows. An anchor without a positive has
    /// ℓᵢ = 0.
    #[inline(always)]
    fn row<T: DenseFloat>(&self, row: &RowView<'_, T>, grad: &mut [T], _: &mut ()) -> T {
        let s = T::from_f64(self.scale.0);
        let me = row.self_col.unwrap_or(usize::MAX);
        let (mut top_all, mut top_pos) = (T::from_f64(f64::NEG_INFINITY), None::<T>);
        for (j, &d) in row.distances.iter().enumerate() {
            if j != me {
                top_all = top_all.max(-s * d);
            }
            if row.is_positive(j) {
                top_pos = Some(top_pos.map_or(-s * d, |t| t.max(-s * d)));
            }
        }
        let Some(top_pos) = top_pos else {
            grad.fill(T::ZERO);
            return T::ZERO;
        };
        let (mut all, mut pos) = (T::ZERO, T::ZERO);
        for (j, &d) in row.distances.iter().enumerate() {
            if j != me {
                all += (-s * d - top_all).exp();
            }
            if row.is_positive(j) {
                pos += (-s * d - top_pos).exp();
            }
        }
        for (j, (g, &d)) in grad.iter_mut().zip(row.distances).enumerate() {
            let over_all = if j == me {
                T::ZERO
            } else {
                (-s * d - top_all).exp() / all
            };
            let over_pos = if row.is_positive(j) {
                (-s * d - top_pos).exp() / pos
            } else {
                T::ZERO
            };
            *g = s * (over_pos - over_all);
        }
        (top_all + all.ln()) - (top_pos + pos.ln())
    }
}

row_metric_loss!(NcaLoss);

// The registration: `class_name = "NCALoss"` in a config file builds this loss.
#[typetag::serde(name = "NCALoss")]
impl RegisteredLoss for NcaLoss {}

#[path = "shared/config_demo.rs"]
mod config_demo;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    config_demo::run(&config_demo::config_path("nca.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metric_loss_core::{LossError, MetricLossExt, Reduction};
    use metric_loss_distances::DistanceKind;
    use metric_loss_testkit::{check_gradient, values, GradientPoint};

    fn in_code() -> NcaLoss {
        NcaLoss {
            parts: DenseParts::default()
                .distance(DistanceKind::SquaredEuclidean)
                .reducer(Reduction::SumOverBatchSize),
            scale: Scale(2.0),
        }
    }

    /// ℓᵢ written out from the embeddings: squared euclidean distances, no shifts.
    fn direct(labels: &[i64], x: &[f64], dims: usize, s: f64) -> Vec<f64> {
        let row = |i: usize| &x[i * dims..(i + 1) * dims];
        let d = |i: usize, j: usize| -> f64 {
            row(i)
                .iter()
                .zip(row(j))
                .map(|(a, b)| (a - b) * (a - b))
                .sum()
        };
        (0..labels.len())
            .map(|i| {
                let others = (0..labels.len()).filter(|&j| j != i);
                let all: f64 = others.clone().map(|j| (-s * d(i, j)).exp()).sum();
                let pos: f64 = others
                    .filter(|&j| labels[j] == labels[i])
                    .map(|j| (-s * d(i, j)).exp())
                    .sum();
                if pos == 0.0 {
                    0.0
                } else {
                    -(pos / all).ln()
                }
            })
            .collect()
    }

    #[test]
    fn the_config_file_builds_the_loss_written_in_code() {
        let bad = r#"{"class_name": "NCALoss", "config": {"distance": "nope"}}"#;
        let err = config_demo::check_config_file("nca.toml", &in_code(), bad);
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_loss_is_the_formula_written_out_and_its_gradient_matches_finite_differences() {
        let (n, dims) = (12, 5);
        let x: Vec<f64> = values(n * dims, 7).iter().map(|v| 0.5 * v).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
        let out = in_code().evaluate(&labels, &x, dims).unwrap();
        let want = direct(&labels, &x, dims, 2.0);
        for (i, (got, want)) in out.per_example.iter().zip(&want).enumerate() {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{i}: {got} vs {want}"
            );
        }
        let mean = want.iter().sum::<f64>() / n as f64;
        assert!((out.loss - mean).abs() <= 1e-12 * mean.abs().max(1.0));
        // A label no other row has: its anchor gives 0.
        let mut lonely = labels.clone();
        lonely[0] = 99;
        assert_eq!(
            in_code().evaluate(&lonely, &x, dims).unwrap().per_example[0],
            0.0
        );

        check_gradient(
            &in_code(),
            GradientPoint::new(&labels, &x, dims),
            1e-7,
            1e-6,
        )
        .unwrap();
        // Against a separate key set (a memory bank), both gradients.
        let keys: Vec<f64> = values(7 * dims, 8).iter().map(|v| 0.5 * v).collect();
        let key_labels = [0, 1, 2, 3, 0, 1, 2];
        let point = GradientPoint::new(&labels, &x, dims).with_keys(&key_labels, &keys);
        check_gradient(&in_code(), point, 1e-7, 1e-6).unwrap();
    }

    #[test]
    fn far_apart_rows_overflow_into_a_typed_error_not_a_nan() {
        // e^{-s D} underflows for every key but is shifted: still finite.
        let x = [0.0f32, 0.0, 300.0, 0.0, 0.0, 300.0];
        let out = in_code().evaluate(&[0, 0, 1], &x, 2).unwrap();
        assert!(out.per_example.iter().all(|v| v.is_finite()), "{out:?}");
        // Distances beyond f32's range are the driver's typed error.
        let huge = [0.0f32, 0.0, 3e19, 0.0, 0.0, 3e19];
        let err = in_code().evaluate(&[0, 0, 1], &huge, 2).unwrap_err();
        assert!(
            matches!(err, LossError::NonFiniteDistance { .. }),
            "{err:?}"
        );
    }
}
