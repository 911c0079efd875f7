//! `XBM`: cross-batch memory around another loss.

use std::sync::{Mutex, MutexGuard};

use metric_loss_core::{
    reduce, AllowNonFinite, Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss,
    MetricLossExt, Reduction, Workspace,
};
use metric_loss_triplet::TripletLossConfig;

use crate::{
    CircleLossConfig, MultiSimilarityLossConfig, PNLossConfig, SoftNearestNeighborLossConfig,
};

/// The config of a loss XBM can wrap, tagged by its Keras class name (`class_name`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "class_name"))]
pub enum WrappedLossConfig {
    /// `TripletLoss` (the case TF Similarity's fixtures cover).
    TripletLoss(TripletLossConfig),
    /// `PNLoss` (works here; TF Similarity fails, see [`crate::PNLoss`]).
    PNLoss(PNLossConfig),
    /// `MultiSimilarityLoss`.
    MultiSimilarityLoss(MultiSimilarityLossConfig),
    /// `CircleLoss`.
    CircleLoss(CircleLossConfig),
    /// `SoftNearestNeighborLoss` (works here; TF Similarity fails).
    SoftNearestNeighborLoss(SoftNearestNeighborLossConfig),
}

impl WrappedLossConfig {
    /// The same config with `remove_diagonal` forced to `true`, as XBM does to the wrapped
    /// loss's keywords (`TripletLossConfig` has no such key: the input's rule applies).
    pub fn with_diagonal_removed(&self) -> Self {
        let mut c = self.clone();
        match &mut c {
            WrappedLossConfig::TripletLoss(_) => {}
            WrappedLossConfig::PNLoss(c) => c.remove_diagonal = true,
            WrappedLossConfig::MultiSimilarityLoss(c) => c.remove_diagonal = true,
            WrappedLossConfig::CircleLoss(c) => c.remove_diagonal = true,
            WrappedLossConfig::SoftNearestNeighborLoss(c) => c.remove_diagonal = true,
        }
        c
    }

    /// Builds the wrapped loss.
    ///
    /// # Errors
    /// The wrapped config's validation errors.
    pub fn build(&self) -> Result<Box<dyn MetricLoss>, LossError> {
        Ok(match self {
            WrappedLossConfig::TripletLoss(c) => Box::new(c.build()?),
            WrappedLossConfig::PNLoss(c) => Box::new(c.build()?),
            WrappedLossConfig::MultiSimilarityLoss(c) => Box::new(c.build()?),
            WrappedLossConfig::CircleLoss(c) => Box::new(c.build()?),
            WrappedLossConfig::SoftNearestNeighborLoss(c) => Box::new(c.build()?),
        })
    }
}

/// `XBM`'s arguments with TF Similarity 0.17.1's names. `loss` and `memory_size` are
/// required; the memory's contents are state, not config.
///
/// ```
/// use metric_loss_losses::{WrappedLossConfig, XBMConfig};
/// use metric_loss_triplet::TripletLossConfig;
/// let config = XBMConfig::new(WrappedLossConfig::TripletLoss(TripletLossConfig::default()), 24)
///     .warmup_steps(1);
/// let xbm = config.build()?;
/// assert_eq!(xbm.config().unwrap(), config);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct XBMConfig {
    /// The wrapped loss; its own `reduction` and `name` are ignored (as in TF).
    pub loss: WrappedLossConfig,
    /// How many key rows the memory holds (at least 1, and at least the batch size).
    pub memory_size: usize,
    /// Calls during which the memory is not updated (default 0).
    #[cfg_attr(feature = "serde", serde(default))]
    pub warmup_steps: u64,
    /// The loss's name (default `"XBM"`; TF Similarity 0.17.1 leaves it `None`).
    #[cfg_attr(feature = "serde", serde(default = "default_name"))]
    pub name: String,
    /// Keras's reduction name (default `"auto"`): XBM's own, over the query anchors.
    #[cfg_attr(feature = "serde", serde(default = "default_reduction"))]
    pub reduction: String,
}

fn default_name() -> String {
    "XBM".into()
}

fn default_reduction() -> String {
    "auto".into()
}

impl XBMConfig {
    /// A config with the default `warmup_steps`, `name` and `reduction`.
    pub fn new(loss: WrappedLossConfig, memory_size: usize) -> Self {
        Self {
            loss,
            memory_size,
            warmup_steps: 0,
            name: default_name(),
            reduction: default_reduction(),
        }
    }

    /// Sets `warmup_steps`.
    pub fn warmup_steps(mut self, steps: u64) -> Self {
        self.warmup_steps = steps;
        self
    }

