//! The `MetricLoss` trait.

use std::fmt::Debug;

use crate::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, ParameterShape, Reduction,
    Workspace,
};

/// A metric-learning loss: labels and embeddings in, per-example losses, the reduced loss
/// and the gradient with respect to the embeddings out.
///
/// The trait is object safe (`Box<dyn MetricLoss>` is what a config file deserialises to),
/// so the two precisions are two methods. Write the loss once, generic over [`Float`], and
/// forward both to it:
///
/// ```
/// use metric_loss_core::{Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
///     Reduction, Workspace, reduce};
///
/// /// Mean squared norm of the embeddings: a toy loss.
/// #[derive(Debug)]
/// struct SquaredNorm;
///
/// impl SquaredNorm {
///     fn run<T: Float>(&self, input: &LossInput<'_, T>, out: &mut LossOutput<T>)
///         -> Result<(), LossError> {
///         input.validate()?;
///         let x = input.queries().embeddings();
///         out.reset(x.rows(), 0, x.cols(), input.wants_gradient());
///         let scale = T::from_f64(Reduction::Auto.example_scale(x.rows()));
///         for i in 0..x.rows() {
///             out.per_example[i] = x.row(i).iter().map(|v| *v * *v).sum();
///             if input.wants_gradient() {
///                 let g = T::from_f64(2.0) * input.sample_weight().get(i) * scale;
///                 for (o, v) in out.grad_queries[i * x.cols()..].iter_mut().zip(x.row(i)) {
///                     *o = g * *v;
///                 }
///             }
///         }
///         out.loss = reduce(&out.per_example, &input.sample_weight(), Reduction::Auto);
///         Ok(())
///     }
/// }
///
/// impl MetricLoss for SquaredNorm {
///     fn name(&self) -> &str { "squared_norm" }
///     fn compute_f32(&self, input: &LossInput<'_, f32>, _: &mut Workspace,
///         out: &mut LossOutput<f32>) -> Result<(), LossError> { self.run(input, out) }
///     fn compute_f64(&self, input: &LossInput<'_, f64>, _: &mut Workspace,
///         out: &mut LossOutput<f64>) -> Result<(), LossError> { self.run(input, out) }
/// }
///
/// let out = SquaredNorm.evaluate(&[0, 1], &[3.0f32, 4.0, 0.0, 0.0], 2).unwrap();
/// assert_eq!(out.loss, 12.5);
/// assert_eq!(out.grad_queries, vec![3.0, 4.0, 0.0, 0.0]);
/// ```
pub trait MetricLoss: Debug + Send + Sync {
    /// The loss's name (Keras's `name`).
    fn name(&self) -> &str;

    /// Evaluates the loss in `f32`, writing into `out` and reusing `workspace`.
    ///
    /// # Errors
    /// A [`LossError`] for invalid input; `out` is then unspecified.
    fn compute_f32(
        &self,
        input: &LossInput<'_, f32>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f32>,
    ) -> Result<(), LossError>;

    /// Evaluates the loss in `f64`; see [`MetricLoss::compute_f32`].
    ///
    /// # Errors
    /// A [`LossError`] for invalid input.
    fn compute_f64(
        &self,
        input: &LossInput<'_, f64>,
        workspace: &mut Workspace,
        out: &mut LossOutput<f64>,
    ) -> Result<(), LossError>;

    /// The reduction applied to the per-example losses.
    fn reduction(&self) -> Reduction {
        Reduction::Auto
    }

    /// The Keras reduction the loss applies, or `None` when it reduces with a
    /// [`Reducer`](crate::Reducer) that is not one. A loss that rescales another loss's
    /// gradient by the batch-size convention (a cross-batch memory) refuses `None`.
    /// Default: `Some(self.reduction())`.
    fn keras_reduction(&self) -> Option<Reduction> {
        Some(self.reduction())
    }

    /// The shape of the learnable matrix the loss owns (a classifier's weights, one proxy
    /// per class), or `None` for a loss without parameters (the default). A loss with
    /// parameters fills [`LossOutput::grad_parameters`] (row-major, this shape) on every
    /// call that asks for the gradient.
    fn parameter_shape(&self) -> Option<ParameterShape> {
        None
    }

    /// Copies the parameters into `out` (row-major, [`MetricLoss::parameter_shape`]).
    ///
    /// # Errors
    /// [`LossError::NoParameters`] for a loss without parameters (the default);
    /// [`LossError::BufferLength`] when `out` has the wrong length.
    fn read_parameters(&self, out: &mut [f64]) -> Result<(), LossError> {
        let _ = out;
        Err(LossError::NoParameters {
            loss: self.name().to_owned(),
        })
    }

    /// Replaces the parameters (row-major, [`MetricLoss::parameter_shape`]); the next call
    /// uses them. Nothing changes when the values are refused.
    ///
    /// # Errors
    /// [`LossError::NoParameters`] for a loss without parameters (the default);
    /// [`LossError::BufferLength`] for the wrong number of values;
    /// [`LossError::NonFiniteParameter`] for NaN or ±∞.
    fn set_parameters(&self, values: &[f64]) -> Result<(), LossError> {
        let _ = values;
        Err(LossError::NoParameters {
            loss: self.name().to_owned(),
        })
    }

    /// Forgets any state kept between calls (for example a cross-batch memory). Stateless
    /// losses do nothing.
    fn reset_state(&self) {}
}

/// Generic conveniences on every [`MetricLoss`], in either precision.
pub trait MetricLossExt: MetricLoss {
    /// Evaluates the loss into reusable `out` and `workspace` buffers (no allocation once
    /// warmed up).
    ///
    /// # Errors
    /// As [`MetricLoss::compute_f32`].
    fn compute_into<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        T::dispatch(self, input, workspace, out)
    }

    /// Evaluates the loss with fresh buffers.
    ///
    /// # Errors
    /// As [`MetricLoss::compute_f32`].
    fn compute<T: Float>(&self, input: &LossInput<'_, T>) -> Result<LossOutput<T>, LossError> {
        let mut out = LossOutput::new();
        self.compute_into(input, &mut Workspace::new(), &mut out)?;
        Ok(out)
    }

    /// Evaluates the loss on labels and row-major embeddings with `dims` columns (keys are
    /// the queries, no weights).
    ///
    /// # Errors
    /// As [`MetricLoss::compute_f32`], plus shape errors.
    fn evaluate<T: Float>(
        &self,
        labels: &[i64],
        embeddings: &[T],
        dims: usize,
    ) -> Result<LossOutput<T>, LossError> {
        let rows = embeddings.len().checked_div(dims).unwrap_or(labels.len());
        let x = Embeddings::from_row_major(embeddings, rows, dims)?;
        self.compute(&LossInput::new(Batch::new(labels, x)?))
    }
}

impl<L: MetricLoss + ?Sized> MetricLossExt for L {}
