//! The host side of a call: the tensors read out, the loss run in `f32` or `f64`, and its
//! results made into tensors on the embeddings' device in their dtype.

use burn::tensor::{DType, Device, Element, Int, Tensor, TensorData};
use metric_loss_core::{
    Batch, Embeddings, Float, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight,
    Workspace,
};

use crate::attach::Attach;
use crate::{BurnInput, BurnLossError, LossTensors};

const FLOATS: &str = "f16, bf16, f32 or f64";

/// Runs the loss on `input`, in `f64` for `f64` embeddings and in `f32` otherwise.
pub(crate) fn evaluate(
    loss: &dyn MetricLoss,
    workspace: &mut Workspace,
    input: BurnInput,
) -> Result<LossTensors, BurnLossError> {
    check_float("embeddings", input.embeddings.dtype())?;
    if let Some((keys, _)) = &input.keys {
        check_float("keys", keys.dtype())?;
        let (queries, keys) = (input.embeddings.device(), keys.device());
        if queries != keys {
            return Err(BurnLossError::Device {
                queries: format!("{queries:?}"),
                keys: format!("{keys:?}"),
            });
        }
    }
    if let Some(w) = &input.sample_weight {
        check_float("sample weights", w.dtype())?;
    }
    match input.embeddings.dtype() {
        DType::F64 => evaluate_as::<f64>(loss, workspace, input, false),
        _ => evaluate_as::<f32>(loss, workspace, input, false),
    }
}

fn check_float(what: &'static str, dtype: DType) -> Result<(), BurnLossError> {
    match dtype {
        DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Ok(()),
        got => Err(BurnLossError::DType {
            what,
            expected: FLOATS,
            got,
        }),
    }
}

/// A tensor's values on the host, converted to `E`.
fn read<E: Element, const D: usize, K: burn::tensor::kind::Basic>(
    what: &'static str,
    tensor: &Tensor<D, K>,
) -> Result<Vec<E>, BurnLossError> {
    let message = |e: &dyn std::fmt::Display| BurnLossError::Read {
        what,
        message: e.to_string(),
    };
    tensor
        .clone()
        .try_into_data()
        .map_err(|e| message(&e))?
        .try_into_vec_as::<E>()
        .map_err(|e| message(&format!("{e:?}")))
}

fn labels(what: &'static str, labels: &Tensor<1, Int>) -> Result<Vec<i64>, BurnLossError> {
    match labels.dtype() {
        DType::I64
        | DType::I32
        | DType::I16
        | DType::I8
        | DType::U64
        | DType::U32
        | DType::U16
        | DType::U8 => read::<i64, 1, Int>(what, labels),
        got => Err(BurnLossError::DType {
            what,
            expected: "integers",
            got,
        }),
    }
}

/// Embeddings read to the host in the compute precision.
struct HostEmbeddings<T> {
    values: Vec<T>,
    rows: usize,
    cols: usize,
}

impl<T: Float + Element> HostEmbeddings<T> {
    fn new(what: &'static str, x: &Tensor<2>) -> Result<Self, BurnLossError> {
        let [rows, cols] = x.dims();
        Ok(Self {
            values: read::<T, 2, burn::tensor::Float>(what, x)?,
            rows,
            cols,
        })
    }

    fn embeddings(&self) -> Result<Embeddings<'_, T>, BurnLossError> {
        Ok(Embeddings::from_row_major(
            &self.values,
            self.rows,
            self.cols,
        )?)
    }
}

