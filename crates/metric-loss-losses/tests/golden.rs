//! Golden values TF Similarity 0.17.1 printed for each loss (f32, cosine unless stated,
//! `Reduction.NONE` per anchor and the mean),
//! plus insta snapshots of the full outputs (f64) on the same named batches.

use metric_loss_core::{LossOutput, MetricLoss, MetricLossExt};
use metric_loss_losses::{
    CircleLossConfig, MultiSimilarityLossConfig, PNLossConfig, SoftNearestNeighborLossConfig,
    WrappedLossConfig, XBMConfig,
};
use metric_loss_triplet::TripletLossConfig;

/// e₀ = (1, 0), e₁ = (0.8, 0.6), e₂ = (0, 1), e₃ = (−0.6, −0.8).
const E: [[f32; 2]; 4] = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]];

fn batch<T: From<f32>>(rows: &[usize]) -> Vec<T> {
    rows.iter().flat_map(|r| E[*r]).map(T::from).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

fn check(loss: &dyn MetricLoss, labels: &[i64], per_example: [f32; 4], mean: f32, what: &str) {
    let out = loss
        .evaluate(labels, &batch::<f32>(&[0, 1, 2, 3]), 2)
        .unwrap();
    assert_close(&out.per_example, &per_example, what);
    assert_close(&[out.loss], &[mean], what);
}

#[test]
fn pn_loss_golden_values() {
    let hard_hard = PNLossConfig::default()
        .negative_mining_strategy("hard")
        .margin(0.5);
    let table: [(&[i64], PNLossConfig, [f32; 4], f32); 6] = [
        (
            &[0, 0, 1, 2],
            PNLossConfig::default(),
            [0.5981388, 0.5981388, 0.5981385, 0.6931466],
            0.6218907,
        ),
        (
            &[0, 0, 1, 2],
            hard_hard.clone(),
            [0.3, 0.3, 0.299999, 0.499999],
            0.3499995,
        ),
        (
            &[0, 0, 1, 2],
            PNLossConfig::default()
                .positive_mining_strategy("easy")
                .negative_mining_strategy("easy")
                .margin(0.5),
            [0.0, 0.0, 0.7000009, 2.260001],
            0.7400005,
        ),
        (
            &[0, 1, 0, 1],
            PNLossConfig::default(),
            [0.437488, 1.750733, 0.437488, 1.750733],
            1.09411,
        ),
        (
            &[0, 1, 0, 1],
            hard_hard.clone(),
            [1.3, 2.26, 1.3, 2.26],
            1.78,
        ),
        (&[0, 0, 0, 0], hard_hard, [0.5, 0.86, 0.6999999, 2.26], 1.08),
    ];
    for (labels, config, want, mean) in table {
        check(
            &config.build().unwrap(),
            labels,
            want,
            mean,
            &format!("PN {labels:?} {config:?}"),
        );
    }
}

#[test]
fn multi_similarity_golden_values() {
    let d = MultiSimilarityLossConfig::default().build().unwrap();
    check(
        &d,
        &[0, 1, 0, 1],
        [0.956631, 1.786273, 0.7570847, 1.486265],
        1.246563,
        "MS [0,1,0,1]",
    );
    check(&d, &[0, 0, 1, 2], [0.0; 4], 0.0, "MS [0,0,1,2]");
    let e = MultiSimilarityLossConfig::default()
        .epsilon(1.0)
        .build()
        .unwrap();
    check(
        &e,
        &[0, 0, 1, 2],
        [0.218744, 0.3191978, 0.0, 0.0],
        0.1344855,
        "MS eps 1",
    );
}

#[test]
fn circle_golden_values() {
    let d = CircleLossConfig::default().build().unwrap();
    let g = CircleLossConfig::default()
        .gamma(32.0)
        .margin(0.25)
        .build()
        .unwrap();
    check(
        &d,
        &[0, 0, 1, 2],
        [0.6932163, 16.00007, 0.0, 0.0],
        4.173322,
        "circle default",
    );
    check(
        &g,
        &[0, 0, 1, 2],
        [1.155218, 9.916741, 0.0, 0.0],
        2.76799,
        "circle g32",
    );
    check(
        &d,
        &[0, 1, 0, 1],
        [105.6, 332.928, 83.20001, 295.6266],
        204.3387,
        "circle default",
    );
    check(
        &g,
        &[0, 1, 0, 1],
        [48.48, 139.4113, 39.52015, 122.0298],
        87.36032,
        "circle g32",
    );
    check(&d, &[0, 0, 0, 0], [0.0; 4], 0.0, "circle one class");
    check(&g, &[0, 0, 0, 0], [0.0; 4], 0.0, "circle one class");
}

#[test]
fn soft_nn_golden_values() {
    let d = SoftNearestNeighborLossConfig::default().build().unwrap();
    let c = SoftNearestNeighborLossConfig::default()
        .distance("cosine")
        .build()
        .unwrap();
    check(
        &d,
        &[0, 0, 1, 2],
        [0.2332574, 0.5305808, 0.0, 0.0],
        0.1909596,
        "softnn default",
    );
    check(
        &c,
        &[0, 0, 1, 2],
        [0.5282289, 0.6885244, 0.0, 0.0],
        0.3041883,
        "softnn cosine",
    );
    check(
        &d,
        &[0, 1, 0, 1],
        [1.833257, 4.050581, 1.508957, 1.488752],
        2.220387,
        "softnn",
    );
    let out = d
        .evaluate(&[0, 0, 0, 0], &batch::<f32>(&[0, 1, 2, 3]), 2)
        .unwrap();
    assert!(out
        .per_example
        .iter()
        .all(|v| *v == 0.0 && v.is_sign_negative()));
    assert_eq!(out.loss, 0.0);
}

fn xbm_golden() -> XBMConfig {
    XBMConfig::new(
        WrappedLossConfig::TripletLoss(
            TripletLossConfig::default()
                .negative_mining_strategy("hard")
                .margin(0.5),
        ),
        4,
    )
}

#[test]
fn xbm_golden_sequence() {
    let xbm = xbm_golden().build().unwrap();
    /// (batch labels, rows of E, per-example losses, mean, memory labels after).
    type Call<'a> = (&'a [i64], [usize; 2], [f32; 2], f32, &'a [i64]);
    let calls: [Call<'_>; 3] = [
        (&[0, 1], [0, 1], [0.299999, 0.299999], 0.299999, &[0, 1]),
        (&[1, 0], [2, 3], [0.0, 0.3000001], 0.15, &[1, 0, 0, 1]),
        (&[0, 1], [1, 2], [2.06, 0.1], 1.08, &[0, 1, 1, 0]),
    ];
    for (labels, rows, want, mean, memory) in calls {
        let out = xbm.evaluate(labels, &batch::<f32>(&rows), 2).unwrap();
        assert_close(&out.per_example, &want, "xbm");
        assert_close(&[out.loss], &[mean], "xbm");
        assert_eq!(xbm.memory_labels(), memory);
    }
}

/// Rounds to 1e-9 so that snapshots do not depend on summation order.
fn rounded(out: &LossOutput<f64>) -> serde_json::Value {
    let r = |v: &f64| (v * 1e9).round() / 1e9 + 0.0;
    serde_json::json!({
        "per_example": out.per_example.iter().map(r).collect::<Vec<_>>(),
        "loss": r(&out.loss),
        "grad": out.grad_queries.iter().map(r).collect::<Vec<_>>(),
    })
}

#[test]
fn snapshots_of_the_golden_batches() {
    let x = batch::<f64>(&[0, 1, 2, 3]);
    let losses: [(&str, Box<dyn MetricLoss>); 4] = [
        (
            "pn_default",
            Box::new(PNLossConfig::default().build().unwrap()),
        ),
        (
            "multisim_default",
            Box::new(MultiSimilarityLossConfig::default().build().unwrap()),
        ),
        (
            "circle_default",
            Box::new(CircleLossConfig::default().build().unwrap()),
        ),
        (
            "softnn_default",
            Box::new(SoftNearestNeighborLossConfig::default().build().unwrap()),
        ),
    ];
    for (name, loss) in &losses {
        for labels in [[0i64, 0, 1, 2], [0, 1, 0, 1]] {
            let out = loss.evaluate(&labels, &x, 2).unwrap();
            let tag = format!("{name}_{}", labels.map(|l| l.to_string()).join(""));
            insta::assert_json_snapshot!(tag, rounded(&out));
        }
    }
    let xbm = xbm_golden().build().unwrap();
    let mut steps = Vec::new();
    for (labels, rows) in [([0i64, 1], [0, 1]), ([1, 0], [2, 3]), ([0, 1], [1, 2])] {
        steps.push(rounded(
            &xbm.evaluate(&labels, &batch::<f64>(&rows), 2).unwrap(),
        ));
    }
    insta::assert_json_snapshot!("xbm_golden_sequence", steps);
}
