//! `PNLoss`: triplet mining plus the positive-to-negative distance (Ivis's PN loss).

use std::sync::Arc;

use metric_loss_core::{
    config_setters, Float, LossError, PartConfig, RegisteredDistance, RegisteredMiner,
    RegisteredReducer,
};
use metric_loss_triplet::{
    mined_metric_loss, AnchorScore, AnchorView, Margin, MinedLoss, MinedParts, MinedPartsConfig,
};

use metric_loss_core::params::finite;

/// `PNLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not yet validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `distance` | `"cosine"` | a distance name or alias, or a registered distance |
/// | `positive_mining_strategy` | `"hard"` | `"easy"` or `"hard"` |
/// | `negative_mining_strategy` | `"semi-hard"` | `"easy"`, `"hard"` or `"semi-hard"` |
/// | `margin` | `None` (soft margin) | a number gives the hinge max(z + m, 0) |
/// | `name` | `"PNLoss"` | |
/// | `reduction` | `"auto"` | Keras's reduction name, `"mean_over_non_zero"`, or a registered reducer |
/// | `miner` | none | a registered miner, replacing the two strategies |
/// | `remove_diagonal` | `true` | TF's hidden keyword: the self-pair is not a positive |
///
/// There is no `soft_margin` key (0.17.1 rejects it too).
///
/// ```
/// use metric_loss_losses::PNLossConfig;
/// let loss = PNLossConfig::default().negative_mining_strategy("hard").margin(0.5).build()?;
/// assert_eq!(loss.config()?.margin, Some(0.5));
/// assert!(PNLossConfig::default().positive_mining_strategy("semi-hard").build().is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PNLossConfig {
    /// A distance name or alias (default `"cosine"`), or a registered user distance.
    pub distance: PartConfig<dyn RegisteredDistance>,
    /// `"easy"` or `"hard"` (default).
    pub positive_mining_strategy: String,
    /// `"easy"`, `"hard"` or `"semi-hard"` (default).
    pub negative_mining_strategy: String,
    /// A registered user miner, which replaces the two strategies (default none: not
    /// written to a config, as TF Similarity has no such key).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub miner: Option<PartConfig<dyn RegisteredMiner>>,
    /// The hinge margin; `None` (default) is the soft margin. Serialised only when set
    /// (a missing key is the soft margin; TOML has no `null`); `null` is read as `None`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub margin: Option<f64>,
    /// The loss's name (default `"PNLoss"`).
    pub name: String,
    /// Keras's reduction name (default `"auto"`), `"mean_over_non_zero"`, or a registered
    /// user reducer.
    pub reduction: PartConfig<dyn RegisteredReducer>,
    /// Whether the self-pair is removed from the positives (default `true`).
    #[cfg_attr(
        feature = "serde",
        serde(skip_serializing_if = "crate::common::is_true")
    )]
    pub remove_diagonal: bool,
}

impl Default for PNLossConfig {
    fn default() -> Self {
        Self {
            distance: "cosine".into(),
            positive_mining_strategy: "hard".into(),
            negative_mining_strategy: "semi-hard".into(),
            miner: None,
            margin: None,
            name: "PNLoss".into(),
            reduction: "auto".into(),
            remove_diagonal: true,
        }
    }
}

impl PNLossConfig {
    config_setters! {
        /// Sets `distance` (a name, or a registered part).
        distance: impl Into<PartConfig<dyn RegisteredDistance>>,
        /// Sets `positive_mining_strategy`.
        positive_mining_strategy: impl Into<String>,
        /// Sets `negative_mining_strategy`.
        negative_mining_strategy: impl Into<String>,
        /// Sets the hinge margin.
        margin: f64,
        /// Sets `name`.
        name: impl Into<String>,
        /// Sets `reduction` (a Keras reduction, or a registered user reducer's `Arc`).
        reduction: impl Into<PartConfig<dyn RegisteredReducer>>,
        /// Sets `remove_diagonal`.
        remove_diagonal: bool,
    }

    /// Uses the soft margin (`margin = None`).
    pub fn soft_margin(mut self) -> Self {
        self.margin = None;
        self
    }

    /// Sets `miner` to a registered user miner.
    pub fn registered_miner(mut self, miner: Arc<dyn RegisteredMiner>) -> Self {
        self.miner = Some(PartConfig::Registered(miner));
        self
    }

