//! [`ArcFaceLoss`] and [`SubCenterArcFaceLoss`]: pytorch-metric-learning's additive angular
//! margin, on one weight vector per class or on the best of several sub-centers.

use std::f64::consts::PI;

use metric_loss_core::params::finite;
use metric_loss_core::{Float, LossError};

use crate::classifier::{Classifier, TargetMargin};
use crate::learnable::learnable_loss;
use crate::{CosineSimilarity, MeanReducer};

/// ArcFace's margin: the target angle θ = acos(c) becomes θ + m.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Angular<const SUB: bool> {
    /// The margin in radians, in float64 as PML computes it.
    radians: f64,
}

impl<const SUB: bool> Angular<SUB> {
    fn degrees(margin: f64) -> Result<Self, LossError> {
        Ok(Self {
            radians: finite("margin", margin)?.to_radians(),
        })
    }
}

impl<const SUB: bool> TargetMargin for Angular<SUB> {
    const CLASS: &'static str = if SUB {
        "SubCenterArcFaceLoss"
    } else {
        "ArcFaceLoss"
    };

    /// cos(θ + m) while θ ≤ π − m, else cos θ − m·sin m (which keeps the logit decreasing
    /// in θ). θ = acos(clamp(c, −1, 1)); the clamp passes no gradient at |c| ≥ 1, so the
    /// angle carries none there. m meets θ rounded to `T`; the threshold π − m and the
    /// constant m·sin m are formed in float64 and rounded once, as in PML.
    fn modify<T: Float>(&self, c: T) -> (T, T) {
        let m = self.radians;
        let clamped = c.max(-T::ONE).min(T::ONE);
        let theta = T::from_f64(clamped.to_f64().acos());
        let inside = c > -T::ONE && c < T::ONE;
        // dθ/dc = −1/√(1 − c²) strictly inside the clamp.
        let dtheta = if inside {
            let c = c.to_f64();
            -1.0 / (1.0 - c * c).sqrt()
        } else {
            0.0
        };
        if theta <= T::from_f64(PI - m) {
            let angle = (theta + T::from_f64(m)).to_f64();
            (T::from_f64(angle.cos()), T::from_f64(-angle.sin() * dtheta))
        } else {
            let t = theta.to_f64();
            let value = T::from_f64(t.cos()) - T::from_f64(m * m.sin());
            (value, T::from_f64(-t.sin() * dtheta))
        }
    }
}

learnable_loss! {
    /// pytorch-metric-learning's `ArcFaceLoss(num_classes, embedding_size, margin=28.6,
    /// scale=64)`: a softmax classifier on the cosines between each row and one learnable
    /// weight vector per class (the columns of `W`, `embedding_size x num_classes`), whose
    /// target angle is widened by the margin (in degrees):
    ///
    /// ℓᵢ = −log softmax(s · [cos θᵢ₀, …, cos(θᵢ,yᵢ + m), …])\[yᵢ\],  L = reduce over the rows
    ///
    /// (beyond θ = π − m the target logit is cos θ − m·sin m, PML's fallback). The loss owns
    /// `W` (initialised N(0, 1) from `seed`; set it with
    /// [`MetricLoss::set_parameters`](metric_loss_core::MetricLoss::set_parameters)), and
    /// each call returns ∂L/∂W in `grad_parameters`. Defaults: [`CosineSimilarity`] (the
    /// only distance accepted, any power) and [`MeanReducer`]. Labels must lie in
    /// `0..num_classes`; separate keys are refused.
    ///
    /// ```
    /// use metric_loss_core::{MetricLoss, MetricLossExt};
    /// use metric_loss_pml::ArcFaceLoss;
    ///
    /// let loss = ArcFaceLoss::new(3, 2)?;
    /// loss.set_parameters(&[1.0, 0.0, -1.0, 0.0, 1.0, 0.0])?; // class weights (1,0), (0,1), (−1,0)
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
    /// assert!((out.loss - 2.957262).abs() < 1e-5); // pytorch-metric-learning's value
    /// assert_eq!(out.grad_parameters.len(), 6);
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: ArcFaceLoss,
    /// [`ArcFaceLoss`]'s arguments, with PML's keyword names, and `seed`.
    config: ArcFaceLossConfig,
    class: "ArcFaceLoss",
    distance: CosineSimilarity::default(),
    reducer: MeanReducer {},
    fields: {
        /// The angular margin in degrees (default 28.6).
        margin: f64 = 28.6,
        /// The scale of every logit (default 64).
        scale: f64 = 64.0,
    },
    build: |c, sizes| -> Classifier<Angular<false>> {
        Classifier {
            margin: Angular::degrees(c.margin)?,
            scale: finite("scale", c.scale)?,
            sizes,
            sub_centers: 1,
        }
    }
}

learnable_loss! {
    /// pytorch-metric-learning's `SubCenterArcFaceLoss(num_classes=, embedding_size=,
    /// margin=28.6, scale=64, sub_centers=3)`: [`ArcFaceLoss`] where each class has
    /// `sub_centers` weight vectors and a row's cosine with a class is its largest cosine
    /// with them. Column c·K + k of `W` (`embedding_size x num_classes·K`) is sub-center k
    /// of class c; the gradient of a (row, class) cosine goes to its first maximal
    /// sub-center only.
    ///
    /// ```
    /// use metric_loss_core::{MetricLoss, MetricLossExt};
    /// use metric_loss_pml::SubCenterArcFaceLossConfig;
    ///
    /// let loss = SubCenterArcFaceLossConfig::new(3, 2).sub_centers(2).scale(1.0).build()?;
    /// loss.set_parameters(&[1.0, 0.6, 0.0, 0.6, -1.0, -0.8, 0.0, -0.8, 1.0, 0.8, 0.0, 0.6])?;
    /// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
    /// assert!((out.loss - 0.8853639).abs() < 1e-5); // pytorch-metric-learning's value
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    loss: SubCenterArcFaceLoss,
    /// [`SubCenterArcFaceLoss`]'s arguments, with PML's keyword names, and `seed`.
    config: SubCenterArcFaceLossConfig,
    class: "SubCenterArcFaceLoss",
    distance: CosineSimilarity::default(),
    reducer: MeanReducer {},
    fields: {
        /// The angular margin in degrees (default 28.6).
        margin: f64 = 28.6,
        /// The scale of every logit (default 64).
        scale: f64 = 64.0,
        /// Weight vectors per class (default 3, at least 1).
        sub_centers: usize = 3,
    },
    build: |c, sizes| -> Classifier<Angular<true>> {
        if c.sub_centers == 0 {
            return Err(LossError::InvalidParameter {
                name: "sub_centers",
                value: 0.0,
                expected: "a positive integer",
            });
        }
        Classifier {
            margin: Angular::degrees(c.margin)?,
            scale: finite("scale", c.scale)?,
            sizes,
            sub_centers: c.sub_centers,
        }
    }
}
