//! SimCLR's loss and gradient in tiles: memory linear in the batch size.
//!
//! The dense path holds four n×n logit matrices; at n = 65,536 that is 64 GiB in f32. Here
//! the logits are recomputed block by block and never stored whole:
//!
//! 1. statistics: for each block of rows, the logits against every block of keys, folded
//!    into each row's running maximum and sum of exponentials (an online log-sum-exp), for
//!    both directions (rows of â against [b̂ | â], rows of b̂ against [â | b̂]);
//! 2. gradient: the same tiles again, each logit turned into its softmax weight with the
//!    row's final log-sum-exp and multiplied straight into the rows' gradient.
//!
//! Every tile is written by the thread that owns its rows, so a row's numbers do not depend
//! on the thread count. The gradient of the block (I, J) is gathered from I's side only:
//! the symmetric terms that the dense path adds with a transpose are read from the same
//! tile, using âᵢ·âⱼ = âⱼ·âᵢ (and likewise for ab against ba).

use metric_loss_distances::lanes::{exp_shifted_sum, max, DenseFloat};
use metric_loss_distances::parallel::{block_bounds, for_row_chunks, for_row_ranges, threads_for};
use metric_loss_distances::wide::with_avx2;

/// Rows of one view per block (the left operand of a tile).
pub(crate) const ROW_BLOCK: usize = 256;

/// Keys per block (the right operand of a tile).
pub(crate) const KEY_BLOCK: usize = 1024;

/// Each row's log-sum-exp in both directions, one slice per direction so that a tile row
/// reads its keys' values contiguously: `[0][i]` is ln Σ e^{logit} over row i of
/// [â b̂ᵀ | â âᵀ] / T (the self logit masked), `[1][i]` the same for row i of [b̂ âᵀ | b̂ b̂ᵀ] / T.
pub(crate) type LogSumExps<T> = [Vec<T>; 2];

/// The normalised views, the temperature and the tile shape a tiled call shares.
pub(crate) struct Tiles<'a, T> {
    /// â, row-major n×d.
    pub(crate) a: &'a [T],
    /// b̂, row-major n×d.
    pub(crate) b: &'a [T],
    /// Rows of each view.
    pub(crate) n: usize,
    /// Columns.
    pub(crate) d: usize,
    /// The temperature T.
    pub(crate) t: T,
    /// Rows per block and keys per block.
    pub(crate) blocks: (usize, usize),
}

/// A running maximum and sum of exponentials relative to it.
#[derive(Clone, Copy)]
struct Online<T> {
    top: T,
    sum: T,
}

impl<T: DenseFloat> Online<T> {
    fn new() -> Self {
        Self {
            top: T::from_f64(f64::NEG_INFINITY),
            sum: T::ZERO,
        }
    }

    /// Folds `values` in (leaving them as their exponentials relative to the running
    /// maximum).
    #[inline(always)]
    fn add(&mut self, values: &mut [T]) {
        let top = max(values).max(self.top);
        if top > self.top {
            self.sum *= T::exp_ftz(self.top - top);
            self.top = top;
        }
        self.sum += exp_shifted_sum(values, self.top);
    }

    /// The cross entropy −ln softmax at `label`, in the dense path's order:
    /// ln Σ e^{l − max} − (l_label − max).
    fn cross_entropy(&self, label: T) -> T {
        self.sum.ln() - (label - self.top)
    }

    fn log_sum_exp(&self) -> T {
        self.sum.ln() + self.top
    }
}