    /// Sets `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets `reduction`.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction.name().into();
        self
    }

    /// Validates the arguments and builds the wrapped loss, with its `remove_diagonal`
    /// forced to `true` (as TF Similarity does).
    ///
    /// # Errors
    /// The wrapped loss's errors, [`LossError::UnknownReduction`], and
    /// [`LossError::InvalidParameter`] for `memory_size = 0` (TF: an error at the first
    /// call).
    pub fn build(&self) -> Result<XBM, LossError> {
        let loss = self.loss.with_diagonal_removed();
        let inner = loss.build()?;
        let mut xbm = XBM::new(inner, self.memory_size, self.warmup_steps)?;
        xbm.name = self.name.clone();
        xbm.reduction = self.reduction.parse()?;
        xbm.wrapped = Some(loss);
        Ok(xbm)
    }
}

/// TF Similarity's `XBM` (cross-batch memory, Wang et al. 2020) around another loss.
///
/// # Arguments
/// See [`XBMConfig`]: the wrapped loss, `memory_size`, `warmup_steps` (default 0), `name`
/// and `reduction`; or [`XBM::new`] around any boxed [`MetricLoss`].
///
/// # What one call does
/// For a batch (y, X) of n rows, with M the stored memory:
/// 1. keys = [X; M] and their labels [y; labels(M)], truncated to `memory_size` rows (the
///    current batch first, then the memory newest first; the oldest rows fall off);
/// 2. the step counter increases; once it exceeds `warmup_steps` the memory becomes exactly
///    those keys (during warm-up nothing is stored, so the keys are the batch alone);
/// 3. the wrapped loss runs with queries (y, X) and the keys, the self-pair (i, i) removed
///    from the positives for i < n;
/// 4. per-example values come from the wrapped loss; XBM's own reduction and sample
///    weights make the scalar.
///
/// **Stop-gradient**: the memory rows are constants. The gradient reaches the batch twice,
/// through the queries and through its copy at the front of the keys; the wrapped loss's
/// key gradient of rows 0..n is added to the query gradient and the rest is dropped.
/// [`metric_loss_core::LossOutput::grad_queries`] is therefore d loss / d X.
///
/// # State and threads
/// The memory and the step counter live in a [`Mutex`]; `&XBM` is `Send + Sync`. A call
/// holds the lock from reading the memory to storing the new one, so concurrent calls are
/// serialised: each sees the memory left by the previous one, in lock-acquisition order.
/// [`MetricLoss::reset_state`] empties the memory and sets the counter to 0. The state is
/// not part of the config. A call that fails leaves the state untouched (TF would already
/// have advanced its counter and memory). The memory holds one dtype and width: a call in
/// the other precision or with another embedding width is an error until `reset_state`.
///
/// # Degenerate anchors
/// Those of the wrapped loss, relative to the keys: a stale copy of the anchor in the
/// memory is a positive (at distance ≈ 0 if the embedding has not moved).
///
/// # Differences from TF Similarity 0.17.1
/// - A batch larger than `memory_size` is an error, as in TF; `memory_size = 0` is
///   rejected at build.
/// - Wrapping `PNLoss` or `SoftNearestNeighborLoss` works here (TF Similarity fails on
///   separate keys there); see those losses for what they compute over separate keys.
/// - A failed call does not advance the state; every successful call (training or not)
///   does, as in TF.
///
/// # Overflow: `NonFiniteResult`
/// The wrapped loss's errors come first (each loss of the workspace checks its own
/// output). Then XBM's own reduction (a huge sample weight times a per-example value, or a
/// sum beyond the dtype's range) and the sum of the query and key gradients can still
/// overflow: [`LossError::NonFiniteResult`], and the state is not advanced. +∞
/// per-example values that the wrapped loss returned without an error (TripletLoss's
/// reference soft margin) are passed through, with the ±∞ loss they make, as that loss
/// documents.
///
/// # Example
/// ```
/// use metric_loss_core::{MetricLoss, MetricLossExt, NegativeStrategy};
/// use metric_loss_losses::XBM;
/// use metric_loss_triplet::TripletLoss;
///
/// let inner = TripletLoss::builder().negative_mining(NegativeStrategy::Hard).margin(0.5).build()?;
/// let xbm = XBM::new(Box::new(inner), 4, 0)?;
/// let out1 = xbm.evaluate(&[0, 1], &[1.0f32, 0.0, 0.8, 0.6], 2)?;
/// assert!((out1.loss - 0.299999).abs() < 1e-5);
/// let out2 = xbm.evaluate(&[1, 0], &[0.0f32, 1.0, -0.6, -0.8], 2)?;
/// assert!((out2.loss - 0.15).abs() < 1e-5);
/// assert_eq!(xbm.memory_labels(), vec![1, 0, 0, 1]);
/// xbm.reset_state();
/// assert!(xbm.memory_labels().is_empty());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
///
/// # Cost per call
/// The wrapped loss on an n × min(n + |M|, memory_size) key set, plus copying the keys
/// (O(memory_size·dims)) and the memory update.
#[derive(Debug)]
pub struct XBM {
    inner: Box<dyn MetricLoss>,
    wrapped: Option<WrappedLossConfig>,
    memory_size: usize,
    warmup_steps: u64,
    name: String,
    reduction: Reduction,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    steps: u64,
    memory: Memory,
}

