//! Mining every anchor of a batch against the batch itself from the **upper triangle** of
//! its distance matrix, for distances whose entry (j, i) is entry (i, j) bit for bit
//! (cosine, inner product): the lower triangle is never written, mirrored or read.
//!
//! Anchor j's row is column j above the diagonal (entries (i, j), i < j) followed by row j
//! from the diagonal on. One pass over the triangle, row by row, feeds both: the
//! row-side scan of [`mine_row_grouped`] on each row segment, and per-column accumulators
//! (running minimum, maximum, smallest beyond the column's threshold, NaN count) that the
//! same segment updates element-wise, which vectorises with no transpose. A second pass
//! finds the pick's first index and ties the same way. The positives are planted as NaN
//! first, class by class (an entry between two same-label keys is a positive of both), so
//! the passes need no labels.
//!
//! The arithmetic is [`mine_row_grouped`]'s, in the same order per entry, and every row
//! it does not cover is gathered from the triangle and given to it: results are identical
//! bit for bit (a test checks this against [`mine_row_grouped`] on full matrices).
//!
//! Rows split into parts of about equal triangle area. Each part keeps its own column
//! accumulators, merged in row order afterwards, so any part count gives the same result.

use std::ops::Range;

use metric_loss_core::{Float, NegativeStrategy, PositiveStrategy};

use crate::classes::KeyClasses;
use crate::extreme::Extreme;
use crate::grouped::{
    covered, finish, locate_value, mine_row_grouped, scan_values, Offsets, Positives, ValueScan,
};
use crate::row::{Mined, MiningError, RowContext};

/// A batch's distances to itself, upper triangle only.
#[derive(Debug)]
pub struct UpperTriangle<'a, T> {
    /// `n x n`, row-major; entries (i, j ≥ i) hold the distances, the others are never
    /// read. The call overwrites some entries and restores them before it returns.
    pub distances: &'a mut [T],
    /// The batch size.
    pub n: usize,
    /// One label per row.
    pub labels: &'a [i64],
    /// Whether an anchor's own entry is excluded from its positives.
    pub remove_diagonal: bool,
}

/// Row `i` of the symmetric matrix whose upper triangle is `upper` (`n x n`, row-major),
/// gathered into `row`: its column above the diagonal, then its own entries from the
/// diagonal on.
///
/// ```
/// use metric_loss_mining::gather_upper_row;
/// // The upper triangle of [[0, 1, 2], [1, 0, 3], [2, 3, 0]]; below it, anything.
/// let upper = [0.0, 1.0, 2.0, 9.0, 0.0, 3.0, 9.0, 9.0, 0.0];
/// let mut row = Vec::new();
/// gather_upper_row(&upper, 3, 1, &mut row);
/// assert_eq!(row, [1.0, 0.0, 3.0]);
/// ```
pub fn gather_upper_row<T: Copy>(upper: &[T], n: usize, i: usize, row: &mut Vec<T>) {
    row.clear();
    row.extend((0..i).map(|j| upper[j * n + i]));
    row.extend_from_slice(&upper[i * n + i..(i + 1) * n]);
}

/// Reusable buffers for [`TriangleMiner::mine`] (no allocation in steady state), and one
/// [`TrianglePart`] per row range.
#[derive(Debug, Default)]
pub struct TriangleMiner<T> {
    /// Per anchor: where its class lies in [`KeyClasses::by_class`].
    members: Vec<Range<usize>>,
    /// Per anchor: the fast path's positives (`None`: the row is gathered).
    positives: Vec<Option<Positives<T>>>,
    /// Per anchor: semi-hard's threshold, then the negative pick's value.
    threshold: Vec<T>,
    target: Vec<T>,
    scans: Vec<ValueScan<T>>,
    offsets: Vec<Option<Offsets<T>>>,
    /// Per class the fast path covers: its members' pairwise distances (`c x c`,
    /// row-major), read once from the triangle as they are planted over.
    class_values: Vec<T>,
    /// Per anchor: where its row of `class_values` starts (`usize::MAX`: not covered).
    value_rows: Vec<usize>,
    parts: Vec<TrianglePart<T>>,
    /// A gathered row.
    row: Vec<T>,
}

