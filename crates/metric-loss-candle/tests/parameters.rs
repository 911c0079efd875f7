//! A loss's learnable parameters as a candle `Var`: its gradient reaches the Var, and a
//! candle optimizer trains it.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, SGD};
use metric_loss_candle::{CandleInput, CandleLoss};
use metric_loss_core::MetricLossExt;
use metric_loss_pml::{ArcFaceLossConfig, ProxyAnchorLoss};
use metric_loss_triplet::TripletLoss;

const LABELS: [u32; 8] = [0, 1, 2, 3, 0, 1, 2, 3];
const DIMS: usize = 6;

fn batch(cpu: &Device) -> (Tensor, Tensor) {
    let x: Vec<f32> = metric_loss_testkit::values(LABELS.len() * DIMS, 21)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    (
        Tensor::from_vec(x, (LABELS.len(), DIMS), cpu).unwrap(),
        Tensor::new(&LABELS, cpu).unwrap(),
    )
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn sgd_on_arcface_lowers_the_loss_and_moves_w() {
    let cpu = Device::Cpu;
    let arcface = ArcFaceLossConfig::new(4, DIMS)
        .scale(8.0)
        .seed(3)
        .build()
        .unwrap();
    let loss = CandleLoss::from_loss(arcface);
    let w = loss.parameters_var(&cpu, DType::F32).unwrap().unwrap();
    let start = flat(w.as_tensor());
    let (x, labels) = batch(&cpu);
    let mut sgd = SGD::new(vec![w.clone()], 0.5).unwrap();
    let mut values = Vec::new();
    for _ in 0..5 {
        let input = CandleInput::new(&x, &labels).with_parameters(w.as_tensor());
        let out = loss.compute(&input).unwrap();
        values.push(out.loss.to_scalar::<f32>().unwrap());
        sgd.backward_step(&out.loss).unwrap();
    }
    assert!(values[4] < values[0], "{values:?}");
    assert_ne!(flat(w.as_tensor()), start);
    // The loss holds the values the last call was given, no longer its seed's.
    let mut host = vec![0.0f64; 4 * DIMS];
    loss.metric_loss().read_parameters(&mut host).unwrap();
    let before_last: Vec<f32> = host.iter().map(|v| *v as f32).collect();
    assert_ne!(before_last, start);
}

#[test]
fn the_var_gets_the_loss_gradient_and_the_embeddings_too() {
    let cpu = Device::Cpu;
    let proxy = ProxyAnchorLoss::new(4, DIMS).unwrap();
    let loss = CandleLoss::from_loss(proxy);
    let p = loss.parameters_var(&cpu, DType::F32).unwrap().unwrap();
    let (x, labels) = batch(&cpu);
    let x = Var::from_tensor(&x).unwrap();
    let out = loss
        .compute(&CandleInput::new(x.as_tensor(), &labels).with_parameters(p.as_tensor()))
        .unwrap();
    let grads = out.loss.backward().unwrap();
    let labels64: Vec<i64> = LABELS.iter().map(|l| i64::from(*l)).collect();
    let want = loss
        .metric_loss()
        .evaluate(&labels64, &flat(x.as_tensor()), DIMS)
        .unwrap();
    assert_eq!(
        flat(grads.get(p.as_tensor()).unwrap()),
        want.grad_parameters
    );
    assert_eq!(flat(grads.get(x.as_tensor()).unwrap()), want.grad_queries);
}

#[test]
fn parameters_of_the_wrong_shape_or_loss_are_errors() {
    let cpu = Device::Cpu;
    let (x, labels) = batch(&cpu);
    let loss = CandleLoss::from_loss(ArcFaceLossConfig::new(4, DIMS).build().unwrap());
    let transposed = Tensor::zeros((4, DIMS), DType::F32, &cpu).unwrap();
    let err = loss
        .compute(&CandleInput::new(&x, &labels).with_parameters(&transposed))
        .unwrap_err();
    assert!(
        err.to_string().contains("W must have shape [6, 4]"),
        "{err}"
    );
    let plain = CandleLoss::from_loss(TripletLoss::default());
    assert!(plain.parameters_var(&cpu, DType::F32).unwrap().is_none());
    let err = plain
        .compute(&CandleInput::new(&x, &labels).with_parameters(&transposed))
        .unwrap_err();
    assert!(err.to_string().contains("no learnable parameters"), "{err}");
}
