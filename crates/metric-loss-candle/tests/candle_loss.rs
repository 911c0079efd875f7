//! The candle operation against the core crate's own numbers and against finite
//! differences taken through candle.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var, D};
use metric_loss_candle::{loss, CandleLoss};
use metric_loss_core::{LossError, MetricLoss, MetricLossExt, Reduction};
use metric_loss_triplet::{TripletLoss, TripletLossConfig};

const CPU: Device = Device::Cpu;

/// Deterministic pseudo-random values in [-1, 1) (SplitMix64).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn unit_rows(x: &[f64], dims: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    metric_loss_distances::l2_normalize(x, dims, &mut y).expect("finite whole rows");
    y
}

fn shared(loss: TripletLoss) -> Arc<dyn MetricLoss> {
    Arc::new(loss)
}

fn losses() -> Vec<(&'static str, Arc<dyn MetricLoss>)> {
    let cfg = TripletLossConfig::default;
    vec![
        ("default", shared(TripletLoss::default())),
        (
            "hard-hard l2 margin 0.3",
            shared(
                cfg()
                    .distance("l2")
                    .negative_mining_strategy("hard")
                    .margin(0.3)
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "soft margin, easy positives, sum",
            shared(
                cfg()
                    .soft_margin(true)
                    .positive_mining_strategy("easy")
                    .reduction(Reduction::Sum)
                    .build()
                    .unwrap(),
            ),
        ),
        (
            "reduction none",
            shared(cfg().reduction(Reduction::None).build().unwrap()),
        ),
    ]
}

const LABELS: [i64; 12] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 0];
const DIMS: usize = 5;

#[test]
fn f64_matches_the_core_crate_exactly() {
    let x = unit_rows(&values(LABELS.len() * DIMS, 7), DIMS);
    for (what, metric) in losses() {
        let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
        let var = Var::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
        let labels = Tensor::new(&LABELS, &CPU).unwrap();
        let out = CandleLoss::new(metric.clone())
            .loss_with_details(var.as_tensor(), &labels)
            .unwrap();
        assert_eq!(out.loss.dtype(), DType::F64);
        assert_eq!(out.loss.to_scalar::<f64>().unwrap(), want.loss, "{what}");
        assert_eq!(
            out.per_example.to_vec1::<f64>().unwrap(),
            want.per_example,
            "{what}"
        );
        let grads = out.loss.backward().unwrap();
        let grad = grads.get(var.as_tensor()).unwrap();
        assert_eq!(grad.dims(), &[LABELS.len(), DIMS]);
        let grad = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(grad, want.grad_queries, "{what}");
        assert!(
            grad.iter().any(|g| *g != 0.0),
            "{what}: gradient is all zero"
        );
    }
}

#[test]
fn f32_matches_the_core_crate_exactly() {
    let x: Vec<f32> = unit_rows(&values(LABELS.len() * DIMS, 11), DIMS)
        .iter()
        .map(|v| *v as f32)
        .collect();
    for (what, metric) in losses() {
        let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
        let var = Var::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
        let labels = Tensor::new(&LABELS, &CPU).unwrap();
        let value = loss(metric.as_ref(), var.as_tensor(), &labels).unwrap();
        assert_eq!(value.dtype(), DType::F32);
        assert_eq!(value.to_scalar::<f32>().unwrap(), want.loss, "{what}");
        let grads = value.backward().unwrap();
        let grad = grads.get(var.as_tensor()).unwrap();
        let grad = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(grad, want.grad_queries, "{what}");
    }
}