    /// Validates the arguments in TF Similarity's order: distance, positive strategy,
    /// negative strategy; then the reduction and the margin.
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`], [`LossError::InvalidStrategy`],
    /// [`LossError::UnknownReduction`], [`LossError::InvalidParameter`] (non-finite margin;
    /// TF Similarity does not check it).
    pub fn build(&self) -> Result<PNLoss, LossError> {
        let parts = MinedPartsConfig {
            distance: self.distance.clone(),
            positive_mining_strategy: self.positive_mining_strategy.clone(),
            negative_mining_strategy: self.negative_mining_strategy.clone(),
            miner: self.miner.clone(),
            reduction: self.reduction.clone(),
        }
        .build(&self.name)?;
        let margin = match self.margin {
            Some(m) => Margin::Hinge(finite("margin", m)?),
            None => Margin::Soft,
        };
        Ok(PNLoss {
            parts,
            margin,
            name: self.name.clone(),
            remove_diagonal: self.remove_diagonal,
        })
    }
}

/// TF Similarity's `PNLoss` (the PN loss of Ivis): triplet mining, then the negative
/// distance is replaced by the smaller of itself and the distance between the mined
/// positive and the mined negative.
///
/// # Arguments
/// See [`PNLossConfig`] (TF Similarity's names and defaults); `Default` is TF's defaults and
/// `config()` gives the arguments back. In code, [`PNLoss::with_parts`] takes any
/// distance, miner and reducer ([`MinedParts`]), yours included.
///
/// # Formula
/// For anchor i with distance row Dᵢ·:
/// 1. mine (pᵢ, aᵢ) and (qᵢ, bᵢ) exactly as `TripletLoss` does (value and column; an empty
///    mask gives column 0, and the semi-hard fallback column is 0 without negatives);
/// 2. rᵢ = D[aᵢ, bᵢ], the distance from the mined positive to the mined negative;
/// 3. q′ᵢ = min(rᵢ, qᵢ) (ties go to rᵢ), zᵢ = pᵢ − q′ᵢ;
/// 4. ℓᵢ = max(zᵢ + m, 0) with a margin, or ln(e^{−zᵢ} + 1) + zᵢ (soft margin, the default).
///
/// The gradient is analytic: the positive's share goes to Dᵢₐ (split among exact ties, or
/// to the row extreme for an empty mask), and the negative's to D[aᵢ, bᵢ] when rᵢ ≤ qᵢ, else
/// to the mined negative entry.
///
/// # Degenerate anchors (as TF Similarity)
/// - **No positive**: pᵢ is the ±1e-6 sentinel of the mining (row min − 1e-6 for `hard`,
///   row max + 1e-6 for `easy`), aᵢ = 0, so rᵢ = D[0, bᵢ] — a distance from batch element
///   0, unrelated to the anchor.
/// - **No negative**: bᵢ = 0, so rᵢ = D[aᵢ, 0], usually far below the sentinel qᵢ: the loss
///   is ℓ(pᵢ − D[aᵢ, 0]) where the triplet loss gives about ℓ(−1e-6).
/// - **Batch of one**: z = −1e-6, 0, +1e-6 or +2e-6 depending on the strategies.
///
/// # Differences from TF Similarity 0.17.1
/// - **Soft-margin overflow.** TF's ln(e^{−z} + 1) + z is +∞ when e^{−z} overflows
///   (z < −88.7 in f32): the most satisfied anchors get an infinite loss. Here, exactly
///   there, the stable soft-plus ln(1 + e^{−|z|}) + max(z, 0) is used instead (a value of
///   about e^z, i.e. 0, with gradient sigmoid(z)); everywhere else the numbers are TF's.
/// - **Separate keys** (e.g. under [`crate::XBM`]): rᵢ is the distance between key aᵢ and
///   key bᵢ, computed for that pair. TF reads row aᵢ of the query×key matrix (the wrong
///   row, or an index error); with keys equal to the queries both are D[aᵢ, bᵢ].
/// - Non-finite margins are rejected; invalid input (non-finite embeddings, distance
///   overflow) is an error, never a NaN.
///
/// # Overflow: `NonFiniteResult`
/// Finite inputs can still overflow the dtype. An anchor whose loss or slope is not
/// finite is [`LossError::Unsupported`] naming the anchor; after that, a sample weight
/// times a per-example loss (a margin of 1e30 with weights of 1e19 in f32), a reduced sum
/// beyond the dtype's range (a margin near `f64::MAX`: positive and negative weights then
/// give ∞ − ∞), and a gradient entry that overflows (sample weights around 3e38 in f32, or
/// embeddings near the dtype's maximum through the distance's VJP) are
/// [`LossError::NonFiniteResult`] naming the first such value. The loss never returns ±∞
/// or NaN.
///
/// # Example
/// ```
/// use metric_loss_core::MetricLossExt;
/// use metric_loss_losses::PNLoss;
///
/// // The spec's golden batch: e0 = (1, 0), e1 = (0.8, 0.6), e2 = (0, 1), e3 = (-0.6, -0.8).
/// let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let out = PNLoss::default().evaluate(&[0, 0, 1, 2], &x, 2)?;
/// assert!((out.per_example[0] - 0.5981388).abs() < 1e-6);
/// assert!((out.loss - 0.6218907).abs() < 1e-6);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
///
/// # Cost per call
/// The `n x m` distance matrix (one matrix product for cosine, inner product and the
/// euclidean distances), then O(n·m) mining and O(n·dims) for the gradient. Memory: the
/// `n x m` matrix in the workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct PNLoss {
    parts: MinedParts,
    margin: Margin,
    name: String,
    remove_diagonal: bool,
}

