//! The burn operation against the core crate's own numbers, through burn's autodiff on
//! the Flex CPU backend.
#![cfg(feature = "flex")]

use std::sync::Arc;

use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use metric_loss_burn::{compute, loss, BurnInput, BurnLoss, BurnLossError};
use metric_loss_core::{
    Batch, Embeddings, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight,
};
use metric_loss_testkit::{unit_rows, values};
use metric_loss_triplet::TripletLoss;

fn unit_rows_f32(seed: u64) -> Vec<f32> {
    unit_rows(&values(LABELS.len() * DIMS, seed), DIMS)
        .iter()
        .map(|v| *v as f32)
        .collect()
}

/// Losses of every kind, read from TF Similarity-shaped configs: the mined driver with
/// other parts, the dense losses, and a loss without a Keras reduction.
fn losses() -> Vec<(&'static str, Arc<dyn MetricLoss>)> {
    let configs = [
        r#"{"class_name": "TripletLoss", "config": {}}"#,
        r#"{"class_name": "TripletLoss", "config": {"distance": "l2", "negative_mining_strategy": "hard", "margin": 0.3, "reduction": "sum"}}"#,
        r#"{"class_name": "PNLoss", "config": {"positive_mining_strategy": "easy"}}"#,
        r#"{"class_name": "MultiSimilarityLoss", "config": {}}"#,
        r#"{"class_name": "CircleLoss", "config": {}}"#,
        r#"{"class_name": "SoftNearestNeighborLoss", "config": {"reduction": "none"}}"#,
    ];
    configs
        .into_iter()
        .map(|config| {
            let loss = metric_loss_registry::from_str(config, metric_loss_registry::Format::Json)
                .unwrap_or_else(|e| panic!("{config}: {e}"));
            (config, Arc::from(loss.into_metric_loss()))
        })
        .collect()
}

const LABELS: [i64; 12] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 0];
const DIMS: usize = 5;

fn autodiff() -> Device {
    Device::flex().autodiff()
}

/// A `rows x cols` tensor of `x` in `dtype` on `device`.
fn matrix<E: burn::tensor::Element>(
    x: &[E],
    rows: usize,
    cols: usize,
    device: &Device,
    dtype: DType,
) -> Tensor<2> {
    Tensor::from_data(TensorData::new(x.to_vec(), [rows, cols]), (device, dtype))
}

fn vector<E: burn::tensor::Element>(x: &[E], device: &Device, dtype: DType) -> Tensor<1> {
    Tensor::from_data(TensorData::new(x.to_vec(), [x.len()]), (device, dtype))
}

fn int_labels(labels: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(labels.to_vec(), [labels.len()]), device)
}

fn flat<E: burn::tensor::Element, const D: usize>(t: &Tensor<D>) -> Vec<E> {
    t.to_data().try_to_vec::<E>().unwrap()
}

#[test]
fn f64_matches_the_core_crate_exactly() {
    let device = autodiff();
    let x = unit_rows(&values(LABELS.len() * DIMS, 7), DIMS);
    for (what, metric) in losses() {
        let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
        let var = matrix(&x, LABELS.len(), DIMS, &device, DType::F64).require_grad();
        let out = BurnLoss::new(metric.clone())
            .loss_with_details(var.clone(), int_labels(&LABELS, &device))
            .unwrap();
        assert_eq!(out.loss.dtype(), DType::F64);
        assert_eq!(out.loss.dims(), [1]);
        assert_eq!(flat::<f64, 1>(&out.loss), vec![want.loss], "{what}");
        assert_eq!(flat::<f64, 1>(&out.per_example), want.per_example, "{what}");
        let grads = out.loss.backward();
        let grad = var.grad(&grads).unwrap();
        assert_eq!(grad.dims(), [LABELS.len(), DIMS]);
        let grad = flat::<f64, 2>(&grad);
        assert_eq!(grad, want.grad_queries, "{what}");
        assert!(
            grad.iter().any(|g| *g != 0.0),
            "{what}: gradient is all zero"
        );
    }
}