#[test]
fn upstream_gradient_scales_the_analytic_one() {
    let x = unit_rows(&values(LABELS.len() * DIMS, 3), DIMS);
    let metric = TripletLoss::default();
    let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
    let var = Var::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let value = loss(&metric, var.as_tensor(), &labels).unwrap();
    // d(3 * L + L^2)/dx = (3 + 2 L) dL/dx
    let total = ((&value * 3.0).unwrap() + value.sqr().unwrap()).unwrap();
    let grads = total.backward().unwrap();
    let grad = grads
        .get(var.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let factor = 3.0 + 2.0 * want.loss;
    for (g, w) in grad.iter().zip(&want.grad_queries) {
        assert!(
            (g - factor * w).abs() <= 1e-12 * (1.0 + w.abs()),
            "{g} vs {}",
            factor * w
        );
    }
}

/// A small model in candle: `embeddings = l2_normalize(x · w)`, then the loss. The
/// gradient with respect to `w` goes through candle's own ops and ours.
fn model_loss(metric: &dyn MetricLoss, x: &Tensor, w: &Tensor, labels: &Tensor) -> Tensor {
    let y = x.matmul(w).unwrap();
    let norm = y
        .sqr()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap()
        .sqrt()
        .unwrap();
    let e = y.broadcast_div(&norm).unwrap();
    loss(metric, &e, labels).unwrap()
}

#[test]
fn gradient_through_candle_matches_finite_differences_f64() {
    let (n, input, dims) = (LABELS.len(), 6, 4);
    let x = Tensor::from_vec(values(n * input, 21), (n, input), &CPU).unwrap();
    let w0 = values(input * dims, 22);
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let soft = TripletLossConfig::default()
        .soft_margin(true)
        .build()
        .unwrap();
    let hinge = TripletLossConfig::default()
        .distance("l2")
        .negative_mining_strategy("hard")
        .margin(2.0)
        .build()
        .unwrap();
    for metric in [&soft as &dyn MetricLoss, &hinge, &TripletLoss::default()] {
        let w = Var::from_slice(&w0, (input, dims), &CPU).unwrap();
        let value = model_loss(metric, &x, w.as_tensor(), &labels);
        let grad = value.backward().unwrap();
        let grad = grad
            .get(w.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let eval = |w: &[f64]| {
            let w = Tensor::from_slice(w, (input, dims), &CPU).unwrap();
            model_loss(metric, &x, &w, &labels)
                .to_scalar::<f64>()
                .unwrap()
        };
        let h = 1e-6;
        let mut nonzero = 0;
        for k in 0..w0.len() {
            let (mut plus, mut minus) = (w0.clone(), w0.clone());
            plus[k] += h;
            minus[k] -= h;
            let fd = (eval(&plus) - eval(&minus)) / (2.0 * h);
            assert!(
                (fd - grad[k]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{metric:?} w[{k}]: finite difference {fd} vs analytic {}",
                grad[k]
            );
            nonzero += usize::from(grad[k].abs() > 1e-9);
        }
        assert!(
            nonzero > w0.len() / 2,
            "{metric:?}: only {nonzero} non-zero gradients"
        );
    }
}

#[test]
fn every_integer_label_dtype_gives_the_same_numbers() {
    let x = unit_rows(&values(LABELS.len() * DIMS, 5), DIMS);
    let metric = TripletLoss::default();
    let want = metric.evaluate(&LABELS, &x, DIMS).unwrap().loss;
    let t = Tensor::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
    let base = Tensor::new(&LABELS, &CPU).unwrap();
    let small: Vec<u8> = LABELS.iter().map(|&l| l as u8).collect();
    let all = [
        Tensor::new(small.as_slice(), &CPU).unwrap(),
        Tensor::new(
            small
                .iter()
                .map(|&l| u32::from(l))
                .collect::<Vec<_>>()
                .as_slice(),
            &CPU,
        )
        .unwrap(),
        Tensor::new(
            small
                .iter()
                .map(|&l| i16::from(l))
                .collect::<Vec<_>>()
                .as_slice(),
            &CPU,
        )
        .unwrap(),
        Tensor::new(
            small
                .iter()
                .map(|&l| i32::from(l))
                .collect::<Vec<_>>()
                .as_slice(),
            &CPU,
        )
        .unwrap(),
        base.clone(),
    ];
    for labels in &all {
        let got = loss(&metric, &t, labels)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(got, want, "{:?}", labels.dtype());
    }
    // A column of labels, [n, 1], as Keras passes them.
    let column = base.unsqueeze(1).unwrap();
    let got = loss(&metric, &t, &column)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn strided_embeddings_are_read_correctly() {
    let x = unit_rows(&values(LABELS.len() * DIMS, 9), DIMS);
    let metric = TripletLoss::default();
    let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
    // Store the transpose and view it back: a non-contiguous [n, dims] tensor.
    let var = Var::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
    let transposed = var.as_tensor().t().unwrap().contiguous().unwrap();
    let view = transposed.t().unwrap();
    assert!(!view.is_contiguous());
    let value = loss(&metric, &view, &Tensor::new(&LABELS, &CPU).unwrap()).unwrap();
    assert_eq!(value.to_scalar::<f64>().unwrap(), want.loss);
    let grads = value.backward().unwrap();
    let grad = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
    assert_eq!(grad.to_vec1::<f64>().unwrap(), want.grad_queries);
}

#[test]
fn tensors_outside_autograd_give_the_value_only() {
    let x = unit_rows(&values(LABELS.len() * DIMS, 13), DIMS);
    let metric = TripletLoss::default();
    let t = Tensor::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
    let value = loss(&metric, &t, &Tensor::new(&LABELS, &CPU).unwrap()).unwrap();
    assert!(!value.track_op());
    assert_eq!(
        value.to_scalar::<f64>().unwrap(),
        metric.evaluate(&LABELS, &x, DIMS).unwrap().loss
    );
}

#[test]
fn boxed_and_shared_losses_work_and_reuse_their_workspace() {
    let boxed: Box<dyn MetricLoss> = Box::new(TripletLoss::default());
    let op = CandleLoss::from(boxed);
    assert_eq!(op.metric_loss().name(), "TripletLoss");
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    for seed in 0..3 {
        let x = unit_rows(&values(LABELS.len() * DIMS, seed), DIMS);
        let t = Tensor::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
        let want = TripletLoss::default()
            .evaluate(&LABELS, &x, DIMS)
            .unwrap()
            .loss;
        assert_eq!(
            op.clone()
                .loss(&t, &labels)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            want
        );
    }
}

#[test]
fn loss_errors_keep_their_message() {
    let metric = TripletLoss::default();
    let labels = Tensor::new(&[0i64, 0, 1, 1], &CPU).unwrap();
    let mut x = vec![1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    x[5] = f32::NAN;
    let t = Tensor::from_slice(&x, (4, 2), &CPU).unwrap();
    let err = loss(&metric, &t, &labels).unwrap_err().to_string();
    let want = LossError::NonFiniteEmbedding {
        what: "query embeddings",
        row: 2,
        col: 1,
        value: f64::NAN,
    }
    .to_string();
    assert!(err.contains(&want), "{err}");

    // Three labels for four embeddings: the core crate's length check.
    let t =
        Tensor::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], (4, 2), &CPU).unwrap();
    let three = Tensor::new(&[0u32, 0, 1], &CPU).unwrap();
    let err = loss(&metric, &t, &three).unwrap_err().to_string();
    assert!(
        err.contains("labels has 3 entries") && err.contains("4"),
        "{err}"
    );

    // An invalid config surfaces the same way when built.
    let bad = TripletLossConfig::default()
        .distance("manhattan-ish")
        .build();
    assert!(bad.is_err());
}

#[test]
fn unsupported_inputs_are_errors_naming_the_problem() {
    let metric = TripletLoss::default();
    let labels = Tensor::new(&[0u32, 0, 1, 1], &CPU).unwrap();
    let x =
        Tensor::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], (4, 2), &CPU).unwrap();

    let half = x.to_dtype(DType::F16).unwrap();
    let err = loss(&metric, &half, &labels).unwrap_err().to_string();
    assert!(err.contains("f32 or f64") && err.contains("F16"), "{err}");

    let flat = x.flatten_all().unwrap();
    let err = loss(&metric, &flat, &labels).unwrap_err().to_string();
    assert!(err.contains("[n, dims]"), "{err}");

    let float_labels = labels.to_dtype(DType::F32).unwrap();
    let err = loss(&metric, &x, &float_labels).unwrap_err().to_string();
    assert!(err.contains("labels must be integers"), "{err}");

    let matrix_labels = Tensor::zeros((2, 2), DType::U32, &CPU).unwrap();
    let err = loss(&metric, &x, &matrix_labels).unwrap_err().to_string();
    assert!(err.contains("[n] or [n, 1]"), "{err}");
}

#[test]
fn empty_batches_give_zero() {
    let metric = TripletLoss::default();
    let x = Var::zeros((0, 3), DType::F64, &CPU).unwrap();
    let labels = Tensor::zeros(0, DType::I64, &CPU).unwrap();
    let value = loss(&metric, x.as_tensor(), &labels).unwrap();
    assert_eq!(value.to_scalar::<f64>().unwrap(), 0.0);
    let grads = value.backward().unwrap();
    assert_eq!(grads.get(x.as_tensor()).unwrap().dims(), &[0, 3]);
}
