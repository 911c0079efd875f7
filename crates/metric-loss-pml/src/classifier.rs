//! The computation ArcFace, CosFace and SubCenterArcFace share (PML's
//! `LargeMarginSoftmaxLoss` family): cosines of the rows against the weight matrix's
//! columns, the best sub-center of each class, the loss's margin on the target cosine, the
//! scale, and a max-shifted softmax cross-entropy per row. Each loss supplies its margin
//! ([`TargetMargin`]).

use std::fmt::Debug;

use metric_loss_core::{Float, LossError, LossInput, LossOutput, ParameterShape};
use metric_loss_distances::lanes::{exp_shifted_sum, max, DenseFloat};
use metric_loss_distances::wide::with_avx2;
use metric_loss_triplet::DenseParts;

use crate::learnable::{distance_vjp, distances, reduce_elements, Learnable, Scratch, Sizes};
use crate::CosineSimilarity;

/// What a classifier loss does to the cosine of a row with its own class.
pub(crate) trait TargetMargin: Debug + Clone + Copy + PartialEq + Send + Sync {
    /// The class name, for errors.
    const CLASS: &'static str;

    /// The modified target cosine and its derivative with respect to the cosine.
    fn modify<T: Float>(&self, cosine: T) -> (T, T);
}

/// A classifier loss: `num_classes · sub_centers` weight columns of width
/// `embedding_size`, the margin on the target, and the scale of every logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Classifier<M> {
    pub(crate) margin: M,
    pub(crate) scale: f64,
    pub(crate) sizes: Sizes,
    pub(crate) sub_centers: usize,
}

impl<M: TargetMargin> Learnable for Classifier<M> {
    const CLASS: &'static str = M::CLASS;

    fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// PML's `W`: `embedding_size x (num_classes · sub_centers)`, one column per class (or
    /// sub-center: column c·K + k is sub-center k of class c).
    fn shape(&self) -> ParameterShape {
        ParameterShape {
            name: "W",
            rows: self.sizes.embedding_size,
            cols: self.sizes.num_classes.saturating_mul(self.sub_centers),
        }
    }

    /// PML's `torch.nn.init.normal_`: a standard normal.
    fn init_std(&self) -> f64 {
        1.0
    }

    /// PML asserts that the distance is a `CosineSimilarity` (any power).
    fn check_parts(&self, parts: &DenseParts) -> Result<(), LossError> {
        let distance = parts.distance_part();
        if distance.as_any().is::<CosineSimilarity>() {
            Ok(())
        } else {
            Err(LossError::UnsupportedDistance {
                loss: M::CLASS,
                given: <f64 as Float>::distance(distance).name().to_owned(),
                expected: "CosineSimilarity",
            })
        }
    }

    fn run<T: DenseFloat>(
        &self,
        parts: &DenseParts,
        input: &LossInput<'_, T>,
        s: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        with_avx2(
            #[inline(always)]
            || self.rows(parts, input, s, out),
        )
    }
}

impl<M: TargetMargin> Classifier<M> {
    /// [`Learnable::run`]'s body, inlined into the AVX2 copy of the rows.
    #[inline(always)]
    fn rows<T: DenseFloat>(
        &self,
        parts: &DenseParts,
        input: &LossInput<'_, T>,
        s: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError> {
        let distance = T::distance(parts.distance_part());
        let (x, labels) = (input.queries().embeddings(), input.queries().labels());
        let (n, dims) = (x.rows(), x.cols());
        let (classes, k) = (self.sizes.num_classes, self.sub_centers);
        let cols = classes * k;
        // The columns of W are the keys: transpose it to one row per column.
        transpose(&s.params, dims, cols, &mut s.keys);
        distances(distance, x, &s.keys, cols, &mut s.matrix, &mut s.stats)?;
        let scale = T::from_f64(self.scale);
        let weights = input.sample_weight();
        s.logits.clear();
        s.picks.clear();
        s.values.clear();
        s.weights.clear();
        s.aux.clear();
        for (i, row) in s.matrix.chunks_exact(cols).enumerate() {
            // The best sub-center of each class; a tie keeps the first (torch's max).
            for (c, group) in row.chunks_exact(k).enumerate() {
                let (mut best, mut at) = (group[0], 0);
                for (j, v) in group.iter().enumerate().skip(1) {
                    if *v > best {
                        (best, at) = (*v, j);
                    }
                }
                s.picks.push(c * k + at);
                s.logits.push(best);
            }
            let logits = &mut s.logits[i * classes..];
            let target = labels[i] as usize;
            let cosine = logits[target];
            let (modified, slope) = self.margin.modify(cosine);
            // PML adds the difference to the cosine rather than replacing it: the same
            // rounding.
            logits[target] = cosine + (modified - cosine);
            let logits = &mut logits[..classes];
            logits.iter_mut().for_each(|z| *z *= scale);
            let max = max(logits);
            // The exponentials in a copy: the logits stay for the target and the gradient.
            s.row.clear();
            s.row.extend_from_slice(logits);
            let log_norm = exp_shifted_sum(&mut s.row, max).ln();
            s.values.push(-((logits[target] - max) - log_norm));
            s.weights.push(weights.get(i));
            s.aux.push([slope, max + log_norm]);
        }
        s.scales.resize(n, T::ZERO);
        out.loss = reduce_elements(parts, &s.values, &s.weights, &mut s.scales);
        for ((o, v), g) in out.per_example.iter_mut().zip(&s.values).zip(&s.scales) {
            if *g != T::ZERO {
                *o = *g * *v;
            }
        }
        if !input.wants_gradient() {
            return Ok(());
        }
        s.grad.clear();
        s.grad.resize(n * cols, T::ZERO);
        for (i, label) in labels.iter().enumerate() {
            let g = s.scales[i];
            if g == T::ZERO {
                continue;
            }
            let [slope, log_norm] = s.aux[i];
            let target = *label as usize;
            // The softmax row, vectorised, then scattered to the picked sub-centers.
            s.row.clear();
            s.row
                .extend_from_slice(&s.logits[i * classes..(i + 1) * classes]);
            exp_shifted_sum(&mut s.row, log_norm);
            let picks = &s.picks[i * classes..(i + 1) * classes];
            for (c, (p, pick)) in s.row.iter().zip(picks).enumerate() {
                let mut d = g * scale * if c == target { *p - T::ONE } else { *p };
                if c == target {
                    d *= slope;
                }
                s.grad[i * cols + pick] = d;
            }
        }
        distance_vjp(
            distance,
            x,
            &s.keys,
            &s.matrix,
            &mut s.grad,
            &mut out.grad_queries,
            &mut s.key_grad,
            &mut s.stats,
        );
        transpose(&s.key_grad, cols, dims, &mut out.grad_parameters);
        Ok(())
    }
}

/// Writes the transpose of `a` (`rows x cols`, row-major) into `out` (`cols x rows`).
fn transpose<T: Float>(a: &[T], rows: usize, cols: usize, out: &mut Vec<T>) {
    out.clear();
    out.extend((0..cols).flat_map(|c| (0..rows).map(move |r| a[r * cols + c])));
}
