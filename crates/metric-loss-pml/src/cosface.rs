//! [`CosFaceLoss`]: pytorch-metric-learning's additive cosine margin.

use metric_loss_core::params::finite;
use metric_loss_core::Float;

use crate::classifier::{Classifier, TargetMargin};
use crate::learnable::learnable_loss;
use crate::{CosineSimilarity, MeanReducer};

/// CosFace's margin: the target cosine c becomes c − m.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Additive {
    margin: f64,
}

impl TargetMargin for Additive {
    const CLASS: &'static str = "CosFaceLoss";

    fn modify<T: Float>(&self, c: T) -> (T, T) {
        (c - T::from_f64(self.margin), T::ONE)
    }
}

learnable_loss! {
    /// pytorch-metric-learning's `CosFaceLoss(num_classes, embedding_size, margin=0.35,
    /// scale=64)`: a softmax classifier on the cosines between each row and one learnable
    /// weight vector per class (the columns of `W`, `embedding_size x num_classes`), the
    /// target cosine lowered by the margin:
    ///
    /// ℓᵢ = −log softmax(s · [cᵢ₀, …, cᵢ,yᵢ − m, …])\[yᵢ\],  L = reduce over the rows
    ///
    /// The loss owns `W` (initialised N(0, 1) from `seed`), each call returns ∂L/∂W in
    /// `grad_parameters`. Defaults: [`CosineSimilarity`] (the only distance accepted) and
    /// [`MeanReducer`].
    ///
    /// ```
    /// use metric_loss_core::{MetricLoss, MetricLossExt};
    /// use metric_loss_pml::CosFaceLoss;
    ///
    /// let loss = CosFaceLoss::new(3, 2)?;
    /// loss.set_parameters(&[1.0, 0.0, -1.0, 0.0, 1.0, 0.0])?;
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
    /// assert!((out.loss - 2.400017).abs() < 1e-5); // pytorch-metric-learning's value
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: CosFaceLoss,
    /// [`CosFaceLoss`]'s arguments, with PML's keyword names, and `seed`.
    config: CosFaceLossConfig,
    class: "CosFaceLoss",
    distance: CosineSimilarity::default(),
    reducer: MeanReducer {},
    fields: {
        /// The cosine margin (default 0.35).
        margin: f64 = 0.35,
        /// The scale of every logit (default 64).
        scale: f64 = 64.0,
    },
    build: |c, sizes| -> Classifier<Additive> {
        Classifier {
            margin: Additive { margin: finite("margin", c.margin)? },
            scale: finite("scale", c.scale)?,
            sizes,
            sub_centers: 1,
        }
    }
}