/// One row range's share of the passes: its rows' own results and column accumulators
/// for every column right of its first row.
#[derive(Debug, Default)]
pub struct TrianglePart<T> {
    rows: Range<usize>,
    min: Vec<T>,
    max: Vec<T>,
    beyond: Vec<T>,
    nans: Vec<T>,
    /// The locate pass's first row (as `T`, exact below 2²⁴ rows; +∞ before a hit) and
    /// hit count.
    first: Vec<T>,
    ties: Vec<T>,
    row_scans: Vec<ValueScan<T>>,
    row_located: Vec<Extreme<T>>,
}

/// What the parts run (on the caller's threads).
#[derive(Clone, Copy)]
struct Pass<'a, T> {
    upper: &'a [T],
    n: usize,
    semi: bool,
    /// Per anchor: the threshold (scan) or the target (locate).
    per_anchor: &'a [T],
}

impl<T: Float> TriangleMiner<T> {
    /// Mines every anchor (row) of `triangle` into `out` (one entry per row), as
    /// [`mine_row_grouped`] would on the full matrix's rows. `classes` must be
    /// `triangle.labels` grouped; `bounds` splits the rows into parts (`0 = b₀ < b₁ < … =
    /// n`), and `run(parts, task)` must call `task` once on every part, in any order or in
    /// parallel.
    ///
    /// # Errors
    /// The first row (in row order) that [`mine_row_grouped`] rejects, with its index.
    ///
    /// # Panics
    /// If the lengths disagree: `distances` must be `n x n`, `labels` and `out` of length
    /// `n`, and `bounds` must run from 0 to `n`, increasing.
    #[allow(clippy::too_many_arguments)]
    pub fn mine(
        &mut self,
        triangle: UpperTriangle<'_, T>,
        classes: &KeyClasses,
        positive: PositiveStrategy,
        negative: NegativeStrategy,
        bounds: &[usize],
        run: impl Fn(&mut [TrianglePart<T>], &(dyn Fn(&mut TrianglePart<T>) + Sync)),
        out: &mut [Mined<T>],
    ) -> Result<(), (usize, MiningError)> {
        let UpperTriangle {
            distances: upper,
            n,
            labels,
            remove_diagonal,
        } = triangle;
        assert_eq!(upper.len(), n * n, "an n x n matrix");
        assert_eq!(labels.len(), n, "one label per row");
        assert_eq!(out.len(), n, "one output per row");
        assert!(
            bounds.first() == Some(&0) && bounds.last() == Some(&n),
            "bounds from 0 to n"
        );
        let semi = negative == NegativeStrategy::SemiHard;
        let value = |upper: &[T], i: usize, j: usize| upper[i.min(j) * n + i.max(j)];

        // The positives, read as they are planted over.
        self.members.clear();
        self.members
            .extend(labels.iter().map(|&l| classes.member_range(l)));
        let by_class = classes.by_class();
        self.plant(upper, n, classes);
        self.positives.clear();
        self.threshold.clear();
        for (a, range) in self.members.iter().enumerate() {
            let row = self.value_rows[a];
            let p = (row != usize::MAX)
                .then(|| {
                    let members = &by_class[range.clone()];
                    let values = &self.class_values[row..row + members.len()];
                    let diag = if remove_diagonal { a } else { usize::MAX };
                    Positives::of(members.iter().copied().zip(values.iter().copied()), diag)
                })
                .filter(Positives::usable);
            self.threshold
                .push(p.as_ref().map_or(T::ZERO, |p| p.hardest.value));
            self.positives.push(p);
        }

        // Pass 1: the row extremes and semi-hard's smallest beyond the threshold.
        self.parts
            .resize_with(bounds.len() - 1, TrianglePart::default);
        for (part, w) in self.parts.iter_mut().zip(bounds.windows(2)) {
            part.rows = w[0]..w[1];
        }
        let scan_all = |parts: &mut [TrianglePart<T>], threshold: &[T]| {
            let pass = Pass {
                upper: &*upper,
                n,
                semi,
                per_anchor: threshold,
            };
            run(parts, &|part| part.scan(pass));
        };
        scan_all(&mut self.parts, &self.threshold);
        merge_scans(&self.parts, &mut self.scans, n);
        self.offsets.clear();
        let mut rescan = false;
        for a in 0..n {
            let offsets = self.positives[a]
                .as_ref()
                .map(|p| Offsets::new(p, &self.scans[a]));
            if let Some(o) = &offsets {
                if o.rescan(semi) {
                    // Where TF's f64 rounding moves the threshold, scan again at it.
                    self.threshold[a] = o.threshold;
                    rescan = true;
                }
            }
            self.offsets.push(offsets);
        }
        if rescan {
            scan_all(&mut self.parts, &self.threshold);
            merge_scans(&self.parts, &mut self.scans, n);
        }

        // Pass 2: the negative pick's first index and ties (NaN: the row is gathered).
        self.target.clear();
        for (a, scan) in self.scans.iter().enumerate() {
            let members = self.members[a].len();
            let fast = self.positives[a].is_some() && scan.all_finite(members);
            self.target.push(if fast {
                scan.target(negative)
            } else {
                T::from_f64(f64::NAN)
            });
        }
        let pass = Pass {
            upper: &*upper,
            n,
            semi,
            per_anchor: &self.target,
        };
        run(&mut self.parts, &|part| part.locate(pass));
        self.restore(upper, n, classes);

        for (a, slot) in out.iter_mut().enumerate() {
            let members = &by_class[self.members[a].clone()];
            let fast = match (&self.positives[a], &self.offsets[a]) {
                (Some(p), Some(o)) => {
                    let located = merge_located(&self.parts, a, |j| value(upper, a, j));
                    finish(
                        p,
                        &self.scans[a],
                        members.len(),
                        o,
                        located,
                        positive,
                        negative,
                        |j| value(upper, a, j),
                    )
                }
                _ => None,
            };
            *slot = match fast {
                Some(mined) => mined,
                None => {
                    gather_upper_row(upper, n, a, &mut self.row);
                    let ctx = RowContext {
                        anchor: a,
                        anchor_label: labels[a],
                        key_labels: labels,
                        remove_diagonal,
                    };
                    mine_row_grouped(&mut self.row, &ctx, members, positive, negative)
                        .map_err(|e| (a, e))?
                }
            };
        }
        Ok(())
    }

