//! `VicReg`: the VICReg loss (Bardes, Ponce and LeCun, 2022), as TF Similarity 0.17.1
//! computes it.

use metric_loss_core::params::finite;
use metric_loss_core::{config_setters, Float, LossError, LossInput, LossOutput, Reduction};

use crate::common::{keras_reduce, same_rows, two_views, view_metric_loss};

/// `VicReg`'s arguments with TF Similarity 0.17.1's names and defaults, not yet validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `std_const` | 1e-4 | ε inside the standard deviation's square root, finite and ≥ 0 |
/// | `lambda_` | 25 | weight of the invariance term |
/// | `mu` | 25 | weight of the variance term |
/// | `nu` | 1 | weight of the covariance term |
/// | `reduction` | **`"none"`** | Keras's reduction name |
/// | `name` | `None` | |
///
/// ```
/// use metric_loss_views::VicRegConfig;
/// let loss = VicRegConfig::default().mu(1.0).build()?;
/// assert_eq!(loss.config().reduction, "none");
/// assert!(VicRegConfig::default().std_const(-0.5).build().is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VicRegConfig {
    /// Keras's reduction name (default `"none"`, TF's default for this loss).
    pub reduction: String,
    /// The loss's name (default `None`).
    /// Not written when `None` (TOML has no null); a config without it reads as the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ε inside the standard deviation (default 1e-4).
    pub std_const: f64,
    /// The invariance weight λ (default 25).
    pub lambda_: f64,
    /// The variance weight μ (default 25).
    pub mu: f64,
    /// The covariance weight ν (default 1).
    pub nu: f64,
}

impl Default for VicRegConfig {
    fn default() -> Self {
        Self {
            reduction: "none".into(),
            name: None,
            std_const: 1e-4,
            lambda_: 25.0,
            mu: 25.0,
            nu: 1.0,
        }
    }
}

impl VicRegConfig {
    config_setters! {
        /// Sets `reduction`.
        reduction: impl Into<String>,
        /// Sets `name`.
        name: Option<String>,
        /// Sets `std_const`.
        std_const: f64,
        /// Sets `lambda_`.
        lambda_: f64,
        /// Sets `mu`.
        mu: f64,
        /// Sets `nu`.
        nu: f64,
    }

    /// Validates the arguments.
    ///
    /// # Errors
    /// [`LossError::UnknownReduction`]; [`LossError::InvalidParameter`] for a negative
    /// `std_const` (TF: NaN) or any non-finite number.
    pub fn build(&self) -> Result<VicReg, LossError> {
        if !(self.std_const >= 0.0 && self.std_const.is_finite()) {
            return Err(LossError::InvalidParameter {
                name: "std_const",
                value: self.std_const,
                expected: "a finite number >= 0 (a negative one makes the standard deviation of a narrow column NaN)",
            });
        }
        Ok(VicReg {
            name: self.name.clone(),
            std_const: self.std_const,
            lambda: finite("lambda_", self.lambda_)?,
            mu: finite("mu", self.mu)?,
            nu: finite("nu", self.nu)?,
            reduction: self.reduction.parse()?,
        })
    }
}

