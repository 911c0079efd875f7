//! Any [`MetricLoss`] of the `metric-loss` workspace as a [candle](https://docs.rs/candle-core)
//! operation whose backward pass is the loss's analytic gradient.
//!
//! [`CandleLoss::loss`] (or the free function [`loss`] for a borrowed `&dyn MetricLoss`)
//! takes a `n x dims` embeddings tensor and a tensor of `n` integer labels and returns a
//! scalar tensor. When the embeddings take part in autograd (a [`candle_core::Var`] or a
//! tensor computed from one), `backward()` through that scalar gives
//! `LossOutput::grad_queries` times the upstream gradient: the loss is computed once, with
//! its gradient, by the loss itself, not differentiated op by op.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use metric_loss_candle::CandleLoss;
//! use metric_loss_triplet::TripletLoss;
//!
//! let loss = CandleLoss::from_loss(TripletLoss::default()); // cosine, hard / semi-hard
//! let x = Var::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], (4, 2), &Device::Cpu)?;
//! let labels = Tensor::new(&[0u32, 0, 1, 1], &Device::Cpu)?;
//!
//! let value = loss.loss(x.as_tensor(), &labels)?; // a scalar f32 tensor
//! let grads = value.backward()?;
//! let dx = grads.get(x.as_tensor()).expect("x is a variable");
//! assert_eq!(value.dims(), &[] as &[usize]);
//! assert_eq!(dx.dims(), &[4, 2]);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! # What is supported
//! - Embeddings: `f32` or `f64`, rank 2 (`n x dims`), on the CPU, any strides.
//! - Labels: `u8`, `u32`, `i16`, `i32` or `i64`, shape `[n]` or `[n, 1]`; they are read as
//!   `i64`. Labels get no gradient.
//! - The keys are the queries (TF Similarity's `MetricLoss.call`), without sample weights.
//! - The result is a scalar of the embeddings' dtype: the reduced loss
//!   ([`metric_loss_core::LossOutput::loss`]); with `Reduction::None` it is Σ ℓᵢ, whose
//!   gradient is the one returned. [`CandleLoss::loss_with_details`] also returns the
//!   per-example losses.
//! - Errors: a [`metric_loss_core::LossError`] becomes a [`candle_core::Error`] whose
//!   message is the `LossError`'s, unchanged ([`to_candle_error`]).
//!
//! A stateful loss is evaluated once per call (the gradient is kept from the forward
//! pass), so its state advances exactly once per training step.
//!
//! # Feature flags
//! None: the crate has no optional features. Candle itself is used with its default
//! features (CPU).
//!
//! # Supported Rust versions
//! The minimum supported Rust version is 1.89 (nalgebra 0.35 requires it). Raising it is a minor-version change.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use candle_core::{
    CpuStorage, CustomOp2, DType, Device, Error, Layout, Result, Shape, Tensor, WithDType,
};
use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
    Workspace,
};

/// Converts a [`LossError`] into a [`candle_core::Error`] that displays the same message.
///
/// ```
/// use metric_loss_core::LossError;
/// let e = LossError::ZeroWidth { what: "query embeddings", rows: 3 };
/// assert_eq!(metric_loss_candle::to_candle_error(e.clone()).to_string(), e.to_string());
/// ```
pub fn to_candle_error(error: LossError) -> Error {
    Error::Wrapped(Box::new(error))
}

/// A [`MetricLoss`] usable on candle tensors, with a reusable [`Workspace`].
///
/// Build it from an `Arc<dyn MetricLoss>`, a `Box<dyn MetricLoss>` (what a config file
/// loads to) or any concrete loss; clone it cheaply (the loss and workspace are shared).
#[derive(Debug, Clone)]
pub struct CandleLoss {
    loss: Arc<dyn MetricLoss>,
    workspace: Arc<Mutex<Workspace>>,
}

impl CandleLoss {
    /// Wraps a shared loss.
    pub fn new(loss: Arc<dyn MetricLoss>) -> Self {
        Self {
            loss,
            workspace: Arc::new(Mutex::new(Workspace::new())),
        }
    }

    /// Wraps a concrete loss.
    pub fn from_loss<L: MetricLoss + 'static>(loss: L) -> Self {
        Self::new(Arc::new(loss))
    }

    /// The wrapped loss.
    pub fn metric_loss(&self) -> &Arc<dyn MetricLoss> {
        &self.loss
    }

    /// The loss of `embeddings` (`n x dims`, `f32` or `f64`) with `labels` (`n` integers)
    /// as a scalar tensor; its gradient is the loss's analytic gradient.
    ///
    /// # Errors
    /// Unsupported dtypes, shapes or devices, and every [`LossError`] of the loss (with its
    /// message unchanged).
    pub fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
        Ok(self.loss_with_details(embeddings, labels)?.loss)
    }

    /// As [`CandleLoss::loss`], and the per-example losses too.
    ///
    /// # Errors
    /// As [`CandleLoss::loss`].
    pub fn loss_with_details(&self, embeddings: &Tensor, labels: &Tensor) -> Result<LossTensors> {
        // A poisoned lock only means another thread panicked mid-call: the workspace holds
        // scratch buffers that every call resets, so it is still usable.
        let mut workspace = self
            .workspace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        evaluate(self.loss.as_ref(), &mut workspace, embeddings, labels)
    }
}

