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
//! Sample weights and a separate key set (a memory bank, negatives from another device)
//! go through a [`CandleInput`] and [`CandleLoss::compute`]:
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use metric_loss_candle::{CandleInput, CandleLoss};
//! use metric_loss_triplet::TripletLoss;
//!
//! let cpu = Device::Cpu;
//! let loss = CandleLoss::from_loss(TripletLoss::default());
//! let queries = Var::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], (4, 2), &cpu)?;
//! let labels = Tensor::new(&[0u32, 0, 1, 1], &cpu)?;
//! let keys = Var::from_slice(&[0.6f32, 0.8, -1.0, 0.0], (2, 2), &cpu)?;
//! let key_labels = Tensor::new(&[0u32, 1], &cpu)?;
//! let weights = Tensor::new(&[1.0f32, 2.0, 0.5, 1.0], &cpu)?;
//!
//! let input = CandleInput::new(queries.as_tensor(), &labels)
//!     .with_keys(keys.as_tensor(), &key_labels)
//!     .remove_diagonal(false) // the keys do not start with the queries
//!     .with_sample_weight(&weights);
//! let out = loss.compute(&input)?;
//! let grads = out.loss.backward()?;
//! assert_eq!(grads.get(keys.as_tensor()).expect("keys are a variable").dims(), &[2, 2]);
//! assert_eq!(out.per_example.dims(), &[4]);
//! # Ok::<(), candle_core::Error>(())
//! ```
//!
//! # What is supported
//! - Embeddings and keys: `f16`, `bf16`, `f32` or `f64`, rank 2 (`n x dims`), any strides,
//!   on any device. The loss runs on the host: tensors on CUDA or Metal are copied there,
//!   and the results and gradients go back to each input's own device. `f16` and `bf16`
//!   are computed in `f32` (`f64` in `f64`) and the results and gradients are returned in
//!   the input's dtype. Every step is a differentiable candle op, so no user code is
//!   involved and there is one path for every device.
//! - Labels: `u8`, `u32`, `i16`, `i32` or `i64`, shape `[n]` or `[n, 1]`; they are read as
//!   `i64`. Labels get no gradient.
//! - Sample weights: a float tensor of shape `[]` (one weight for all), `[n]` or `[n, 1]`;
//!   they get no gradient.
//! - The keys are the queries (TF Similarity's `MetricLoss.call`) unless
//!   [`CandleInput::with_keys`] gives a separate set, whose gradient then flows to the key
//!   tensor.
//! - The result is a scalar of the embeddings' dtype on their device: the reduced loss
//!   ([`metric_loss_core::LossOutput::loss`]); with `Reduction::None` it is Σ ℓᵢ, whose
//!   gradient is the one returned. [`CandleLoss::loss_with_details`] and
//!   [`CandleLoss::compute`] also return the per-example losses (without gradient: the
//!   loss computes the gradient of its reduced value only).
//! - Errors: a [`metric_loss_core::LossError`] becomes a [`candle_core::Error`] whose
//!   message is the `LossError`'s, unchanged ([`to_candle_error`]).
//!
//! - Learnable parameters (ArcFace's `W`, ProxyAnchor's `proxies`):
//!   [`CandleLoss::parameters_var`] makes a [`Var`] of them for an optimizer, and
//!   [`CandleInput::with_parameters`] computes with its values and gives it its gradient.
//!
//! A stateful loss is evaluated once per call (the gradient is kept from the forward
//! pass), so its state advances exactly once per training step.
//!
//! # Feature flags
//! None: the crate has no optional features. Candle itself is used with its default
//! features (CPU); enabling candle's `cuda` or `metal` features in your own crate is all
//! it takes for tensors on those devices.
//!
//! # Supported Rust versions
//! The minimum supported Rust version is 1.89 (nalgebra 0.35 requires it). Raising it is a minor-version change.

