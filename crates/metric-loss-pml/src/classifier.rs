//! The computation ArcFace, CosFace and SubCenterArcFace share (PML's
//! `LargeMarginSoftmaxLoss` family): cosines of the rows against the weight matrix's
//! columns, the best sub-center of each class, the loss's margin on the target cosine, the
//! scale, and a max-shifted softmax cross-entropy per row. Each loss supplies its margin
//! ([`TargetMargin`]).

use std::convert::Infallible;
use std::fmt::Debug;

use metric_loss_core::{Float, LossError, LossInput, LossOutput, ParameterShape};
use metric_loss_distances::lanes::{exp_shifted, exp_shifted_sum, max, DenseFloat};
use metric_loss_distances::parallel::for_row_chunks_with_scratch;
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
        let (scale, margin) = (T::from_f64(self.scale), self.margin);
        let matrix = &s.matrix[..];
        // Rows split over threads, each the same arithmetic on any split.
        s.logits.resize(n * classes, T::ZERO);
        s.row_stats.resize(n, [T::ZERO; 3]);
        let Ok(()) = for_row_chunks_with_scratch(
            &mut s.row_stats,
            &mut s.logits,
            classes,
            &mut s.exps,
            // The AVX2 copy inside each thread's closure: the pool calls it as a function of
            // its own, outside the caller's copy.
            |r0, stats, exps, logits| {
                with_avx2(
                    #[inline(always)]
                    || {
                        for (i, (stat, logits)) in
                            (r0..).zip(stats.iter_mut().zip(logits.chunks_exact_mut(classes)))
                        {
                            let row = &matrix[i * cols..(i + 1) * cols];
                            for (z, group) in logits.iter_mut().zip(row.chunks_exact(k)) {
                                *z = group[best_sub_center(group)];
                            }
                            let target = labels[i] as usize;
                            let cosine = logits[target];
                            let (modified, slope) = margin.modify(cosine);
                            // PML adds the difference to the cosine rather than replacing it: the
                            // same rounding.
                            logits[target] = cosine + (modified - cosine);
                            logits.iter_mut().for_each(|z| *z *= scale);
                            let max = max(logits);
                            // The exponentials in a copy: the logits stay for the gradient.
                            exps.clear();
                            exps.extend_from_slice(logits);
                            let log_norm = exp_shifted_sum(exps, max).ln();
                            *stat = [-((logits[target] - max) - log_norm), slope, max + log_norm];
                        }
                    },
                );
                Ok::<(), Infallible>(())
            },
        );
        let weights = input.sample_weight();
        s.values.clear();
        s.values
            .extend(s.row_stats.iter().map(|[value, ..]| *value));
        s.weights.clear();
        s.weights.extend((0..n).map(|i| weights.get(i)));
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
        // Every entry of every row is written below.
        s.grad.resize(n * cols, T::ZERO);
        let (logits, stats, scales) = (&s.logits[..], &s.row_stats[..], &s.scales[..]);
        let mut rows = vec![(); n];
        let Ok(()) = for_row_chunks_with_scratch(
            &mut rows,
            &mut s.grad,
            cols,
            &mut s.exps,
            |r0, rows, exps, grad| {
                with_avx2(
                    #[inline(always)]
                    || {
                        for (i, grad) in (r0..r0 + rows.len()).zip(grad.chunks_exact_mut(cols)) {
                            let g = scales[i];
                            // k = 1 writes every entry below; sub-centers only the picked ones.
                            if g == T::ZERO || k > 1 {
                                grad.fill(T::ZERO);
                            }
                            if g == T::ZERO {
                                continue;
                            }
                            let [_, slope, log_norm] = stats[i];
                            let target = labels[i] as usize;
                            // The softmax row, then scattered to the picked sub-centers.
                            exps.clear();
                            exps.extend_from_slice(&logits[i * classes..(i + 1) * classes]);
                            exp_shifted(exps, log_norm);
                            let gs = g * scale;
                            let row = &matrix[i * cols..(i + 1) * cols];
                            let pick = |c: usize| c * k + best_sub_center(&row[c * k..(c + 1) * k]);
                            if k == 1 {
                                grad.iter_mut()
                                    .zip(exps.iter())
                                    .for_each(|(o, p)| *o = gs * *p);
                            } else {
                                for (c, p) in exps.iter().enumerate() {
                                    grad[pick(c)] = gs * *p;
                                }
                            }
                            grad[pick(target)] = (gs * (exps[target] - T::ONE)) * slope;
                        }
                    },
                );
                Ok::<(), Infallible>(())
            },
        );
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

/// The index of a class's best sub-center: its largest cosine, the first on a tie
/// (torch's `max`).
#[inline(always)]
fn best_sub_center<T: Float>(group: &[T]) -> usize {
    let (mut best, mut at) = (group[0], 0);
    for (j, v) in group.iter().enumerate().skip(1) {
        if *v > best {
            (best, at) = (*v, j);
        }
    }
    at
}

/// Writes the transpose of `a` (`rows x cols`, row-major) into `out` (`cols x rows`).
fn transpose<T: Float>(a: &[T], rows: usize, cols: usize, out: &mut Vec<T>) {
    out.resize(rows * cols, T::ZERO);
    for (r, row) in a.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (c, v) in row.iter().enumerate() {
            out[c * rows + r] = *v;
        }
    }
}
