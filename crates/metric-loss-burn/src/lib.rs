//! Any [`MetricLoss`] of the `metric-loss` workspace as a [burn](https://docs.rs/burn)
//! autodiff operation whose backward pass is the loss's analytic gradient.
//!
//! [`BurnLoss::loss`] (or the free function [`loss`] for a borrowed `&dyn MetricLoss`)
//! takes a `n x dims` embeddings tensor and a tensor of `n` integer labels and returns the
//! loss as a `[1]` tensor. When the embeddings take part in autodiff (on an autodiff
//! device, computed from a tensor that requires its gradient), `backward()` through that
//! tensor gives `LossOutput::grad_queries` times the upstream gradient: the loss is
//! computed once, with its gradient, by the loss itself, not differentiated op by op.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use metric_loss_burn::BurnLoss;
//! use metric_loss_triplet::TripletLoss;
//!
//! let device = Device::flex().autodiff();
//! let loss = BurnLoss::from_loss(TripletLoss::default()); // cosine, hard / semi-hard
//! let x = Tensor::<2>::from_floats([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]], &device)
//!     .require_grad();
//! let labels = Tensor::<1, Int>::from_ints([0, 0, 1, 1], &device);
//!
//! let value = loss.loss(x.clone(), labels)?; // a [1] tensor
//! let grads = value.backward();
//! let dx = x.grad(&grads).expect("x requires its gradient");
//! assert_eq!(value.dims(), [1]);
//! assert_eq!(dx.dims(), [4, 2]);
//! # Ok::<(), metric_loss_burn::BurnLossError>(())
//! ```
//!
//! Sample weights and a separate key set (a memory bank, negatives from elsewhere) go
//! through a [`BurnInput`] and [`BurnLoss::compute`]:
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use metric_loss_burn::{BurnInput, BurnLoss};
//! use metric_loss_triplet::TripletLoss;
//!
//! let device = Device::flex().autodiff();
//! let loss = BurnLoss::from_loss(TripletLoss::default());
//! let queries = Tensor::<2>::from_floats([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, -0.8]], &device)
//!     .require_grad();
//! let labels = Tensor::<1, Int>::from_ints([0, 0, 1, 1], &device);
//! let keys = Tensor::<2>::from_floats([[0.6, 0.8], [-1.0, 0.0]], &device).require_grad();
//! let key_labels = Tensor::<1, Int>::from_ints([0, 1], &device);
//! let weights = Tensor::<1>::from_floats([1.0, 2.0, 0.5, 1.0], &device);
//!
//! let input = BurnInput::new(queries.clone(), labels)
//!     .with_keys(keys.clone(), key_labels)
//!     .remove_diagonal(false) // the keys do not start with the queries
//!     .with_sample_weight(weights);
//! let out = loss.compute(input)?;
//! let grads = out.loss.backward();
//! assert_eq!(keys.grad(&grads).expect("keys require their gradient").dims(), [2, 2]);
//! assert_eq!(out.per_example.dims(), [4]);
//! # Ok::<(), metric_loss_burn::BurnLossError>(())
//! ```
//!
//! # What is supported
//! - Embeddings and keys: `f16`, `bf16`, `f32` or `f64` tensors of rank 2 (`n x dims`), on
//!   any device of any backend. The loss runs on the host: the tensors are read there, and
//!   the loss, the per-example losses and the gradients are created on the embeddings'
//!   device in their dtype. `f16` and `bf16` are computed in `f32` (`f64` in `f64`).
//! - Labels: integer tensors of shape `[n]` (any integer dtype, read as `i64`); they get
//!   no gradient.
//! - Sample weights: a float tensor of shape `[n]`, or `[1]` for one weight for all; they
//!   get no gradient.
//! - The keys are the queries (TF Similarity's `MetricLoss.call`) unless
//!   [`BurnInput::with_keys`] gives a separate set on the queries' device, whose gradient
//!   then flows to the key tensor.
//! - The result is a `[1]` tensor of the embeddings' dtype on their device: the reduced
//!   loss ([`metric_loss_core::LossOutput::loss`]); with `Reduction::None` it is Σ ℓᵢ,
//!   whose gradient is the one returned. [`BurnLoss::loss_with_details`] and
//!   [`BurnLoss::compute`] also return the per-example losses (without gradient: the loss
//!   computes the gradient of its reduced value only).
//! - Errors: a [`BurnLossError`] for a wrong dtype, shape or device, a tensor that cannot
//!   be read, and every [`metric_loss_core::LossError`] of the loss (non-finite values,
//!   mismatched lengths) unchanged inside [`BurnLossError::Loss`]. Nothing panics on bad
//!   input.
//!
//! # The backward pass
//! On burn's Flex and NdArray backends (this crate's `flex` and `ndarray` features) the
//! loss is a custom autodiff node (a burn backend extension with its own `Backward`
//! step): its output is the value computed on the host and its backward pass hands the
//! kept gradients, times the upstream gradient, to the embeddings and keys. On any other
//! backend (CubeCL's GPUs, LibTorch, remote) the same value and gradient come from
//! differentiable tensor ops: `value + (s − detach(s))` with `s = Σ x ⊙ ∂L/∂x`, which is
//! the value exactly and has the loss's gradient.
//!
//! A stateful loss is evaluated once per call (the gradient is kept from the forward
//! pass), so its state advances exactly once per training step.
//!
//! # Feature flags
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `flex` | yes | burn's Flex CPU backend, and the custom autodiff op on it |
//! | `ndarray` | no | burn's NdArray CPU backend, and the custom autodiff op on it |
//!
//! Burn itself is used without its default features (no optimisers, datasets or
//! training loop): only tensors, autodiff and backend extensions.
//!
//! # Supported Rust versions
//! The minimum supported Rust version is 1.95, burn 0.22's (the other crates of the
//! workspace need 1.89). Raising it is a minor-version change.

