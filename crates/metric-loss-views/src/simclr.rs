//! `SimCLRLoss`: SimCLR's NT-Xent loss (Chen et al., 2020), as TF Similarity 0.17.1
//! computes it.

use metric_loss_core::params::finite_nonzero;
use metric_loss_core::{config_setters, Float, LossError, LossInput, LossOutput, Reduction};

use crate::common::{
    a_bt, add_product, keras_reduce, same_rows, two_views, view_metric_loss, Normalized,
};

/// What TF subtracts from a row's self-similarity so that it never wins the softmax.
const SELF_MASK: f64 = 1e9;

/// `SimCLRLoss`'s arguments with TF Similarity 0.17.1's names and defaults, not yet
/// validated.
///
/// | key | default | meaning |
/// | --- | --- | --- |
/// | `temperature` | 0.05 | T, finite and non-zero (negative values are accepted, as in TF) |
/// | `reduction` | `"auto"` | Keras's reduction name |
/// | `name` | `None` | |
///
/// ```
/// use metric_loss_views::SimCLRLossConfig;
/// let loss = SimCLRLossConfig::default().temperature(0.5).build()?;
/// assert_eq!(loss.config().temperature, 0.5);
/// assert!(SimCLRLossConfig::default().temperature(0.0).build().is_err());
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimCLRLossConfig {
    /// Keras's reduction name (default `"auto"`).
    pub reduction: String,
    /// The loss's name (default `None`).
    /// Not written when `None` (TOML has no null); a config without it reads as the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The temperature T (default 0.05).
    pub temperature: f64,
}

impl Default for SimCLRLossConfig {
    fn default() -> Self {
        Self {
            reduction: "auto".into(),
            name: None,
            temperature: 0.05,
        }
    }
}

impl SimCLRLossConfig {
    config_setters! {
        /// Sets `reduction`.
        reduction: impl Into<String>,
        /// Sets `name`.
        name: Option<String>,
        /// Sets `temperature`.
        temperature: f64,
    }

    /// Validates the arguments.
    ///
    /// # Errors
    /// [`LossError::UnknownReduction`]; [`LossError::InvalidParameter`] for T = 0 (TF
    /// divides by it: NaN everywhere) or a non-finite T.
    pub fn build(&self) -> Result<SimCLRLoss, LossError> {
        let temperature = finite_nonzero(
            "temperature",
            self.temperature,
            "a finite, non-zero number (the similarities are divided by it)",
        )?;
        Ok(SimCLRLoss {
            name: self.name.clone(),
            temperature,
            reduction: self.reduction.parse()?,
        })
    }
}

/// TF Similarity's `SimCLRLoss`: NT-Xent over two views, summed over both directions.
///
/// # Input
/// [`LossInput::views`]: two n×d views, row i of one paired with row i of the other; n ≥ 1.
///
/// # Formula
/// Both views' rows are L2-normalised (TF's epsilon: rows of norm below 10⁻⁶ are multiplied
/// by 10⁶, not brought to unit length). For the ordered pair of views (h, g), row i's 2n
/// logits are hᵢ·gⱼ/T and hᵢ·hⱼ/T − 10⁹[i = j], its label column i, and cᵢ(h, g) the
/// softmax cross entropy. Then ℓᵢ = cᵢ(â, b̂) + cᵢ(b̂, â), and the default reduction is the
/// mean over n: twice the paper's mean over 2n anchors.
///
/// # Gradient
/// With Pᵢ the softmax of row i's logits and Δᵢ = γᵢ(Pᵢ − onehot(i)) (γᵢ the upstream of
/// ℓᵢ), split into its cross part Δᶜ and its self part Δˢ: ∂/∂h = (Δᶜ g + (Δˢ + Δˢᵀ) h)/T
/// and ∂/∂g = Δᶜᵀ h / T, summed over both directions and taken back through the
/// normalisation, for both views.
///
/// # Differences from TF Similarity 0.17.1
/// - T = 0 is rejected by `build` (TF: NaN everywhere).
/// - An empty batch is [`LossError::Unsupported`] (TF raises too).
/// - float64 works (TF: its float32 masks make it fail).
///
/// ```
/// use metric_loss_core::{Embeddings, LossInput, MetricLossExt};
/// use metric_loss_views::SimCLRLoss;
///
/// let a = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0];
/// let b = [0.8f32, 0.6, 0.0, 1.0, -0.6, -0.8];
/// let input = LossInput::views(
///     Embeddings::from_row_major(&a, 3, 2)?,
///     Embeddings::from_row_major(&b, 3, 2)?,
/// );
/// let out = SimCLRLoss::default().compute(&input)?;
/// assert!((out.loss - 20.256506).abs() < 1e-3);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SimCLRLoss {
    name: Option<String>,
    temperature: f64,
    reduction: Reduction,
}

impl Default for SimCLRLoss {
    fn default() -> Self {
        SimCLRLossConfig::default()
            .build()
            .expect("the defaults are valid")
    }
}

/// One direction's cross entropies and the softmax of each row's two logit blocks.
struct Direction<T> {
    loss: Vec<T>,
    cross: Vec<T>,
    own: Vec<T>,
}

