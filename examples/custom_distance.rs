//! A distance of your own, plugged into the built-in `TripletLoss`.
//!
//! The distance is a diagonal Mahalanobis (a per-dimension weighted squared euclidean):
//! d(q, k) = Σₜ wₜ (qₜ − kₜ)², for when some embedding dimensions should count more than
//! others. Implementing `Distance` (the matrix and the two vector-Jacobian products) is all
//! it takes: mining, the triplet formula, reduction and the gradient routing are the
//! loss's, unchanged. Registered with typetag, a config file names it like a built-in:
//! `"distance": {"class_name": "DiagonalMahalanobis", "config": {"weights": [1, 4]}}`.
//!
//! Run with `cargo run -p metric-loss-examples --example custom_distance`.

use metric_loss_core::{Distance, Embeddings, Float, LossError, MetricLossExt, RegisteredDistance};
use metric_loss_registry::{from_str, Format};
use metric_loss_triplet::TripletLoss;
use serde::{Deserialize, Serialize};

/// d(q, k) = Σₜ wₜ (qₜ − kₜ)², with non-negative weights wₜ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WeightsConfig", into = "WeightsConfig")]
pub struct DiagonalMahalanobis {
    weights: Vec<f64>,
}

/// The config a file holds, checked by [`DiagonalMahalanobis::new`] when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsConfig {
    weights: Vec<f64>,
}

impl TryFrom<WeightsConfig> for DiagonalMahalanobis {
    type Error = LossError;

    fn try_from(config: WeightsConfig) -> Result<Self, LossError> {
        Self::new(config.weights)
    }
}

impl From<DiagonalMahalanobis> for WeightsConfig {
    fn from(distance: DiagonalMahalanobis) -> Self {
        Self {
            weights: distance.weights,
        }
    }
}

/// Config files name it `"DiagonalMahalanobis"`.
#[typetag::serde(name = "DiagonalMahalanobis")]
impl RegisteredDistance for DiagonalMahalanobis {}

/// A TripletLoss config naming the distance, as a file would hold it.
const CONFIG: &str = r#"{
  "class_name": "TripletLoss",
  "config": {
    "distance": {"class_name": "DiagonalMahalanobis", "config": {"weights": [1.0, 4.0]}},
    "margin": 0.5
  }
}"#;

impl DiagonalMahalanobis {
    /// The distance with one weight per embedding dimension.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for a negative or non-finite weight.
    pub fn new(weights: Vec<f64>) -> Result<Self, LossError> {
        if let Some(&w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(LossError::InvalidParameter {
                name: "weights",
                value: w,
                expected: "finite, non-negative weights",
            });
        }
        Ok(Self { weights })
    }

    fn weight<T: Float>(&self, t: usize) -> T {
        T::from_f64(self.weights[t])
    }
}