/// A constant tensor of `values` with `shape`, on `device` in `dtype`.
fn constant<T: Element, const D: usize>(
    values: Vec<T>,
    shape: [usize; D],
    device: &Device,
    dtype: DType,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

fn evaluate_as<T: Float + Element>(
    loss: &dyn MetricLoss,
    workspace: &mut Workspace,
    input: BurnInput,
    composed: bool,
) -> Result<LossTensors, BurnLossError> {
    let queries = HostEmbeddings::<T>::new("embeddings", &input.embeddings)?;
    let query_labels = labels("labels", &input.labels)?;
    let keys = match &input.keys {
        Some((keys, key_labels)) => Some((
            HostEmbeddings::<T>::new("keys", keys)?,
            labels("key labels", key_labels)?,
        )),
        None => None,
    };
    let weights = match &input.sample_weight {
        Some(w) => Some(read::<T, 1, burn::tensor::Float>("sample weights", w)?),
        None => None,
    };
    let gradient = input.embeddings.is_tracked()
        || input
            .keys
            .as_ref()
            .is_some_and(|(keys, _)| keys.is_tracked());

    let batch = Batch::new(&query_labels, queries.embeddings()?)?;
    let mut loss_input = LossInput::new(batch).remove_diagonal(input.remove_diagonal);
    if let Some((keys, key_labels)) = &keys {
        loss_input = loss_input.with_keys(Batch::new(key_labels, keys.embeddings()?)?);
    }
    if let Some(w) = &weights {
        loss_input = loss_input.with_sample_weight(match w.as_slice() {
            [one] if query_labels.len() != 1 => SampleWeight::Scalar(*one),
            all => SampleWeight::PerExample(all),
        });
    }
    if !gradient {
        loss_input = loss_input.without_gradient();
    }
    let mut out = LossOutput::new();
    loss.compute_into(&loss_input, workspace, &mut out)?;

    let (device, dtype) = (input.embeddings.device(), input.embeddings.dtype());
    let value = constant(vec![out.loss], [1], &device, dtype);
    let per_example = constant(out.per_example, [query_labels.len()], &device, dtype);
    let loss = if gradient {
        let shape = |x: &HostEmbeddings<T>| [x.rows, x.cols];
        let grad_queries = constant(out.grad_queries, shape(&queries), &device, dtype);
        let (keys, grad_keys) = match (input.keys, &keys) {
            (Some((key_tensor, _)), Some((host, _))) => {
                let grad = constant(out.grad_keys, shape(host), &device, key_tensor.dtype());
                (Some(key_tensor), Some(grad))
            }
            _ => (None, None),
        };
        Attach {
            queries: input.embeddings,
            keys,
            value,
            grad_queries,
            grad_keys,
        }
        .apply(composed)
    } else {
        value
    };
    Ok(LossTensors { loss, per_example })
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, TensorData};
    use metric_loss_core::{Batch, Embeddings, LossInput, MetricLossExt};
    use metric_loss_triplet::TripletLoss;

    use super::*;

    #[test]
    fn the_composed_node_gives_the_same_value_and_gradient() {
        // The path of the backends outside the extension, run on the CPU: the value bit
        // for bit, and the loss's gradient for queries and keys alike.
        let device = Device::flex().autodiff();
        let labels = [0i64, 0, 1, 1, 2];
        let key_labels = [1i64, 0, 2];
        let q: Vec<f64> = (0..10).map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0).collect();
        let k: Vec<f64> = (0..6).map(|i| ((i * 5 % 7) as f64 - 3.0) / 3.0).collect();
        let metric = TripletLoss::default();
        let input = LossInput::new(
            Batch::new(&labels, Embeddings::from_row_major(&q, 5, 2).unwrap()).unwrap(),
        )
        .with_keys(Batch::new(&key_labels, Embeddings::from_row_major(&k, 3, 2).unwrap()).unwrap())
        .remove_diagonal(false);
        let want = metric.compute(&input).unwrap();
        let tensor = |x: &[f64], rows| {
            Tensor::<2>::from_data(
                TensorData::new(x.to_vec(), [rows, 2]),
                (&device, DType::F64),
            )
            .require_grad()
        };
        let int = |x: &[i64]| {
            Tensor::<1, Int>::from_data(TensorData::new(x.to_vec(), [x.len()]), &device)
        };
        let (qt, kt) = (tensor(&q, 5), tensor(&k, 3));
        let input = BurnInput::new(qt.clone(), int(&labels))
            .with_keys(kt.clone(), int(&key_labels))
            .remove_diagonal(false);
        let out = evaluate_as::<f64>(&metric, &mut Workspace::new(), input, true).unwrap();
        assert_eq!(
            out.loss.to_data().try_to_vec::<f64>().unwrap(),
            vec![want.loss]
        );
        let grads = (out.loss * 2.0).backward();
        let twice = |g: &[f64]| g.iter().map(|g| 2.0 * g).collect::<Vec<_>>();
        let grad = |t: &Tensor<2>| {
            t.grad(&grads)
                .unwrap()
                .to_data()
                .try_to_vec::<f64>()
                .unwrap()
        };
        assert_eq!(grad(&qt), twice(&want.grad_queries));
        assert_eq!(grad(&kt), twice(&want.grad_keys));
    }
}