/// TF Similarity's `VicReg`: per-example invariance plus two batch-wide regularisers.
///
/// # Input
/// [`LossInput::views`]: two n×d views with n ≥ 2 (or n = 0: no values).
///
/// # Formula
/// simᵢ = mean over k of (zbᵢₖ − zaᵢₖ)². For each view, with z̃ its centred columns: the
/// population variance vₖ, sₖ = √(vₖ + std_const), the variance term
/// (1/d) Σₖ max(0, 1 − sₖ), and the covariance term (1/d) Σ_{k≠l} Covₖₗ² with
/// Cov = z̃ᵀz̃/(n − 1). std_loss is the mean of the two views' variance terms and cov_loss
/// the sum of their covariance terms:
///
/// ℓᵢ = (λ · simᵢ + μ · std_loss) + ν · cov_loss.
///
/// The default reduction is `none`: the vector ℓ, whose gradient (TF's tape, and Keras's
/// `fit`) is that of its sum, n times the mean's.
///
/// # Differences from TF Similarity 0.17.1
/// - A batch of one is [`LossError::Unsupported`] (TF: NaN, Cov = 0/0).
/// - `std_const` < 0 is rejected by `build` (TF: NaN where a column's variance is below
///   |std_const|).
/// - `std_const` = 0 with a constant column: the value is TF's, and the column's gradient
///   is 0 (TF: NaN, ∞ · 0 through the square root).
///
/// ```
/// use metric_loss_core::{Embeddings, LossInput, MetricLossExt};
/// use metric_loss_views::VicReg;
///
/// let a = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0];
/// let b = [0.8f32, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let input = LossInput::views(
///     Embeddings::from_row_major(&a, 3, 2)?,
///     Embeddings::from_row_major(&b, 3, 2)?,
/// );
/// let out = VicReg::default().compute(&input)?;
/// assert!((out.per_example[0] - 16.584295).abs() < 1e-4);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VicReg {
    name: Option<String>,
    std_const: f64,
    lambda: f64,
    mu: f64,
    nu: f64,
    reduction: Reduction,
}

impl Default for VicReg {
    fn default() -> Self {
        VicRegConfig::default()
            .build()
            .expect("the defaults are valid")
    }
}

/// One view's regularisers and what their gradients need.
struct Regularised<T> {
    centred: Vec<T>,
    /// Column means of the centred view (about 0, recomputed as TF does).
    residual: Vec<T>,
    std: Vec<T>,
    cov: Vec<T>,
    std_term: T,
    cov_term: T,
}

fn column_means<T: Float>(x: &[T], n: usize, d: usize) -> Vec<T> {
    let nt = T::from_f64(n as f64);
    (0..d)
        .map(|k| (0..n).fold(T::ZERO, |s, i| s + x[i * d + k]) / nt)
        .collect()
}

fn regularise<T: Float>(x: &[T], n: usize, d: usize, std_const: T) -> Regularised<T> {
    let (nt, dt) = (T::from_f64(n as f64), T::from_f64(d as f64));
    let mean = column_means(x, n, d);
    let centred: Vec<T> = x
        .iter()
        .enumerate()
        .map(|(e, v)| *v - mean[e % d])
        .collect();
    let residual = column_means(&centred, n, d);
    let std: Vec<T> = (0..d)
        .map(|k| {
            let v = (0..n).fold(T::ZERO, |s, i| {
                let e = centred[i * d + k] - residual[k];
                s + e * e
            }) / nt;
            (v + std_const).sqrt()
        })
        .collect();
    let std_term = std
        .iter()
        .fold(T::ZERO, |s, v| s + (T::ONE - *v).max(T::ZERO))
        / dt;
    let mut cov = vec![T::ZERO; d * d];
    let inv = T::ONE / T::from_f64((n - 1) as f64);
    T::gemm(
        d,
        n,
        d,
        T::ONE,
        (&centred, 1, d),
        (&centred, d, 1),
        T::ZERO,
        (&mut cov, d, 1),
    );
    cov.iter_mut().for_each(|v| *v *= inv);
    let off = (0..d * d)
        .filter(|e| e / d != e % d)
        .fold(T::ZERO, |s, e| s + cov[e] * cov[e]);
    Regularised {
        centred,
        residual,
        std,
        cov,
        std_term,
        cov_term: off / dt,
    }
}

impl VicReg {
    /// The arguments, as [`VicRegConfig`].
    pub fn config(&self) -> VicRegConfig {
        VicRegConfig {
            reduction: self.reduction.name().into(),
            name: self.name.clone(),
            std_const: self.std_const,
            lambda_: self.lambda,
            mu: self.mu,
            nu: self.nu,
        }
    }