    /// Overwrites with NaN every entry between two keys of a class the fast path covers
    /// (the diagonal included), keeping the values in `class_values`.
    fn plant(&mut self, upper: &mut [T], n: usize, classes: &KeyClasses) {
        let nan = T::from_f64(f64::NAN);
        self.value_rows.clear();
        self.value_rows.resize(n, usize::MAX);
        self.class_values.clear();
        for (members, block) in covered_classes(classes, n) {
            let c = members.len();
            self.class_values.resize(block + c * c, T::ZERO);
            for (p, &a) in members.iter().enumerate() {
                self.value_rows[a] = block + p * c;
                // Members ascend: (a, b) with b ≥ a lies in the upper triangle.
                for (q, &b) in members.iter().enumerate().skip(p) {
                    let v = std::mem::replace(&mut upper[a * n + b], nan);
                    self.class_values[block + p * c + q] = v;
                    self.class_values[block + q * c + p] = v;
                }
            }
        }
    }

    /// Puts back what [`TriangleMiner::plant`] overwrote.
    fn restore(&self, upper: &mut [T], n: usize, classes: &KeyClasses) {
        for (members, block) in covered_classes(classes, n) {
            let c = members.len();
            for (p, &a) in members.iter().enumerate() {
                for (q, &b) in members.iter().enumerate().skip(p) {
                    upper[a * n + b] = self.class_values[block + p * c + q];
                }
            }
        }
    }
}

/// The classes the fast path covers (their members, ascending), each with where its
/// `c x c` block of pairwise distances starts in `TriangleMiner::class_values`.
fn covered_classes(classes: &KeyClasses, n: usize) -> impl Iterator<Item = (&[usize], usize)> {
    let by_class = classes.by_class();
    classes
        .class_ranges()
        .map(move |range| &by_class[range])
        .filter(move |members| covered(n, members.len()))
        .scan(0, |next, members| {
            let block = *next;
            *next += members.len() * members.len();
            Some((members, block))
        })
}