impl From<Arc<dyn MetricLoss>> for CandleLoss {
    fn from(loss: Arc<dyn MetricLoss>) -> Self {
        Self::new(loss)
    }
}

impl From<Box<dyn MetricLoss>> for CandleLoss {
    fn from(loss: Box<dyn MetricLoss>) -> Self {
        Self::new(Arc::from(loss))
    }
}

/// The loss of a borrowed [`MetricLoss`] as a scalar tensor with its analytic gradient;
/// see [`CandleLoss::loss`]. Uses a fresh [`Workspace`]; keep a [`CandleLoss`] to reuse one
/// across training steps.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use metric_loss_core::{MetricLoss, MetricLossExt};
/// use metric_loss_triplet::TripletLoss;
///
/// let triplet = TripletLoss::builder().margin(0.5).build().unwrap();
/// let dyn_loss: &dyn MetricLoss = &triplet;
/// let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let t = Tensor::from_slice(&x, (4, 2), &Device::Cpu)?;
/// let labels = Tensor::new(&[0i64, 0, 1, 2], &Device::Cpu)?;
/// let value = metric_loss_candle::loss(dyn_loss, &t, &labels)?.to_scalar::<f64>()?;
/// assert_eq!(value, triplet.evaluate(&[0, 0, 1, 2], &x, 2).unwrap().loss);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # Errors
/// As [`CandleLoss::loss`].
pub fn loss(loss: &dyn MetricLoss, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(evaluate(loss, &mut Workspace::new(), embeddings, labels)?.loss)
}

/// The tensors one evaluation returns.
#[derive(Debug, Clone)]
pub struct LossTensors {
    /// The reduced loss: a scalar with the analytic gradient attached.
    pub loss: Tensor,
    /// ℓᵢ for each example (shape `[n]`, without sample weights); no gradient.
    pub per_example: Tensor,
}

/// The loss value and, when wanted, its gradient, computed in the forward op and handed
/// to the op that carries the backward pass.
#[derive(Debug)]
enum Computed {
    F32(LossOutput<f32>),
    F64(LossOutput<f64>),
}

/// Runs the loss on the CPU storages of the embeddings and labels. Applied without a
/// backward pass; [`AttachGradient`] carries the gradient into the graph.
struct Forward<'a> {
    loss: &'a dyn MetricLoss,
    workspace: RefCell<&'a mut Workspace>,
    gradient: bool,
    computed: RefCell<Option<Computed>>,
}

impl Forward<'_> {
    fn run<T: Float>(
        &self,
        x: &[T],
        shape: (usize, usize),
        labels: &[i64],
    ) -> Result<LossOutput<T>> {
        let embeddings =
            Embeddings::from_row_major(x, shape.0, shape.1).map_err(to_candle_error)?;
        let mut input = LossInput::new(Batch::new(labels, embeddings).map_err(to_candle_error)?);
        if !self.gradient {
            input = input.without_gradient();
        }
        let mut out = LossOutput::new();
        let mut workspace = self.workspace.borrow_mut();
        self.loss
            .compute_into(&input, &mut workspace, &mut out)
            .map_err(to_candle_error)?;
        Ok(out)
    }
}

impl CustomOp2 for Forward<'_> {
    fn name(&self) -> &'static str {
        "metric-loss"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let shape = l1.shape().dims2()?;
        let labels = labels_as_i64(s2, l2)?;
        let (value, computed) = match s1 {
            CpuStorage::F32(v) => {
                let out = self.run(contiguous(v, l1)?, shape, &labels)?;
                (CpuStorage::F32(vec![out.loss]), Computed::F32(out))
            }
            CpuStorage::F64(v) => {
                let out = self.run(contiguous(v, l1)?, shape, &labels)?;
                (CpuStorage::F64(vec![out.loss]), Computed::F64(out))
            }
            _ => candle_core::bail!("metric-loss: embeddings must be f32 or f64"),
        };
        *self.computed.borrow_mut() = Some(computed);
        Ok((value, Shape::from(())))
    }
}