    /// ∂/∂z of the two regularisers of one view, given Γ = Σ γᵢ, added into `out`.
    fn regulariser_gradient<T: Float>(
        &self,
        r: &Regularised<T>,
        gamma: T,
        n: usize,
        d: usize,
        out: &mut [T],
    ) {
        let (nt, dt, two) = (
            T::from_f64(n as f64),
            T::from_f64(d as f64),
            T::from_f64(2.0),
        );
        let mut g = vec![T::ZERO; n * d];
        // Variance: only columns below 1 get a gradient (at the tie TF sends it to the 0).
        let ds = -T::from_f64(self.mu) * gamma / (two * dt);
        for k in 0..d {
            let s = r.std[k];
            if T::ONE - s <= T::ZERO || s == T::ZERO {
                continue;
            }
            let dv = ds / (two * s);
            for i in 0..n {
                g[i * d + k] = two * (r.centred[i * d + k] - r.residual[k]) * dv / nt;
            }
        }
        // Through the recomputed mean m̃: subtract each column's mean.
        let means = column_means(&g, n, d);
        g.iter_mut()
            .enumerate()
            .for_each(|(e, v)| *v -= means[e % d]);
        // Covariance: ∂Cov is symmetric, so ∂z̃ = 2 z̃ ∂Cov / (n − 1).
        let scale = two * T::from_f64(self.nu) * gamma / dt;
        let dcov: Vec<T> = (0..d * d)
            .map(|e| {
                if e / d == e % d {
                    T::ZERO
                } else {
                    scale * r.cov[e]
                }
            })
            .collect();
        let alpha = two / T::from_f64((n - 1) as f64);
        T::gemm(
            n,
            d,
            d,
            alpha,
            (&r.centred, d, 1),
            (&dcov, d, 1),
            T::ONE,
            (&mut g, d, 1),
        );
        // Centring: ∂z = ∂z̃ minus its column mean.
        let means = column_means(&g, n, d);
        for (e, v) in g.iter().enumerate() {
            out[e] += *v - means[e % d];
        }
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let (a, b, d) = two_views(input)?;
        let n = same_rows(a, b)?;
        let weights = input.sample_weight();
        weights.check(n)?;
        out.reset(n, n, d, input.wants_gradient());
        if n == 0 {
            return Ok(());
        }
        if n == 1 {
            return Err(LossError::Unsupported {
                loss: "VicReg".into(),
                message: "a batch of one has no covariance (TF Similarity divides by n - 1 = 0: NaN); give at least two rows per view".into(),
            });
        }
        let (za, zb) = (a.as_slice(), b.as_slice());
        let dt = T::from_f64(d as f64);
        let std_const = T::from_f64(self.std_const);
        let (ra, rb) = (
            regularise(za, n, d, std_const),
            regularise(zb, n, d, std_const),
        );
        let half = T::from_f64(0.5);
        let std_loss = ra.std_term * half + rb.std_term * half;
        let cov_loss = ra.cov_term + rb.cov_term;
        let (lambda, mu, nu) = (
            T::from_f64(self.lambda),
            T::from_f64(self.mu),
            T::from_f64(self.nu),
        );
        for i in 0..n {
            let sim = (0..d).fold(T::ZERO, |s, k| {
                let e = zb[i * d + k] - za[i * d + k];
                s + e * e
            }) / dt;
            out.per_example[i] = (lambda * sim + mu * std_loss) + nu * cov_loss;
        }
        let (loss, red) = keras_reduce(&out.per_example, 1, &weights, self.reduction);
        out.loss = loss;
        if !input.wants_gradient() {
            return Ok(());
        }
        let two = T::from_f64(2.0);
        let mut total = T::ZERO;
        for i in 0..n {
            let gamma = red * weights.get(i);
            total += gamma;
            for k in 0..d {
                let e = i * d + k;
                let g = two * lambda * gamma * (zb[e] - za[e]) / dt;
                out.grad_keys[e] = g;
                out.grad_queries[e] = -g;
            }
        }
        self.regulariser_gradient(&ra, total, n, d, &mut out.grad_queries);
        self.regulariser_gradient(&rb, total, n, d, &mut out.grad_keys);
        Ok(())
    }
}

view_metric_loss!(VicReg, VicRegConfig);