/// Each anchor's scan: its column entries part by part in row order, then its own row.
fn merge_scans<T: Float>(parts: &[TrianglePart<T>], scans: &mut Vec<ValueScan<T>>, n: usize) {
    scans.clear();
    scans.resize(n, ValueScan::empty());
    for part in parts {
        let r0 = part.rows.start;
        for (j, scan) in scans.iter_mut().enumerate().skip(r0 + 1) {
            let column = ValueScan {
                min: part.min[j],
                max: part.max[j],
                beyond: part.beyond[j],
                nans: part.nans[j],
            };
            *scan = scan.then(&column);
        }
        for (i, row) in part.rows.clone().zip(&part.row_scans) {
            scans[i] = scans[i].then(row);
        }
    }
}

/// Anchor `a`'s first index and ties of its target, holding the value at that index.
fn merge_located<T: Float>(
    parts: &[TrianglePart<T>],
    a: usize,
    value: impl Fn(usize) -> T,
) -> Extreme<T> {
    let (mut first, mut ties) = (usize::MAX, 0u32);
    for part in parts {
        if part.rows.start < a {
            let hits = part.ties[a].to_f64() as u32;
            if hits > 0 && first == usize::MAX {
                first = part.first[a].to_f64() as usize;
            }
            ties += hits;
        }
        if part.rows.contains(&a) {
            let own = &part.row_located[a - part.rows.start];
            if !own.is_empty() && first == usize::MAX {
                first = a + own.index;
            }
            ties += own.ties;
        }
    }
    if ties == 0 {
        return Extreme::none();
    }
    Extreme {
        value: value(first),
        index: first,
        ties,
    }
}

impl<T: Float> TrianglePart<T> {
    fn scan(&mut self, pass: Pass<'_, T>) {
        let Pass {
            upper,
            n,
            semi,
            per_anchor: threshold,
        } = pass;
        let inf = T::from_f64(f64::INFINITY);
        reset(&mut self.min, n, inf);
        reset(&mut self.max, n, -inf);
        reset(&mut self.beyond, n, inf);
        reset(&mut self.nans, n, T::ZERO);
        self.row_scans.clear();
        let Self {
            rows,
            min,
            max,
            beyond,
            nans,
            row_scans,
            ..
        } = self;
        // Block by block, so that the column side reads rows the row side just read.
        for_blocks(rows.clone(), |block| {
            for i in block.clone() {
                let segment = &upper[i * n + i..(i + 1) * n];
                row_scans.push(scan_values(segment, semi, threshold[i]));
            }
            column_updates(block, n, |rows, cols| {
                let acc = columns::Accumulators {
                    min: &mut min[cols.clone()],
                    max: &mut max[cols.clone()],
                    beyond: &mut beyond[cols.clone()],
                    nans: &mut nans[cols.clone()],
                };
                columns::scan(upper, n, rows, cols.clone(), &threshold[cols], semi, acc);
            });
        });
    }

    fn locate(&mut self, pass: Pass<'_, T>) {
        let Pass {
            upper,
            n,
            per_anchor: target,
            ..
        } = pass;
        reset(&mut self.first, n, T::from_f64(f64::INFINITY));
        reset(&mut self.ties, n, T::ZERO);
        self.row_located.clear();
        let Self {
            rows,
            first,
            ties,
            row_located,
            ..
        } = self;
        for_blocks(rows.clone(), |block| {
            for i in block.clone() {
                let segment = &upper[i * n + i..(i + 1) * n];
                row_located.push(locate_value(segment, target[i]));
            }
            column_updates(block, n, |rows, cols| {
                let (first, ties) = (&mut first[cols.clone()], &mut ties[cols.clone()]);
                columns::locate(upper, n, rows, cols.clone(), &target[cols], first, ties);
            });
        });
    }
}

/// `n` accumulators, each `init` (no allocation once the buffer has grown).
fn reset<T: Copy>(buf: &mut Vec<T>, n: usize, init: T) {
    buf.clear();
    buf.resize(n, init);
}

/// Rows per block of the column-side updates: each column's accumulators are loaded and
/// stored once per block rather than once per row. The mining bench (f32, N = 1024,
/// hard/semi-hard, alternating runs on a noisy 2-core machine) gave 0.54–0.73 ms with
/// blocks against 0.72–0.83 ms row by row.
const BLOCK_ROWS: usize = 8;

