//! `SimSiamLoss`: SimSiam's negative cosine similarity (Chen and He, 2021), as TF
//! Similarity 0.17.1 computes it.

use metric_loss_core::params::finite;
use metric_loss_core::{
    config_setters, Float, LossError, LossInput, LossOutput, Reduction, Workspace,
};

use crate::common::{keras_reduce, two_views, view_metric_loss, Normalized};

/// The projections TF accepts, spelled exactly (case-sensitive).
const PROJECTIONS: [&str; 3] = ["negative_cosine_sim", "cosine_distance", "angular_distance"];

/// What the cosine similarity of a pair becomes before `0.5 · y + margin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Projection {
    /// y = −c.
    NegativeCosine,
    /// y = 1 − c.
    CosineDistance,
    /// y = arccos(c)/π.
    Angular,
}

/// `SimSiamLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not yet
/// validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `projection_type` | `"negative_cosine_sim"` | or `"cosine_distance"`, `"angular_distance"` (exact spelling) |
/// | `margin` | 0.001 | an additive constant (not a hinge), any finite number |
/// | `reduction` | `"auto"` | Keras's reduction name |
/// | `name` | `None` | |
///
/// ```
/// use metric_loss_views::SimSiamLossConfig;
/// let loss = SimSiamLossConfig::default().projection_type("angular_distance").build()?;
/// assert_eq!(loss.config().margin, 0.001);
/// assert!(SimSiamLossConfig::default().projection_type("cosine").build().is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimSiamLossConfig {
    /// Keras's reduction name (default `"auto"`).
    pub reduction: String,
    /// The loss's name (default `None`).
    /// Not written when `None` (TOML has no null); a config without it reads as the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How the cosine similarity is projected (default `"negative_cosine_sim"`).
    pub projection_type: String,
    /// The additive constant (default 0.001).
    pub margin: f64,
}

impl Default for SimSiamLossConfig {
    fn default() -> Self {
        Self {
            reduction: "auto".into(),
            name: None,
            projection_type: PROJECTIONS[0].into(),
            margin: 0.001,
        }
    }
}

impl SimSiamLossConfig {
    config_setters! {
        /// Sets `reduction`.
        reduction: impl Into<String>,
        /// Sets `name`.
        name: Option<String>,
        /// Sets `projection_type`.
        projection_type: impl Into<String>,
        /// Sets `margin`.
        margin: f64,
    }

    /// Validates the arguments.
    ///
    /// # Errors
    /// [`LossError::UnknownReduction`]; [`LossError::Unsupported`] for a projection other
    /// than TF's three; [`LossError::InvalidParameter`] for a non-finite margin.
    pub fn build(&self) -> Result<SimSiamLoss, LossError> {
        let projection = match self.projection_type.as_str() {
            "negative_cosine_sim" => Projection::NegativeCosine,
            "cosine_distance" => Projection::CosineDistance,
            "angular_distance" => Projection::Angular,
            other => {
                return Err(LossError::Unsupported {
                    loss: "SimSiamLoss".into(),
                    message: format!(
                        "projection_type {other:?} is not supported; expected one of: {}",
                        PROJECTIONS.join(", ")
                    ),
                })
            }
        };
        Ok(SimSiamLoss {
            name: self.name.clone(),
            projection,
            margin: finite("margin", self.margin)?,
            reduction: self.reduction.parse()?,
        })
    }
}

/// TF Similarity's `SimSiamLoss`: 0.5 · projection of each pair's cosine similarity +
/// margin.
///
/// # Input
/// [`LossInput::views`] with the projector output as view A and the predictor output as
/// view B, both n×d; a view of one row is broadcast against the other's n rows (its
/// gradient is then the sum over the n pairs), as in TF.
///
/// # Formula
/// Both views' rows are L2-normalised (TF's epsilon), cᵢ = p̂ᵢ·q̂ᵢ, and
/// ℓᵢ = 0.5 · yᵢ + margin with yᵢ = −cᵢ, 1 − cᵢ or arccos(cᵢ)/π. The default reduction is
/// the mean. There is no stop-gradient: both views get a gradient (SimSiam's stop-gradient
/// on the projector is the training loop's business, as in TF Similarity).
///
/// # Differences from TF Similarity 0.17.1
/// - `angular_distance` at |cᵢ| ≥ 1 after rounding (identical or opposite rows): TF gives
///   NaN (a value past ±1, or a gradient ∞ · 0). Here cᵢ is clamped to [−1, 1], so the value
///   is 0.5 · (0 or 1) + margin, and the row's gradient is 0 (the clamp takes it).
/// - A projection name outside TF's three is rejected by `build`, as in TF.
/// - float64 works for every projection (TF: `angular_distance` fails on a float32 π).
///
/// ```
/// use metric_loss_core::{Embeddings, LossInput, MetricLossExt};
/// use metric_loss_views::SimSiamLoss;
///
/// let p = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0];
/// let q = [0.8f32, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let input = LossInput::views(
///     Embeddings::from_row_major(&p, 3, 2)?,
///     Embeddings::from_row_major(&q, 3, 2)?,
/// );
/// let out = SimSiamLoss::default().compute(&input)?;
/// assert!((out.loss - -0.09900003).abs() < 1e-6);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SimSiamLoss {
    name: Option<String>,
    projection: Projection,
    margin: f64,
    reduction: Reduction,
}

