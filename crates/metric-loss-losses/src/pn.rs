//! `PNLoss`: triplet mining plus the positive-to-negative distance (Ivis's PN loss).

use metric_loss_core::{
    reduce, AllowNonFinite, Distance, Embeddings, Float, LossError, LossInput, LossOutput,
    NegativeStrategy, PositiveStrategy, Reduction, Workspace,
};
use metric_loss_distances::DistanceKind;
use metric_loss_mining::{mine_row, route_gradient, Mined, RowContext};
use metric_loss_triplet::Margin;

use crate::common::{check_size, finite, impl_metric_loss};

/// `PNLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not yet validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `distance` | `"cosine"` | a distance name or alias |
/// | `positive_mining_strategy` | `"hard"` | `"easy"` or `"hard"` |
/// | `negative_mining_strategy` | `"semi-hard"` | `"easy"`, `"hard"` or `"semi-hard"` |
/// | `margin` | `None` (soft margin) | a number gives the hinge max(z + m, 0) |
/// | `name` | `"PNLoss"` | |
/// | `reduction` | `"auto"` | Keras's reduction name |
/// | `remove_diagonal` | `true` | TF's hidden keyword: the self-pair is not a positive |
///
/// There is no `soft_margin` key (0.17.1 rejects it too).
///
/// ```
/// use metric_loss_losses::PNLossConfig;
/// let loss = PNLossConfig::default().negative_mining_strategy("hard").margin(0.5).build()?;
/// assert_eq!(loss.config().margin, Some(0.5));
/// assert!(PNLossConfig::default().positive_mining_strategy("semi-hard").build().is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PNLossConfig {
    /// A distance name or alias (default `"cosine"`).
    pub distance: String,
    /// `"easy"` or `"hard"` (default).
    pub positive_mining_strategy: String,
    /// `"easy"`, `"hard"` or `"semi-hard"` (default).
    pub negative_mining_strategy: String,
    /// The hinge margin; `None` (default) is the soft margin. Serialised only when set
    /// (a missing key is the soft margin; TOML has no `null`); `null` is read as `None`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub margin: Option<f64>,
    /// The loss's name (default `"PNLoss"`).
    pub name: String,
    /// Keras's reduction name (default `"auto"`).
    pub reduction: String,
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
            margin: None,
            name: "PNLoss".into(),
            reduction: "auto".into(),
            remove_diagonal: true,
        }
    }
}

impl PNLossConfig {
    /// Sets `distance`.
    pub fn distance(mut self, name: impl Into<String>) -> Self {
        self.distance = name.into();
        self
    }

    /// Sets `positive_mining_strategy`.
    pub fn positive_mining_strategy(mut self, name: impl Into<String>) -> Self {
        self.positive_mining_strategy = name.into();
        self
    }

    /// Sets `negative_mining_strategy`.
    pub fn negative_mining_strategy(mut self, name: impl Into<String>) -> Self {
        self.negative_mining_strategy = name.into();
        self
    }

    /// Sets the hinge margin.
    pub fn margin(mut self, margin: f64) -> Self {
        self.margin = Some(margin);
        self
    }