#[derive(Debug, Default)]
enum Memory {
    #[default]
    Empty,
    F32(Bank<f32>),
    F64(Bank<f64>),
}

#[derive(Debug, Default, Clone)]
struct Bank<T> {
    labels: Vec<i64>,
    embeddings: Vec<T>,
    dims: usize,
}

/// The memory slot of each precision.
trait BankFloat: Float {
    fn bank(memory: &mut Memory) -> Result<Option<&mut Bank<Self>>, &'static str>;
    fn wrap(bank: Bank<Self>) -> Memory;
}

impl BankFloat for f32 {
    fn bank(memory: &mut Memory) -> Result<Option<&mut Bank<Self>>, &'static str> {
        match memory {
            Memory::Empty => Ok(None),
            Memory::F32(b) => Ok(Some(b)),
            Memory::F64(_) => Err("f64"),
        }
    }

    fn wrap(bank: Bank<Self>) -> Memory {
        Memory::F32(bank)
    }
}

impl BankFloat for f64 {
    fn bank(memory: &mut Memory) -> Result<Option<&mut Bank<Self>>, &'static str> {
        match memory {
            Memory::Empty => Ok(None),
            Memory::F64(b) => Ok(Some(b)),
            Memory::F32(_) => Err("f32"),
        }
    }

    fn wrap(bank: Bank<Self>) -> Memory {
        Memory::F64(bank)
    }
}

/// Per-call scratch (keys and the wrapped loss's output), kept in the workspace.
#[derive(Debug, Default)]
struct Scratch<T> {
    key_labels: Vec<i64>,
    key_embeddings: Vec<T>,
    inner: LossOutput<T>,
}

impl XBM {
    /// Wraps `loss` (any [`MetricLoss`]: its per-example values and gradients are used, its
    /// reduction is replaced by XBM's, default `auto`). XBM always asks for the diagonal rule
    /// (`remove_diagonal(true)` on the input); a loss built with its own
    /// `remove_diagonal = false` keeps that setting (use [`XBMConfig`] to have it forced).
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for `memory_size = 0`; [`LossError::Unsupported`]
    /// for a loss whose reducer is not a Keras reduction (its gradient cannot be rescaled
    /// to the memory's reduction).
    pub fn new(
        loss: Box<dyn MetricLoss>,
        memory_size: usize,
        warmup_steps: u64,
    ) -> Result<Self, LossError> {
        if memory_size == 0 {
            return Err(LossError::InvalidParameter {
                name: "memory_size",
                value: 0.0,
                expected: "at least 1 (and at least the batch size)",
            });
        }
        if loss.keras_reduction().is_none() {
            return Err(LossError::Unsupported {
                loss: default_name(),
                message: format!(
                    "the wrapped loss `{}` reduces with a reducer that is not a Keras reduction; \
                     give it none, sum or sum_over_batch_size",
                    loss.name()
                ),
            });
        }
        Ok(Self {
            inner: loss,
            wrapped: None,
            memory_size,
            warmup_steps,
            name: default_name(),
            reduction: Reduction::Auto,
            state: Mutex::new(State::default()),
        })
    }

    /// The arguments (`get_config`), when the wrapped loss was built from a config.
    pub fn config(&self) -> Option<XBMConfig> {
        Some(XBMConfig {
            loss: self.wrapped.clone()?,
            memory_size: self.memory_size,
            warmup_steps: self.warmup_steps,
            name: self.name.clone(),
            reduction: self.reduction.name().into(),
        })
    }

    /// The wrapped loss.
    pub fn inner(&self) -> &dyn MetricLoss {
        self.inner.as_ref()
    }

    /// The memory's capacity in rows.
    pub fn memory_size(&self) -> usize {
        self.memory_size
    }

    /// Calls made so far (since the last reset).
    pub fn steps(&self) -> u64 {
        self.lock().steps
    }

