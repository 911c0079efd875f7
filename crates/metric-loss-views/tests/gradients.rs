//! Finite-difference checks (f64) of every two-view loss's analytic gradient with respect
//! to both views, over its reductions, with and without sample weights.

use metric_loss_core::MetricLoss;
use metric_loss_testkit::{check_views_gradient, values};
use metric_loss_views::{
    BarlowConfig, MultiNegativesRankLossConfig, SimCLRLossConfig, SimSiamLossConfig, VicRegConfig,
};

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

#[test]
fn simsiam_gradients_match_finite_differences() {
    let (a, b) = views(5, 4);
    let w = [1.0, 0.0, 2.0, 0.5, 1.5];
    for reduction in REDUCTIONS {
        for projection in ["negative_cosine_sim", "cosine_distance", "angular_distance"] {
            let loss = SimSiamLossConfig::default()
                .reduction(reduction)
                .projection_type(projection)
                .build()
                .unwrap();
            check(&loss, &a, &b, 4, None);
            check(&loss, &a, &b, 4, Some(&w));
            // One row broadcast against five, on either side.
            check(&loss, &a[..4], &b, 4, Some(&w));
            check(&loss, &a, &b[..4], 4, None);
        }
    }
}

#[test]
fn barlow_gradients_match_finite_differences() {
    let (a, b) = views(6, 3);
    for reduction in REDUCTIONS {
        for lambda in [5e-3, 1.0, -0.1] {
            let loss = BarlowConfig::default()
                .reduction(reduction)
                .lambda_(lambda)
                .build()
                .unwrap();
            check(&loss, &a, &b, 3, None);
            check(&loss, &a, &b, 3, Some(&[2.5]));
        }
    }
}

#[test]
fn vicreg_gradients_match_finite_differences() {
    // Columns of small spread, so that every variance hinge is active; and a wide one.
    let (a, b) = views(5, 4);
    let wide: Vec<f64> = b.iter().map(|v| 3.0 * v).collect();
    let w = [1.0, 0.0, 2.0, 0.5, 1.5];
    for reduction in ["none", "auto", "sum"] {
        let loss = VicRegConfig::default()
            .reduction(reduction)
            .build()
            .unwrap();
        check(&loss, &a, &b, 4, None);
        check(&loss, &a, &b, 4, Some(&w));
        check(&loss, &a, &wide, 4, Some(&w));
        let other = VicRegConfig::default()
            .reduction(reduction)
            .lambda_(1.0)
            .mu(2.0)
            .nu(25.0)
            .std_const(1e-2)
            .build()
            .unwrap();
        check(&other, &a, &wide, 4, None);
    }
}