impl<T: DenseFloat> Tiles<'_, T> {
    /// `tile = x_I y_Jᵀ / T` for rows `rows` of `x` and keys `keys` of `y`, with the self
    /// logits (global row = global key) lowered by `mask`.
    #[inline(always)]
    fn logits(
        &self,
        tile: &mut [T],
        (x, rows): (&[T], std::ops::Range<usize>),
        (y, keys): (&[T], std::ops::Range<usize>),
        mask: Option<T>,
    ) {
        let (d, width) = (self.d, keys.len());
        let tile = &mut tile[..rows.len() * width];
        T::gemm(
            rows.len(),
            d,
            width,
            T::ONE,
            (&x[rows.start * d..rows.end * d], d, 1),
            (&y[keys.start * d..keys.end * d], 1, d),
            T::ZERO,
            (tile, width, 1),
        );
        // Divided by T, not multiplied by 1/T, as TF rounds.
        tile.iter_mut().for_each(|v| *v = *v / self.t);
        if let Some(mask) = mask {
            for i in rows.clone().filter(|i| keys.contains(i)) {
                tile[(i - rows.start) * width + i - keys.start] -= mask;
            }
        }
    }

    /// Each key block of the batch, in order.
    fn key_blocks(&self) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let step = self.blocks.1.max(1);
        (0..self.n)
            .step_by(step)
            .map(move |s| s..(s + step).min(self.n))
    }

    /// Each row's cross entropies summed over both directions into `losses`, and its two
    /// log-sum-exps into `lse` (`n` entries each). `mask` is what the self logits are
    /// lowered by.
    pub(crate) fn statistics(&self, mask: T, losses: &mut [T], lse: &mut LogSumExps<T>) {
        let [forward, backward] = lse;
        let _ = for_row_chunks(
            losses,
            forward,
            backward,
            1,
            |first, losses, forward, backward| {
                with_avx2(
                    #[inline(always)]
                    || self.statistics_rows(mask, first, losses, [forward, backward]),
                );
                Ok::<(), ()>(())
            },
        );
    }

    /// [`Tiles::statistics`] for the rows from `first` on that `losses` and `lse` hold.
    #[inline(always)]
    fn statistics_rows(&self, mask: T, first: usize, losses: &mut [T], lse: [&mut [T]; 2]) {
        let mut tile = vec![T::ZERO; self.blocks.0 * self.blocks.1];
        let mut online = Vec::with_capacity(self.blocks.0);
        let mut labels = Vec::with_capacity(self.blocks.0);
        for start in (0..losses.len()).step_by(self.blocks.0.max(1)) {
            let end = (start + self.blocks.0).min(losses.len());
            let rows = first + start..first + end;
            for (x, y, direction) in [(self.a, self.b, 0), (self.b, self.a, 1)] {
                online.clear();
                online.resize(rows.len(), Online::new());
                labels.clear();
                labels.resize(rows.len(), T::ZERO);
                for keys in self.key_blocks() {
                    let width = keys.len();
                    for (operand, own) in [(y, false), (x, true)] {
                        let mask = own.then_some(mask);
                        self.logits(&mut tile, (x, rows.clone()), (operand, keys.clone()), mask);
                        for (r, row_online) in online.iter_mut().enumerate() {
                            let row = &mut tile[r * width..(r + 1) * width];
                            let i = rows.start + r;
                            if !own && keys.contains(&i) {
                                labels[r] = row[i - keys.start];
                            }
                            row_online.add(row);
                        }
                    }
                }
                for (r, row_online) in online.iter().enumerate() {
                    let ce = row_online.cross_entropy(labels[r]);
                    lse[direction][start + r] = row_online.log_sum_exp();
                    if direction == 0 {
                        losses[start + r] = ce;
                    } else {
                        losses[start + r] += ce;
                    }
                }
            }
        }
    }

    /// ∂/∂â and ∂/∂b̂ (before the normalisation) into `grads`, row i being
    /// `[∂/∂âᵢ | ∂/∂b̂ᵢ]` (2d entries), given each row's upstream `gamma` and the
    /// log-sum-exps of [`Tiles::statistics`].
    pub(crate) fn gradient(&self, mask: T, gamma: &[T], lse: &LogSumExps<T>, grads: &mut [T]) {
        let (n, d) = (self.n, self.d);
        let inv_t = T::ONE / self.t;
        // The products accumulate into the rows' gradient (beta = 1), whose rounding depends
        // on where a row falls in matrixmultiply's row tiles: threads take whole row blocks,
        // counted from row 0, so every row sees the same blocks on any thread count.
        let block = self.blocks.0.max(1);
        let mut bounds = Vec::new();
        block_bounds(n, block, threads_for(n), &mut bounds);
        for_row_ranges(&bounds, grads, 2 * d, |first, grads| {
            let mut tile = vec![T::ZERO; self.blocks.0 * self.blocks.1];
            let rows_here = grads.len() / (2 * d);
            with_avx2(
                #[inline(always)]
                || {
                    for start in (0..rows_here).step_by(block) {
                        let end = (start + block).min(rows_here);
                        let rows = first + start..first + end;
                        let out = &mut grads[start * 2 * d..end * 2 * d];
                        for keys in self.key_blocks() {
                            self.cross_block(&mut tile, &rows, &keys, gamma, lse, out, inv_t);
                            self.own_block(&mut tile, &rows, &keys, mask, gamma, lse, out, inv_t);
                        }
                    }
                },
            );
        });
    }

    /// The cross logits' share of the gradient of rows `rows` against keys `keys`:
    /// ∂/∂âᵢ += Σⱼ Xᵢⱼ b̂ⱼ / T and ∂/∂b̂ᵢ += Σⱼ Xⱼᵢ âⱼ / T, with
    /// Xᵢⱼ = γᵢ(P→ᵢⱼ − δᵢⱼ) + γⱼ(P←ⱼᵢ − δᵢⱼ) from both directions' softmaxes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn cross_block(
        &self,
        tile: &mut [T],
        rows: &std::ops::Range<usize>,
        keys: &std::ops::Range<usize>,
        gamma: &[T],
        lse: &LogSumExps<T>,
        out: &mut [T],
        inv_t: T,
    ) {
        let width = keys.len();
        let gamma_keys = &gamma[keys.clone()];
        // Rows of â against keys of b̂ (the forward direction's own rows), then rows of b̂
        // against keys of â (the transpose of the keys' forward rows).
        for (x, y, direction) in [(self.a, self.b, 0), (self.b, self.a, 1)] {
            self.logits(tile, (x, rows.clone()), (y, keys.clone()), None);
            // Row i's lse in this tile's direction, key j's in the other.
            let (lse_rows, lse_keys) = (&lse[direction], &lse[1 - direction][keys.clone()]);
            for (r, row) in tile.chunks_mut(width).take(rows.len()).enumerate() {
                let i = rows.start + r;
                let (gamma_i, lse_i) = (gamma[i], lse_rows[i]);
                // The positive pair subtracts 1 from both softmaxes: its logit is kept for
                // the exact form below, the rest of the row takes the plain one (x − 0 = x).
                let own = keys
                    .contains(&i)
                    .then(|| (i - keys.start, row[i - keys.start]));
                for ((v, &lse_j), &gamma_j) in row.iter_mut().zip(lse_keys).zip(gamma_keys) {
                    *v = gamma_i * T::exp_ftz(*v - lse_i) + gamma_j * T::exp_ftz(*v - lse_j);
                }
                if let Some((c, v)) = own {
                    row[c] = gamma_i * (T::exp_ftz(v - lse_i) - T::ONE)
                        + gamma_keys[c] * (T::exp_ftz(v - lse_keys[c]) - T::ONE);
                }
            }
            let column = direction * self.d;
            self.accumulate(tile, rows.len(), keys, y, out, column, inv_t);
        }
    }

    /// The own logits' share: ∂/∂âᵢ += Σⱼ (γᵢPᵢⱼ + γⱼPⱼᵢ) âⱼ / T with P the forward
    /// softmax over â âᵀ (and likewise b̂ with the backward one).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn own_block(
        &self,
        tile: &mut [T],
        rows: &std::ops::Range<usize>,
        keys: &std::ops::Range<usize>,
        mask: T,
        gamma: &[T],
        lse: &LogSumExps<T>,
        out: &mut [T],
        inv_t: T,
    ) {
        let width = keys.len();
        let gamma_keys = &gamma[keys.clone()];
        for (x, direction) in [(self.a, 0), (self.b, 1)] {
            self.logits(tile, (x, rows.clone()), (x, keys.clone()), Some(mask));
            let (lse_rows, lse_keys) = (&lse[direction], &lse[direction][keys.clone()]);
            for (r, row) in tile.chunks_mut(width).take(rows.len()).enumerate() {
                let i = rows.start + r;
                let (gamma_i, lse_i) = (gamma[i], lse_rows[i]);
                for ((v, &lse_j), &gamma_j) in row.iter_mut().zip(lse_keys).zip(gamma_keys) {
                    *v = gamma_i * T::exp_ftz(*v - lse_i) + gamma_j * T::exp_ftz(*v - lse_j);
                }
            }
            let column = direction * self.d;
            self.accumulate(tile, rows.len(), keys, x, out, column, inv_t);
        }
    }

    /// `out[:, column..column + d] += inv_t · tile · y_keys`.
    #[allow(clippy::too_many_arguments)]
    fn accumulate(
        &self,
        tile: &[T],
        rows: usize,
        keys: &std::ops::Range<usize>,
        y: &[T],
        out: &mut [T],
        column: usize,
        inv_t: T,
    ) {
        let (d, width) = (self.d, keys.len());
        T::gemm(
            rows,
            width,
            d,
            inv_t,
            (&tile[..rows * width], width, 1),
            (&y[keys.start * d..keys.end * d], d, 1),
            T::ONE,
            (&mut out[column..], 2 * d, 1),
        );
    }
}
