//! The candle operation against the core crate's own numbers and against finite
//! differences taken through candle.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var, D};
use metric_loss_candle::{compute, loss, CandleInput, CandleLoss};
use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, Reduction,
    SampleWeight,
};
use metric_loss_testkit::values;
use metric_loss_triplet::{TripletLoss, TripletLossConfig};

const CPU: Device = Device::Cpu;

fn unit_rows(x: &[f64], dims: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    metric_loss_distances::l2_normalize(x, dims, &mut y).expect("finite whole rows");
    y
}

/// Unit rows for `LABELS` in f32.
fn unit_rows_f32(seed: u64) -> Vec<f32> {
    unit_rows(&values(LABELS.len() * DIMS, seed), DIMS)
        .iter()
        .map(|v| *v as f32)
        .collect()
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
    let x = unit_rows_f32(11);
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

/// Four 2-d f32 embeddings in two classes.
fn small_batch() -> (Tensor, Tensor) {
    let x =
        Tensor::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], (4, 2), &CPU).unwrap();
    (x, Tensor::new(&[0u32, 0, 1, 1], &CPU).unwrap())
}

#[test]
fn unsupported_inputs_are_errors_naming_the_problem() {
    let metric = TripletLoss::default();
    let (x, labels) = small_batch();

    let bytes = x.to_dtype(DType::U8).unwrap();
    let err = loss(&metric, &bytes, &labels).unwrap_err().to_string();
    assert!(
        err.contains("embeddings must be f16, bf16, f32 or f64") && err.contains("U8"),
        "{err}"
    );

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

fn flat<T: candle_core::WithDType>(t: &Tensor) -> Vec<T> {
    t.flatten_all().unwrap().to_vec1::<T>().unwrap()
}

/// `values` rounded to `dtype` and read back as f32.
fn rounded(values: &[f32], dtype: DType) -> Vec<f32> {
    let t = Tensor::new(values, &CPU).unwrap().to_dtype(dtype).unwrap();
    flat(&t.to_dtype(DType::F32).unwrap())
}

#[test]
fn half_precision_gives_the_f32_numbers_and_a_gradient_of_its_dtype() {
    let x = unit_rows_f32(17);
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        // The loss sees the input as stored (rounded to `dtype`), computes in f32, and its
        // results are rounded once more, to `dtype`.
        let stored = rounded(&x, dtype);
        for (what, metric) in losses() {
            let want = metric.evaluate(&LABELS, &stored, DIMS).unwrap();
            let input = Tensor::new(x.as_slice(), &CPU).unwrap();
            let var = Var::from_tensor(
                &input
                    .reshape((LABELS.len(), DIMS))
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let out = CandleLoss::new(metric.clone())
                .loss_with_details(var.as_tensor(), &labels)
                .unwrap();
            assert_eq!(out.loss.dtype(), dtype, "{what}");
            assert_eq!(out.per_example.dtype(), dtype, "{what}");
            let value = flat::<f32>(&out.loss.to_dtype(DType::F32).unwrap());
            assert_eq!(value, rounded(&[want.loss], dtype), "{what} {dtype:?}");
            let per_example = flat::<f32>(&out.per_example.to_dtype(DType::F32).unwrap());
            let per_want: Vec<f32> = want.per_example.clone();
            assert_eq!(per_example, rounded(&per_want, dtype), "{what} {dtype:?}");

            let grads = out.loss.backward().unwrap();
            let grad = grads.get(var.as_tensor()).unwrap();
            assert_eq!(grad.dtype(), dtype, "{what}");
            assert_eq!(grad.dims(), &[LABELS.len(), DIMS]);
            let grad = flat::<f32>(&grad.to_dtype(DType::F32).unwrap());
            assert_eq!(grad, rounded(&want.grad_queries, dtype), "{what} {dtype:?}");
            assert!(
                grad.iter().any(|g| *g != 0.0),
                "{what}: gradient is all zero"
            );
        }
    }
}

#[test]
fn half_precision_is_within_its_rounding_of_the_f32_loss() {
    // Hard positives and negatives: the loss is continuous in the input, so rounding the
    // input moves it by about the rounding of the input.
    let metric = TripletLossConfig::default()
        .distance("l2")
        .positive_mining_strategy("hard")
        .negative_mining_strategy("hard")
        .margin(0.3)
        .build()
        .unwrap();
    let x = unit_rows_f32(19);
    let exact = metric.evaluate(&LABELS, &x, DIMS).unwrap().loss;
    assert!(exact > 0.1, "{exact}");
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let t = Tensor::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
    for (dtype, epsilon) in [(DType::F16, 2f32.powi(-11)), (DType::BF16, 2f32.powi(-8))] {
        let half = t.to_dtype(dtype).unwrap();
        let value = loss(&metric, &half, &labels)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Distances between unit rows move by at most about 2ε under rounding of the
        // input; the hinge passes that on, and the result is rounded once more.
        let bound = 8.0 * epsilon * (1.0 + exact);
        assert!(
            (value - exact).abs() <= bound,
            "{dtype:?}: {value} vs {exact} (bound {bound})"
        );
    }
}

/// Queries, keys, their labels and weights for the tests of the full input.
struct Full {
    q: Vec<f64>,
    k: Vec<f64>,
    key_labels: Vec<i64>,
    weights: Vec<f64>,
}

fn full() -> Full {
    let key_labels = vec![0, 1, 2, 3, 0, 1, 2];
    Full {
        q: unit_rows(&values(LABELS.len() * DIMS, 31), DIMS),
        k: unit_rows(&values(key_labels.len() * DIMS, 32), DIMS),
        key_labels,
        weights: (0..LABELS.len()).map(|i| 0.25 * (i % 5) as f64).collect(),
    }
}

fn core_output(
    metric: &dyn MetricLoss,
    data: &Full,
    weights: SampleWeight<'_, f64>,
    remove_diagonal: bool,
) -> LossOutput<f64> {
    let q = Embeddings::from_row_major(&data.q, LABELS.len(), DIMS).unwrap();
    let k = Embeddings::from_row_major(&data.k, data.key_labels.len(), DIMS).unwrap();
    let input = LossInput::new(Batch::new(&LABELS, q).unwrap())
        .with_keys(Batch::new(&data.key_labels, k).unwrap())
        .with_sample_weight(weights)
        .remove_diagonal(remove_diagonal);
    metric.compute(&input).unwrap()
}

#[test]
fn weights_and_keys_match_the_core_loss_output() {
    let data = full();
    let (n, m) = (LABELS.len(), data.key_labels.len());
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let key_labels = Tensor::new(data.key_labels.as_slice(), &CPU).unwrap();
    let weights = Tensor::new(data.weights.as_slice(), &CPU).unwrap();
    for (what, metric) in losses() {
        for remove_diagonal in [true, false] {
            let want = core_output(
                metric.as_ref(),
                &data,
                SampleWeight::PerExample(&data.weights),
                remove_diagonal,
            );
            let q = Var::from_slice(&data.q, (n, DIMS), &CPU).unwrap();
            let k = Var::from_slice(&data.k, (m, DIMS), &CPU).unwrap();
            let input = CandleInput::new(q.as_tensor(), &labels)
                .with_keys(k.as_tensor(), &key_labels)
                .with_sample_weight(&weights)
                .remove_diagonal(remove_diagonal);
            let out = CandleLoss::new(metric.clone()).compute(&input).unwrap();
            let what = format!("{what}, remove_diagonal {remove_diagonal}");
            assert_eq!(out.loss.to_scalar::<f64>().unwrap(), want.loss, "{what}");
            assert_eq!(flat::<f64>(&out.per_example), want.per_example, "{what}");
            let grads = out.loss.backward().unwrap();
            let grad_q = flat::<f64>(grads.get(q.as_tensor()).unwrap());
            let grad_k = grads.get(k.as_tensor()).unwrap();
            assert_eq!(grad_k.dims(), &[m, DIMS]);
            assert_eq!(grad_q, want.grad_queries, "{what}");
            assert_eq!(flat::<f64>(grad_k), want.grad_keys, "{what}");
            assert!(want.grad_keys.iter().any(|g| *g != 0.0), "{what}");
            assert!(grads.get(&weights).is_none(), "weights get no gradient");
        }
    }
}

#[test]
fn weights_of_every_shape_match_the_core() {
    let data = full();
    let metric = TripletLoss::default();
    let n = LABELS.len();
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let x = Tensor::from_slice(&data.q, (n, DIMS), &CPU).unwrap();
    let q = Embeddings::from_row_major(&data.q, n, DIMS).unwrap();
    let core = |weights| {
        metric
            .compute(&LossInput::new(Batch::new(&LABELS, q).unwrap()).with_sample_weight(weights))
            .unwrap()
    };
    let per_example = Tensor::new(data.weights.as_slice(), &CPU).unwrap();
    let column = per_example.unsqueeze(1).unwrap();
    let scalar = Tensor::new(0.5f64, &CPU).unwrap();
    let cases = [
        (&per_example, core(SampleWeight::PerExample(&data.weights))),
        (&column, core(SampleWeight::PerExample(&data.weights))),
        (&scalar, core(SampleWeight::Scalar(0.5))),
    ];
    for (weights, want) in cases {
        let input = CandleInput::new(&x, &labels).with_sample_weight(weights);
        let out = compute(&metric, &input).unwrap();
        assert_eq!(
            out.loss.to_scalar::<f64>().unwrap(),
            want.loss,
            "{weights:?}"
        );
        assert_eq!(flat::<f64>(&out.per_example), want.per_example);
    }
    // f32 weights for f64 embeddings are read in the embeddings' precision.
    let w32 = per_example.to_dtype(DType::F32).unwrap();
    let out = compute(
        &metric,
        &CandleInput::new(&x, &labels).with_sample_weight(&w32),
    )
    .unwrap();
    assert_eq!(
        out.loss.to_scalar::<f64>().unwrap(),
        loss_with_f32_rounded_weights(&metric, &data)
    );
}

fn loss_with_f32_rounded_weights(metric: &TripletLoss, data: &Full) -> f64 {
    let w: Vec<f64> = data.weights.iter().map(|w| f64::from(*w as f32)).collect();
    let q = Embeddings::from_row_major(&data.q, LABELS.len(), DIMS).unwrap();
    let input = LossInput::new(Batch::new(&LABELS, q).unwrap())
        .with_sample_weight(SampleWeight::PerExample(&w));
    metric.compute(&input).unwrap().loss
}

#[test]
fn keys_alone_can_take_the_gradient_in_their_own_dtype() {
    // A memory bank in f16 that is trained, against fixed f32 queries.
    let data = full();
    let (n, m) = (LABELS.len(), data.key_labels.len());
    let metric = TripletLoss::default();
    let q32: Vec<f32> = data.q.iter().map(|v| *v as f32).collect();
    let queries = Tensor::from_slice(&q32, (n, DIMS), &CPU).unwrap();
    let k32: Vec<f32> = data.k.iter().map(|v| *v as f32).collect();
    let keys = Var::from_tensor(
        &Tensor::from_slice(&k32, (m, DIMS), &CPU)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap(),
    )
    .unwrap();
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let key_labels = Tensor::new(data.key_labels.as_slice(), &CPU).unwrap();
    let input = CandleInput::new(&queries, &labels)
        .with_keys(keys.as_tensor(), &key_labels)
        .remove_diagonal(false);
    let out = compute(&metric, &input).unwrap();
    assert_eq!(out.loss.dtype(), DType::F32);
    let grads = out.loss.backward().unwrap();
    let grad = grads.get(keys.as_tensor()).unwrap();
    assert_eq!(grad.dtype(), DType::F16);

    let stored = rounded(&k32, DType::F16);
    let q = Embeddings::from_row_major(&q32, n, DIMS).unwrap();
    let k = Embeddings::from_row_major(&stored, m, DIMS).unwrap();
    let want = metric
        .compute(
            &LossInput::new(Batch::new(&LABELS, q).unwrap())
                .with_keys(Batch::new(&data.key_labels, k).unwrap())
                .remove_diagonal(false),
        )
        .unwrap();
    assert_eq!(out.loss.to_scalar::<f32>().unwrap(), want.loss);
    let grad = flat::<f32>(&grad.to_dtype(DType::F32).unwrap());
    assert_eq!(grad, rounded(&want.grad_keys, DType::F16));
}

#[test]
fn bad_keys_and_weights_are_errors_naming_them() {
    let metric = TripletLoss::default();
    let (x, labels) = small_batch();
    let run = |input: CandleInput<'_>| compute(&metric, &input).unwrap_err().to_string();

    let three = Tensor::new(&[1.0f32, 1.0, 1.0], &CPU).unwrap();
    let err = run(CandleInput::new(&x, &labels).with_sample_weight(&three));
    assert!(err.contains("sample_weight has 3 entries"), "{err}");
    let matrix = Tensor::ones((2, 2), DType::F32, &CPU).unwrap();
    let err = run(CandleInput::new(&x, &labels).with_sample_weight(&matrix));
    assert!(err.contains("sample weights must have shape"), "{err}");
    let ints = Tensor::new(&[1u32, 1, 1, 1], &CPU).unwrap();
    let err = run(CandleInput::new(&x, &labels).with_sample_weight(&ints));
    assert!(err.contains("sample weights must be f16"), "{err}");

    let wide = Tensor::ones((2, 3), DType::F32, &CPU).unwrap();
    let key_labels = Tensor::new(&[0u32, 1], &CPU).unwrap();
    let err = run(CandleInput::new(&x, &labels).with_keys(&wide, &key_labels));
    let want = LossError::DimensionMismatch {
        queries: 2,
        keys: 3,
    }
    .to_string();
    assert!(err.contains(&want), "{err}");
    let float_labels = key_labels.to_dtype(DType::F32).unwrap();
    let keys = Tensor::ones((2, 2), DType::F32, &CPU).unwrap();
    let err = run(CandleInput::new(&x, &labels).with_keys(&keys, &float_labels));
    assert!(err.contains("key labels must be integers"), "{err}");
    let flat_keys = keys.flatten_all().unwrap();
    let err = run(CandleInput::new(&x, &labels).with_keys(&flat_keys, &key_labels));
    assert!(err.contains("keys must have shape [n, dims]"), "{err}");
}

#[test]
fn from_config_reads_a_registry_file() {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("metric-loss-candle-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "class_name = \"TripletLoss\"\n[config]\nmargin = 0.3\ndistance = \"l2\"\n",
    )
    .unwrap();
    let from_file = CandleLoss::from_config(&path);
    std::fs::remove_file(&path).unwrap();
    let from_file = from_file.unwrap();
    let metric = TripletLossConfig::default()
        .margin(0.3)
        .distance("l2")
        .build()
        .unwrap();
    let x = unit_rows(&values(LABELS.len() * DIMS, 41), DIMS);
    let t = Tensor::from_slice(&x, (LABELS.len(), DIMS), &CPU).unwrap();
    let labels = Tensor::new(&LABELS, &CPU).unwrap();
    let got = from_file
        .loss(&t, &labels)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert_eq!(got, metric.evaluate(&LABELS, &x, DIMS).unwrap().loss);

    let missing = dir.join("metric-loss-candle-no-such-file.json");
    let err = CandleLoss::from_config(&missing).unwrap_err();
    assert!(
        matches!(err, metric_loss_registry::RegistryError::Io { .. }),
        "{err}"
    );
}