#[test]
fn f32_matches_the_core_crate_exactly() {
    let device = autodiff();
    let x = unit_rows_f32(11);
    for (what, metric) in losses() {
        let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
        let var = matrix(&x, LABELS.len(), DIMS, &device, DType::F32).require_grad();
        let value = loss(metric.as_ref(), var.clone(), int_labels(&LABELS, &device)).unwrap();
        assert_eq!(value.dtype(), DType::F32);
        assert_eq!(flat::<f32, 1>(&value), vec![want.loss], "{what}");
        let grads = value.backward();
        let grad = flat::<f32, 2>(&var.grad(&grads).unwrap());
        assert_eq!(grad, want.grad_queries, "{what}");
    }
}

#[test]
fn upstream_gradient_scales_the_analytic_one() {
    let device = autodiff();
    let x = unit_rows(&values(LABELS.len() * DIMS, 3), DIMS);
    let metric = TripletLoss::default();
    let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
    let var = matrix(&x, LABELS.len(), DIMS, &device, DType::F64).require_grad();
    let value = loss(&metric, var.clone(), int_labels(&LABELS, &device)).unwrap();
    // d(3 L + L²)/dx = (3 + 2 L) dL/dx
    let total = value.clone() * 3.0 + value.clone() * value;
    let grads = total.backward();
    let grad = flat::<f64, 2>(&var.grad(&grads).unwrap());
    let factor = 3.0 + 2.0 * want.loss;
    for (g, w) in grad.iter().zip(&want.grad_queries) {
        assert!(
            (g - factor * w).abs() <= 1e-12 * (1.0 + w.abs()),
            "{g} vs {}",
            factor * w
        );
    }
}

/// A small model in burn: `embeddings = l2_normalize(x · w)`, then the loss. The gradient
/// with respect to `w` goes through burn's own ops and ours.
fn model_loss(metric: &dyn MetricLoss, x: &Tensor<2>, w: &Tensor<2>, labels: &[i64]) -> Tensor<1> {
    let y = x.clone().matmul(w.clone());
    let norm = (y.clone() * y.clone()).sum_dim(1).sqrt();
    let device = x.device();
    loss(metric, y / norm, int_labels(labels, &device)).unwrap()
}

#[test]
fn gradient_through_burn_matches_finite_differences_f64() {
    let device = autodiff();
    let (n, d_in, d_out) = (LABELS.len(), 4, 3);
    let x = matrix(&values(n * d_in, 5), n, d_in, &device, DType::F64);
    let w0 = values(d_in * d_out, 6);
    // MultiSimilarity's pair selection and Circle's clamps are kinks where a central
    // difference is no reference; the other losses are smooth at these points.
    let smooth = losses()
        .into_iter()
        .filter(|(what, _)| !what.contains("MultiSimilarity") && !what.contains("Circle"));
    for (what, metric) in smooth {
        let w = matrix(&w0, d_in, d_out, &device, DType::F64).require_grad();
        let value = model_loss(metric.as_ref(), &x, &w, &LABELS);
        let grads = value.backward();
        let analytic = flat::<f64, 2>(&w.grad(&grads).unwrap());
        let h = 1e-6;
        for (i, a) in analytic.iter().enumerate() {
            let at = |delta: f64| {
                let mut wi = w0.clone();
                wi[i] += delta;
                let w = matrix(&wi, d_in, d_out, &device, DType::F64);
                flat::<f64, 1>(&model_loss(metric.as_ref(), &x, &w, &LABELS))[0]
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (a - numeric).abs() <= 1e-5 * (1.0 + numeric.abs()),
                "{what} w[{i}]: {a} vs {numeric}"
            );
        }
    }
}

#[test]
fn every_integer_label_dtype_gives_the_same_numbers() {
    let device = Device::flex();
    let x = unit_rows(&values(LABELS.len() * DIMS, 9), DIMS);
    let want = TripletLoss::default()
        .evaluate(&LABELS, &x, DIMS)
        .unwrap()
        .loss;
    for dtype in [
        burn::tensor::IntDType::I32,
        burn::tensor::IntDType::I64,
        burn::tensor::IntDType::U8,
    ] {
        let labels = int_labels(&LABELS, &device).cast(dtype);
        let embeddings = matrix(&x, LABELS.len(), DIMS, &device, DType::F64);
        let value = loss(&TripletLoss::default(), embeddings, labels).unwrap();
        assert_eq!(flat::<f64, 1>(&value), vec![want], "{dtype:?}");
    }
}