impl<T: Float> Distance<T> for DiagonalMahalanobis {
    fn name(&self) -> &'static str {
        "diagonal_mahalanobis"
    }

    fn matrix(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        _same: bool,
        _scratch: &mut Vec<T>,
        out: &mut [T],
    ) -> Result<(), LossError> {
        if q.cols() != self.weights.len() {
            return Err(LossError::InvalidParameter {
                name: "embedding width",
                value: q.cols() as f64,
                expected: "as many dimensions as the distance has weights",
            });
        }
        for i in 0..q.rows() {
            for j in 0..k.rows() {
                let mut d = T::ZERO;
                for (t, (a, b)) in q.row(i).iter().zip(k.row(j)).enumerate() {
                    d += self.weight::<T>(t) * (*a - *b) * (*a - *b);
                }
                out[i * k.rows() + j] = d;
            }
        }
        Ok(())
    }

    /// ∂d/∂qₜ = 2 wₜ (qₜ − kₜ).
    fn pair_vjp_query(&self, q: &[T], k: &[T], _value: T, g: T, grad_q: &mut [T]) {
        for (t, o) in grad_q.iter_mut().enumerate() {
            *o += T::from_f64(2.0) * g * self.weight::<T>(t) * (q[t] - k[t]);
        }
    }

    /// ∂d/∂kₜ = −2 wₜ (qₜ − kₜ).
    fn pair_vjp_key(&self, q: &[T], k: &[T], _value: T, g: T, grad_k: &mut [T]) {
        for (t, o) in grad_k.iter_mut().enumerate() {
            *o -= T::from_f64(2.0) * g * self.weight::<T>(t) * (q[t] - k[t]);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The second dimension counts four times as much as the first.
    let loss = TripletLoss::builder()
        .distance(DiagonalMahalanobis::new(vec![1.0, 4.0])?)
        .margin(0.5)
        .build()?;
    let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    let out = loss.evaluate(&[0, 0, 1, 1], &x, 2)?;
    println!("loss {:.6}", out.loss);
    println!("per example {:?}", out.per_example);
    println!("d loss / d x {:?}", out.grad_queries);

    // The same loss from a config file, and its config written back.
    let from_config = from_str(CONFIG, Format::Json)?;
    assert_eq!(from_config.evaluate(&[0, 0, 1, 1], &x, 2)?.loss, out.loss);
    println!("{}", from_config.to_config_string(Format::Json)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use metric_loss_distances::DistanceKind;
    use metric_loss_testkit::{check_gradient, GradientPoint};

    use super::*;

    /// A point away from ties and clamps: 9 rows in 3 classes.
    fn batch() -> (Vec<i64>, Vec<f64>) {
        let labels = vec![0, 1, 2, 0, 1, 2, 0, 1, 2];
        let x = (0..27).map(|t| (t as f64 * 1.7).sin() * 1.3).collect();
        (labels, x)
    }

    #[test]
    fn unit_weights_give_the_built_in_squared_euclidean() {
        let (labels, x) = batch();
        let ours = TripletLoss::builder()
            .distance(DiagonalMahalanobis::new(vec![1.0; 3]).unwrap())
            .build()
            .unwrap()
            .evaluate(&labels, &x, 3)
            .unwrap();
        let built_in = TripletLoss::builder()
            .distance(DistanceKind::SquaredEuclidean)
            .build()
            .unwrap()
            .evaluate(&labels, &x, 3)
            .unwrap();
        assert!((ours.loss - built_in.loss).abs() < 1e-12 * built_in.loss.abs().max(1.0));
        for (a, b) in ours.grad_queries.iter().zip(&built_in.grad_queries) {
            assert!((a - b).abs() < 1e-10, "{a} vs {b}");
        }
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let (labels, x) = batch();
        let (key_labels, keys) = (
            vec![2, 1, 0, 1],
            (0..12).map(|t| t as f64 / 5.0 - 1.0).collect::<Vec<_>>(),
        );
        let loss = TripletLoss::builder()
            .distance(DiagonalMahalanobis::new(vec![0.5, 2.0, 1.0]).unwrap())
            .build()
            .unwrap();
        let weights: Vec<f64> = (0..9).map(|i| 0.5 + i as f64 / 10.0).collect();
        for keys in [None, Some((&key_labels[..], &keys[..]))] {
            let point = GradientPoint {
                labels: &labels,
                queries: &x,
                dims: 3,
                keys,
                weights: Some(&weights),
                remove_diagonal: true,
            };
            check_gradient(&loss, point, 1e-6, 1e-6).unwrap();
        }
    }

    #[test]
    fn bad_weights_and_widths_are_errors() {
        assert!(DiagonalMahalanobis::new(vec![1.0, -1.0]).is_err());
        assert!(DiagonalMahalanobis::new(vec![f64::NAN]).is_err());
        let loss = TripletLoss::builder()
            .distance(DiagonalMahalanobis::new(vec![1.0; 2]).unwrap())
            .build()
            .unwrap();
        let e = loss
            .evaluate(&[0, 1], &[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0], 3)
            .unwrap_err();
        assert!(e.to_string().contains("weights"), "{e}");
    }

    #[test]
    fn a_config_names_the_distance_and_reads_back() {
        let loss = from_str(CONFIG, Format::Json).unwrap();
        let config = loss.get_config().unwrap();
        assert_eq!(
            config["config"]["distance"]["class_name"],
            "DiagonalMahalanobis"
        );
        assert_eq!(config["config"]["distance"]["config"]["weights"][1], 4.0);
        let again = metric_loss_registry::from_value(&config).unwrap();
        let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
        let (a, b) = (
            again.evaluate(&[0, 0, 1, 1], &x, 2).unwrap(),
            loss.evaluate(&[0, 0, 1, 1], &x, 2).unwrap(),
        );
        assert_eq!((a.loss, a.grad_queries), (b.loss, b.grad_queries));
        assert_eq!(again.get_config().unwrap(), config);
    }

    #[test]
    fn a_dense_loss_config_names_the_distance_and_reads_back() {
        let config = r#"{"class_name": "MultiSimilarityLoss", "config": {
            "distance": {"class_name": "DiagonalMahalanobis", "config": {"weights": [1.0, 4.0]}},
            "reduction": "sum"}}"#;
        let loss = from_str(config, Format::Json).unwrap();
        let written = loss.get_config().unwrap();
        assert_eq!(
            written["config"]["distance"]["class_name"],
            "DiagonalMahalanobis"
        );
        let again = metric_loss_registry::from_value(&written).unwrap();
        let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
        let (a, b) = (
            again.evaluate(&[0, 1, 0, 1], &x, 2).unwrap(),
            loss.evaluate(&[0, 1, 0, 1], &x, 2).unwrap(),
        );
        assert!(b.loss > 0.0);
        assert_eq!((a.loss, a.grad_queries), (b.loss, b.grad_queries));
    }

    #[test]
    fn a_config_with_bad_weights_is_an_error_naming_them() {
        let bad = CONFIG.replace("[1.0, 4.0]", "[1.0, -4.0]");
        let e = from_str(&bad, Format::Json).unwrap_err().to_string();
        assert!(e.contains("weights"), "{e}");
    }

    #[test]
    fn the_example_runs() {
        main().unwrap();
    }
}
