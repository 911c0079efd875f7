//! A miner of your own, and triplets you formed yourself, plugged into the built-in
//! `TripletLoss`.
//!
//! The miner is batch-hard with a twist used in person re-identification: the hardest
//! positive, and the hardest negative among the `k` nearest keys only (negatives farther
//! than the k-th nearest key are ignored as uninformative); an anchor with no positive, or
//! no negative among its k nearest, forms no triplet. Implementing `Miner` is all it
//! takes: the distance, the triplet formula, reduction and gradient are the loss's.
//!
//! The second half shows pytorch-metric-learning's `indices_tuple`: explicit
//! (anchor, positive, negative) triplets through `GivenTriplets`.
//!
//! Run with `cargo run -p metric-loss-examples --example custom_miner`.

use metric_loss_core::{
    Float, LossError, MetricLossExt, Mined, Miner, MiningView, RegisteredMiner, Workspace,
};
use metric_loss_mining::GivenTriplets;
use metric_loss_registry::{from_str, Format};
use metric_loss_triplet::TripletLoss;
use serde::{Deserialize, Serialize};

/// The hardest positive and the hardest negative among the `k` nearest keys.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "KConfig", into = "KConfig")]
pub struct HardNegativeAmongNearest {
    k: usize,
}

/// Per-call buffers, kept in the `Workspace` so that steady state allocates nothing.
#[derive(Debug, Default)]
struct Nearest<T> {
    row: Vec<T>,
}

impl<T: Float> Miner<T> for HardNegativeAmongNearest {
    fn name(&self) -> &str {
        "hard_negative_among_nearest"
    }

    fn mine(
        &self,
        view: MiningView<'_, T>,
        workspace: &mut Workspace,
        out: &mut [Mined<T>],
    ) -> Result<(), LossError> {
        let sorted = &mut workspace.get::<Nearest<T>>().row;
        for (i, slot) in out.iter_mut().enumerate() {
            let (row, ctx) = (view.row(i), view.context(i));
            // The k-th smallest distance of the row bounds the negatives considered.
            sorted.clear();
            sorted.extend_from_slice(row);
            let kth = self.k.min(row.len()) - 1;
            sorted.select_nth_unstable_by(kth, |a, b| a.partial_cmp(b).expect("finite distances"));
            let bound = sorted[kth];
            let positive = (0..row.len())
                .filter(|&j| ctx.is_positive(j))
                .reduce(|a, b| if row[b] > row[a] { b } else { a });
            let negative = (0..row.len())
                .filter(|&j| ctx.is_negative(j) && row[j] <= bound)
                .reduce(|a, b| if row[b] < row[a] { b } else { a });
            *slot = match (positive, negative) {
                (Some(p), Some(n)) => Mined::triplet(p, row[p], n, row[n]),
                _ => Mined::none(),
            };
        }
        Ok(())
    }
}

impl HardNegativeAmongNearest {
    /// The miner looking at each anchor's `k` nearest keys.
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

/// The config a file holds, checked by `new` when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KConfig {
    k: usize,
}

impl TryFrom<KConfig> for HardNegativeAmongNearest {
    type Error = LossError;

    fn try_from(config: KConfig) -> Result<Self, LossError> {
        Self::new(config.k)
    }
}

impl From<HardNegativeAmongNearest> for KConfig {
    fn from(part: HardNegativeAmongNearest) -> Self {
        Self { k: part.k }
    }
}

/// Config files name it `"HardNegativeAmongNearest"`.
#[typetag::serde(name = "HardNegativeAmongNearest")]
impl RegisteredMiner for HardNegativeAmongNearest {}