#[test]
fn tensors_outside_autodiff_give_the_value_only() {
    let x = unit_rows_f32(13);
    let metric = TripletLoss::default();
    let want = metric.evaluate(&LABELS, &x, DIMS).unwrap();
    for device in [Device::flex(), autodiff()] {
        let embeddings = matrix(&x, LABELS.len(), DIMS, &device, DType::F32);
        let out = compute(
            &metric,
            BurnInput::new(embeddings.clone(), int_labels(&LABELS, &device)),
        )
        .unwrap();
        assert_eq!(flat::<f32, 1>(&out.loss), vec![want.loss]);
        assert!(!out.loss.is_tracked(), "{device:?}");
        assert_eq!(out.loss.device(), device);
    }
}

#[test]
fn boxed_and_shared_losses_work_and_reuse_their_workspace() {
    let device = autodiff();
    let x = unit_rows_f32(17);
    let boxed: Box<dyn MetricLoss> = Box::new(TripletLoss::default());
    let want = boxed.evaluate(&LABELS, &x, DIMS).unwrap().loss;
    let wrapped = BurnLoss::from(boxed);
    let again = wrapped.clone();
    for loss in [&wrapped, &again, &wrapped] {
        let embeddings = matrix(&x, LABELS.len(), DIMS, &device, DType::F32).require_grad();
        let value = loss.loss(embeddings, int_labels(&LABELS, &device)).unwrap();
        assert_eq!(flat::<f32, 1>(&value), vec![want]);
    }
    assert_eq!(wrapped.metric_loss().name(), "TripletLoss");
}

fn small_batch(device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    (
        matrix(&x, 4, 2, device, DType::F32),
        int_labels(&[0, 0, 1, 1], device),
    )
}