use std::path::Path;
use std::sync::Arc;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Device, Error, Layout, Result, Shape,
    Tensor, Var, WithDType,
};
use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
    SampleWeight, Workspace,
};
use metric_loss_registry::{RegistryError, SharedLoss};

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
/// loads to), any concrete loss, or a config file ([`CandleLoss::from_config`]); clone it
/// cheaply (the loss and workspace are shared).
#[derive(Debug, Clone)]
pub struct CandleLoss {
    shared: SharedLoss,
}

impl CandleLoss {
    /// Wraps a shared loss.
    pub fn new(loss: Arc<dyn MetricLoss>) -> Self {
        Self::from(SharedLoss::new(loss))
    }

    /// Wraps a concrete loss.
    pub fn from_loss<L: MetricLoss + 'static>(loss: L) -> Self {
        Self::new(Arc::new(loss))
    }

    /// Reads the loss from a Keras-shaped JSON, TOML or YAML config file with
    /// [`metric_loss_registry::load`].
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("candle-loss-{}.json", std::process::id()));
    /// std::fs::write(&path, r#"{"class_name": "TripletLoss", "config": {"margin": 0.5}}"#)?;
    /// let loss = metric_loss_candle::CandleLoss::from_config(&path)?;
    /// # std::fs::remove_file(&path)?;
    /// assert_eq!(loss.metric_loss().name(), "TripletLoss");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Every [`RegistryError`] of [`metric_loss_registry::load`]: an unreadable file, an
    /// unknown format or class, an invalid config.
    pub fn from_config(path: impl AsRef<Path>) -> std::result::Result<Self, RegistryError> {
        SharedLoss::from_config(path).map(Self::from)
    }

    /// The wrapped loss.
    pub fn metric_loss(&self) -> &Arc<dyn MetricLoss> {
        self.shared.metric_loss()
    }

    /// The loss of `embeddings` (`n x dims`, `f16`, `bf16`, `f32` or `f64`, any device) with
    /// `labels` (`n` integers) as a scalar tensor of the embeddings' dtype on their device;
    /// its gradient is the loss's analytic gradient.
    ///
    /// # Errors
    /// Unsupported dtypes or shapes, and every [`LossError`] of the loss (with its message
    /// unchanged).
    pub fn loss(&self, embeddings: &Tensor, labels: &Tensor) -> Result<Tensor> {
        Ok(self.loss_with_details(embeddings, labels)?.loss)
    }

    /// As [`CandleLoss::loss`], and the per-example losses too.
    ///
    /// # Errors
    /// As [`CandleLoss::loss`].
    pub fn loss_with_details(&self, embeddings: &Tensor, labels: &Tensor) -> Result<LossTensors> {
        self.compute(&CandleInput::new(embeddings, labels))
    }

    /// The loss's learnable parameters (ArcFace's `W`, ProxyAnchor's `proxies`) as a new
    /// candle [`Var`] on `device` in `dtype`, initialised with their current values; `None`
    /// for a loss without parameters. Give it to an optimizer and to every call through
    /// [`CandleInput::with_parameters`]: the call computes with the Var's values and its
    /// backward pass gives the Var its gradient.
    ///
    /// ```
    /// use candle_core::{DType, Device, Tensor};
    /// use metric_loss_candle::{CandleInput, CandleLoss};
    /// use metric_loss_pml::ArcFaceLoss;
    ///
    /// let cpu = Device::Cpu;
    /// let loss = CandleLoss::from_loss(ArcFaceLoss::new(3, 2).unwrap());
    /// let w = loss.parameters_var(&cpu, DType::F32)?.expect("ArcFace owns W");
    /// assert_eq!(w.dims(), &[2, 3]);
    /// let x = Tensor::from_slice(&[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], (4, 2), &cpu)?;
    /// let labels = Tensor::new(&[0u32, 0, 1, 2], &cpu)?;
    /// let out = loss.compute(&CandleInput::new(&x, &labels).with_parameters(w.as_tensor()))?;
    /// let grads = out.loss.backward()?;
    /// assert_eq!(grads.get(w.as_tensor()).expect("W is a variable").dims(), &[2, 3]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// A candle error creating the tensor.
    pub fn parameters_var(&self, device: &Device, dtype: DType) -> Result<Option<Var>> {
        let loss = self.metric_loss();
        let Some(shape) = loss.parameter_shape() else {
            return Ok(None);
        };
        let mut values = vec![0.0f64; shape.len()];
        loss.read_parameters(&mut values).map_err(to_candle_error)?;
        let host = Tensor::from_vec(values, (shape.rows, shape.cols), &Device::Cpu)?;
        Var::from_tensor(&host.to_dtype(dtype)?.to_device(device)?).map(Some)
    }

    /// The loss of a full [`CandleInput`]: sample weights, a separate key set or both.
    ///
    /// # Errors
    /// As [`CandleLoss::loss`], for the keys and weights too.
    pub fn compute(&self, input: &CandleInput<'_>) -> Result<LossTensors> {
        self.shared
            .with_workspace(|loss, workspace| evaluate(loss, workspace, input))
    }
}