impl Default for SimSiamLoss {
    fn default() -> Self {
        SimSiamLossConfig::default()
            .build()
            .expect("the defaults are valid")
    }
}

/// Reusable memory of a call.
#[derive(Default)]
struct Scratch<T> {
    a: Normalized<T>,
    b: Normalized<T>,
    /// ½ ∂yᵢ/∂cᵢ per pair.
    slopes: Vec<T>,
    /// ∂/∂x̂ of each view.
    ga: Vec<T>,
    gb: Vec<T>,
}

impl SimSiamLoss {
    /// The arguments, as [`SimSiamLossConfig`].
    pub fn config(&self) -> SimSiamLossConfig {
        let projection = match self.projection {
            Projection::NegativeCosine => PROJECTIONS[0],
            Projection::CosineDistance => PROJECTIONS[1],
            Projection::Angular => PROJECTIONS[2],
        };
        SimSiamLossConfig {
            reduction: self.reduction.name().into(),
            name: self.name.clone(),
            projection_type: projection.into(),
            margin: self.margin,
        }
    }

    /// yᵢ and ∂yᵢ/∂cᵢ.
    fn project<T: Float>(&self, c: T) -> (T, T) {
        match self.projection {
            Projection::NegativeCosine => (-c, -T::ONE),
            Projection::CosineDistance => (T::ONE - c, -T::ONE),
            Projection::Angular => {
                let pi = T::from_f64(std::f64::consts::PI);
                let clamped = c.to_f64().clamp(-1.0, 1.0);
                let y = T::from_f64(clamped.acos()) / pi;
                let slope = if clamped.abs() < 1.0 {
                    // The reciprocal in T, as TF takes it.
                    -(T::ONE / (T::ONE - c * c).sqrt()) / pi
                } else {
                    T::ZERO
                };
                (y, slope)
            }
        }
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let (a, b, d) = two_views(input)?;
        let (rows_a, rows_b) = (a.rows(), b.rows());
        let n = match (rows_a, rows_b) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => {
                return Err(LossError::LengthMismatch {
                    what: "view B",
                    got: y,
                    reference: "view A (or one row, broadcast)",
                    expected: x,
                })
            }
        };
        let weights = input.sample_weight();
        weights.check(n)?;
        let Scratch {
            a: pa,
            b: pb,
            slopes,
            ga,
            gb,
        } = workspace.get::<Scratch<T>>();
        pa.fill(a);
        pb.fill(b);
        // Row i of a view, or its only row when it is broadcast.
        let at = |rows: usize, i: usize| if rows == 1 { 0 } else { i } * d;
        let half = T::from_f64(0.5);
        let margin = T::from_f64(self.margin);
        slopes.clear();
        slopes.resize(n, T::ZERO);
        out.reset(n, 0, d, false);
        for (i, (value, slope)) in out
            .per_example
            .iter_mut()
            .zip(slopes.iter_mut())
            .enumerate()
        {
            let (x, y) = (
                &pa.rows[at(rows_a, i)..][..d],
                &pb.rows[at(rows_b, i)..][..d],
            );
            let c = y.iter().zip(x).fold(T::ZERO, |s, (q, p)| s + *q * *p);
            let (y, dy) = self.project(c);
            *value = half * y + margin;
            *slope = half * dy;
        }
        let (loss, red) = keras_reduce(&out.per_example, 1, &weights, self.reduction);
        out.loss = loss;
        if !input.wants_gradient() {
            return Ok(());
        }
        for (g, rows) in [(&mut *ga, rows_a), (&mut *gb, rows_b)] {
            g.clear();
            g.resize(rows * d, T::ZERO);
        }
        for (i, slope) in slopes.iter().enumerate() {
            let g = *slope * red * weights.get(i);
            let (ia, ib) = (at(rows_a, i), at(rows_b, i));
            let rows = pa.rows[ia..ia + d].iter().zip(&pb.rows[ib..ib + d]);
            for ((x, y), (p, q)) in ga[ia..ia + d].iter_mut().zip(&mut gb[ib..ib + d]).zip(rows) {
                *x += g * *q;
                *y += g * *p;
            }
        }
        out.grad_queries.resize(rows_a * d, T::ZERO);
        out.grad_keys.resize(rows_b * d, T::ZERO);
        pa.backward(a, ga, d, &mut out.grad_queries);
        pb.backward(b, gb, d, &mut out.grad_keys);
        Ok(())
    }
}

view_metric_loss!(SimSiamLoss, SimSiamLossConfig);
