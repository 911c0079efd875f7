//! Finite-difference checks (f64, central differences) of every loss's analytic gradient,
//! with respect to the queries and, for separate keys, the keys.

use metric_loss_core::{MetricLoss, MetricLossExt, Reduction};
use metric_loss_losses::{
    CircleLossConfig, MultiSimilarityLossConfig, PNLossConfig, SoftNearestNeighborLossConfig, XBM,
};
use metric_loss_testkit::{check_gradient, GradientPoint};
use metric_loss_triplet::TripletLossConfig;

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn matrix(&mut self, rows: usize, dims: usize, scale: f64) -> Vec<f64> {
        (0..rows * dims).map(|_| self.normal() * scale).collect()
    }
}

/// Rows of norm `norm` (cosine works on any rows; keeping norms below 1 keeps the clamp
/// inactive, where the loss is differentiable).
fn rows_of_norm(x: &mut [f64], dims: usize, norm: f64) {
    for row in x.chunks_exact_mut(dims) {
        let s = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        for v in row {
            *v *= norm / s;
        }
    }
}

struct Case<'a> {
    labels: &'a [i64],
    x: Vec<f64>,
    keys: Option<(&'a [i64], Vec<f64>)>,
    weights: Option<Vec<f64>>,
    dims: usize,
}

/// The test kit's finite-difference check at the case's point.
fn check(loss: &dyn MetricLoss, c: &Case<'_>) {
    let mut point = GradientPoint::new(c.labels, &c.x, c.dims);
    if let Some((labels, k)) = &c.keys {
        point = point.with_keys(labels, k);
    }
    if let Some(w) = &c.weights {
        point = point.with_weights(w);
    }
    check_gradient(loss, point, 1e-6, 1e-5).unwrap();
}

const LABELS: [i64; 10] = [0, 1, 2, 0, 1, 2, 0, 3, 1, 4];
const KEY_LABELS: [i64; 7] = [2, 0, 1, 3, 0, 5, 1];

fn losses(distance: &str) -> Vec<Box<dyn MetricLoss>> {
    vec![
        Box::new(PNLossConfig::default().distance(distance).build().unwrap()),
        Box::new(
            PNLossConfig::default()
                .distance(distance)
                .positive_mining_strategy("easy")
                .negative_mining_strategy("hard")
                .margin(0.3)
                .build()
                .unwrap(),
        ),
        Box::new(
            MultiSimilarityLossConfig::default()
                .distance(distance)
                .epsilon(1.0)
                .build()
                .unwrap(),
        ),
        Box::new(
            CircleLossConfig::default()
                .distance(distance)
                .build()
                .unwrap(),
        ),
        Box::new(
            CircleLossConfig::default()
                .distance(distance)
                .gamma(32.0)
                .margin(0.25)
                .reduction(Reduction::Sum)
                .build()
                .unwrap(),
        ),
        Box::new(
            SoftNearestNeighborLossConfig::default()
                .distance(distance)
                .temperature(0.7)
                .build()
                .unwrap(),
        ),
    ]
}

#[test]
fn every_loss_and_distance_on_random_batches() {
    let dims = 5;
    for (seed, distance) in [
        "cosine",
        "euclidean",
        "squared_euclidean",
        "inner_product",
        "manhattan",
        "snr",
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng(seed as u64 + 11);
        let mut x = rng.matrix(LABELS.len(), dims, 0.5);
        let mut k = rng.matrix(KEY_LABELS.len(), dims, 0.5);
        if distance == "cosine" || distance == "inner_product" {
            rows_of_norm(&mut x, dims, 0.7);
            rows_of_norm(&mut k, dims, 0.7);
        }
        let weights: Vec<f64> = (0..LABELS.len()).map(|_| rng.uniform() * 2.0).collect();
        for loss in losses(distance) {
            check(
                loss.as_ref(),
                &Case {
                    labels: &LABELS,
                    x: x.clone(),
                    keys: None,
                    weights: None,
                    dims,
                },
            );
            check(
                loss.as_ref(),
                &Case {
                    labels: &LABELS,
                    x: x.clone(),
                    keys: Some((&KEY_LABELS, k.clone())),
                    weights: Some(weights.clone()),
                    dims,
                },
            );
        }
    }
}

#[test]
fn soft_nn_rows_recomputed_after_underflow() {
    // Squared distances of hundreds at T = 0.5: every e^{-D/T} of some rows underflows in
    // f64 too, so those rows take the shifted path; the gradient is still exact.
    let dims = 4;
    let mut rng = Rng(5);
    let x = rng.matrix(LABELS.len(), dims, 40.0);
    let loss = SoftNearestNeighborLossConfig::default()
        .temperature(0.5)
        .build()
        .unwrap();
    let c = Case {
        labels: &LABELS,
        x,
        keys: None,
        weights: None,
        dims,
    };
    let value = loss.evaluate(c.labels, &c.x, c.dims).unwrap().loss;
    assert!(value.is_finite());
    check(&loss, &c);
}

#[test]
fn xbm_gradient_is_the_batch_gradient_with_memory_detached() {
    let dims = 4;
    let mut rng = Rng(99);
    let first = rng.matrix(6, dims, 1.0);
    let second = rng.matrix(6, dims, 1.0);
    let (l1, l2) = ([0i64, 1, 2, 0, 1, 2], [2i64, 0, 1, 1, 3, 0]);
    for wrapped in [
        Box::new(
            TripletLossConfig::default()
                .distance("l2")
                .margin(1.0)
                .build()
                .unwrap(),
        ) as Box<dyn MetricLoss>,
        Box::new(
            MultiSimilarityLossConfig::default()
                .distance("sql2")
                .center(2.0)
                .build()
                .unwrap(),
        ),
        Box::new(PNLossConfig::default().distance("l1").build().unwrap()),
        Box::new(SoftNearestNeighborLossConfig::default().build().unwrap()),
    ] {
        let xbm = XBM::new(wrapped, 10, 0).unwrap();
        // The loss of the second call as a function of its embeddings, memory = call 1.
        let f = |x: &[f64]| {
            xbm.reset_state();
            xbm.evaluate(&l1, &first, dims).unwrap();
            xbm.evaluate(&l2, x, dims).unwrap()
        };
        let out = f(&second);
        assert_eq!(xbm.memory_labels(), [&l2[..], &l1[..4]].concat());
        let h = 1e-6;
        let scale = 1.0 + out.grad_queries.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for t in 0..second.len() {
            let (mut p, mut m) = (second.clone(), second.clone());
            p[t] += h;
            m[t] -= h;
            let fd = (f(&p).loss - f(&m).loss) / (2.0 * h);
            assert!(
                (fd - out.grad_queries[t]).abs() <= 2e-6 * scale,
                "{}: {t}: {fd} vs {}",
                xbm.inner().name(),
                out.grad_queries[t]
            );
        }
    }
}
