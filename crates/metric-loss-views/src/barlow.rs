//! `Barlow`: the Barlow Twins loss (Zbontar et al., 2021), as TF Similarity 0.17.1
//! computes it.

use metric_loss_core::params::finite;
use metric_loss_core::{
    config_setters, Float, LossError, LossInput, LossOutput, Reduction, SampleWeight,
};

use crate::common::{keras_reduce, same_rows, two_views, view_metric_loss};

/// `Barlow`'s arguments with TF Similarity 0.17.1's names and defaults, not yet validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `lambda_` | 0.005 | weight of the off-diagonal term, any finite number |
/// | `margin` | 1e-12 | an additive constant, any finite number |
/// | `reduction` | `"auto"` | Keras's reduction name (all four give the same scalar) |
/// | `name` | `None` | |
///
/// ```
/// use metric_loss_views::BarlowConfig;
/// let loss = BarlowConfig::default().lambda_(0.05).build()?;
/// assert_eq!(loss.config().margin, 1e-12);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarlowConfig {
    /// Keras's reduction name (default `"auto"`).
    pub reduction: String,
    /// The loss's name (default `None`).
    /// Not written when `None` (TOML has no null); a config without it reads as the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The off-diagonal weight λ (default 0.005).
    pub lambda_: f64,
    /// The additive constant (default 1e-12).
    pub margin: f64,
}

impl Default for BarlowConfig {
    fn default() -> Self {
        Self {
            reduction: "auto".into(),
            name: None,
            lambda_: 5e-3,
            margin: 1e-12,
        }
    }
}

impl BarlowConfig {
    config_setters! {
        /// Sets `reduction`.
        reduction: impl Into<String>,
        /// Sets `name`.
        name: Option<String>,
        /// Sets `lambda_`.
        lambda_: f64,
        /// Sets `margin`.
        margin: f64,
    }

    /// Validates the arguments.
    ///
    /// # Errors
    /// [`LossError::UnknownReduction`]; [`LossError::InvalidParameter`] for a non-finite
    /// λ or margin.
    pub fn build(&self) -> Result<Barlow, LossError> {
        Ok(Barlow {
            name: self.name.clone(),
            lambda: finite("lambda_", self.lambda_)?,
            margin: finite("margin", self.margin)?,
            reduction: self.reduction.parse()?,
        })
    }
}

/// TF Similarity's `Barlow`: one value for the whole batch, from the cross-correlation of
/// the two views' standardised columns.
///
/// # Input
/// [`LossInput::views`]: two n×d views with n ≥ 1. A sample weight is a scalar or a single
/// per-example weight (TF's shape `[1]`); more weights are [`LossError::LengthMismatch`],
/// as TF raises.
///
/// # Formula
/// Each column is standardised over the batch with the population standard deviation
/// (ẑ = (z − μ)/σ, or 0 where σ = 0), C = ẑaᵀ ẑb / n, and
/// loss = λ · Σ_{k≠l} C²ₖₗ + Σₖ (1 − Cₖₖ)² + margin. [`LossOutput::per_example`] holds
/// that one value; every reduction returns it times the weight.
///
/// # Gradient
/// ∂/∂C is 2λCₖₗ off the diagonal and −2(1 − Cₖₖ) on it; ∂ẑa = ẑb ∂Cᵀ / n and
/// ∂ẑb = ẑa ∂C / n; through the standardisation (mean and σ both differentiated),
/// ∂zᵢ = (gᵢ − mean g − ẑᵢ mean(g ẑ)) / σ, and 0 in a column with σ = 0.
///
/// # Differences from TF Similarity 0.17.1
/// - An empty batch is [`LossError::Unsupported`] (TF: NaN).
///
/// ```
/// use metric_loss_core::{Embeddings, LossInput, MetricLossExt};
/// use metric_loss_views::Barlow;
///
/// let a = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0];
/// let b = [0.8f32, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let input = LossInput::views(
///     Embeddings::from_row_major(&a, 3, 2)?,
///     Embeddings::from_row_major(&b, 3, 2)?,
/// );
/// let out = Barlow::default().compute(&input)?;
/// assert!((out.loss - 2.767597).abs() < 1e-5);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Barlow {
    name: Option<String>,
    lambda: f64,
    margin: f64,
    reduction: Reduction,
}

impl Default for Barlow {
    fn default() -> Self {
        BarlowConfig::default()
            .build()
            .expect("the defaults are valid")
    }
}

/// A view with its columns standardised.
struct Standardised<T> {
    /// x − μ.
    centred: Vec<T>,
    /// ẑ.
    z: Vec<T>,
    sigma: Vec<T>,
}

fn standardise<T: Float>(x: &[T], n: usize, d: usize) -> Standardised<T> {
    let nt = T::from_f64(n as f64);
    let mut centred = x.to_vec();
    let mut z = x.to_vec();
    let mut sigma = vec![T::ZERO; d];
    for k in 0..d {
        let mean = (0..n).fold(T::ZERO, |s, i| s + x[i * d + k]) / nt;
        (0..n).for_each(|i| centred[i * d + k] = x[i * d + k] - mean);
        let var = (0..n).fold(T::ZERO, |s, i| s + centred[i * d + k] * centred[i * d + k]) / nt;
        sigma[k] = var.sqrt();
        for i in 0..n {
            // TF's "divide, but 0 for 0": a constant column standardises to 0.
            z[i * d + k] = if sigma[k] == T::ZERO {
                T::ZERO
            } else {
                centred[i * d + k] / sigma[k]
            };
        }
    }
    Standardised { centred, z, sigma }
}