mod attach;
mod host;

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{DType, Int, Tensor};
use metric_loss_core::{LossError, MetricLoss, Workspace};
use metric_loss_registry::{RegistryError, SharedLoss};

/// What went wrong in a call: the input's dtypes, shapes or devices, reading a tensor, or
/// the loss itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BurnLossError {
    /// A tensor's dtype is not one the loss takes.
    #[error("metric-loss: {what} must be {expected}, got {got:?}")]
    DType {
        /// Which tensor.
        what: &'static str,
        /// The dtypes it may have.
        expected: &'static str,
        /// Its dtype.
        got: DType,
    },
    /// A tensor's shape is not one the loss takes.
    #[error("metric-loss: {what} must have shape {expected}, got {got:?}")]
    Shape {
        /// Which tensor.
        what: &'static str,
        /// The shape it must have.
        expected: String,
        /// Its shape.
        got: Vec<usize>,
    },
    /// The keys are not on the queries' device.
    #[error("metric-loss: the keys must be on the queries' device ({queries}), got {keys}")]
    Device {
        /// The queries' device.
        queries: String,
        /// The keys' device.
        keys: String,
    },
    /// A tensor could not be read back to the host.
    #[error("metric-loss: cannot read {what}: {message}")]
    Read {
        /// Which tensor.
        what: &'static str,
        /// Burn's message.
        message: String,
    },
    /// The loss rejected its input (non-finite values, mismatched lengths, ...).
    #[error(transparent)]
    Loss(#[from] LossError),
}

/// A [`MetricLoss`] usable on burn tensors, with a reusable [`Workspace`].
///
/// Build it from an `Arc<dyn MetricLoss>`, a `Box<dyn MetricLoss>` (what a config file
/// loads to), any concrete loss, or a config file ([`BurnLoss::from_config`]); clone it
/// cheaply (the loss and workspace are shared).
#[derive(Debug, Clone)]
pub struct BurnLoss {
    shared: SharedLoss,
}

impl BurnLoss {
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
    /// let path = std::env::temp_dir().join(format!("burn-loss-{}.json", std::process::id()));
    /// std::fs::write(&path, r#"{"class_name": "TripletLoss", "config": {"margin": 0.5}}"#)?;
    /// let loss = metric_loss_burn::BurnLoss::from_config(&path)?;
    /// # std::fs::remove_file(&path)?;
    /// assert_eq!(loss.metric_loss().name(), "TripletLoss");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Every [`RegistryError`] of [`metric_loss_registry::load`]: an unreadable file, an
    /// unknown format or class, an invalid config.
    pub fn from_config(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        SharedLoss::from_config(path).map(Self::from)
    }

    /// The wrapped loss.
    pub fn metric_loss(&self) -> &Arc<dyn MetricLoss> {
        self.shared.metric_loss()
    }

