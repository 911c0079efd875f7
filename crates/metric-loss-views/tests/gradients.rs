//! Finite-difference checks (f64) of every two-view loss's analytic gradient with respect
//! to both views, over its reductions, with and without sample weights.

use metric_loss_core::MetricLoss;
use metric_loss_testkit::{check_views_gradient, values};
use metric_loss_views::{MultiNegativesRankLossConfig, SimCLRLossConfig};

const REDUCTIONS: [&str; 3] = ["auto", "sum", "none"];

/// Two 5×4 views away from any kink: B is A plus noise.
fn views(rows: usize, dims: usize) -> (Vec<f64>, Vec<f64>) {
    let a = values(rows * dims, 11);
    let b = a
        .iter()
        .zip(values(rows * dims, 12))
        .map(|(x, e)| x + 0.5 * e)
        .collect();
    (a, b)
}

fn check(loss: &dyn MetricLoss, a: &[f64], b: &[f64], dims: usize, weights: Option<&[f64]>) {
    check_views_gradient(loss, (a, b, dims), weights, 1e-6, 1e-6).unwrap();
}

#[test]
fn multinegrank_gradients_match_finite_differences() {
    let (a, b) = views(5, 4);
    let w = [1.0, 0.0, 2.0, 0.5, 1.5];
    for reduction in REDUCTIONS {
        for scale in [20.0, 1.0, -3.0] {
            let loss = MultiNegativesRankLossConfig::default()
                .reduction(reduction)
                .scale(scale)
                .build()
                .unwrap();
            check(&loss, &a, &b, 4, None);
            check(&loss, &a, &b, 4, Some(&w));
            // More keys than queries, and fewer.
            check(&loss, &a[..12], &b, 4, None);
            check(&loss, &a, &b[..8], 4, Some(&w));
        }
    }
}

#[test]
fn simclr_gradients_match_finite_differences() {
    let (a, b) = views(5, 4);
    let w = [1.0, 0.0, 2.0, 0.5, 1.5];
    for reduction in REDUCTIONS {
        for temperature in [0.5, 1.0, -2.0] {
            let loss = SimCLRLossConfig::default()
                .reduction(reduction)
                .temperature(temperature)
                .build()
                .unwrap();
            check(&loss, &a, &b, 4, None);
            check(&loss, &a, &b, 4, Some(&w));
        }
    }
}