/// Calls `f(block)` on consecutive blocks of at most [`BLOCK_ROWS`] rows of `rows`.
fn for_blocks(rows: Range<usize>, mut f: impl FnMut(Range<usize>)) {
    let mut i = rows.start;
    while i < rows.end {
        let end = (i + BLOCK_ROWS).min(rows.end);
        f(i..end);
        i = end;
    }
}

/// Calls `f(rows, columns)` so that, together, the calls cover every column `j > i` of
/// every row `i` of `block` once: a full block gets the small triangle right of its
/// diagonal row by row, then the columns right of the block in one blocked call; a short
/// block goes row by row.
fn column_updates(block: Range<usize>, n: usize, mut f: impl FnMut(Range<usize>, Range<usize>)) {
    if block.len() == BLOCK_ROWS && block.end < n {
        for k in block.clone() {
            f(k..k + 1, k + 1..block.end);
        }
        f(block.clone(), block.end..n);
    } else {
        for k in block {
            f(k..k + 1, k + 1..n);
        }
    }
}

/// The column-side updates: element-wise over columns, each column's accumulators held
/// in registers over a block of rows, so they vectorise as they are (compiled for AVX2
/// when the CPU has it, detected at run time).
mod columns {
    use std::ops::Range;

    use metric_loss_core::Float;

    use super::BLOCK_ROWS;

