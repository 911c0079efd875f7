//! A reducer of your own, plugged into the built-in `TripletLoss`.
//!
//! The reducer is online hard example mining (OHEM): the loss is the mean of the `k`
//! largest weighted per-example losses, so only the hardest anchors of a batch learn.
//! Implementing `Reducer` (the scalar and each example's gradient scale) is all it takes:
//! the distance, mining, triplet formula and gradient routing are the loss's.
//!
//! Run with `cargo run -p metric-loss-examples --example custom_reducer`.

use metric_loss_core::{Float, LossError, MetricLossExt, Reducer, RegisteredReducer, SampleWeight};
use metric_loss_registry::{from_str, Format};
use metric_loss_triplet::TripletLoss;
use serde::{Deserialize, Serialize};

/// The mean of the `k` largest weighted losses wᵢℓᵢ (of all of them when there are fewer);
/// ties at the k-th value are broken by the lower index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardestK {
    /// Checked when a config is read, as `new` checks it.
    #[serde(deserialize_with = "at_least_one")]
    k: usize,
}

/// A `k` of at least 1, or the error `new` gives.
fn at_least_one<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let k = usize::deserialize(deserializer)?;
    HardestK::new(k)
        .map(|_| k)
        .map_err(serde::de::Error::custom)
}

impl HardestK {
    /// The reducer keeping the `k` hardest examples.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for `k = 0`.
    pub fn new(k: usize) -> Result<Self, LossError> {
        if k == 0 {
            return Err(LossError::InvalidParameter {
                name: "k",
                value: 0.0,
                expected: "at least 1",
            });
        }
        Ok(Self { k })
    }
}

impl<T: Float> Reducer<T> for HardestK {
    fn name(&self) -> &str {
        "hardest_k"
    }

    fn reduce(&self, per_example: &[T], weights: &SampleWeight<'_, T>, scales: &mut [T]) -> T {
        let n = per_example.len();
        let k = self.k.min(n);
        let weighted = |i: usize| weights.get(i) * per_example[i];
        // The rank of example i among all: how many are strictly harder, or equally hard
        // with a lower index. O(n²), fine for a batch; no allocation.
        let mut total = T::ZERO;
        for (i, scale) in scales.iter_mut().enumerate() {
            let rank = (0..n)
                .filter(|&j| weighted(j) > weighted(i) || (weighted(j) == weighted(i) && j < i))
                .count();
            *scale = if rank < k {
                total += weighted(i);
                weights.get(i) / T::from_f64(k as f64)
            } else {
                T::ZERO
            };
        }
        if k == 0 {
            T::ZERO
        } else {
            total / T::from_f64(k as f64)
        }
    }
}

/// Config files name it `"HardestK"`.
#[typetag::serde(name = "HardestK")]
impl RegisteredReducer for HardestK {}

/// A TripletLoss config naming the reduction, as a file would hold it.
const CONFIG: &str = r#"{
  "class_name": "TripletLoss",
  "config": {"reduction": {"class_name": "HardestK", "config": {"k": 2}}}
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let x = [
        1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8, 0.6, -0.8, -1.0, 0.1,
    ];
    let labels = [0, 0, 1, 1, 2, 2];
    let loss = TripletLoss::builder().reducer(HardestK::new(2)?).build()?;
    let out = loss.evaluate(&labels, &x, 2)?;
    println!(
        "mean of the 2 hardest: {:.6} (per example {:?})",
        out.loss, out.per_example
    );
    println!("d loss / d x {:?}", out.grad_queries);

    // The loss from a config file that names the part, and its config written back.
    let from_config = from_str(CONFIG, Format::Json)?;
    println!(
        "from a config: loss {:.6}",
        from_config.evaluate(&labels, &x, 2)?.loss
    );
    println!("{}", from_config.to_config_string(Format::Json)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use metric_loss_core::Reduction;
    use metric_loss_distances::DistanceKind;
    use metric_loss_testkit::{check_gradient, GradientPoint};

    use super::*;

    fn batch() -> (Vec<i64>, Vec<f64>, Vec<f64>) {
        let labels = vec![0, 1, 2, 0, 1, 2, 0, 1, 2];
        let x = (0..27).map(|t| (t as f64 * 1.7).sin() * 1.3).collect();
        let w = (0..9).map(|i| 0.5 + i as f64 / 8.0).collect();
        (labels, x, w)
    }

    fn loss(reducer: impl metric_loss_core::AnyReducer) -> TripletLoss {
        TripletLoss::builder()
            .distance(DistanceKind::SquaredEuclidean)
            .margin(5.0)
            .reducer(reducer)
            .build()
            .unwrap()
    }

    /// k = n is the mean over the batch: Keras's sum_over_batch_size.
    #[test]
    fn k_of_all_is_the_batch_mean() {
        let (labels, x, _) = batch();
        let ours = loss(HardestK::new(9).unwrap())
            .evaluate(&labels, &x, 3)
            .unwrap();
        let mean = loss(Reduction::SumOverBatchSize)
            .evaluate(&labels, &x, 3)
            .unwrap();
        assert!((ours.loss - mean.loss).abs() < 1e-12);
        for (a, b) in ours.grad_queries.iter().zip(&mean.grad_queries) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn only_the_hardest_learn_and_the_gradient_matches_finite_differences() {
        let (labels, x, w) = batch();
        let hardest = loss(HardestK::new(3).unwrap());
        let out = hardest.evaluate(&labels, &x, 3).unwrap();
        let mut sorted = out.per_example.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        assert!((out.loss - sorted[..3].iter().sum::<f64>() / 3.0).abs() < 1e-12);
        let point = GradientPoint::new(&labels, &x, 3).with_weights(&w);
        check_gradient(&hardest, point, 1e-7, 1e-6).unwrap();
    }

    #[test]
    fn k_zero_is_an_error() {
        assert!(HardestK::new(0).is_err());
    }

    #[test]
    fn a_config_names_the_part_and_reads_back() {
        let loss = from_str(CONFIG, Format::Json).unwrap();
        let config = loss.get_config().unwrap();
        assert_eq!(config["config"]["reduction"]["class_name"], "HardestK");
        let again = metric_loss_registry::from_value(&config).unwrap();
        assert_eq!(again.get_config().unwrap(), config);
        let (labels, x) = (batch().0, batch().1);
        let (a, b) = (
            again.evaluate(&labels, &x, 3).unwrap(),
            loss.evaluate(&labels, &x, 3).unwrap(),
        );
        assert_eq!((a.loss, a.grad_queries), (b.loss, b.grad_queries));
        let e = from_str(&CONFIG.replace(r#"{"k": 2}"#, r#"{"k": 0}"#), Format::Json).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn the_example_runs() {
        main().unwrap();
    }
}
