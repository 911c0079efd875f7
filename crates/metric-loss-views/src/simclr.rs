//! `SimCLRLoss`: SimCLR's NT-Xent loss (Chen et al., 2020), as TF Similarity 0.17.1
//! computes it.

use metric_loss_core::params::finite_nonzero;
use metric_loss_core::{
    config_setters, Distance, Embeddings, LossError, LossInput, LossOutput, Reduction,
    SampleWeight, Workspace,
};
use metric_loss_distances::add_transpose;
use metric_loss_distances::lanes::{exp_shifted_sum, max, DenseFloat};
use metric_loss_distances::parallel::{for_row_chunks, gemm_rows};
use metric_loss_distances::wide::with_avx2;
use metric_loss_distances::DistanceKind;

use crate::common::{keras_reduce, same_rows, two_views, view_metric_loss, Normalized};
use crate::simclr_tiles::{Tiles, KEY_BLOCK, ROW_BLOCK};

/// Batches with more rows per view than this run in tiles (memory linear in n instead of
/// about 7n² logits: 117 MB in f32 at this size, 30 GB at 65,536).
pub(crate) const TILED_ABOVE: usize = 2048;

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

impl SimCLRLoss {
    /// The arguments, as [`SimCLRLossConfig`].
    pub fn config(&self) -> SimCLRLossConfig {
        SimCLRLossConfig {
            reduction: self.reduction.name().into(),
            name: self.name.clone(),
            temperature: self.temperature,
        }
    }

    fn run<T: DenseFloat>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let rows = input.queries().embeddings().rows();
        let tiles = (rows > TILED_ABOVE).then_some((ROW_BLOCK, KEY_BLOCK));
        self.run_on(input, workspace, out, tiles)
    }

    /// The loss, in tiles of `tiles` = (rows, keys) when given, else on the whole matrix.
    pub(crate) fn run_on<T: DenseFloat>(
        &self,
        input: &LossInput<'_, T>,
        workspace: &mut Workspace,
        out: &mut LossOutput<T>,
        tiles: Option<(usize, usize)>,
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
        let scratch = workspace.get::<Scratch<T>>();
        scratch.a.fill(a);
        scratch.b.fill(b);
        let gradient = input.wants_gradient();
        out.reset(n, n, d, gradient);
        let t = T::from_f64(self.temperature);
        let red = T::from_f64(self.reduction.example_scale(n));
        let Scratch {
            a: na,
            b: nb,
            dense,
        } = scratch;
        if tiles.is_none() {
            dense.forward(na, nb, n, d, t, gradient.then_some((red, &weights)))?;
            for (i, o) in out.per_example.iter_mut().enumerate() {
                *o = dense.loss[i] + dense.loss[n + i];
            }
            let (loss, _) = keras_reduce(&out.per_example, 1, &weights, self.reduction);
            out.loss = loss;
            if gradient {
                dense.gradient(n, d, t);
                na.backward(a, &dense.grads, d, &mut out.grad_queries);
                nb.backward(b, &dense.grads[n * d..], d, &mut out.grad_keys);
            }
            return Ok(());
        }
        let tiles = Tiles {
            a: &na.rows,
            b: &nb.rows,
            n,
            d,
            t,
            blocks: tiles.unwrap_or((n, n)),
        };
        let mut lse = [vec![T::ZERO; n], vec![T::ZERO; n]];
        tiles.statistics(T::from_f64(SELF_MASK), &mut out.per_example, &mut lse);
        let (loss, red) = keras_reduce(&out.per_example, 1, &weights, self.reduction);
        out.loss = loss;
        if !gradient {
            return Ok(());
        }
        let gamma: Vec<T> = (0..n).map(|i| red * weights.get(i)).collect();
        // Row i is [∂/∂âᵢ | ∂/∂b̂ᵢ].
        let mut grads = vec![T::ZERO; n * 2 * d];
        tiles.gradient(T::from_f64(SELF_MASK), &gamma, &lse, &mut grads);
        na.backward(a, &grads, 2 * d, &mut out.grad_queries);
        nb.backward(b, &grads[d..], 2 * d, &mut out.grad_keys);
        Ok(())
    }
}

/// The call's reusable memory: both normalised views and the dense path's matrices.
#[derive(Default)]
struct Scratch<T> {
    a: Normalized<T>,
    b: Normalized<T>,
    dense: Dense<T>,
}