    pub(super) struct Accumulators<'a, T> {
        pub(super) min: &'a mut [T],
        pub(super) max: &'a mut [T],
        pub(super) beyond: &'a mut [T],
        pub(super) nans: &'a mut [T],
    }

    /// Rows `rows` of the `n`-wide `upper` at columns `cols` (right of the rows' last
    /// diagonal entry), into those columns' accumulators: `min`/`max` skip NaN, `beyond`
    /// is the smallest entry strictly above the column's threshold, NaNs are counted.
    pub(super) fn scan<T: Float>(
        upper: &[T],
        n: usize,
        rows: Range<usize>,
        cols: Range<usize>,
        threshold: &[T],
        semi: bool,
        acc: Accumulators<'_, T>,
    ) {
        let row = |i: usize| &upper[i * n + cols.start..i * n + cols.end];
        match rows.len() {
            0 => {}
            BLOCK_ROWS => {
                let block: [&[T]; BLOCK_ROWS] = std::array::from_fn(|r| row(rows.start + r));
                scan_dispatch(block, threshold, semi, acc);
            }
            _ => {
                for i in rows {
                    let acc = Accumulators {
                        min: &mut *acc.min,
                        max: &mut *acc.max,
                        beyond: &mut *acc.beyond,
                        nans: &mut *acc.nans,
                    };
                    scan_dispatch([row(i)], threshold, semi, acc);
                }
            }
        }
    }

    fn scan_dispatch<T: Float, const R: usize>(
        rows: [&[T]; R],
        threshold: &[T],
        semi: bool,
        acc: Accumulators<'_, T>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `scan_avx2` only needs AVX2, which was just detected on this CPU;
            // it is `scan_portable` compiled for it (safe code, slice indexing).
            #[allow(unsafe_code)]
            return unsafe { scan_avx2(rows, threshold, semi, acc) };
        }
        if semi {
            scan_portable::<T, R, true>(rows, threshold, acc);
        } else {
            scan_portable::<T, R, false>(rows, threshold, acc);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn scan_avx2<T: Float, const R: usize>(
        rows: [&[T]; R],
        threshold: &[T],
        semi: bool,
        acc: Accumulators<'_, T>,
    ) {
        if semi {
            scan_portable::<T, R, true>(rows, threshold, acc);
        } else {
            scan_portable::<T, R, false>(rows, threshold, acc);
        }
    }

    #[inline(always)]
    // `v != v` is the NaN test that compiles to one packed unordered compare.
    #[allow(clippy::eq_op)]
    fn scan_portable<T: Float, const R: usize, const SEMI: bool>(
        rows: [&[T]; R],
        threshold: &[T],
        acc: Accumulators<'_, T>,
    ) {
        let len = threshold.len();
        let inf = T::from_f64(f64::INFINITY);
        let rows = rows.map(|r| &r[..len]);
        let (min, max) = (&mut acc.min[..len], &mut acc.max[..len]);
        let (beyond, nans) = (&mut acc.beyond[..len], &mut acc.nans[..len]);
        // `min`/`max` (IEEE minNum/maxNum: NaN loses), not a compare-and-keep: LLVM turns
        // `*a = if v < *a { v } else { *a }` into masked stores, which took 4x longer
        // here. The accumulators are never NaN, so only the sign of a zero extreme may
        // differ from the row scan's, which `ValueScan` leaves unspecified.
        for j in 0..len {
            let (mut lo, mut hi, mut by, mut nan) = (min[j], max[j], beyond[j], nans[j]);
            let t = threshold[j];
            for row in rows {
                let v = row[j];
                lo = lo.min(v);
                hi = hi.max(v);
                nan += if v != v { T::ONE } else { T::ZERO };
                if SEMI {
                    by = by.min(if v > t { v } else { inf });
                }
            }
            (min[j], max[j], beyond[j], nans[j]) = (lo, hi, by, nan);
        }
    }

    /// Per column: the first row of `rows` whose entry equals the column's target (NaN
    /// never does), kept as the smallest such row, and the number of such rows.
    pub(super) fn locate<T: Float>(
        upper: &[T],
        n: usize,
        rows: Range<usize>,
        cols: Range<usize>,
        target: &[T],
        first: &mut [T],
        ties: &mut [T],
    ) {
        let row = |i: usize| &upper[i * n + cols.start..i * n + cols.end];
        let id = |i: usize| T::from_f64(i as f64);
        match rows.len() {
            0 => {}
            BLOCK_ROWS => {
                let block: [&[T]; BLOCK_ROWS] = std::array::from_fn(|r| row(rows.start + r));
                let ids = std::array::from_fn(|r| id(rows.start + r));
                locate_dispatch(block, ids, target, first, ties);
            }
            _ => {
                for i in rows {
                    locate_dispatch([row(i)], [id(i)], target, first, ties);
                }
            }
        }
    }

    fn locate_dispatch<T: Float, const R: usize>(
        rows: [&[T]; R],
        ids: [T; R],
        target: &[T],
        first: &mut [T],
        ties: &mut [T],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as in `scan_dispatch`: AVX2 was just detected.
            #[allow(unsafe_code)]
            return unsafe { locate_avx2(rows, ids, target, first, ties) };
        }
        locate_portable(rows, ids, target, first, ties);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn locate_avx2<T: Float, const R: usize>(
        rows: [&[T]; R],
        ids: [T; R],
        target: &[T],
        first: &mut [T],
        ties: &mut [T],
    ) {
        locate_portable(rows, ids, target, first, ties);
    }

    /// `ids[r]` is row `r`'s index as `T`.
    #[inline(always)]
    fn locate_portable<T: Float, const R: usize>(
        rows: [&[T]; R],
        ids: [T; R],
        target: &[T],
        first: &mut [T],
        ties: &mut [T],
    ) {
        let len = target.len();
        let inf = T::from_f64(f64::INFINITY);
        let rows = rows.map(|r| &r[..len]);
        let (first, ties) = (&mut first[..len], &mut ties[..len]);
        // The first hit is the smallest hit row (no masked store, see `scan_portable`).
        for j in 0..len {
            let (mut f, mut k, t) = (first[j], ties[j], target[j]);
            for r in 0..R {
                let hit = rows[r][j] == t;
                f = f.min(if hit { ids[r] } else { inf });
                k += if hit { T::ONE } else { T::ZERO };
            }
            (first[j], ties[j]) = (f, k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bits, Rng, NEG, POS};

    fn serial<P>(parts: &mut [P], task: &(dyn Fn(&mut P) + Sync)) {
        parts.iter_mut().for_each(task);
    }

    /// Parts in reverse order: the result must not depend on the order they run in.
    fn reversed<P>(parts: &mut [P], task: &(dyn Fn(&mut P) + Sync)) {
        parts.iter_mut().rev().for_each(task);
    }

    /// A symmetric matrix from a few values (exact ties, signed zeros, tiny values next
    /// to large ones), sometimes with a non-finite entry, mined from its upper triangle
    /// with 1, 2 and 3 parts against `mine_row_grouped` on its full rows, bit for bit.
    fn agree<T: Float>(rng: &mut Rng, case: usize) {
        let values = [
            -0.0, 0.0, 0.25, 0.5, 0.5, 1.0, 1.5, 2.0, 1e-9, 3e-12, 1e-7, 0.3,
        ];
        let n = 1 + rng.below(150) as usize;
        let classes_n = 1 + rng.below(n as u64 / 2 + 1) as i64;
        let labels: Vec<i64> = (0..n).map(|_| rng.below(classes_n as u64) as i64).collect();
        let mut full = vec![T::ZERO; n * n];
        for i in 0..n {
            for j in i..n {
                let v = T::from_f64(values[rng.below(values.len() as u64) as usize]);
                full[i * n + j] = v;
                full[j * n + i] = v;
            }
        }
        if case.is_multiple_of(7) && n > 1 {
            let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][case / 7 % 3];
            let (i, j) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
            full[i * n + j] = T::from_f64(bad);
            full[j * n + i] = T::from_f64(bad);
        }
        let remove_diagonal = rng.below(4) != 0;
        let mut classes = KeyClasses::default();
        classes.rebuild(&labels);
        let mut miner = TriangleMiner::default();
        for p in POS {
            for neg in NEG {
                let mut expected = Vec::new();
                let mut first_error = None;
                for a in 0..n {
                    let mut row = full[a * n..(a + 1) * n].to_vec();
                    let ctx = RowContext {
                        anchor: a,
                        anchor_label: labels[a],
                        key_labels: &labels,
                        remove_diagonal,
                    };
                    match mine_row_grouped(&mut row, &ctx, classes.members(labels[a]), p, neg) {
                        Ok(m) => expected.push(m),
                        Err(e) => {
                            first_error.get_or_insert((a, e));
                            break;
                        }
                    }
                }
                for parts in [1, 2, 3] {
                    let mut upper = full.clone();
                    // The lower triangle must not be read: poison it.
                    for i in 0..n {
                        for j in 0..i {
                            upper[i * n + j] = T::from_f64(f64::NAN);
                        }
                    }
                    let before: Vec<u64> = upper.iter().map(|v| bits(*v)).collect();
                    let mut bounds: Vec<usize> = (0..parts).map(|k| k * n / parts).collect();
                    bounds.push(n);
                    bounds.dedup();
                    let mut out = vec![Mined::placeholder(); n];
                    let triangle = UpperTriangle {
                        distances: &mut upper,
                        n,
                        labels: &labels,
                        remove_diagonal,
                    };
                    let got = if parts == 2 {
                        miner.mine(triangle, &classes, p, neg, &bounds, reversed, &mut out)
                    } else {
                        miner.mine(triangle, &classes, p, neg, &bounds, serial, &mut out)
                    };
                    let after: Vec<u64> = upper.iter().map(|v| bits(*v)).collect();
                    assert_eq!(before, after, "the triangle is restored");
                    let what = format!("{} n={n} {p:?}/{neg:?} {parts} parts", T::DTYPE);
                    match (got, first_error) {
                        (Ok(()), None) => {
                            for (a, (g, e)) in out.iter().zip(&expected).enumerate() {
                                assert_eq!(g, e, "{what} anchor {a}");
                                assert_eq!(bits(g.positive), bits(e.positive), "{what} {a}");
                                assert_eq!(bits(g.negative), bits(e.negative), "{what} {a}");
                                assert_eq!(bits(g.pos.target), bits(e.pos.target), "{what}");
                                assert_eq!(bits(g.neg.target), bits(e.neg.target), "{what}");
                            }
                        }
                        (Err(g), Some(e)) => {
                            assert_eq!(g.0, e.0, "{what}");
                            assert!(crate::row::same_error(&g.1, &e.1), "{what}");
                        }
                        (g, e) => panic!("{what}: triangle {g:?}, rows {e:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn triangle_mining_matches_the_row_miner_bit_for_bit() {
        let mut rng = Rng(23);
        for case in 0..120 {
            agree::<f32>(&mut rng, case);
            agree::<f64>(&mut rng, case);
        }
    }
}