/// Re-emits the loss value computed by [`Forward`] and returns the kept gradient, scaled
/// by the upstream gradient, in the backward pass.
struct AttachGradient {
    value: CpuStorage,
    grad: Tensor,
}

impl CustomOp2 for AttachGradient {
    fn name(&self) -> &'static str {
        "metric-loss"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok((self.value.clone(), Shape::from(())))
    }

    fn bwd(
        &self,
        _embeddings: &Tensor,
        _labels: &Tensor,
        _result: &Tensor,
        grad_result: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(self.grad.broadcast_mul(grad_result)?), None))
    }
}

fn evaluate(
    loss: &dyn MetricLoss,
    workspace: &mut Workspace,
    embeddings: &Tensor,
    labels: &Tensor,
) -> Result<LossTensors> {
    check_inputs(embeddings, labels)?;
    let embeddings = embeddings.contiguous()?;
    let labels = labels.flatten_all()?.contiguous()?;
    let gradient = embeddings.track_op();
    let forward = Forward {
        loss,
        workspace: RefCell::new(workspace),
        gradient,
        computed: RefCell::new(None),
    };
    let value = embeddings.apply_op2_no_bwd(&labels, &forward)?;
    let computed = forward
        .computed
        .into_inner()
        .ok_or_else(|| Error::Msg("metric-loss: the forward pass returned nothing".into()))?;
    match computed {
        Computed::F32(out) => finish(out, &embeddings, &labels, value, gradient),
        Computed::F64(out) => finish(out, &embeddings, &labels, value, gradient),
    }
}

/// Wraps the loss's output into tensors, attaching the gradient when it was computed.
fn finish<T: Float + WithDType>(
    out: LossOutput<T>,
    embeddings: &Tensor,
    labels: &Tensor,
    value: Tensor,
    gradient: bool,
) -> Result<LossTensors> {
    let per_example = Tensor::from_vec(out.per_example, labels.elem_count(), &Device::Cpu)?;
    if !gradient {
        return Ok(LossTensors {
            loss: value,
            per_example,
        });
    }
    let grad = Tensor::from_vec(out.grad_queries, embeddings.shape(), &Device::Cpu)?;
    let attach = AttachGradient {
        value: T::to_cpu_storage_owned(vec![out.loss]),
        grad,
    };
    let loss = embeddings.apply_op2_arc(labels, Arc::new(Box::new(attach)))?;
    Ok(LossTensors { loss, per_example })
}

/// Rejects what the loss cannot run on, with messages naming the tensor.
fn check_inputs(embeddings: &Tensor, labels: &Tensor) -> Result<()> {
    if !embeddings.device().is_cpu() || !labels.device().is_cpu() {
        candle_core::bail!(
            "metric-loss: tensors must be on the CPU (use .to_device(&Device::Cpu)); got embeddings on {:?} and labels on {:?}",
            embeddings.device().location(),
            labels.device().location()
        );
    }
    if !matches!(embeddings.dtype(), DType::F32 | DType::F64) {
        candle_core::bail!(
            "metric-loss: embeddings must be f32 or f64, got {:?}",
            embeddings.dtype()
        );
    }
    if embeddings.rank() != 2 {
        candle_core::bail!(
            "metric-loss: embeddings must have shape [n, dims], got {:?}",
            embeddings.dims()
        );
    }
    if !matches!(
        labels.dtype(),
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64
    ) {
        candle_core::bail!(
            "metric-loss: labels must be integers (u8, u32, i16, i32 or i64), got {:?}",
            labels.dtype()
        );
    }
    let column = labels.rank() == 2 && labels.dims()[1] == 1;
    if labels.rank() != 1 && !column {
        candle_core::bail!(
            "metric-loss: labels must have shape [n] or [n, 1], got {:?}",
            labels.dims()
        );
    }
    Ok(())
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("metric-loss: expected a contiguous tensor"),
    }
}

fn labels_as_i64(storage: &CpuStorage, layout: &Layout) -> Result<Vec<i64>> {
    Ok(match storage {
        CpuStorage::U8(v) => contiguous(v, layout)?
            .iter()
            .map(|&l| i64::from(l))
            .collect(),
        CpuStorage::U32(v) => contiguous(v, layout)?
            .iter()
            .map(|&l| i64::from(l))
            .collect(),
        CpuStorage::I16(v) => contiguous(v, layout)?
            .iter()
            .map(|&l| i64::from(l))
            .collect(),
        CpuStorage::I32(v) => contiguous(v, layout)?
            .iter()
            .map(|&l| i64::from(l))
            .collect(),
        CpuStorage::I64(v) => contiguous(v, layout)?.to_vec(),
        _ => candle_core::bail!("metric-loss: labels must be integers (u8, u32, i16, i32 or i64)"),
    })
}
