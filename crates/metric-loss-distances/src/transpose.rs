//! G + Gᵀ in place, a pair of tiles at a time, split over threads.

use metric_loss_core::Float;

use crate::bands::{split_square, Band, SquareWork};
use crate::parallel::threads_for;

/// The side of a tile: two 32 x 32 f32 tiles (8 KiB) stay in L1 beside the lines they
/// are copied from.
const TILE: usize = 32;

/// Overwrites the square `n x n` row-major matrix `g` with G + Gᵀ, a pair of 32 x 32 tiles
/// at a time, on [`threads_for`]`(n)` threads. Each tile pair is copied row by row into
/// two local tiles and the transposed reads go to the local copy: read in place, a column
/// of a 1024-wide f32 matrix is 32 lines 4096 bytes apart, all in one L1 set, and the
/// in-place version spent a fifth of a MultiSimilarity call (N = 1024) on those conflict
/// misses.
///
/// Each entry is one addition, Gᵢⱼ + Gⱼᵢ, whichever thread does it: the result does not
/// depend on the thread count.
///
/// ```
/// let mut g = [1.0f32, 2.0, 3.0, 4.0];
/// metric_loss_distances::add_transpose(&mut g, 2);
/// assert_eq!(g, [2.0, 5.0, 5.0, 8.0]);
/// ```
///
/// # Panics
/// If `g` is shorter than `n * n`.
pub fn add_transpose<T: Float>(g: &mut [T], n: usize) {
    add_transpose_on(g, n, threads_for(n));
}

/// [`add_transpose`] split for `parts` threads.
fn add_transpose_on<T: Float>(g: &mut [T], n: usize, parts: usize) {
    split_square(&mut g[..n * n], n, parts, TILE, &AddTranspose);
}

/// G + Gᵀ as band work: each pair of tiles read, added and written back in place.
struct AddTranspose;

impl<T: Float> SquareWork<T> for AddTranspose {
    /// Strip by strip of `TILE` rows: the strip's diagonal tile in place, then the strip
    /// against the rows below it ([`SquareWork::across`]).
    fn within(&self, band: Band<'_, T>, n: usize) {
        let mut rest = band;
        let mut tiles = Tiles::new();
        while rest.len(n) > 0 {
            let r = TILE.min(rest.len(n));
            let (strip, below) = rest.split(r, n);
            let (first, g) = (strip.first, strip.rows);
            tiles.load(g, n, 0, first, r, r, g, 0, first);
            tiles.add();
            tiles.store(g, n, 0, first, r, r);
            tiles.store_lower(g, n, 0, first, r, r);
            rest = below;
            self.across(Band { first, rows: g }, rest.reborrow(), n);
        }
    }

    /// Every tile pair of `a`'s rows and `b`'s columns.
    fn across(&self, a: Band<'_, T>, b: Band<'_, T>, n: usize) {
        let (rows_a, rows_b) = (a.len(n), b.len(n));
        let mut tiles = Tiles::new();
        for ib in (0..rows_a).step_by(TILE) {
            for jb in (0..rows_b).step_by(TILE) {
                let (r, c) = (TILE.min(rows_a - ib), TILE.min(rows_b - jb));
                tiles.load(a.rows, n, ib, b.first + jb, r, c, b.rows, jb, a.first + ib);
                tiles.add();
                tiles.store(a.rows, n, ib, b.first + jb, r, c);
                tiles.store_lower(b.rows, n, jb, a.first + ib, r, c);
            }
        }
    }
}

/// A tile and its mirror image: `upper[a][b]` = G[i + a][j + b] and `lower[b][a]` =
/// G[j + b][i + a].
struct Tiles<T> {
    upper: [[T; TILE]; TILE],
    lower: [[T; TILE]; TILE],
}

impl<T: Float> Tiles<T> {
    fn new() -> Self {
        Tiles {
            upper: [[T::ZERO; TILE]; TILE],
            lower: [[T::ZERO; TILE]; TILE],
        }
    }

    /// Copies in the `r x c` tile at (`row`, `col`) of `up` (rows of `n` entries) and the
    /// `c x r` tile at (`row_low`, `col_low`) of `low`.
    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        up: &[T],
        n: usize,
        row: usize,
        col: usize,
        r: usize,
        c: usize,
        low: &[T],
        row_low: usize,
        col_low: usize,
    ) {
        for (a, tile_row) in self.upper.iter_mut().enumerate().take(r) {
            let at = (row + a) * n + col;
            tile_row[..c].copy_from_slice(&up[at..at + c]);
        }
        for (b, tile_row) in self.lower.iter_mut().enumerate().take(c) {
            let at = (row_low + b) * n + col_low;
            tile_row[..r].copy_from_slice(&low[at..at + r]);
        }
    }

    /// Both tiles become upper + lowerᵀ (and its transpose).
    fn add(&mut self) {
        for (a, tile_row) in self.upper.iter_mut().enumerate() {
            for (b, v) in tile_row.iter_mut().enumerate() {
                *v += self.lower[b][a];
            }
        }
        for (b, tile_row) in self.lower.iter_mut().enumerate() {
            for (a, v) in tile_row.iter_mut().enumerate() {
                *v = self.upper[a][b];
            }
        }
    }

    /// Writes the upper tile back (`r x c` at (`row`, `col`)).
    fn store(&self, g: &mut [T], n: usize, row: usize, col: usize, r: usize, c: usize) {
        for (a, tile_row) in self.upper.iter().enumerate().take(r) {
            let at = (row + a) * n + col;
            g[at..at + c].copy_from_slice(&tile_row[..c]);
        }
    }

    /// Writes the lower tile back (`c x r` at (`row`, `col`)).
    fn store_lower(&self, g: &mut [T], n: usize, row: usize, col: usize, r: usize, c: usize) {
        for (b, tile_row) in self.lower.iter().enumerate().take(c) {
            let at = (row + b) * n + col;
            g[at..at + r].copy_from_slice(&tile_row[..r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 7919) % 1013) as f64 / 97.3 - 5.0)
            .collect()
    }

    fn check(n: usize, parts: usize) {
        let g = values(n * n);
        let mut got = g.clone();
        add_transpose_on(&mut got, n, parts);
        for i in 0..n {
            for j in 0..n {
                assert_eq!(
                    got[i * n + j],
                    g[i * n + j] + g[j * n + i],
                    "{n}, {parts}: ({i}, {j})"
                );
            }
        }
    }

    #[test]
    fn adds_the_transpose_exactly() {
        for n in [0usize, 1, 31, 32, 33, 70] {
            check(n, 1);
        }
    }

    #[test]
    fn every_split_adds_each_pair_once() {
        // Partial tiles at the split points and at the end, and uneven thread counts.
        for n in [64, 65, 97, 130, 300] {
            for parts in [2, 3, 4, 7] {
                check(n, parts);
            }
        }
    }
}