impl From<SharedLoss> for CandleLoss {
    fn from(shared: SharedLoss) -> Self {
        Self { shared }
    }
}

impl From<Arc<dyn MetricLoss>> for CandleLoss {
    fn from(loss: Arc<dyn MetricLoss>) -> Self {
        Self::new(loss)
    }
}

impl From<Box<dyn MetricLoss>> for CandleLoss {
    fn from(loss: Box<dyn MetricLoss>) -> Self {
        Self::from(SharedLoss::from(loss))
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
    Ok(compute(loss, &CandleInput::new(embeddings, labels))?.loss)
}

/// The loss of a borrowed [`MetricLoss`] on a full [`CandleInput`]; see
/// [`CandleLoss::compute`]. Uses a fresh [`Workspace`].
///
/// # Errors
/// As [`CandleLoss::compute`].
pub fn compute(loss: &dyn MetricLoss, input: &CandleInput<'_>) -> Result<LossTensors> {
    evaluate(loss, &mut Workspace::new(), input)
}

/// The tensors of one evaluation: the core's [`metric_loss_core::LossInput`] for candle.
///
/// Queries and labels are required; keys (with their labels) and sample weights are
/// optional. Each tensor may live on its own device.
#[derive(Debug, Clone, Copy)]
pub struct CandleInput<'a> {
    embeddings: &'a Tensor,
    labels: &'a Tensor,
    keys: Option<(&'a Tensor, &'a Tensor)>,
    sample_weight: Option<&'a Tensor>,
    parameters: Option<&'a Tensor>,
    remove_diagonal: bool,
}

impl<'a> CandleInput<'a> {
    /// Query embeddings (`n x dims`) and their `n` labels; the keys are the queries, no
    /// weights.
    pub fn new(embeddings: &'a Tensor, labels: &'a Tensor) -> Self {
        Self {
            embeddings,
            labels,
            keys: None,
            sample_weight: None,
            parameters: None,
            remove_diagonal: true,
        }
    }

    /// The loss's learnable parameters as a tensor of their shape (for example the Var of
    /// [`CandleLoss::parameters_var`]): the call sets the loss's parameters to its values
    /// first, and the tensor gets the gradient with respect to them.
    pub fn with_parameters(mut self, parameters: &'a Tensor) -> Self {
        self.parameters = Some(parameters);
        self
    }

    /// A separate key set (`m x dims`) with its `m` labels: distances are `queries x keys`
    /// and the keys get their gradient. As in the core, the pair (i, i) is still not a
    /// positive (right when the keys start with the queries); call
    /// [`CandleInput::remove_diagonal`] with `false` for keys that do not.
    pub fn with_keys(mut self, keys: &'a Tensor, key_labels: &'a Tensor) -> Self {
        self.keys = Some((keys, key_labels));
        self
    }

    /// Sample weights: shape `[]` (one for every example), `[n]` or `[n, 1]`.
    pub fn with_sample_weight(mut self, weights: &'a Tensor) -> Self {
        self.sample_weight = Some(weights);
        self
    }

    /// Whether the pair (i, i) is removed from the positives (default `true`).
    pub fn remove_diagonal(mut self, remove: bool) -> Self {
        self.remove_diagonal = remove;
        self
    }
}