/// The dense path over Z = [â; b̂] (2n×d): row r of Z Zᵀ / T, with its self logit masked,
/// is anchor r's whole logit row in one direction (rows of â against [â | b̂], rows of b̂
/// against [â | b̂]), its label the other view's copy of r. The gradient is then
/// (Δ + Δᵀ) Z / T with Δ the rows' upstream times (softmax − one-hot): one product.
#[derive(Debug, Default)]
struct Dense<T> {
    /// Z, row-major 2n×d.
    z: Vec<T>,
    /// The logits, then the softmaxes, then Δ + Δᵀ (2n×2n).
    logits: Vec<T>,
    /// Each row's cross entropy.
    loss: Vec<T>,
    /// ∂/∂Z (2n×d).
    grads: Vec<T>,
    /// The Gram product's scratch.
    stats: Vec<T>,
}

impl<T: DenseFloat> Dense<T> {
    /// Each row's cross entropy into `loss`; with `upstream` = (the reduction's factor,
    /// the weights), Δ into `logits`.
    fn forward(
        &mut self,
        a: &Normalized<T>,
        b: &Normalized<T>,
        n: usize,
        d: usize,
        t: T,
        upstream: Option<(T, &SampleWeight<'_, T>)>,
    ) -> Result<(), LossError> {
        let rows = 2 * n;
        self.z.clear();
        self.z.extend_from_slice(&a.rows);
        self.z.extend_from_slice(&b.rows);
        // Every entry is overwritten: no clearing.
        self.logits.resize(rows * rows, T::ZERO);
        // Z Zᵀ is symmetric: the inner product's Gram matrix computes one triangle.
        let z = Embeddings::from_row_major(&self.z, rows, d)?;
        DistanceKind::InnerProduct.matrix(z, z, true, &mut self.stats, &mut self.logits)?;
        self.loss.resize(rows, T::ZERO);
        let mask = T::from_f64(SELF_MASK);
        let mut unused = vec![(); rows];
        let _ = for_row_chunks(
            &mut self.loss,
            &mut unused,
            &mut self.logits,
            rows,
            |first, loss, _, chunk| {
                with_avx2(
                    #[inline(always)]
                    || {
                        for (k, row) in chunk.chunks_exact_mut(rows).enumerate() {
                            let r = first + k;
                            // Divided by T, not multiplied by 1/T, as TF rounds.
                            row.iter_mut().for_each(|v| *v = *v / t);
                            row[r] -= mask;
                            let label = (r + n) % rows;
                            let top = max(row);
                            let shifted_label = row[label] - top;
                            let sum = exp_shifted_sum(row, top);
                            loss[k] = sum.ln() - shifted_label;
                            if let Some((red, weights)) = upstream {
                                let gamma = red * weights.get(r % n);
                                let p_label = row[label] / sum;
                                row.iter_mut().for_each(|v| *v = gamma * (*v / sum));
                                row[label] = gamma * (p_label - T::ONE);
                            }
                        }
                    },
                );
                Ok::<(), ()>(())
            },
        );
        Ok(())
    }

    /// ∂/∂Z into `grads` from Δ in `logits` (which becomes Δ + Δᵀ).
    fn gradient(&mut self, n: usize, d: usize, t: T) {
        let rows = 2 * n;
        add_transpose(&mut self.logits, rows);
        self.grads.resize(rows * d, T::ZERO);
        gemm_rows(
            rows,
            rows,
            d,
            T::ONE / t,
            (&self.logits, rows, 1),
            (&self.z, d, 1),
            T::ZERO,
            &mut self.grads,
        );
    }
}

view_metric_loss!(SimCLRLoss, SimCLRLossConfig);

#[cfg(test)]
mod tests {
    use metric_loss_core::{Embeddings, Float, LossInput, LossOutput, SampleWeight};
    use metric_loss_testkit::values;

    use super::*;

    /// Both paths on the same input: (dense, tiled in blocks of `blocks`).
    fn both<T: DenseFloat>(
        loss: &SimCLRLoss,
        n: usize,
        d: usize,
        weights: Option<&[T]>,
        blocks: (usize, usize),
    ) -> (LossOutput<T>, LossOutput<T>) {
        let cast = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect::<Vec<T>>();
        let (a, b) = (cast(values(n * d, 3)), cast(values(n * d, 4)));
        let mut input = LossInput::views(
            Embeddings::from_row_major(&a, n, d).unwrap(),
            Embeddings::from_row_major(&b, n, d).unwrap(),
        );
        if let Some(w) = weights {
            input = input.with_sample_weight(SampleWeight::PerExample(w));
        }
        let (mut dense, mut tiled) = (LossOutput::new(), LossOutput::new());
        loss.run_on(&input, &mut Workspace::new(), &mut dense, None)
            .unwrap();
        loss.run_on(&input, &mut Workspace::new(), &mut tiled, Some(blocks))
            .unwrap();
        (dense, tiled)
    }