impl Default for PNLoss {
    fn default() -> Self {
        PNLossConfig::default()
            .build()
            .expect("the default config is valid")
    }
}

impl PNLoss {
    /// The default arguments, to adjust and `build`.
    pub fn builder() -> PNLossConfig {
        PNLossConfig::default()
    }

    /// The loss's arguments (`get_config`): building them again gives an identical loss.
    ///
    /// # Errors
    /// [`LossError::Unsupported`] when a part is neither built-in nor registered: a config
    /// could not name it.
    pub fn config(&self) -> Result<PNLossConfig, LossError> {
        let parts = self.parts.config(&self.name)?;
        Ok(PNLossConfig {
            distance: parts.distance,
            positive_mining_strategy: parts.positive_mining_strategy,
            negative_mining_strategy: parts.negative_mining_strategy,
            miner: parts.miner,
            margin: match self.margin {
                Margin::Hinge(m) => Some(m),
                Margin::Soft | Margin::SoftStable => None,
            },
            name: self.name.clone(),
            reduction: parts.reduction,
            remove_diagonal: self.remove_diagonal,
        })
    }

    /// The same loss with other parts: any distance, miner and reducer, yours included.
    ///
    /// ```
    /// use metric_loss_core::{MeanOverNonZero, MetricLossExt, NegativeStrategy};
    /// use metric_loss_distances::DistanceKind;
    /// use metric_loss_losses::PNLoss;
    /// use metric_loss_triplet::MinedParts;
    ///
    /// let parts = MinedParts::default()
    ///     .distance(DistanceKind::Euclidean)
    ///     .negative_mining(NegativeStrategy::Hard)
    ///     .reducer(MeanOverNonZero);
    /// let loss = PNLoss::default().with_parts(parts);
    /// let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    /// assert!(loss.evaluate(&[0, 0, 1, 1], &x, 2)?.loss.is_finite());
    /// # Ok::<(), metric_loss_core::LossError>(())
    /// ```
    pub fn with_parts(&self, parts: MinedParts) -> PNLoss {
        PNLoss {
            parts,
            ..self.clone()
        }
    }

    /// The distance, miner and reducer (each readable there: `loss.parts().distance_kind()`).
    pub fn parts(&self) -> &MinedParts {
        &self.parts
    }

    /// The margin rule.
    pub fn margin(&self) -> Margin {
        self.margin
    }
}

impl MinedLoss for PNLoss {
    fn name(&self) -> &str {
        &self.name
    }

    fn parts(&self) -> &MinedParts {
        &self.parts
    }

    /// zᵢ = pᵢ − min(rᵢ, qᵢ) with rᵢ the distance between the mined positive and the mined
    /// negative; the negative side's gradient goes to whichever distance gave the minimum.
    fn anchor<T: Float>(&self, view: &mut AnchorView<'_, T>) -> Result<AnchorScore<T>, LossError> {
        let mined = view.mined;
        let (a, b) = (mined.pos.index, mined.neg.index);
        let r = view.key_distance(a, b)?;
        let use_r = r <= mined.negative;
        let q_prime = if use_r { r } else { mined.negative };
        let (value, slope) = match self.margin.apply(mined.positive - q_prime) {
            (v, s) if v.is_finite() => (v, s),
            // TF's soft-plus overflows exactly where the stable form is ~0.
            _ => Margin::SoftStable.apply(mined.positive - q_prime),
        };
        if !(value.is_finite() && slope.is_finite()) {
            return Err(LossError::Unsupported {
                loss: self.name.clone(),
                message: format!(
                    "the loss of anchor {} overflows {} (p = {}, q' = {q_prime}); rescale the embeddings",
                    view.index,
                    T::DTYPE,
                    mined.positive
                ),
            });
        }
        Ok(if use_r {
            AnchorScore::new(value, slope, T::ZERO).with_key_pair(a, b, r, -slope)
        } else {
            AnchorScore::new(value, slope, -slope)
        })
    }

    /// TF's hidden `remove_diagonal` keyword.
    fn remove_diagonal(&self) -> bool {
        self.remove_diagonal
    }
}

mined_metric_loss!(PNLoss);