/// The tensors one evaluation returns, in the embeddings' dtype and on their device.
#[derive(Debug, Clone)]
pub struct LossTensors {
    /// The reduced loss: a scalar with the analytic gradient attached.
    pub loss: Tensor,
    /// ℓᵢ for each query (shape `[n]`, without sample weights); no gradient.
    pub per_example: Tensor,
}

/// Re-emits the loss value computed on the host and returns the kept gradients, scaled by
/// the upstream gradient, in the backward pass: one per operand, in the order the op is
/// applied to (the queries, then a separate key set and the parameters when given).
struct AttachGradient {
    value: CpuStorage,
    grads: Vec<Tensor>,
}

impl AttachGradient {
    fn scaled(&self, at: usize, grad_result: &Tensor) -> Result<Option<Tensor>> {
        self.grads
            .get(at)
            .map(|grad| grad.broadcast_mul(grad_result))
            .transpose()
    }

    fn forward(&self) -> Result<(CpuStorage, Shape)> {
        Ok((self.value.clone(), Shape::from(())))
    }
}

impl CustomOp1 for AttachGradient {
    fn name(&self) -> &'static str {
        "metric-loss"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.forward()
    }

    fn bwd(&self, _: &Tensor, _: &Tensor, grad_result: &Tensor) -> Result<Option<Tensor>> {
        self.scaled(0, grad_result)
    }
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
        self.forward()
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad_result: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((self.scaled(0, grad_result)?, self.scaled(1, grad_result)?))
    }
}

impl CustomOp3 for AttachGradient {
    fn name(&self) -> &'static str {
        "metric-loss"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward()
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad_result: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        Ok((
            self.scaled(0, grad_result)?,
            self.scaled(1, grad_result)?,
            self.scaled(2, grad_result)?,
        ))
    }
}

/// Moves `x` to the host in `dtype`. Both steps are candle ops with a backward pass (a
/// no-op when `x` already is there in that dtype), so the gradient computed on the host
/// flows back to `x` on its own device in its own dtype.
fn to_host(x: &Tensor, dtype: DType) -> Result<Tensor> {
    x.to_device(&Device::Cpu)?.to_dtype(dtype)
}

/// Moves a host result to `device` in `dtype`, differentiably: the inverse of [`to_host`]
/// and the only way results leave this crate, whatever the device.
fn from_host(x: &Tensor, device: &Device, dtype: DType) -> Result<Tensor> {
    x.to_dtype(dtype)?.to_device(device)
}