/// A TripletLoss config naming the miner, as a file would hold it.
const CONFIG: &str = r#"{
  "class_name": "TripletLoss",
  "config": {"miner": {"class_name": "HardNegativeAmongNearest", "config": {"k": 3}}}
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let x = [
        1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8, 0.6, -0.8, -1.0, 0.1,
    ];
    let labels = [0, 0, 1, 1, 2, 2];
    let loss = TripletLoss::builder()
        .miner(HardNegativeAmongNearest::new(3)?)
        .margin(0.5)
        .build()?;
    let out = loss.evaluate(&labels, &x, 2)?;
    println!(
        "k-nearest batch-hard: loss {:.6}, per example {:?}",
        out.loss, out.per_example
    );

    // Triplets formed by the caller: (anchor, positive, negative) row indices.
    let given = loss.with_miner(GivenTriplets::new(vec![(0, 1, 2), (3, 2, 5)])?);
    let out = given.evaluate(&labels, &x, 2)?;
    println!(
        "given triplets: loss {:.6}, per example {:?}",
        out.loss, out.per_example
    );

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
    use metric_loss_core::{NegativeStrategy, PositiveStrategy};
    use metric_loss_distances::DistanceKind;
    use metric_loss_testkit::{check_gradient, GradientPoint};

    use super::*;

    fn batch() -> (Vec<i64>, Vec<f64>) {
        let labels = vec![0, 1, 2, 0, 1, 2, 0, 1, 2, 3];
        let x = (0..30).map(|t| (t as f64 * 1.7).sin() * 1.3).collect();
        (labels, x)
    }

    /// With k = every key the miner is batch-hard, which is TF Similarity's hard/hard
    /// mining with degenerate anchors left out: the same numbers bit for bit (in f32,
    /// where TF's masked extrema return the distances exactly).
    #[test]
    fn k_of_all_keys_is_the_built_in_hard_hard_mining() {
        let (labels, x) = batch();
        let x: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let ours = TripletLoss::builder()
            .distance(DistanceKind::SquaredEuclidean)
            .miner(HardNegativeAmongNearest::new(labels.len()).unwrap())
            .build()
            .unwrap()
            .evaluate(&labels, &x, 3)
            .unwrap();
        let built_in = TripletLoss::builder()
            .distance(DistanceKind::SquaredEuclidean)
            .positive_mining(PositiveStrategy::Hard)
            .negative_mining(NegativeStrategy::Hard)
            .exclude_degenerate_anchors(true)
            .build()
            .unwrap()
            .evaluate(&labels, &x, 3)
            .unwrap();
        assert_eq!(ours.per_example, built_in.per_example);
        assert_eq!(ours.loss, built_in.loss);
        assert_eq!(ours.grad_queries, built_in.grad_queries);
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let (labels, x) = batch();
        let loss = TripletLoss::builder()
            .distance(DistanceKind::SquaredEuclidean)
            .miner(HardNegativeAmongNearest::new(4).unwrap())
            .build()
            .unwrap();
        let point = GradientPoint::new(&labels, &x, 3);
        check_gradient(&loss, point, 1e-7, 1e-6).unwrap();
    }

    #[test]
    fn given_triplets_score_only_their_anchors() {
        let (labels, x) = batch();
        let loss = TripletLoss::builder()
            .distance(DistanceKind::SquaredEuclidean)
            .margin(100.0)
            .build()
            .unwrap();
        let given = loss.with_miner(GivenTriplets::new(vec![(0, 3, 1), (4, 1, 9)]).unwrap());
        let out = given.evaluate(&labels, &x, 3).unwrap();
        let full = loss.evaluate(&labels, &x, 3).unwrap();
        assert!(out.per_example[0] > 0.0 && out.per_example[4] > 0.0);
        for i in [1, 2, 3, 5, 6, 7, 8, 9] {
            assert_eq!(out.per_example[i], 0.0);
            assert!(
                out.grad_queries[i * 3..i * 3 + 3].iter().all(|g| *g != 0.0)
                    == [3, 1, 9].contains(&i)
            );
        }
        assert_ne!(out.loss, full.loss);
        let point = GradientPoint::new(&labels, &x, 3);
        check_gradient(&given, point, 1e-7, 1e-6).unwrap();
    }

    #[test]
    fn bad_triplets_are_errors() {
        assert!(GivenTriplets::new(vec![(0, 1, 2), (0, 2, 1)]).is_err());
        let given = TripletLoss::default().with_miner(GivenTriplets::new(vec![(0, 1, 7)]).unwrap());
        let e = given
            .evaluate(&[0, 0, 1], &[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], 2)
            .unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(HardNegativeAmongNearest::new(0).is_err());
    }

    #[test]
    fn a_config_names_the_part_and_reads_back() {
        let loss = from_str(CONFIG, Format::Json).unwrap();
        let config = loss.get_config().unwrap();
        assert_eq!(
            config["config"]["miner"]["class_name"],
            "HardNegativeAmongNearest"
        );
        let again = metric_loss_registry::from_value(&config).unwrap();
        assert_eq!(again.get_config().unwrap(), config);
        let (labels, x) = (batch().0, batch().1);
        let (a, b) = (
            again.evaluate(&labels, &x, 3).unwrap(),
            loss.evaluate(&labels, &x, 3).unwrap(),
        );
        assert_eq!((a.loss, a.grad_queries), (b.loss, b.grad_queries));
        let e = from_str(&CONFIG.replace(r#"{"k": 3}"#, r#"{"k": 0}"#), Format::Json).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }

    #[test]
    fn the_example_runs() {
        main().unwrap();
    }
}
