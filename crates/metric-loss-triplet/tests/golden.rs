//! Named batches pinned two ways: against the numbers TF Similarity 0.17.1 printed (the
//! published golden values and its upstream test suite), and as insta snapshots of
//! per-example losses and gradients, so any change to the arithmetic shows up in review.

// 0.6931472 and friends are TF Similarity's printed float32 outputs, not ln 2 spelled out.
#![allow(clippy::approx_constant)]

use metric_loss_core::{
    Batch, Embeddings, LossInput, LossOutput, MetricLossExt, Reduction, SampleWeight,
};
use metric_loss_triplet::TripletLossConfig;

/// e₀ = (1, 0), e₁ = (0.8, 0.6), e₂ = (0, 1), e₃ = (−0.6, −0.8).
const GOLDEN: [f32; 8] = [1.0, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];

fn run(
    pos: &str,
    neg: &str,
    margin: Option<f64>,
    labels: &[i64],
    x: &[f32],
    dims: usize,
    reduction: Reduction,
) -> LossOutput<f32> {
    let mut b = TripletLossConfig::default()
        .positive_mining_strategy(pos)
        .negative_mining_strategy(neg)
        .reduction(reduction);
    b = match margin {
        Some(m) => b.margin(m),
        None => b.soft_margin(true),
    };
    let loss = b.build().unwrap();
    let q = Batch::new(
        labels,
        Embeddings::from_row_major(x, labels.len(), dims).unwrap(),
    )
    .unwrap();
    loss.compute(&LossInput::new(q)).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: got {got:?}, want {want:?}"
        );
    }
}

/// Rounds for stable, readable snapshots (f32 noise below 1e-6 is not a change).
fn rounded(v: &[f32]) -> Vec<f64> {
    v.iter()
        .map(|x| (f64::from(*x) * 1e6).round() / 1e6)
        .collect()
}

#[test]
fn spec_golden_values_labels_0_0_1_2() {
    // (pos, neg, margin, ℓ₀..ℓ₃) as TF 2.15.1 gives them on the CPU in float32 with Reduction.NONE.
    let table: [(&str, &str, Option<f64>, [f32; 4]); 12] = [
        (
            "hard",
            "hard",
            None,
            [0.3711006, 0.5981388, 0.5130148, 0.1839006],
        ),
        ("hard", "hard", Some(0.5), [0.0, 0.3, 0.09999901, 0.0]),
        (
            "hard",
            "easy",
            None,
            [0.2204174, 0.1587501, 0.1529775, 0.1317809],
        ),
        ("hard", "easy", Some(0.5), [0.0, 0.0, 0.0, 0.0]),
        (
            "hard",
            "semi-hard",
            None,
            [0.3711006, 0.5981388, 0.5130148, 0.1839006],
        ),
        ("hard", "semi-hard", Some(0.5), [0.0, 0.3, 0.09999901, 0.0]),
        (
            "easy",
            "hard",
            None,
            [0.3711006, 0.5981388, 1.620418, 0.8892611],
        ),
        ("easy", "hard", Some(0.5), [0.0, 0.3, 1.900001, 0.860001]),
        (
            "easy",
            "easy",
            None,
            [0.2204174, 0.1587501, 0.6931477, 0.6931477],
        ),
        ("easy", "easy", Some(0.5), [0.0, 0.0, 0.500001, 0.500001]),
        (
            "easy",
            "semi-hard",
            None,
            [0.3711006, 0.5981388, 1.620418, 0.8892611],
        ),
        (
            "easy",
            "semi-hard",
            Some(0.5),
            [0.0, 0.3, 1.900001, 0.860001],
        ),
    ];
    let mut snapshot = Vec::new();
    for (pos, neg, margin, want) in table {
        let out = run(pos, neg, margin, &[0, 0, 1, 2], &GOLDEN, 2, Reduction::None);
        assert_close(
            &out.per_example,
            &want,
            2e-6,
            &format!("{pos}/{neg}/{margin:?}"),
        );
        snapshot.push((
            format!("{pos}/{neg}/{margin:?}"),
            rounded(&out.per_example),
            rounded(&out.grad_queries),
        ));
    }
    insta::assert_json_snapshot!(snapshot);
}

