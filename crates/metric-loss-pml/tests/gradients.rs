//! The analytic gradients of the pair losses against central differences (f64), with
//! every PML distance, the reducers, sample weights and separate keys.

use metric_loss_core::{MetricLoss, PartConfig, RegisteredDistance, RegisteredReducer};
use metric_loss_pml::{
    AvgNonZeroReducer, ContrastiveLossConfig, CosineSimilarity, DotProductSimilarity, LpDistance,
    MeanReducer, NTXentLossConfig, SumReducer, SupConLossConfig,
};
use metric_loss_testkit::{check_gradient, GradientPoint};

const LABELS: [i64; 9] = [0, 1, 2, 0, 1, 2, 0, 3, 1];
const KEY_LABELS: [i64; 6] = [2, 0, 1, 3, 0, 5];
const DIMS: usize = 4;

/// Pseudo-random rows in [−1, 1) (a linear congruential generator): away from every kink
/// (no equal coordinates, which the L1 distance would sit on, no pair on a margin).
fn rows(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n * DIMS)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn distances() -> Vec<PartConfig<dyn RegisteredDistance>> {
    vec![
        LpDistance::default().into(),
        LpDistance::new(false, 2, 2).unwrap().into(),
        LpDistance::new(true, 1, 1).unwrap().into(),
        CosineSimilarity::default().into(),
        CosineSimilarity::new(2).unwrap().into(),
        DotProductSimilarity::new(false, 1).unwrap().into(),
        "cosine".into(),
    ]
}

fn reducers() -> Vec<PartConfig<dyn RegisteredReducer>> {
    vec![
        MeanReducer {}.into(),
        SumReducer {}.into(),
        AvgNonZeroReducer {}.into(),
    ]
}

fn losses() -> Vec<Box<dyn MetricLoss>> {
    let mut out: Vec<Box<dyn MetricLoss>> = Vec::new();
    for d in distances() {
        for r in reducers() {
            // Margins chosen so that hinges are active for every distance's range.
            out.push(Box::new(
                ContrastiveLossConfig::default()
                    .pos_margin(0.05)
                    .neg_margin(1.3)
                    .distance(d.clone())
                    .reducer(r.clone())
                    .build()
                    .unwrap(),
            ));
            out.push(Box::new(
                NTXentLossConfig::default()
                    .temperature(0.5)
                    .distance(d.clone())
                    .reducer(r.clone())
                    .build()
                    .unwrap(),
            ));
            out.push(Box::new(
                SupConLossConfig::default()
                    .temperature(0.3)
                    .distance(d.clone())
                    .reducer(r.clone())
                    .build()
                    .unwrap(),
            ));
        }
    }
    out
}

#[test]
fn batch_against_itself() {
    let x = rows(LABELS.len(), 1);
    for loss in losses() {
        let point = GradientPoint::new(&LABELS, &x, DIMS);
        check_gradient(loss.as_ref(), point, 1e-6, 1e-5)
            .unwrap_or_else(|e| panic!("{loss:?}: {e}"));
    }
}

#[test]
fn separate_keys_and_sample_weights() {
    let x = rows(LABELS.len(), 1);
    let k = rows(KEY_LABELS.len(), 2);
    let w = [1.0, 0.5, 2.0, 0.0, 1.5, 1.0, 0.25, 3.0, 1.0];
    for loss in losses() {
        let mut point = GradientPoint::new(&LABELS, &x, DIMS)
            .with_keys(&KEY_LABELS, &k)
            .with_weights(&w);
        point.remove_diagonal = false;
        check_gradient(loss.as_ref(), point, 1e-6, 1e-5)
            .unwrap_or_else(|e| panic!("{loss:?}: {e}"));
    }
}
