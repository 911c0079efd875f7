//! `TripletLoss`: the triplet formula on the mined-loss driver.

use metric_loss_core::{AllowNonFinite, AnyMiner, Float, LossError};

use crate::{
    mined_metric_loss, AnchorScore, AnchorView, Margin, MinedLoss, MinedParts, TripletLossBuilder,
    TripletLossConfig,
};

/// TF Similarity's `TripletLoss`: for each anchor, a mined positive distance pᵢ and negative
/// distance qᵢ, and ℓᵢ = max(pᵢ − qᵢ + m, 0) or soft-plus(pᵢ − qᵢ).
///
/// It is a distance, a miner and a reducer ([`MinedParts`]) composed with the triplet formula
/// on the shared [`MinedLoss`] driver: build it
/// from typed parts with [`TripletLoss::builder`] (any [`Distance`](metric_loss_core::Distance), [`Miner`](metric_loss_core::Miner) and
/// [`Reducer`](metric_loss_core::Reducer), yours included), from a [`TripletLossConfig`] (TF Similarity's argument
/// strings, validated once), or take the default (cosine, hard positives, semi-hard
/// negatives, margin 1.0):
///
/// ```
/// use metric_loss_core::{MetricLossExt, NegativeStrategy};
/// use metric_loss_triplet::TripletLoss;
///
/// // e0 = (1, 0), e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, -0.8).
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let loss = TripletLoss::builder().margin(0.5).negative_mining(NegativeStrategy::Hard).build()?;
/// let out = loss.evaluate(&[0, 0, 1, 2], &x, 2)?;
/// assert!((out.per_example[1] - 0.3).abs() < 1e-6);
/// assert!((out.loss - 0.099999756).abs() < 1e-7);
/// assert_eq!(out.grad_queries.len(), 8);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
///
/// Anchors with no positive or no negative follow TF Similarity (a ±1e-6 sentinel
/// triplet, see `metric-loss-mining`) unless `exclude_degenerate_anchors` is set; anchors
/// a miner leaves out ([`Mined::none`](metric_loss_core::Mined::none)) give 0.
///
/// Two losses are equal when their arguments are; a user part is equal only to itself
/// (the same `Arc`).
#[derive(Debug, Clone, PartialEq)]
pub struct TripletLoss {
    pub(crate) parts: MinedParts,
    pub(crate) margin: Margin,
    pub(crate) name: String,
    pub(crate) exclude_degenerate_anchors: bool,
    pub(crate) stable_soft_margin: bool,
}

impl Default for TripletLoss {
    fn default() -> Self {
        TripletLossBuilder::default()
            .build()
            .expect("the default arguments are valid")
    }
}

impl TripletLoss {
    /// TF Similarity's defaults, to adjust with typed parts and `build`.
    pub fn builder() -> TripletLossBuilder {
        TripletLossBuilder::default()
    }

    /// The loss's arguments (`get_config`): building them again gives an equal loss.
    ///
    /// # Errors
    /// [`LossError::Unsupported`] when a part is neither a built-in one nor registered
    /// (given with `registered_distance` and friends): a config could not name it.
    pub fn config(&self) -> Result<TripletLossConfig, LossError> {
        let (soft_margin, margin) = match self.margin {
            Margin::Hinge(m) => (false, Some(m)),
            Margin::Soft | Margin::SoftStable => (true, Some(1.0)),
        };
        let parts = self.parts.config(&self.name)?;
        Ok(TripletLossConfig {
            distance: parts.distance,
            positive_mining_strategy: parts.positive_mining_strategy,
            negative_mining_strategy: parts.negative_mining_strategy,
            miner: parts.miner,
            soft_margin,
            margin,
            name: self.name.clone(),
            reduction: parts.reduction,
            exclude_degenerate_anchors: self.exclude_degenerate_anchors,
            stable_soft_margin: self.stable_soft_margin,
        })
    }

    /// The distance, miner and reducer (each readable there: `loss.parts().distance_kind()`).
    pub fn parts(&self) -> &MinedParts {
        &self.parts
    }

    /// The margin rule.
    pub fn margin(&self) -> Margin {
        self.margin
    }

    /// The same loss with another miner (for instance
    /// [`GivenTriplets`](metric_loss_mining::GivenTriplets) for this batch's triplets): the
    /// other parts are shared, not copied.
    pub fn with_miner(&self, miner: impl AnyMiner) -> TripletLoss {
        TripletLoss {
            parts: self.parts.clone().miner(miner),
            ..self.clone()
        }
    }
}

impl MinedLoss for TripletLoss {
    fn name(&self) -> &str {
        &self.name
    }

    fn parts(&self) -> &MinedParts {
        &self.parts
    }

    /// ℓᵢ = L(pᵢ − qᵢ) with L the margin rule, and ∂ℓᵢ/∂pᵢ = −∂ℓᵢ/∂qᵢ = L′.
    fn anchor<T: Float>(&self, view: &mut AnchorView<'_, T>) -> Result<AnchorScore<T>, LossError> {
        let mined = view.mined;
        if self.exclude_degenerate_anchors && !(mined.has_positive && mined.has_negative) {
            return Ok(AnchorScore::zero());
        }
        let (value, slope) = self.margin.apply(mined.positive - mined.negative);
        Ok(AnchorScore::new(value, slope, -slope))
    }

    /// TF Similarity's soft-plus is +∞ for huge distances (documented on [`Margin::Soft`]).
    fn allow_non_finite(&self) -> AllowNonFinite {
        if self.margin == Margin::Soft {
            AllowNonFinite::PositiveInfinitePerExample
        } else {
            AllowNonFinite::Never
        }
    }
}

mined_metric_loss!(TripletLoss);