#[test]
fn spec_golden_values_one_class_batch() {
    let x = &GOLDEN[..6];
    let table: [(&str, &str, [f32; 3], [f32; 3]); 6] = [
        (
            "hard",
            "hard",
            [0.6931467, 0.6931466, 0.6931467],
            [0.499999; 3],
        ),
        (
            "hard",
            "easy",
            [1.313262, 0.9130158, 1.313262],
            [1.500001, 0.900001, 1.500001],
        ),
        (
            "hard",
            "semi-hard",
            [1.313262, 0.7981389, 0.6931472],
            [1.5, 0.7, 0.5],
        ),
        (
            "easy",
            "hard",
            [0.3711004, 0.5981385, 0.4374876],
            [0.0, 0.299999, 0.0],
        ),
        (
            "easy",
            "easy",
            [0.7981394, 0.7981394, 0.9130158],
            [0.700001, 0.700001, 0.900001],
        ),
        (
            "easy",
            "semi-hard",
            [0.7981389, 0.6931472, 0.437488],
            [0.7, 0.5, 0.0],
        ),
    ];
    let mut snapshot = Vec::new();
    for (pos, neg, soft, hinge) in table {
        let s = run(pos, neg, None, &[0, 0, 0], x, 2, Reduction::None);
        let h = run(pos, neg, Some(0.5), &[0, 0, 0], x, 2, Reduction::None);
        assert_close(&s.per_example, &soft, 2e-6, &format!("{pos}/{neg}/soft"));
        assert_close(&h.per_example, &hinge, 2e-6, &format!("{pos}/{neg}/0.5"));
        snapshot.push((
            format!("{pos}/{neg}"),
            rounded(&s.grad_queries),
            rounded(&h.grad_queries),
        ));
    }
    insta::assert_json_snapshot!(snapshot);
}

#[test]
fn spec_golden_values_single_example() {
    let cases = [
        ("hard", "hard", 0.6931461f32, 0.499998f32),
        ("hard", "semi-hard", 0.6931461, 0.499998),
        ("hard", "easy", 0.6931472, 0.5),
        ("easy", "hard", 0.6931472, 0.5),
        ("easy", "semi-hard", 0.6931472, 0.5),
        ("easy", "easy", 0.6931482, 0.500002),
    ];
    for (pos, neg, soft, hinge) in cases {
        let s = run(pos, neg, None, &[4], &GOLDEN[..2], 2, Reduction::None);
        let h = run(pos, neg, Some(0.5), &[4], &GOLDEN[..2], 2, Reduction::None);
        assert_close(&s.per_example, &[soft], 2e-6, &format!("{pos}/{neg}/soft"));
        assert_close(&h.per_example, &[hinge], 2e-6, &format!("{pos}/{neg}/0.5"));
    }
}

#[test]
fn spec_reductions_and_weights() {
    let loss = TripletLossConfig::default()
        .margin(0.5)
        .negative_mining_strategy("hard")
        .build()
        .unwrap();
    let labels = [0, 0, 1, 2];
    let q = Batch::new(&labels, Embeddings::from_row_major(&GOLDEN, 4, 2).unwrap()).unwrap();
    let plain = loss.compute(&LossInput::new(q)).unwrap();
    assert!((plain.loss - 0.099999756).abs() < 1e-8, "{}", plain.loss);
    let w = [1.0f32, 2.0, 0.0, 1.0];
    let weighted = loss
        .compute(&LossInput::new(q).with_sample_weight(SampleWeight::PerExample(&w)))
        .unwrap();
    assert!((weighted.loss - 0.15).abs() < 1e-7, "{}", weighted.loss);
    let scaled = loss
        .compute(&LossInput::new(q).with_sample_weight(SampleWeight::Scalar(2.0)))
        .unwrap();
    assert!((scaled.loss - 2.0 * plain.loss).abs() < 1e-7);
    insta::assert_json_snapshot!((
        rounded(&weighted.per_example),
        rounded(&weighted.grad_queries)
    ));
}

/// TF Similarity's "perfect" and "bad" batches: labels 0..31 twice, one-hot embeddings.
fn tf_test_batch(bad: bool) -> (Vec<i64>, Vec<f32>) {
    let labels: Vec<i64> = (0..32).chain(0..32).collect();
    let hot: Vec<usize> = if bad {
        (0..32).chain((0..32).rev()).collect()
    } else {
        (0..32).chain(0..32).collect()
    };
    let mut x = vec![0.0f32; 64 * 32];
    for (i, h) in hot.iter().enumerate() {
        x[i * 32 + h] = 1.0;
    }
    (labels, x)
}