/// The gradient with respect to the raw view from `g` = ∂/∂ẑ, into `out`, step by step
/// as TF's tape takes it (ẑ = (x − μ)/σ, σ = √(mean (x − μ)²)): at n = 2 the two halves
/// then cancel exactly, as in TF, where the folded formula leaves rounding noise times 1/σ.
fn standardise_backward<T: Float>(s: &Standardised<T>, g: &[T], n: usize, d: usize, out: &mut [T]) {
    let (nt, half, two) = (T::from_f64(n as f64), T::from_f64(0.5), T::from_f64(2.0));
    let mut direct = vec![T::ZERO; n];
    let mut through_var = vec![T::ZERO; n];
    for k in 0..d {
        let sigma = s.sigma[k];
        if sigma == T::ZERO {
            (0..n).for_each(|i| out[i * d + k] = T::ZERO);
            continue;
        }
        let mut dsigma = T::ZERO;
        for i in 0..n {
            let (gi, c) = (g[i * d + k], s.centred[i * d + k]);
            direct[i] = gi / sigma;
            dsigma += gi * ((-c / sigma) / sigma);
        }
        let dvar = half * dsigma / sigma;
        for (i, v) in through_var.iter_mut().enumerate() {
            *v = two * s.centred[i * d + k] * (dvar / nt);
        }
        let mean_direct = direct.iter().fold(T::ZERO, |a, v| a + *v) / nt;
        let mean_var = through_var.iter().fold(T::ZERO, |a, v| a + *v) / nt;
        for i in 0..n {
            out[i * d + k] = (direct[i] - mean_direct) + (through_var[i] - mean_var);
        }
    }
}

impl Barlow {
    /// The arguments, as [`BarlowConfig`].
    pub fn config(&self) -> BarlowConfig {
        BarlowConfig {
            reduction: self.reduction.name().into(),
            name: self.name.clone(),
            lambda_: self.lambda,
            margin: self.margin,
        }
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let (a, b, d) = two_views(input)?;
        let n = same_rows(a, b)?;
        let weight = match input.sample_weight() {
            SampleWeight::None => T::ONE,
            SampleWeight::Scalar(w) => w,
            SampleWeight::PerExample([w]) => *w,
            SampleWeight::PerExample(w) => {
                return Err(LossError::LengthMismatch {
                    what: "sample_weight",
                    got: w.len(),
                    reference: "Barlow's one value per batch",
                    expected: 1,
                })
            }
        };
        if n == 0 {
            return Err(LossError::Unsupported {
                loss: "Barlow".into(),
                message: "an empty batch has no column statistics (TF Similarity returns NaN); give at least one row per view".into(),
            });
        }
        let (sa, sb) = (
            standardise(a.as_slice(), n, d),
            standardise(b.as_slice(), n, d),
        );
        let nt = T::from_f64(n as f64);
        let mut c = vec![T::ZERO; d * d];
        T::gemm(
            d,
            n,
            d,
            T::ONE,
            (&sa.z, 1, d),
            (&sb.z, d, 1),
            T::ZERO,
            (&mut c, d, 1),
        );
        c.iter_mut().for_each(|v| *v = *v / nt);
        let (mut on, mut off) = (T::ZERO, T::ZERO);
        for k in 0..d {
            for l in 0..d {
                let v = c[k * d + l];
                if k == l {
                    on += (T::ONE - v) * (T::ONE - v);
                } else {
                    off += v * v;
                }
            }
        }
        let lambda = T::from_f64(self.lambda);
        out.reset(1, 0, d, false);
        out.per_example[0] = off * lambda + on + T::from_f64(self.margin);
        let weights = SampleWeight::Scalar(weight);
        let (loss, red) = keras_reduce(&out.per_example, 1, &weights, self.reduction);
        out.loss = loss;
        if !input.wants_gradient() {
            return Ok(());
        }
        let u = red * weight;
        let two = T::from_f64(2.0);
        for k in 0..d {
            for l in 0..d {
                let v = &mut c[k * d + l];
                *v = if k == l {
                    -u * two * (T::ONE - *v)
                } else {
                    u * two * lambda * *v
                };
            }
        }
        let inv_n = T::ONE / nt;
        let (mut ga, mut gb) = (vec![T::ZERO; n * d], vec![T::ZERO; n * d]);
        T::gemm(
            n,
            d,
            d,
            inv_n,
            (&sb.z, d, 1),
            (&c, 1, d),
            T::ZERO,
            (&mut ga, d, 1),
        );
        T::gemm(
            n,
            d,
            d,
            inv_n,
            (&sa.z, d, 1),
            (&c, d, 1),
            T::ZERO,
            (&mut gb, d, 1),
        );
        out.grad_queries.resize(n * d, T::ZERO);
        out.grad_keys.resize(n * d, T::ZERO);
        standardise_backward(&sa, &ga, n, d, &mut out.grad_queries);
        standardise_backward(&sb, &gb, n, d, &mut out.grad_keys);
        Ok(())
    }
}

view_metric_loss!(Barlow, BarlowConfig);