/// The precision the loss runs in for embeddings of `dtype`: the core has `f32` and `f64`.
fn compute_dtype(dtype: DType) -> DType {
    match dtype {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

fn evaluate(
    loss: &dyn MetricLoss,
    workspace: &mut Workspace,
    input: &CandleInput<'_>,
) -> Result<LossTensors> {
    check_inputs(input)?;
    match compute_dtype(input.embeddings.dtype()) {
        DType::F64 => evaluate_as::<f64>(loss, workspace, input),
        _ => evaluate_as::<f32>(loss, workspace, input),
    }
}

/// A tensor moved to the host in the compute dtype, with its values read out.
struct HostTensor<T> {
    tensor: Tensor,
    values: Vec<T>,
}

impl<T: Float + WithDType> HostTensor<T> {
    fn new(x: &Tensor) -> Result<Self> {
        let tensor = to_host(x, <T as WithDType>::DTYPE)?;
        let values = tensor.flatten_all()?.to_vec1::<T>()?;
        Ok(Self { tensor, values })
    }

    fn embeddings(&self) -> Result<Embeddings<'_, T>> {
        let (rows, cols) = self.tensor.dims2()?;
        Embeddings::from_row_major(&self.values, rows, cols).map_err(to_candle_error)
    }
}

/// Runs the loss in `T` on the host and returns the results on the embeddings' device in
/// their dtype; the same code for every device.
fn evaluate_as<T: Float + WithDType>(
    loss: &dyn MetricLoss,
    workspace: &mut Workspace,
    input: &CandleInput<'_>,
) -> Result<LossTensors> {
    let queries = HostTensor::<T>::new(input.embeddings)?;
    let labels = labels_as_i64(input.labels)?;
    let keys = match input.keys {
        Some((keys, key_labels)) => Some((HostTensor::<T>::new(keys)?, labels_as_i64(key_labels)?)),
        None => None,
    };
    let weights = match input.sample_weight {
        Some(w) => Some(HostTensor::<T>::new(w)?),
        None => None,
    };
    let parameters = match input.parameters {
        Some(p) => Some(set_parameters::<T>(loss, p)?),
        None => None,
    };
    let gradient = queries.tensor.track_op()
        || keys
            .as_ref()
            .is_some_and(|(keys, _)| keys.tensor.track_op())
        || parameters.as_ref().is_some_and(Tensor::track_op);

    let batch = Batch::new(&labels, queries.embeddings()?).map_err(to_candle_error)?;
    let mut loss_input = LossInput::new(batch).remove_diagonal(input.remove_diagonal);
    if let Some((keys, key_labels)) = &keys {
        let batch = Batch::new(key_labels, keys.embeddings()?).map_err(to_candle_error)?;
        loss_input = loss_input.with_keys(batch);
    }
    if let Some(w) = &weights {
        loss_input = loss_input.with_sample_weight(match w.tensor.rank() {
            0 => SampleWeight::Scalar(w.values[0]),
            _ => SampleWeight::PerExample(&w.values),
        });
    }
    if !gradient {
        loss_input = loss_input.without_gradient();
    }
    let mut out = LossOutput::new();
    loss.compute_into(&loss_input, workspace, &mut out)
        .map_err(to_candle_error)?;

    let host = Device::Cpu;
    let per_example = Tensor::from_vec(out.per_example, labels.len(), &host)?;
    let value = if gradient {
        // The operands the gradient goes to, each with its gradient on the host.
        let mut operands = vec![queries.tensor.clone()];
        let mut grads = vec![Tensor::from_vec(
            out.grad_queries,
            queries.tensor.shape(),
            &host,
        )?];
        if let Some((keys, _)) = &keys {
            operands.push(keys.tensor.clone());
            grads.push(Tensor::from_vec(out.grad_keys, keys.tensor.shape(), &host)?);
        }
        if let Some(p) = &parameters {
            operands.push(p.clone());
            grads.push(Tensor::from_vec(out.grad_parameters, p.shape(), &host)?);
        }
        let attach = AttachGradient {
            value: T::to_cpu_storage_owned(vec![out.loss]),
            grads,
        };
        match operands.as_slice() {
            [q] => q.apply_op1_arc(Arc::new(Box::new(attach)))?,
            [q, k] => q.apply_op2_arc(k, Arc::new(Box::new(attach)))?,
            [q, k, p] => q.apply_op3_arc(k, p, Arc::new(Box::new(attach)))?,
            _ => unreachable!("one to three operands"),
        }
    } else {
        Tensor::from_vec(vec![out.loss], (), &host)?
    };
    let (device, dtype) = (input.embeddings.device(), input.embeddings.dtype());
    Ok(LossTensors {
        loss: from_host(&value, device, dtype)?,
        per_example: from_host(&per_example, device, dtype)?,
    })
}

/// Sets the loss's parameters to the values of `p` (which must have their shape) and
/// returns `p` on the host in `T`, the operand its gradient flows back through.
fn set_parameters<T: Float + WithDType>(loss: &dyn MetricLoss, p: &Tensor) -> Result<Tensor> {
    let Some(shape) = loss.parameter_shape() else {
        return Err(to_candle_error(LossError::NoParameters {
            loss: loss.name().to_owned(),
        }));
    };
    if p.dims() != [shape.rows, shape.cols] {
        candle_core::bail!(
            "metric-loss: {} must have shape [{}, {}], got {:?}",
            shape.name,
            shape.rows,
            shape.cols,
            p.dims()
        );
    }
    let host = HostTensor::<T>::new(p)?;
    let values: Vec<f64> = host.values.iter().map(|v| Float::to_f64(*v)).collect();
    loss.set_parameters(&values).map_err(to_candle_error)?;
    Ok(host.tensor)
}

const FLOATS: [DType; 4] = [DType::F16, DType::BF16, DType::F32, DType::F64];

/// Rejects what the loss cannot run on, with messages naming the tensor.
fn check_inputs(input: &CandleInput<'_>) -> Result<()> {
    check_embeddings("embeddings", input.embeddings)?;
    check_labels("labels", input.labels)?;
    if let Some((keys, key_labels)) = input.keys {
        check_embeddings("keys", keys)?;
        check_labels("key labels", key_labels)?;
    }
    if let Some(w) = input.sample_weight {
        if !FLOATS.contains(&w.dtype()) {
            candle_core::bail!(
                "metric-loss: sample weights must be f16, bf16, f32 or f64, got {:?}",
                w.dtype()
            );
        }
        let column = w.rank() == 2 && w.dims()[1] == 1;
        if w.rank() > 1 && !column {
            candle_core::bail!(
                "metric-loss: sample weights must have shape [], [n] or [n, 1], got {:?}",
                w.dims()
            );
        }
    }
    Ok(())
}

fn check_embeddings(what: &str, x: &Tensor) -> Result<()> {
    if !FLOATS.contains(&x.dtype()) {
        candle_core::bail!(
            "metric-loss: {what} must be f16, bf16, f32 or f64, got {:?}",
            x.dtype()
        );
    }
    if x.rank() != 2 {
        candle_core::bail!(
            "metric-loss: {what} must have shape [n, dims], got {:?}",
            x.dims()
        );
    }
    Ok(())
}

fn check_labels(what: &str, labels: &Tensor) -> Result<()> {
    if !matches!(
        labels.dtype(),
        DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64
    ) {
        candle_core::bail!(
            "metric-loss: {what} must be integers (u8, u32, i16, i32 or i64), got {:?}",
            labels.dtype()
        );
    }
    let column = labels.rank() == 2 && labels.dims()[1] == 1;
    if labels.rank() != 1 && !column {
        candle_core::bail!(
            "metric-loss: {what} must have shape [n] or [n, 1], got {:?}",
            labels.dims()
        );
    }
    Ok(())
}

/// Reads integer labels of any device and integer dtype as `i64` on the host.
fn labels_as_i64(labels: &Tensor) -> Result<Vec<i64>> {
    fn widen<L: WithDType + Into<i64>>(labels: &Tensor) -> Result<Vec<i64>> {
        Ok(labels.to_vec1::<L>()?.into_iter().map(Into::into).collect())
    }
    let labels = labels.flatten_all()?;
    match labels.dtype() {
        DType::U8 => widen::<u8>(&labels),
        DType::U32 => widen::<u32>(&labels),
        DType::I16 => widen::<i16>(&labels),
        DType::I32 => widen::<i32>(&labels),
        DType::I64 => widen::<i64>(&labels),
        other => candle_core::bail!("metric-loss: labels must be integers, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The round trip every non-CPU tensor takes, run on the CPU: the gradient reaches the
    /// input in its dtype and on its device.
    #[test]
    fn host_round_trip_keeps_the_gradient_dtype_and_device() -> Result<()> {
        for dtype in FLOATS {
            let x = Var::from_tensor(
                &Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu)?.to_dtype(dtype)?,
            )?;
            let host = to_host(x.as_tensor(), compute_dtype(dtype))?;
            let back = from_host(&(host * 3.0)?, x.device(), dtype)?;
            assert_eq!((back.dtype(), back.device().is_cpu()), (dtype, true));
            let grads = back.sum_all()?.backward()?;
            let grad = grads.get(x.as_tensor()).expect("x is a variable");
            assert_eq!(grad.dtype(), dtype);
            let grad = grad.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            assert_eq!(grad, vec![3.0; 3], "{dtype:?}");
        }
        Ok(())
    }
}