    fn assert_close<T: Float>(what: &str, dense: &[T], tiled: &[T], rel: f64) {
        assert_eq!(dense.len(), tiled.len(), "{what}");
        let scale = dense.iter().fold(0.0f64, |m, v| m.max(v.to_f64().abs()));
        for (k, (x, y)) in dense.iter().zip(tiled).enumerate() {
            let (x, y) = (x.to_f64(), y.to_f64());
            assert!(
                (x - y).abs() <= rel * scale.max(f64::MIN_POSITIVE),
                "{what}[{k}]: dense {x}, tiled {y}"
            );
        }
    }

    fn agree<T: DenseFloat>(
        loss: &SimCLRLoss,
        n: usize,
        d: usize,
        blocks: (usize, usize),
        rel: f64,
    ) {
        let w: Vec<T> = (0..n).map(|i| T::from_f64((i % 4) as f64 * 0.5)).collect();
        for weights in [None, Some(w.as_slice())] {
            let (dense, tiled) = both::<T>(loss, n, d, weights, blocks);
            assert_close("loss", &[dense.loss], &[tiled.loss], rel);
            assert_close("per_example", &dense.per_example, &tiled.per_example, rel);
            assert_close("grad_a", &dense.grad_queries, &tiled.grad_queries, rel);
            assert_close("grad_b", &dense.grad_keys, &tiled.grad_keys, rel);
        }
    }

    #[test]
    fn tiles_agree_with_the_whole_matrices() {
        // Blocks that divide the batch, that do not, of one row, and larger than it.
        for blocks in [(5, 7), (1, 1), (23, 23), (8, 64), (64, 3)] {
            for t in [0.05, 0.5, -0.3] {
                let loss = SimCLRLossConfig::default().temperature(t).build().unwrap();
                agree::<f64>(&loss, 23, 6, blocks, 1e-12);
                agree::<f32>(&loss, 23, 6, blocks, 2e-5);
            }
        }
    }

    /// Every number of an output (loss, per-example values, both gradients) as bits; an f32
    /// widens to f64 exactly, so one helper serves both precisions.
    fn output_bits<T: Float>(o: &LossOutput<T>) -> Vec<u64> {
        let all = [&[o.loss][..], &o.per_example, &o.grad_queries, &o.grad_keys];
        all.iter()
            .flat_map(|v| v.iter().map(|x| x.to_f64().to_bits()))
            .collect()
    }

    /// The tiles' AVX2 copy gives the baseline copy's bits (vacuous without AVX2). The
    /// switch is process-wide; the other tests here compare within a tolerance, which both
    /// copies meet.
    #[test]
    fn the_tiles_avx2_copy_gives_the_baseline_bits() {
        use metric_loss_distances::wide::set_avx2_enabled;
        let w: Vec<f32> = (0..41).map(|i| (i % 3) as f32 * 0.5).collect();
        for weights in [None, Some(w.as_slice())] {
            set_avx2_enabled(false);
            let (_, baseline) = both::<f32>(&SimCLRLoss::default(), 41, 6, weights, (9, 13));
            set_avx2_enabled(true);
            let (_, wide) = both::<f32>(&SimCLRLoss::default(), 41, 6, weights, (9, 13));
            assert_eq!(output_bits(&wide), output_bits(&baseline));
        }
    }

    /// The tiles give the same bits on one, two and three threads (400 rows: three chunks
    /// of at least the minimum rows per thread). The thread cap is
    /// process-wide; the other tests here hold for any thread count.
    #[test]
    fn the_tiles_give_the_same_bits_on_every_thread_count() {
        use metric_loss_distances::parallel::set_max_threads;
        let runs: Vec<Vec<u64>> = [1, 2, 3]
            .into_iter()
            .map(|threads| {
                set_max_threads(Some(threads));
                let (_, tiled) = both::<f64>(&SimCLRLoss::default(), 400, 4, None, (64, 100));
                output_bits(&tiled)
            })
            .collect();
        set_max_threads(None);
        assert_eq!(runs[1], runs[0], "2 threads");
        assert_eq!(runs[2], runs[0], "3 threads");
    }

    #[test]
    fn one_row_agrees() {
        let loss = SimCLRLoss::default();
        agree::<f64>(&loss, 1, 3, (4, 4), 1e-12);
        agree::<f32>(&loss, 1, 3, (1, 1), 2e-5);
    }
}