    /// The labels in the memory, newest first.
    pub fn memory_labels(&self) -> Vec<i64> {
        match &self.lock().memory {
            Memory::Empty => Vec::new(),
            Memory::F32(b) => b.labels.clone(),
            Memory::F64(b) => b.labels.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another call cannot leave the state half-written (it is replaced only
        // after a successful call), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unsupported(&self, message: String) -> LossError {
        LossError::Unsupported {
            loss: self.name.clone(),
            message,
        }
    }

    fn run<T: BankFloat>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        input.validate()?;
        if !input.keys_are_queries() {
            return Err(self.unsupported(
                "XBM builds its own keys from the batch and its memory; give the batch without separate keys".into(),
            ));
        }
        let queries = input.queries();
        let (n, dims) = (queries.len(), queries.embeddings().cols());
        if n > self.memory_size {
            return Err(self.unsupported(format!(
                "the batch has {n} rows but memory_size is {}; memory_size must be at least the batch size",
                self.memory_size
            )));
        }
        let mut state = self.lock();
        let mut scratch = std::mem::take(workspace.get::<Scratch<T>>());
        let result = self.call(&mut state, input, workspace, &mut scratch, out);
        *workspace.get::<Scratch<T>>() = scratch;
        result?;
        state.steps += 1;
        if state.steps > self.warmup_steps {
            let scratch = workspace.get::<Scratch<T>>();
            match T::bank(&mut state.memory) {
                Ok(Some(bank)) => {
                    bank.labels.clone_from(&scratch.key_labels);
                    bank.embeddings.clone_from(&scratch.key_embeddings);
                    bank.dims = dims;
                }
                _ => {
                    state.memory = T::wrap(Bank {
                        labels: scratch.key_labels.clone(),
                        embeddings: scratch.key_embeddings.clone(),
                        dims,
                    });
                }
            }
        }
        Ok(())
    }

    /// Builds the keys, runs the wrapped loss and writes `out`; the state is not changed.
    fn call<T: BankFloat>(
        &self,
        state: &mut State,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        scratch: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let queries = input.queries();
        let (n, dims) = (queries.len(), queries.embeddings().cols());
        scratch.key_labels.clear();
        scratch.key_labels.extend_from_slice(queries.labels());
        scratch.key_embeddings.clear();
        scratch
            .key_embeddings
            .extend_from_slice(queries.embeddings().as_slice());
        match T::bank(&mut state.memory) {
            Err(other) => {
                return Err(self.unsupported(format!(
                    "the memory holds {other} embeddings but this call is in {}; call reset_state() first",
                    T::DTYPE
                )))
            }
            Ok(Some(bank)) if !bank.labels.is_empty() => {
                if bank.dims != dims {
                    return Err(self.unsupported(format!(
                        "the memory holds embeddings of width {} but this batch has width {dims}; call reset_state() first",
                        bank.dims
                    )));
                }
                let take = bank.labels.len().min(self.memory_size - n);
                scratch.key_labels.extend_from_slice(&bank.labels[..take]);
                scratch
                    .key_embeddings
                    .extend_from_slice(&bank.embeddings[..take * dims]);
            }
            Ok(_) => {}
        }
        let m = scratch.key_labels.len();
        let keys = Batch::new(
            &scratch.key_labels,
            Embeddings::from_row_major(&scratch.key_embeddings, m, dims)?,
        )?;
        let mut inner_input = LossInput::new(queries)
            .with_keys(keys)
            .with_sample_weight(input.sample_weight())
            .remove_diagonal(true);
        if !input.wants_gradient() {
            inner_input = inner_input.without_gradient();
        }
        self.inner
            .compute_into(&inner_input, workspace, &mut scratch.inner)?;

        let gradient = input.wants_gradient();
        out.reset(n, 0, dims, gradient);
        out.per_example.copy_from_slice(&scratch.inner.per_example);
        out.loss = reduce(&out.per_example, &input.sample_weight(), self.reduction);
        if gradient && n > 0 {
            let ours = self.reduction.example_scale(n);
            let theirs = self.inner.reduction().example_scale(n);
            let ratio = T::from_f64(if theirs == 0.0 { 0.0 } else { ours / theirs });
            let inner = &scratch.inner;
            for (t, o) in out.grad_queries.iter_mut().enumerate() {
                *o = (inner.grad_queries[t] + inner.grad_keys[t]) * ratio;
            }
        }
        // The wrapped loss checked its own output, so a +∞ per-example value that got
        // through is one it documents (TripletLoss's reference soft margin). What XBM adds
        // can still overflow: its own weighted reduction, and the sum of the query and key
        // gradients.
        let allow = if out.per_example.iter().any(|v| v.to_f64() == f64::INFINITY) {
            AllowNonFinite::PositiveInfinitePerExample
        } else {
            AllowNonFinite::Never
        };
        out.check_finite(allow)
    }
}

impl MetricLoss for XBM {
    fn name(&self) -> &str {
        &self.name
    }

    fn compute_f32(
        &self,
        input: &LossInput<'_, f32>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f32>,
    ) -> Result<(), LossError> {
        self.run(input, workspace, out)
    }

    fn compute_f64(
        &self,
        input: &LossInput<'_, f64>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f64>,
    ) -> Result<(), LossError> {
        self.run(input, workspace, out)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }

    fn reset_state(&self) {
        *self.lock() = State::default();
    }
}
