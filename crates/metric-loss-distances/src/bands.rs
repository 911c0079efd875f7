//! Work on a square matrix that pairs each entry (i, j) with its mirror image (j, i), split
//! over threads in bands of whole rows: a task writes only the bands it was handed, so the
//! split needs no `unsafe` and no locks.

use crate::parallel::for_each_item;

/// Consecutive whole rows of an `n`-wide row-major matrix, from row `first`.
pub(crate) struct Band<'a, T> {
    /// The band's first row in the whole matrix.
    pub(crate) first: usize,
    /// The band's rows, `n` entries each.
    pub(crate) rows: &'a mut [T],
}

impl<'a, T> Band<'a, T> {
    /// The number of rows.
    pub(crate) fn len(&self, n: usize) -> usize {
        self.rows.len() / n
    }

    /// One past the band's last row in the whole matrix.
    pub(crate) fn end(&self, n: usize) -> usize {
        self.first + self.len(n)
    }

    /// The band's first `at` rows and the rest.
    pub(crate) fn split(self, at: usize, n: usize) -> (Band<'a, T>, Band<'a, T>) {
        let (head, tail) = self.rows.split_at_mut(at * n);
        (
            Band {
                first: self.first,
                rows: head,
            },
            Band {
                first: self.first + at,
                rows: tail,
            },
        )
    }

    /// The band borrowed again, for a nested call.
    pub(crate) fn reborrow(&mut self) -> Band<'_, T> {
        Band {
            first: self.first,
            rows: self.rows,
        }
    }
}

/// The leaves of a split: `within(band)` handles the block of the band's own rows and
/// columns, `across(a, b)` the block of `a`'s rows and `b`'s columns together with its
/// mirror image (`b`'s rows, `a`'s columns); `a` comes before `b`.
pub(crate) trait SquareWork<T>: Sync {
    /// The block of `band`'s rows and columns.
    fn within(&self, band: Band<'_, T>, n: usize);
    /// The blocks (`a` rows, `b` columns) and (`b` rows, `a` columns).
    fn across(&self, a: Band<'_, T>, b: Band<'_, T>, n: usize);
}

/// Runs `work` over the whole `n x n` matrix `rows`, every pair of bands exactly once, on
/// `parts` threads: the two halves' own blocks in parallel, then the blocks between them in
/// two rounds of two disjoint pairs, recursively; bands are cut at multiples of `unit` rows
/// and not below `unit` rows.
pub(crate) fn split_square<T: Send>(
    rows: &mut [T],
    n: usize,
    parts: usize,
    unit: usize,
    work: &impl SquareWork<T>,
) {
    if n > 0 {
        within(Band { first: 0, rows }, n, parts, unit, work);
    }
}

/// Where a band splits in two for `parts` threads: about half its rows, on a multiple of
/// `unit`; `None` when it is not worth splitting.
fn halves<T>(band: &Band<'_, T>, n: usize, parts: usize, unit: usize) -> Option<usize> {
    let rows = band.len(n);
    (parts > 1 && rows >= 2 * unit).then(|| (rows / 2).div_ceil(unit) * unit)
}

fn within<T: Send>(
    band: Band<'_, T>,
    n: usize,
    parts: usize,
    unit: usize,
    work: &impl SquareWork<T>,
) {
    let Some(at) = halves(&band, n, parts, unit) else {
        return work.within(band, n);
    };
    let (mut top, mut bottom) = band.split(at, n);
    let half = parts / 2;
    let mut both = [(&mut top, half), (&mut bottom, parts - half)];
    for_each_item(&mut both, &|(band, parts)| {
        within(band.reborrow(), n, *parts, unit, work);
    });
    across(top, bottom, n, parts, unit, work);
}

fn across<T: Send>(
    a: Band<'_, T>,
    b: Band<'_, T>,
    n: usize,
    parts: usize,
    unit: usize,
    work: &impl SquareWork<T>,
) {
    let (Some(at_a), Some(at_b)) = (halves(&a, n, parts, unit), halves(&b, n, parts, unit)) else {
        return work.across(a, b, n);
    };
    let (mut a1, mut a2) = a.split(at_a, n);
    let (mut b1, mut b2) = b.split(at_b, n);
    let half = parts / 2;
    let task = |(a, b, parts): &mut (&mut Band<'_, T>, &mut Band<'_, T>, usize)| {
        across(a.reborrow(), b.reborrow(), n, *parts, unit, work);
    };
    let mut straight = [(&mut a1, &mut b1, half), (&mut a2, &mut b2, parts - half)];
    for_each_item(&mut straight, &task);
    let mut crossed = [(&mut a1, &mut b2, half), (&mut a2, &mut b1, parts - half)];
    for_each_item(&mut crossed, &task);
}
