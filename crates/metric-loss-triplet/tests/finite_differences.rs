//! The analytic gradient against central finite differences, in f64, for every distance ×
//! positive strategy × negative strategy × margin, with keys = queries and with a separate
//! key set. Random batches (no ties, no clamps hit) where every anchor has a positive and a
//! negative.

mod common;

use common::{unit_rows, Rng};
use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt, SampleWeight};
use metric_loss_distances::DistanceKind;
use metric_loss_triplet::{TripletLoss, TripletLossConfig};

const STEP: f64 = 1e-6;

fn configs() -> Vec<TripletLossConfig> {
    let mut out = Vec::new();
    for distance in DistanceKind::ALL {
        for pos in ["easy", "hard"] {
            for neg in ["easy", "hard", "semi-hard"] {
                for soft in [false, true] {
                    let c = TripletLossConfig::default()
                        .distance(distance.name())
                        .positive_mining_strategy(pos)
                        .negative_mining_strategy(neg)
                        .soft_margin(soft);
                    out.push(if soft { c } else { c.margin(0.7) });
                }
            }
        }
    }
    out
}

fn batch(
    seed: u64,
    n: usize,
    dims: usize,
    distance: DistanceKind,
) -> (Vec<i64>, Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    // Classes of 3: everyone has positives and negatives.
    let labels: Vec<i64> = (0..n as i64).map(|i| (i * 7) % (n as i64 / 3)).collect();
    let mut x = rng.normals(n * dims);
    if distance == DistanceKind::Cosine {
        // Unit rows but not exactly: keeps self-distances off the clamp.
        unit_rows(&mut x, dims);
        x.iter_mut().for_each(|v| *v *= 0.9);
    }
    let weights: Vec<f64> = (0..n).map(|_| 0.5 + rng.uniform()).collect();
    (labels, x, weights)
}

fn loss_value(
    loss: &TripletLoss,
    labels: &[i64],
    x: &[f64],
    keys: Option<(&[i64], &[f64])>,
    w: &[f64],
    dims: usize,
) -> f64 {
    let q = Batch::new(
        labels,
        Embeddings::from_row_major(x, labels.len(), dims).unwrap(),
    )
    .unwrap();
    let mut input = LossInput::new(q).with_sample_weight(SampleWeight::PerExample(w));
    if let Some((kl, kx)) = keys {
        let k = Batch::new(kl, Embeddings::from_row_major(kx, kl.len(), dims).unwrap()).unwrap();
        input = input.with_keys(k).remove_diagonal(false);
    }
    loss.compute(&input).unwrap().loss
}

fn check(name: &str, analytic: &[f64], f: impl Fn(&[f64]) -> f64, x: &[f64]) {
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let (mut up, mut down) = (x.to_vec(), x.to_vec());
        up[i] += STEP;
        down[i] -= STEP;
        let numeric = (f(&up) - f(&down)) / (2.0 * STEP);
        let err = (numeric - analytic[i]).abs() / (1.0 + analytic[i].abs());
        worst = worst.max(err);
        assert!(
            err < 1e-6,
            "{name}: coordinate {i}: analytic {} vs numeric {numeric}",
            analytic[i]
        );
    }
    assert!(worst.is_finite());
}

#[test]
fn gradient_matches_finite_differences_with_keys_equal_to_queries() {
    let (n, dims) = (12, 5);
    for (c, config) in configs().into_iter().enumerate() {
        let loss = config.build().unwrap();
        let (labels, x, w) = batch(
            100 + c as u64,
            n,
            dims,
            loss.parts().distance_kind().expect("a built-in distance"),
        );
        let q = Batch::new(&labels, Embeddings::from_row_major(&x, n, dims).unwrap()).unwrap();
        let out = loss
            .compute(&LossInput::new(q).with_sample_weight(SampleWeight::PerExample(&w)))
            .unwrap();
        let name = format!("{config:?}");
        check(
            &name,
            &out.grad_queries,
            |x| loss_value(&loss, &labels, x, None, &w, dims),
            &x,
        );
    }
}

#[test]
fn gradient_matches_finite_differences_for_separate_keys() {
    let (n, m, dims) = (6, 15, 4);
    for (c, config) in configs().into_iter().enumerate() {
        let loss = config.build().unwrap();
        let (_, x, w) = batch(
            500 + c as u64,
            n,
            dims,
            loss.parts().distance_kind().expect("a built-in distance"),
        );
        let (_, kx, _) = batch(
            900 + c as u64,
            m,
            dims,
            loss.parts().distance_kind().expect("a built-in distance"),
        );
        let labels: Vec<i64> = (0..n as i64).map(|i| i % 3).collect();
        let key_labels: Vec<i64> = (0..m as i64).map(|j| j % 3).collect();
        let q = Batch::new(&labels, Embeddings::from_row_major(&x, n, dims).unwrap()).unwrap();
        let k = Batch::new(
            &key_labels,
            Embeddings::from_row_major(&kx, m, dims).unwrap(),
        )
        .unwrap();
        let input = LossInput::new(q)
            .with_keys(k)
            .remove_diagonal(false)
            .with_sample_weight(SampleWeight::PerExample(&w));
        let out = loss.compute(&input).unwrap();
        assert_eq!(
            (out.grad_queries.len(), out.grad_keys.len()),
            (n * dims, m * dims)
        );
        let name = format!("{config:?}");
        check(
            &format!("{name} (queries)"),
            &out.grad_queries,
            |x| loss_value(&loss, &labels, x, Some((&key_labels, &kx)), &w, dims),
            &x,
        );
        check(
            &format!("{name} (keys)"),
            &out.grad_keys,
            |kx| loss_value(&loss, &labels, &x, Some((&key_labels, kx)), &w, dims),
            &kx,
        );
    }
}

#[test]
fn degenerate_anchors_route_the_gradient_to_the_row_extreme() {
    // Singletons and a one-class batch under cosine with rows of norm < 1: the sentinel
    // gradient lands on the (smooth) self-distance max(1 − ‖x‖², 0), as in TF.
    let dims = 3;
    for labels in [vec![0i64, 1, 2, 3, 4], vec![7i64; 5], vec![0, 0, 1, 2, 2]] {
        let mut rng = Rng::new(labels.len() as u64 + labels[0] as u64);
        let mut x = rng.normals(labels.len() * dims);
        unit_rows(&mut x, dims);
        x.iter_mut().for_each(|v| *v *= 0.8);
        let w = vec![1.0; labels.len()];
        for config in configs()
            .into_iter()
            .filter(|c| c.distance.name() == Some("cosine"))
        {
            let loss = config.build().unwrap();
            let q = Batch::new(
                &labels,
                Embeddings::from_row_major(&x, labels.len(), dims).unwrap(),
            )
            .unwrap();
            let out = loss.compute(&LossInput::new(q)).unwrap();
            check(
                &format!("{labels:?} {config:?}"),
                &out.grad_queries,
                |x| loss_value(&loss, &labels, x, None, &w, dims),
                &x,
            );
        }
    }
}
