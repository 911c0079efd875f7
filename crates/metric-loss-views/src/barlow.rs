//! `Barlow`: the Barlow Twins loss (Zbontar et al., 2021), as TF Similarity 0.17.1
//! computes it.

use metric_loss_core::params::finite;
use metric_loss_core::{
    config_setters, Float, LossError, LossInput, LossOutput, Reduction, SampleWeight, Workspace,
};

use metric_loss_distances::parallel::gemm_rows;

use crate::common::{column_means, keras_reduce, same_rows, two_views, view_metric_loss};

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

/// A view with its columns standardised, in buffers reused from call to call.
#[derive(Default)]
struct Standardised<T> {
    /// x − μ.
    centred: Vec<T>,
    /// ẑ.
    z: Vec<T>,
    sigma: Vec<T>,
}

impl<T: Float> Standardised<T> {
    /// Standardises the columns of `x` (n×d). Every column statistic is summed down its
    /// rows in order, as TF's column reductions are, while the passes read row by row.
    fn fill(&mut self, x: &[T], n: usize, d: usize) {
        let nt = T::from_f64(n as f64);
        let mean = &mut self.sigma;
        column_means(x, n, d, mean);
        if d == 0 {
            return;
        }
        self.centred.clear();
        self.centred.resize(x.len(), T::ZERO);
        for (c, row) in self.centred.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((c, v), m) in c.iter_mut().zip(row).zip(mean.iter()) {
                *c = *v - *m;
            }
        }
        let sigma = &mut self.sigma;
        sigma.iter_mut().for_each(|s| *s = T::ZERO);
        for row in self.centred.chunks_exact(d) {
            for (s, c) in sigma.iter_mut().zip(row) {
                *s += *c * *c;
            }
        }
        sigma.iter_mut().for_each(|s| *s = (*s / nt).sqrt());
        self.z.clear();
        self.z.resize(x.len(), T::ZERO);
        for (z, row) in self.z.chunks_exact_mut(d).zip(self.centred.chunks_exact(d)) {
            for ((z, c), s) in z.iter_mut().zip(row).zip(sigma.iter()) {
                // TF's "divide, but 0 for 0": a constant column standardises to 0.
                *z = if *s == T::ZERO { T::ZERO } else { *c / *s };
            }
        }
    }

    /// The gradient with respect to the raw view from `g` = ∂/∂ẑ, into `out`, step by
    /// step as TF's tape takes it (ẑ = (x − μ)/σ, σ = √(mean (x − μ)²)): at n = 2 the two
    /// halves then cancel exactly, as in TF, where the folded formula leaves rounding noise
    /// times 1/σ. `sums` holds the per-column sums.
    fn backward(&self, g: &[T], n: usize, d: usize, sums: &mut ColumnSums<T>, out: &mut [T]) {
        let (nt, half, two) = (T::from_f64(n as f64), T::from_f64(0.5), T::from_f64(2.0));
        if d == 0 {
            return;
        }
        let sigma = &self.sigma;
        // ∂σ and the sum of the direct term g/σ, per column.
        sums.reset(d);
        for (gi, c) in g.chunks_exact(d).zip(self.centred.chunks_exact(d)) {
            let lanes = sums.first.iter_mut().zip(sums.second.iter_mut());
            for ((((dsigma, direct), g), c), s) in lanes.zip(gi).zip(c).zip(sigma) {
                *direct += *g / *s;
                *dsigma += *g * ((-*c / *s) / *s);
            }
        }
        // The term through the variance is 2c · (∂var / n); `coef` holds ∂var / n.
        for ((coef, dsigma), s) in sums.coef.iter_mut().zip(&sums.first).zip(sigma) {
            let dvar = half * *dsigma / *s;
            *coef = dvar / nt;
        }
        sums.first.iter_mut().for_each(|v| *v = T::ZERO);
        for c in self.centred.chunks_exact(d) {
            for ((through, c), coef) in sums.first.iter_mut().zip(c).zip(&sums.coef) {
                *through += two * *c * *coef;
            }
        }
        // Both sums become column means.
        for v in sums.first.iter_mut().chain(sums.second.iter_mut()) {
            *v = *v / nt;
        }
        for ((o, gi), c) in out
            .chunks_exact_mut(d)
            .zip(g.chunks_exact(d))
            .zip(self.centred.chunks_exact(d))
        {
            let columns = sigma
                .iter()
                .zip(&sums.second)
                .zip(&sums.first)
                .zip(&sums.coef);
            for (((o, g), c), (((s, direct), through), coef)) in
                o.iter_mut().zip(gi).zip(c).zip(columns)
            {
                *o = if *s == T::ZERO {
                    T::ZERO
                } else {
                    (*g / *s - *direct) + (two * *c * *coef - *through)
                };
            }
        }
    }
}

/// Per-column accumulators of [`Standardised::backward`].
#[derive(Default)]
struct ColumnSums<T> {
    first: Vec<T>,
    second: Vec<T>,
    coef: Vec<T>,
}

impl<T: Float> ColumnSums<T> {
    fn reset(&mut self, d: usize) {
        for v in [&mut self.first, &mut self.second, &mut self.coef] {
            v.clear();
            v.resize(d, T::ZERO);
        }
    }
}

/// Reusable memory of a call.
#[derive(Default)]
struct Scratch<T> {
    a: Standardised<T>,
    b: Standardised<T>,
    /// The cross-correlation, then its gradient.
    c: Vec<T>,
    ga: Vec<T>,
    gb: Vec<T>,
    sums: ColumnSums<T>,
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
        workspace: &mut Workspace,
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
        let Scratch {
            a: sa,
            b: sb,
            c,
            ga,
            gb,
            sums,
        } = workspace.get::<Scratch<T>>();
        sa.fill(a.as_slice(), n, d);
        sb.fill(b.as_slice(), n, d);
        let nt = T::from_f64(n as f64);
        c.clear();
        c.resize(d * d, T::ZERO);
        gemm_rows(d, n, d, T::ONE, (&sa.z, 1, d), (&sb.z, d, 1), T::ZERO, c);
        c.iter_mut().for_each(|v| *v = *v / nt);
        let (mut on, mut off) = (T::ZERO, T::ZERO);
        for (k, row) in c.chunks_exact(d).enumerate() {
            for (l, &v) in row.iter().enumerate() {
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
        for (k, row) in c.chunks_exact_mut(d).enumerate() {
            for (l, v) in row.iter_mut().enumerate() {
                *v = if k == l {
                    -u * two * (T::ONE - *v)
                } else {
                    u * two * lambda * *v
                };
            }
        }
        let inv_n = T::ONE / nt;
        for (g, other, c_strides) in [(&mut *ga, &sb.z, (1, d)), (&mut *gb, &sa.z, (d, 1))] {
            g.clear();
            g.resize(n * d, T::ZERO);
            gemm_rows(
                n,
                d,
                d,
                inv_n,
                (other, d, 1),
                (c, c_strides.0, c_strides.1),
                T::ZERO,
                g,
            );
        }
        out.grad_queries.resize(n * d, T::ZERO);
        out.grad_keys.resize(n * d, T::ZERO);
        sa.backward(ga, n, d, sums, &mut out.grad_queries);
        sb.backward(gb, n, d, sums, &mut out.grad_keys);
        Ok(())
    }
}

view_metric_loss!(Barlow, BarlowConfig);
