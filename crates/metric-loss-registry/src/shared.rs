//! A loss and the workspace its calls reuse, shared by clones: what a framework adapter
//! (candle, burn) holds.

use std::path::Path;
use std::sync::{Arc, Mutex};

use metric_loss_core::{MetricLoss, Workspace};

use crate::RegistryError;

/// A [`MetricLoss`] with a reusable [`Workspace`]; clones share both, so a training loop
/// that clones its loss still allocates nothing after the first step.
///
/// ```
/// use metric_loss_core::{Batch, Embeddings, LossInput, LossOutput, MetricLoss};
/// use metric_loss_registry::SharedLoss;
/// use metric_loss_triplet::TripletLoss;
///
/// let shared = SharedLoss::from_loss(TripletLoss::default());
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let batch = Batch::new(&[0, 0, 1, 1], Embeddings::from_row_major(&x, 4, 2)?)?;
/// let mut out = LossOutput::new();
/// shared.with_workspace(|loss, workspace| {
///     loss.compute_f32(&LossInput::new(batch), workspace, &mut out)
/// })?;
/// assert!(out.loss > 0.0);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SharedLoss {
    loss: Arc<dyn MetricLoss>,
    workspace: Arc<Mutex<Workspace>>,
}

impl SharedLoss {
    /// Wraps a shared loss with a fresh workspace.
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

    /// Reads the loss from a Keras-shaped JSON, TOML or YAML config file with
    /// [`crate::load`].
    ///
    /// # Errors
    /// Every [`RegistryError`] of [`crate::load`]: an unreadable file, an unknown format or
    /// class, an invalid config.
    pub fn from_config(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let loss: Box<dyn MetricLoss> = crate::load(path)?;
        Ok(Self::from(loss))
    }

    /// The wrapped loss.
    pub fn metric_loss(&self) -> &Arc<dyn MetricLoss> {
        &self.loss
    }

    /// Runs `f` with the loss and the shared workspace, locked for the call.
    pub fn with_workspace<R>(&self, f: impl FnOnce(&dyn MetricLoss, &mut Workspace) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-call: the workspace holds
        // scratch buffers that every call resets, so it is still usable.
        let mut workspace = self
            .workspace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(self.loss.as_ref(), &mut workspace)
    }
}

impl From<Arc<dyn MetricLoss>> for SharedLoss {
    fn from(loss: Arc<dyn MetricLoss>) -> Self {
        Self::new(loss)
    }
}

impl From<Box<dyn MetricLoss>> for SharedLoss {
    fn from(loss: Box<dyn MetricLoss>) -> Self {
        Self::new(Arc::from(loss))
    }
}