    /// Uses the soft margin (`margin = None`).
    pub fn soft_margin(mut self) -> Self {
        self.margin = None;
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

    /// Sets `remove_diagonal`.
    pub fn remove_diagonal(mut self, remove: bool) -> Self {
        self.remove_diagonal = remove;
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
        let distance = DistanceKind::from_name(&self.distance)?;
        let positive: PositiveStrategy = self.positive_mining_strategy.parse()?;
        let negative: NegativeStrategy = self.negative_mining_strategy.parse()?;
        let reduction: Reduction = self.reduction.parse()?;
        let margin = match self.margin {
            Some(m) => Margin::Hinge(finite("margin", m)?),
            None => Margin::Soft,
        };
        Ok(PNLoss {
            distance,
            positive,
            negative,
            margin,
            name: self.name.clone(),
            reduction,
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
/// `config()` gives the arguments back.
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
    distance: DistanceKind,
    positive: PositiveStrategy,
    negative: NegativeStrategy,
    margin: Margin,
    name: String,
    reduction: Reduction,
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
    pub fn config(&self) -> PNLossConfig {
        PNLossConfig {
            distance: self.distance.name().into(),
            positive_mining_strategy: self.positive.name().into(),
            negative_mining_strategy: self.negative.name().into(),
            margin: match self.margin {
                Margin::Hinge(m) => Some(m),
                Margin::Soft | Margin::SoftStable => None,
            },
            name: self.name.clone(),
            reduction: self.reduction.name().into(),
            remove_diagonal: self.remove_diagonal,
        }
    }

    /// The distance.
    pub fn distance(&self) -> DistanceKind {
        self.distance
    }

    /// The margin rule.
    pub fn margin(&self) -> Margin {
        self.margin
    }

    fn apply_margin<T: Float>(&self, z: T) -> (T, T) {
        let (v, slope) = self.margin.apply(z);
        if v.is_finite() {
            (v, slope)
        } else {
            Margin::SoftStable.apply(z)
        }
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        input.validate()?;
        let (queries, keys) = (input.queries(), input.keys());
        let (n, m, dims) = (queries.len(), keys.len(), queries.embeddings().cols());
        let same = input.keys_are_queries();
        let gradient = input.wants_gradient();
        out.reset(n, if same { 0 } else { m }, dims, gradient);
        if n == 0 {
            return Ok(());
        }
        check_size::<T>(n, m, 1)?;
        let scratch = workspace.get::<Scratch<T>>();
        scratch.distances.clear();
        scratch.distances.resize(n * m, T::ZERO);
        let (q, k) = (queries.embeddings(), keys.embeddings());
        self.distance
            .matrix(q, k, same, &mut scratch.row_stats, &mut scratch.distances)?;

        scratch.anchors.clear();
        for i in 0..n {
            let row = &scratch.distances[i * m..(i + 1) * m];
            let ctx = self.context(input, i);
            let mined = mine_row(row, &ctx, self.positive, self.negative)
                .map_err(|e| e.into_loss_error::<T>(self.distance.name(), i, n))?;
            let (a, b) = (mined.pos.index, mined.neg.index);
            let r = if same {
                scratch.distances[a * m + b]
            } else {
                let mut r = [T::ZERO];
                self.distance.matrix(
                    key_row(k, a),
                    key_row(k, b),
                    false,
                    &mut scratch.row_stats,
                    &mut r,
                )?;
                r[0]
            };
            if !r.is_finite() {
                return Err(LossError::NonFiniteDistance {
                    distance: self.distance.name(),
                    row: a,
                    col: b,
                    value: r.to_f64(),
                    dtype: T::DTYPE,
                });
            }
            let use_r = r <= mined.negative;
            let q_prime = if use_r { r } else { mined.negative };
            let (loss, slope) = self.apply_margin(mined.positive - q_prime);
            if !(loss.is_finite() && slope.is_finite()) {
                return Err(LossError::Unsupported {
                    loss: self.name.clone(),
                    message: format!(
                        "the loss of anchor {i} overflows {} (p = {}, q' = {q_prime}); rescale the embeddings",
                        T::DTYPE,
                        mined.positive
                    ),
                });
            }
            out.per_example[i] = loss;
            scratch.anchors.push(Anchor {
                mined,
                r,
                use_r,
                slope,
            });
        }
        out.loss = reduce(&out.per_example, &input.sample_weight(), self.reduction);
        if gradient {
            self.gradient(input, scratch, out);
        }
        // Each anchor's loss is finite, but a sample weight times it, the reduced sum or a
        // gradient entry can still overflow: an error, never a silent ±∞ or NaN. (The soft
        // margin never gives +∞ here: see `apply_margin`.)
        out.check_finite(AllowNonFinite::Never)
    }

    /// Routes each anchor's weighted slope to the mined entries of `out`'s gradients.
    fn gradient<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        scratch: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) {
        let (q, k) = (input.queries().embeddings(), input.keys().embeddings());
        let (n, m, dims) = (q.rows(), k.rows(), q.cols());
        let same = input.keys_are_queries();
        let scale = T::from_f64(self.reduction.example_scale(n));
        scratch.buf_a.clear();
        scratch.buf_a.resize(dims, T::ZERO);
        scratch.buf_b.clear();
        scratch.buf_b.resize(dims, T::ZERO);
        let Scratch {
            distances,
            anchors,
            buf_a,
            buf_b,
            ..
        } = scratch;
        for (i, anchor) in anchors.iter().enumerate() {
            let g = input.sample_weight().get(i) * scale * anchor.slope;
            if g == T::ZERO {
                continue;
            }
            let row = &distances[i * m..(i + 1) * m];
            let ctx = self.context(input, i);
            let mut add = |qi: usize, kj: usize, value: T, g: T| {
                buf_a.fill(T::ZERO);
                buf_b.fill(T::ZERO);
                self.distance
                    .pair_vjp(q.row(qi), k.row(kj), value, g, buf_a, buf_b);
                add_row(&mut out.grad_queries, qi, buf_a);
                let target = if same {
                    &mut out.grad_queries
                } else {
                    &mut out.grad_keys
                };
                add_row(target, kj, buf_b);
            };
            route_gradient(row, &ctx, &anchor.mined.pos, g, |j, share| {
                add(i, j, row[j], share);
            });
            if anchor.use_r {
                let (a, b) = (anchor.mined.pos.index, anchor.mined.neg.index);
                // D[a, b]: key a plays the query's part.
                buf_a.fill(T::ZERO);
                buf_b.fill(T::ZERO);
                self.distance
                    .pair_vjp(k.row(a), k.row(b), anchor.r, -g, buf_a, buf_b);
                let target = if same {
                    &mut out.grad_queries
                } else {
                    &mut out.grad_keys
                };
                add_row(target, a, buf_a);
                add_row(target, b, buf_b);
            } else {
                route_gradient(row, &ctx, &anchor.mined.neg, -g, |j, share| {
                    add(i, j, row[j], share);
                });
            }
        }
    }

    fn context<'a, T: Float>(&self, input: &LossInput<'a, T>, anchor: usize) -> RowContext<'a> {
        RowContext {
            anchor,
            anchor_label: input.queries().labels()[anchor],
            key_labels: input.keys().labels(),
            remove_diagonal: input.removes_diagonal() && self.remove_diagonal,
        }
    }
}

fn key_row<T: Float>(k: Embeddings<'_, T>, j: usize) -> Embeddings<'_, T> {
    Embeddings::from_row_major(k.row(j), 1, k.cols()).expect("one row of the keys")
}

fn add_row<T: Float>(target: &mut [T], row: usize, values: &[T]) {
    let dims = values.len();
    for (t, v) in target[row * dims..(row + 1) * dims].iter_mut().zip(values) {
        *t += *v;
    }
}

#[derive(Debug, Default)]
struct Scratch<T> {
    distances: Vec<T>,
    row_stats: Vec<T>,
    anchors: Vec<Anchor<T>>,
    buf_a: Vec<T>,
    buf_b: Vec<T>,
}

#[derive(Debug, Clone, Copy)]
struct Anchor<T> {
    mined: Mined<T>,
    r: T,
    use_r: bool,
    slope: T,
}

impl_metric_loss!(PNLoss);