#[test]
fn tf_similarity_test_suite() {
    let (labels, perfect) = tf_test_batch(false);
    let (_, bad) = tf_test_batch(true);
    // test_all_correct_unweighted (0.17.1 exact: 0.31326163 / 0.10000002).
    let out = run(
        "hard",
        "semi-hard",
        None,
        &labels,
        &perfect,
        32,
        Reduction::Auto,
    );
    assert!((out.loss - 0.31326163).abs() < 1e-6, "{}", out.loss);
    let out = run(
        "hard",
        "semi-hard",
        Some(1.1),
        &labels,
        &perfect,
        32,
        Reduction::Auto,
    );
    assert!((out.loss - 0.10000002).abs() < 1e-6, "{}", out.loss);
    // test_all_mismatch_unweighted.
    let out = run(
        "hard",
        "semi-hard",
        None,
        &labels,
        &bad,
        32,
        Reduction::Auto,
    );
    assert!(
        (out.loss - std::f32::consts::LN_2).abs() < 5e-4,
        "{}",
        out.loss
    );
    let out = run(
        "hard",
        "semi-hard",
        Some(1.0),
        &labels,
        &bad,
        32,
        Reduction::Auto,
    );
    assert!((out.loss - 1.0).abs() < 5e-4, "{}", out.loss);
    // test_no_reduction / test_sum_reduction.
    let out = run(
        "hard",
        "semi-hard",
        Some(1.1),
        &labels,
        &perfect,
        32,
        Reduction::None,
    );
    assert!(out.per_example.iter().all(|v| (v - 0.1).abs() < 1e-3));
    let out = run(
        "hard",
        "semi-hard",
        Some(1.1),
        &labels,
        &perfect,
        32,
        Reduction::Sum,
    );
    assert!((out.loss - 6.4).abs() < 5e-4 * 64.0, "{}", out.loss);
    // test_mining.
    let labels = [0, 0, 0, 1, 1, 1];
    let x = [
        1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0,
    ];
    let easy = run("easy", "easy", Some(1.0), &labels, &x, 2, Reduction::Auto);
    assert!((easy.loss - 2.0 / 6.0).abs() < 5e-4, "{}", easy.loss);
    let hard = run("hard", "hard", Some(1.0), &labels, &x, 2, Reduction::Auto);
    assert!((hard.loss - 2.0).abs() < 5e-4, "{}", hard.loss);
    // test_semi_hard_mining, 0.17.1 exact outputs.
    let labels = [0, 0, 1, 1];
    let x = [1.0f32, 0.0, 0.5, 0.8660254, 0.0, 1.0, 0.01010049, 0.999949];
    let semi = run(
        "easy",
        "semi-hard",
        Some(1.0),
        &labels,
        &x,
        2,
        Reduction::None,
    );
    assert_close(
        &semi.per_example,
        &[0.5101005, 1.3660254, 0.8660764, 0.8710825],
        1e-6,
        "semi-hard",
    );
    insta::assert_json_snapshot!((
        rounded(&easy.grad_queries),
        rounded(&hard.grad_queries),
        rounded(&semi.per_example),
        rounded(&semi.grad_queries)
    ));
}

#[test]
fn excluding_degenerate_anchors_zeroes_them_only() {
    let keep = run(
        "hard",
        "hard",
        Some(0.5),
        &[0, 0, 1, 2],
        &GOLDEN,
        2,
        Reduction::None,
    );
    let loss = TripletLossConfig::default()
        .margin(0.5)
        .negative_mining_strategy("hard")
        .exclude_degenerate_anchors(true)
        .reduction(Reduction::None)
        .build()
        .unwrap();
    let q = Batch::new(
        &[0, 0, 1, 2],
        Embeddings::from_row_major(&GOLDEN, 4, 2).unwrap(),
    )
    .unwrap();
    let out = loss.compute(&LossInput::new(q)).unwrap();
    assert_eq!(&out.per_example[..2], &keep.per_example[..2]);
    assert_eq!(&out.per_example[2..], &[0.0, 0.0]);
}
