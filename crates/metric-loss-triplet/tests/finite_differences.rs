//! The analytic gradient against central finite differences, in f64, for every distance ×
//! positive strategy × negative strategy × margin, with keys = queries and with a separate
//! key set. Random batches (no ties, no clamps hit) where every anchor has a positive and a
//! negative.

mod common;

use common::{unit_rows, Rng};
use metric_loss_distances::DistanceKind;
use metric_loss_testkit::{check_gradient, GradientPoint};
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

/// The test kit's check, with the tolerance these smooth random batches allow.
fn check(name: &str, loss: &TripletLoss, point: GradientPoint<'_>) {
    if let Err(e) = check_gradient(loss, point, STEP, 1e-6) {
        panic!("{name}: {e}");
    }
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
        let point = GradientPoint::new(&labels, &x, dims).with_weights(&w);
        check(&format!("{config:?}"), &loss, point);
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
        let point = GradientPoint::new(&labels, &x, dims)
            .with_keys(&key_labels, &kx)
            .with_weights(&w);
        check(&format!("{config:?}"), &loss, point);
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
            let point = GradientPoint::new(&labels, &x, dims).with_weights(&w);
            check(&format!("{labels:?} {config:?}"), &loss, point);
        }
    }
}
