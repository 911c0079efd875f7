//! `VicReg`: the VICReg loss (Bardes, Ponce and LeCun, 2022), as TF Similarity 0.17.1
//! computes it.

use metric_loss_core::params::finite;
use metric_loss_core::{
    config_setters, Float, LossError, LossInput, LossOutput, Reduction, Workspace,
};

use metric_loss_distances::parallel::gemm_rows;

use crate::common::{column_means, keras_reduce, same_rows, two_views, view_metric_loss};

/// Subtracts each column's mean from the row-major `x` (n×d); `means` is scratch.
fn subtract_column_means<T: Float>(x: &mut [T], n: usize, d: usize, means: &mut Vec<T>) {
    column_means(x, n, d, means);
    for row in x.chunks_exact_mut(d) {
        for (v, m) in row.iter_mut().zip(means.iter()) {
            *v -= *m;
        }
    }
}

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

/// One view's regularisers and what their gradients need, in buffers reused from call to
/// call.
#[derive(Default)]
struct Regularised<T> {
    centred: Vec<T>,
    /// Column means of the centred view (about 0, recomputed as TF does).
    residual: Vec<T>,
    std: Vec<T>,
    cov: Vec<T>,
    std_term: T,
    cov_term: T,
}

impl<T: Float> Regularised<T> {
    /// The regularisers of the view `x` (n×d). Every column statistic is summed down its
    /// rows in order, as TF's column reductions are, while the passes read row by row.
    fn fill(&mut self, x: &[T], n: usize, d: usize, std_const: T) {
        let (nt, dt) = (T::from_f64(n as f64), T::from_f64(d as f64));
        if d == 0 {
            (self.std_term, self.cov_term) = (T::ZERO / dt, T::ZERO / dt);
            return;
        }
        let mean = &mut self.std;
        column_means(x, n, d, mean);
        self.centred.clear();
        self.centred.resize(x.len(), T::ZERO);
        for (c, row) in self.centred.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((c, v), m) in c.iter_mut().zip(row).zip(mean.iter()) {
                *c = *v - *m;
            }
        }
        column_means(&self.centred, n, d, &mut self.residual);
        let std = &mut self.std;
        std.iter_mut().for_each(|s| *s = T::ZERO);
        for row in self.centred.chunks_exact(d) {
            for ((s, c), r) in std.iter_mut().zip(row).zip(&self.residual) {
                let e = *c - *r;
                *s += e * e;
            }
        }
        std.iter_mut()
            .for_each(|s| *s = (*s / nt + std_const).sqrt());
        self.std_term = std
            .iter()
            .fold(T::ZERO, |s, v| s + (T::ONE - *v).max(T::ZERO))
            / dt;
        self.cov.clear();
        self.cov.resize(d * d, T::ZERO);
        let inv = T::ONE / T::from_f64((n - 1) as f64);
        let centred = &self.centred;
        gemm_rows(
            d,
            n,
            d,
            T::ONE,
            (centred, 1, d),
            (centred, d, 1),
            T::ZERO,
            &mut self.cov,
        );
        self.cov.iter_mut().for_each(|v| *v *= inv);
        let mut off = T::ZERO;
        for (k, row) in self.cov.chunks_exact(d).enumerate() {
            for (l, v) in row.iter().enumerate() {
                if k != l {
                    off += *v * *v;
                }
            }
        }
        self.cov_term = off / dt;
    }
}

/// Reusable memory of a call.
#[derive(Default)]
struct Scratch<T> {
    a: Regularised<T>,
    b: Regularised<T>,
    /// One view's ∂/∂z̃ while its gradient is taken.
    g: Vec<T>,
    /// Per-column values: the variance term's slope, then column means.
    columns: Vec<T>,
    dcov: Vec<T>,
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

    /// ∂/∂z of the two regularisers of one view, given Γ = Σ γᵢ, added into `out`;
    /// `scratch` holds the view's regularisers and the buffers.
    fn regulariser_gradient<T: Float>(
        &self,
        r: &Regularised<T>,
        scratch: &mut (&mut Vec<T>, &mut Vec<T>, &mut Vec<T>),
        gamma: T,
        n: usize,
        d: usize,
        out: &mut [T],
    ) {
        let (g, columns, dcov) = scratch;
        let (nt, dt, two) = (
            T::from_f64(n as f64),
            T::from_f64(d as f64),
            T::from_f64(2.0),
        );
        if d == 0 {
            return;
        }
        // Variance: only columns below 1 get a gradient (at the tie TF sends it to the 0);
        // `columns` holds each column's ∂/∂sₖ / 2sₖ.
        let ds = -T::from_f64(self.mu) * gamma / (two * dt);
        columns.clear();
        columns.extend(r.std.iter().map(|&s| {
            if T::ONE - s <= T::ZERO || s == T::ZERO {
                T::ZERO
            } else {
                ds / (two * s)
            }
        }));
        g.clear();
        g.resize(n * d, T::ZERO);
        for (gi, c) in g.chunks_exact_mut(d).zip(r.centred.chunks_exact(d)) {
            let per_column = r.std.iter().zip(columns.iter()).zip(&r.residual);
            for ((g, c), ((s, dv), res)) in gi.iter_mut().zip(c).zip(per_column) {
                *g = if T::ONE - *s <= T::ZERO || *s == T::ZERO {
                    T::ZERO
                } else {
                    two * (*c - *res) * *dv / nt
                };
            }
        }
        // Through the recomputed mean m̃: subtract each column's mean.
        subtract_column_means(g, n, d, columns);
        // Covariance: ∂Cov is symmetric, so ∂z̃ = 2 z̃ ∂Cov / (n − 1).
        let scale = two * T::from_f64(self.nu) * gamma / dt;
        dcov.clear();
        dcov.extend(r.cov.iter().enumerate().map(|(e, v)| {
            if e / d == e % d {
                T::ZERO
            } else {
                scale * *v
            }
        }));
        let alpha = two / T::from_f64((n - 1) as f64);
        gemm_rows(n, d, d, alpha, (&r.centred, d, 1), (dcov, d, 1), T::ONE, g);
        // Centring: ∂z = ∂z̃ minus its column mean.
        column_means(g, n, d, columns);
        for (o, gi) in out.chunks_exact_mut(d).zip(g.chunks_exact(d)) {
            for ((o, v), m) in o.iter_mut().zip(gi).zip(columns.iter()) {
                *o += *v - *m;
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
        let Scratch {
            a: ra,
            b: rb,
            g,
            columns,
            dcov,
        } = workspace.get::<Scratch<T>>();
        ra.fill(za, n, d, std_const);
        rb.fill(zb, n, d, std_const);
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
        let mut buffers = (g, columns, dcov);
        self.regulariser_gradient(ra, &mut buffers, total, n, d, &mut out.grad_queries);
        self.regulariser_gradient(rb, &mut buffers, total, n, d, &mut out.grad_keys);
        Ok(())
    }
}

view_metric_loss!(VicReg, VicRegConfig);