/// Softmax cross entropy of each row of `[cross | own]` (both n×n) against column i of the
/// cross block, in TF's order: ln Σ e^{l − max} − (lᵢ − max).
fn direction<T: Float>(mut cross: Vec<T>, mut own: Vec<T>, n: usize) -> Direction<T> {
    let mut loss = vec![T::ZERO; n];
    for i in 0..n {
        let (c, o) = (&mut cross[i * n..(i + 1) * n], &mut own[i * n..(i + 1) * n]);
        let top = c
            .iter()
            .chain(o.iter())
            .fold(T::from_f64(f64::NEG_INFINITY), |a, v| a.max(*v));
        let label = c[i] - top;
        let mut sum = T::ZERO;
        for v in c.iter_mut().chain(o.iter_mut()) {
            *v = (*v - top).exp();
            sum += *v;
        }
        loss[i] = sum.ln() - label;
        c.iter_mut().chain(o.iter_mut()).for_each(|v| *v = *v / sum);
    }
    Direction { loss, cross, own }
}

impl SimCLRLoss {
    /// The arguments, as [`SimCLRLossConfig`].
    pub fn config(&self) -> SimCLRLossConfig {
        SimCLRLossConfig {
            reduction: self.reduction.name().into(),
            name: self.name.clone(),
            temperature: self.temperature,
        }
    }

    fn run<T: Float>(
        &self,
        input: &LossInput<'_, T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let (a, b, d) = two_views(input)?;
        let n = same_rows(a, b)?;
        if n == 0 {
            return Err(LossError::Unsupported {
                loss: "SimCLRLoss".into(),
                message: "an empty batch has no positive pair (TF Similarity raises too); give at least one row per view".into(),
            });
        }
        let weights = input.sample_weight();
        weights.check(n)?;
        let (na, nb) = (Normalized::new(a), Normalized::new(b));
        let t = T::from_f64(self.temperature);
        // Divided by T, not multiplied by 1/T, as TF rounds.
        let logits = |x: &[T], y: &[T], own: bool| {
            let mut m = a_bt(x, n, y, n, d, T::ONE);
            m.iter_mut().for_each(|v| *v = *v / t);
            if own {
                let mask = T::from_f64(SELF_MASK);
                (0..n).for_each(|i| m[i * n + i] -= mask);
            }
            m
        };
        let ab = logits(&na.rows, &nb.rows, false);
        let ba = transpose(&ab, n);
        let forward = direction(ab, logits(&na.rows, &na.rows, true), n);
        let backward = direction(ba, logits(&nb.rows, &nb.rows, true), n);
        out.reset(n, n, d, input.wants_gradient());
        for (o, (f, g)) in out
            .per_example
            .iter_mut()
            .zip(forward.loss.iter().zip(&backward.loss))
        {
            *o = *f + *g;
        }
        let (loss, red) = keras_reduce(&out.per_example, 1, &weights, self.reduction);
        out.loss = loss;
        if !input.wants_gradient() {
            return Ok(());
        }
        let gamma: Vec<T> = (0..n).map(|i| red * weights.get(i)).collect();
        // X = Δ¹ᶜ + (Δ²ᶜ)ᵀ: ∂/∂(âᵢ·b̂ⱼ) times T, from both directions.
        let mut x = vec![T::ZERO; n * n];
        for i in 0..n {
            for j in 0..n {
                let own = if i == j { T::ONE } else { T::ZERO };
                x[i * n + j] = gamma[i] * (forward.cross[i * n + j] - own)
                    + gamma[j] * (backward.cross[j * n + i] - own);
            }
        }
        let symmetric = |p: &[T]| {
            let mut s = vec![T::ZERO; n * n];
            for i in 0..n {
                for j in 0..n {
                    s[i * n + j] = gamma[i] * p[i * n + j] + gamma[j] * p[j * n + i];
                }
            }
            s
        };
        let inv_t = T::ONE / t;
        let mut ga = vec![T::ZERO; n * d];
        add_product(&mut ga, &x, false, n, n, &nb.rows, d, inv_t);
        add_product(
            &mut ga,
            &symmetric(&forward.own),
            false,
            n,
            n,
            &na.rows,
            d,
            inv_t,
        );
        let mut gb = vec![T::ZERO; n * d];
        add_product(&mut gb, &x, true, n, n, &na.rows, d, inv_t);
        add_product(
            &mut gb,
            &symmetric(&backward.own),
            false,
            n,
            n,
            &nb.rows,
            d,
            inv_t,
        );
        na.backward(a, &ga, &mut out.grad_queries);
        nb.backward(b, &gb, &mut out.grad_keys);
        Ok(())
    }
}

fn transpose<T: Float>(m: &[T], n: usize) -> Vec<T> {
    let mut t = vec![T::ZERO; n * n];
    for i in 0..n {
        for j in 0..n {
            t[j * n + i] = m[i * n + j];
        }
    }
    t
}

view_metric_loss!(SimCLRLoss, SimCLRLossConfig);