#[test]
fn loss_errors_keep_their_message() {
    let device = autodiff();
    let (x, labels) = small_batch(&device);
    let nan = Tensor::<2>::from_floats(
        [[f32::NAN, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]],
        &device,
    );
    let err = loss(&TripletLoss::default(), nan.require_grad(), labels.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            BurnLossError::Loss(LossError::NonFiniteEmbedding { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("finite"), "{err}");
    // Three labels for four rows.
    let err = loss(&TripletLoss::default(), x, int_labels(&[0, 0, 1], &device)).unwrap_err();
    assert!(matches!(err, BurnLossError::Loss(_)), "{err:?}");
    assert!(
        err.to_string().contains('3') && err.to_string().contains('4'),
        "{err}"
    );
}

#[test]
fn unsupported_inputs_are_errors_naming_the_problem() {
    let device = Device::flex();
    let (x, labels) = small_batch(&device);
    let metric = TripletLoss::default();
    // Weights of the wrong length.
    let w = vector(&[1.0f32, 2.0], &device, DType::F32);
    let err = compute(
        &metric,
        BurnInput::new(x.clone(), labels.clone()).with_sample_weight(w),
    )
    .unwrap_err();
    assert!(err.to_string().contains("weight"), "{err}");
    // Keys of another width.
    let keys = matrix(&[1.0f32, 0.0, 0.0], 1, 3, &device, DType::F32);
    let err = compute(
        &metric,
        BurnInput::new(x.clone(), labels.clone()).with_keys(keys, int_labels(&[0], &device)),
    )
    .unwrap_err();
    assert!(matches!(err, BurnLossError::Loss(_)), "{err:?}");
    // A plain keys tensor beside autodiff queries is a constant: it gets no gradient.
    let keys = matrix(&[1.0f32, 0.0], 1, 2, &device, DType::F32);
    let queries = x.clone().autodiff().require_grad();
    let out = compute(
        &metric,
        BurnInput::new(queries.clone(), labels).with_keys(keys, int_labels(&[0], &device)),
    )
    .unwrap();
    assert!(queries.grad(&out.loss.backward()).is_some());
}

#[test]
fn empty_batches_give_zero() {
    let device = autodiff();
    let x = Tensor::<2>::zeros([0, 3], &device);
    let value = loss(&TripletLoss::default(), x, int_labels(&[], &device)).unwrap();
    assert_eq!(flat::<f32, 1>(&value), vec![0.0]);
}

/// `values` rounded to `dtype` and read back as f32.
fn rounded(values: &[f32], dtype: DType) -> Vec<f32> {
    TensorData::new(values.to_vec(), [values.len()])
        .convert_dtype(dtype)
        .try_to_vec_as::<f32>()
        .unwrap()
}

#[test]
fn half_precision_gives_the_f32_numbers_and_a_gradient_of_its_dtype() {
    let device = autodiff();
    let x = unit_rows_f32(19);
    let metric = TripletLoss::default();
    for dtype in [DType::F16, DType::BF16] {
        let xr = rounded(&x, dtype);
        let want = metric.evaluate(&LABELS, &xr, DIMS).unwrap();
        let var = matrix(&x, LABELS.len(), DIMS, &device, dtype).require_grad();
        let out = BurnLoss::from_loss(TripletLoss::default())
            .loss_with_details(var.clone(), int_labels(&LABELS, &device))
            .unwrap();
        assert_eq!(out.loss.dtype(), dtype);
        assert_eq!(out.per_example.dtype(), dtype);
        assert_eq!(
            flat::<f32, 1>(&out.loss.clone().cast(FloatDType::F32)),
            rounded(&[want.loss], dtype)
        );
        let grad = var.grad(&out.loss.backward()).unwrap();
        assert_eq!(grad.dtype(), dtype);
        assert_eq!(
            flat::<f32, 2>(&grad.cast(FloatDType::F32)),
            rounded(&want.grad_queries, dtype),
            "{dtype:?}"
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
    let device = autodiff();
    let data = full();
    let (n, m) = (LABELS.len(), data.key_labels.len());
    for (what, metric) in losses() {
        for remove_diagonal in [true, false] {
            let want = core_output(
                metric.as_ref(),
                &data,
                SampleWeight::PerExample(&data.weights),
                remove_diagonal,
            );
            let q = matrix(&data.q, n, DIMS, &device, DType::F64).require_grad();
            let k = matrix(&data.k, m, DIMS, &device, DType::F64).require_grad();
            let weights = vector(&data.weights, &device, DType::F64).require_grad();
            let input = BurnInput::new(q.clone(), int_labels(&LABELS, &device))
                .with_keys(k.clone(), int_labels(&data.key_labels, &device))
                .with_sample_weight(weights.clone())
                .remove_diagonal(remove_diagonal);
            let out = BurnLoss::new(metric.clone()).compute(input).unwrap();
            let what = format!("{what}, remove_diagonal {remove_diagonal}");
            assert_eq!(flat::<f64, 1>(&out.loss), vec![want.loss], "{what}");
            assert_eq!(flat::<f64, 1>(&out.per_example), want.per_example, "{what}");
            let grads = out.loss.backward();
            let grad_k = k.grad(&grads).unwrap();
            assert_eq!(grad_k.dims(), [m, DIMS]);
            assert_eq!(
                flat::<f64, 2>(&q.grad(&grads).unwrap()),
                want.grad_queries,
                "{what}"
            );
            assert_eq!(flat::<f64, 2>(&grad_k), want.grad_keys, "{what}");
            assert!(want.grad_keys.iter().any(|g| *g != 0.0), "{what}");
            assert!(weights.grad(&grads).is_none(), "weights get no gradient");
        }
    }
}

#[test]
fn one_weight_for_all_and_f32_weights_match_the_core() {
    let device = Device::flex();
    let data = full();
    let metric = TripletLoss::default();
    let n = LABELS.len();
    let x = matrix(&data.q, n, DIMS, &device, DType::F64);
    let q = Embeddings::from_row_major(&data.q, n, DIMS).unwrap();
    let core = |weights| {
        metric
            .compute(&LossInput::new(Batch::new(&LABELS, q).unwrap()).with_sample_weight(weights))
            .unwrap()
    };
    let one = vector(&[0.5f64], &device, DType::F64);
    let want = core(SampleWeight::Scalar(0.5));
    let out = compute(
        &metric,
        BurnInput::new(x.clone(), int_labels(&LABELS, &device)).with_sample_weight(one),
    )
    .unwrap();
    assert_eq!(flat::<f64, 1>(&out.loss), vec![want.loss]);
    // f32 weights for f64 embeddings are read in the embeddings' precision.
    let rounded: Vec<f64> = data.weights.iter().map(|w| f64::from(*w as f32)).collect();
    let want = core(SampleWeight::PerExample(&rounded));
    let w32 = vector(&data.weights, &device, DType::F32);
    let out = compute(
        &metric,
        BurnInput::new(x, int_labels(&LABELS, &device)).with_sample_weight(w32),
    )
    .unwrap();
    assert_eq!(flat::<f64, 1>(&out.loss), vec![want.loss]);
}

#[test]
fn keys_alone_can_take_the_gradient() {
    let device = autodiff();
    let data = full();
    let (n, m) = (LABELS.len(), data.key_labels.len());
    let metric = TripletLoss::default();
    let want = core_output(&metric, &data, SampleWeight::None, true);
    let q = matrix(&data.q, n, DIMS, &device, DType::F64);
    let k = matrix(&data.k, m, DIMS, &device, DType::F64).require_grad();
    let input = BurnInput::new(q.clone(), int_labels(&LABELS, &device))
        .with_keys(k.clone(), int_labels(&data.key_labels, &device));
    let grads = compute(&metric, input).unwrap().loss.backward();
    assert_eq!(flat::<f64, 2>(&k.grad(&grads).unwrap()), want.grad_keys);
    assert!(q.grad(&grads).is_none());
}

#[test]
fn a_linear_model_trained_with_the_loss_improves() {
    // A 6 -> 3 linear map trained by plain gradient descent on four classes: the loss
    // goes down and the gradient flows through burn's matmul into the weights.
    let device = autodiff();
    let (n, d_in, d_out) = (16, 6, 3);
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
    // Class centres plus noise, so that the classes can be separated.
    let noise = values(n * d_in, 41);
    let x: Vec<f32> = (0..n * d_in)
        .map(|i| {
            let (row, col) = (i / d_in, i % d_in);
            let centre = if col % 4 == labels[row] as usize {
                1.0
            } else {
                0.0
            };
            (centre + 0.3 * noise[i]) as f32
        })
        .collect();
    let x = matrix(&x, n, d_in, &device, DType::F32);
    let mut w: Vec<f32> = values(d_in * d_out, 42).iter().map(|v| *v as f32).collect();
    let loss_fn = BurnLoss::from_loss(TripletLoss::default());
    let mut history = Vec::new();
    for _ in 0..60 {
        let wt = matrix(&w, d_in, d_out, &device, DType::F32).require_grad();
        let y = x.clone().matmul(wt.clone());
        let norm = (y.clone() * y.clone()).sum_dim(1).sqrt();
        let value = loss_fn
            .loss(y / norm, int_labels(&labels, &device))
            .unwrap();
        history.push(flat::<f32, 1>(&value)[0]);
        let grad = flat::<f32, 2>(&wt.grad(&value.backward()).unwrap());
        for (w, g) in w.iter_mut().zip(&grad) {
            *w -= 0.5 * g;
        }
    }
    let (first, last) = (history[0], *history.last().unwrap());
    assert!(last < 0.5 * first, "loss {first} -> {last}: {history:?}");
}

#[test]
fn from_config_reads_a_registry_file() {
    let path = std::env::temp_dir().join(format!("metric-loss-burn-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "class_name = \"TripletLoss\"\n[config]\nmargin = 0.5\n",
    )
    .unwrap();
    let loss = BurnLoss::from_config(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loss.metric_loss().name(), "TripletLoss");
    assert!(BurnLoss::from_config("no/such/file.toml").is_err());
}