    /// The loss of `embeddings` (`n x dims`, `f16`, `bf16`, `f32` or `f64`, any device) with
    /// `labels` (`n` integers) as a `[1]` tensor of the embeddings' dtype on their device;
    /// its gradient is the loss's analytic gradient.
    ///
    /// # Errors
    /// Unsupported dtypes or shapes, and every [`LossError`] of the loss.
    pub fn loss(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> Result<Tensor<1>, BurnLossError> {
        Ok(self.loss_with_details(embeddings, labels)?.loss)
    }

    /// As [`BurnLoss::loss`], and the per-example losses too.
    ///
    /// # Errors
    /// As [`BurnLoss::loss`].
    pub fn loss_with_details(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
    ) -> Result<LossTensors, BurnLossError> {
        self.compute(BurnInput::new(embeddings, labels))
    }

    /// The loss of a full [`BurnInput`]: sample weights, a separate key set or both.
    ///
    /// # Errors
    /// As [`BurnLoss::loss`], for the keys and weights too.
    pub fn compute(&self, input: BurnInput) -> Result<LossTensors, BurnLossError> {
        self.shared
            .with_workspace(|loss, workspace| host::evaluate(loss, workspace, input))
    }
}

impl From<SharedLoss> for BurnLoss {
    fn from(shared: SharedLoss) -> Self {
        Self { shared }
    }
}

impl From<Arc<dyn MetricLoss>> for BurnLoss {
    fn from(loss: Arc<dyn MetricLoss>) -> Self {
        Self::new(loss)
    }
}

impl From<Box<dyn MetricLoss>> for BurnLoss {
    fn from(loss: Box<dyn MetricLoss>) -> Self {
        Self::from(SharedLoss::from(loss))
    }
}

/// The loss of a borrowed [`MetricLoss`] as a `[1]` tensor with its analytic gradient;
/// see [`BurnLoss::loss`]. Uses a fresh [`Workspace`]; keep a [`BurnLoss`] to reuse one
/// across training steps.
///
/// ```
/// use burn::tensor::{Device, FloatDType, Int, Tensor};
/// use metric_loss_core::{MetricLoss, MetricLossExt};
/// use metric_loss_triplet::TripletLoss;
///
/// let triplet = TripletLoss::builder().margin(0.5).build().unwrap();
/// let dyn_loss: &dyn MetricLoss = &triplet;
/// let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let device = Device::flex();
/// let t = Tensor::<1>::from_data(x, (&device, FloatDType::F64.into())).reshape([4, 2]);
/// let labels = Tensor::<1, Int>::from_ints([0, 0, 1, 2], &device);
/// let value = metric_loss_burn::loss(dyn_loss, t, labels)?.into_scalar::<f64>();
/// assert_eq!(value, triplet.evaluate(&[0, 0, 1, 2], &x, 2).unwrap().loss);
/// # Ok::<(), metric_loss_burn::BurnLossError>(())
/// ```
///
/// # Errors
/// As [`BurnLoss::loss`].
pub fn loss(
    loss: &dyn MetricLoss,
    embeddings: Tensor<2>,
    labels: Tensor<1, Int>,
) -> Result<Tensor<1>, BurnLossError> {
    Ok(compute(loss, BurnInput::new(embeddings, labels))?.loss)
}

/// The loss of a borrowed [`MetricLoss`] on a full [`BurnInput`]; see
/// [`BurnLoss::compute`]. Uses a fresh [`Workspace`].
///
/// # Errors
/// As [`BurnLoss::compute`].
pub fn compute(loss: &dyn MetricLoss, input: BurnInput) -> Result<LossTensors, BurnLossError> {
    host::evaluate(loss, &mut Workspace::new(), input)
}

/// The tensors of one evaluation: the core's [`metric_loss_core::LossInput`] for burn.
///
/// Queries and labels are required; keys (with their labels) and sample weights are
/// optional. Burn tensors are cheap handles, so the input owns them.
#[derive(Debug, Clone)]
pub struct BurnInput {
    embeddings: Tensor<2>,
    labels: Tensor<1, Int>,
    keys: Option<(Tensor<2>, Tensor<1, Int>)>,
    sample_weight: Option<Tensor<1>>,
    remove_diagonal: bool,
}

impl BurnInput {
    /// Query embeddings (`n x dims`) and their `n` labels; the keys are the queries, no
    /// weights.
    pub fn new(embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Self {
        Self {
            embeddings,
            labels,
            keys: None,
            sample_weight: None,
            remove_diagonal: true,
        }
    }

    /// A separate key set (`m x dims`, on the queries' device) with its `m` labels:
    /// distances are `queries x keys` and the keys get their gradient. As in the core, the
    /// pair (i, i) is still not a positive (right when the keys start with the queries);
    /// call [`BurnInput::remove_diagonal`] with `false` for keys that do not.
    pub fn with_keys(mut self, keys: Tensor<2>, key_labels: Tensor<1, Int>) -> Self {
        self.keys = Some((keys, key_labels));
        self
    }

    /// Sample weights: shape `[n]`, or `[1]` for one weight for every example.
    pub fn with_sample_weight(mut self, weights: Tensor<1>) -> Self {
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
    /// The reduced loss, shape `[1]`, with the analytic gradient attached.
    pub loss: Tensor<1>,
    /// ℓᵢ for each query (shape `[n]`, without sample weights); no gradient.
    pub per_example: Tensor<1>,
}
