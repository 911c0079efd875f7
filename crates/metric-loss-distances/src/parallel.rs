//! Splitting row-wise work over threads (the `threads` feature).
//!
//! Every heavy step of a metric loss is row-separable: a row of a matrix product depends
//! only on its row of the left operand, and mining one anchor reads only its own row of
//! the distance matrix. Rows therefore split into contiguous chunks, one per thread, with
//! no synchronisation, and each row is computed by exactly the same arithmetic as on one
//! thread: results are identical bit for bit whatever the thread count.
//!
//! Without the feature (or for small batches) everything runs on the calling thread and
//! nothing is spawned.
//!
//! ```
//! use metric_loss_distances::parallel::for_row_chunks;
//!
//! // Square 1000 numbers, on as many threads as the batch warrants.
//! let mut squares = vec![0usize; 1000];
//! let mut unused = vec![(); 1000];
//! let mut rows = vec![0usize; 1000];
//! for_row_chunks(&mut squares, &mut unused, &mut rows, 1, |first, out, _, _| {
//!     for (t, v) in out.iter_mut().enumerate() {
//!         *v = (first + t) * (first + t);
//!     }
//!     Ok::<(), ()>(())
//! })
//! .unwrap();
//! assert_eq!(squares[999], 998_001);
//! ```

use metric_loss_core::Float;

/// Rows per thread below which splitting is not worth a thread spawn (~20 µs each).
pub const MIN_ROWS_PER_THREAD: usize = 128;

/// The environment variable that caps the thread count (read once, on first use).
pub const THREADS_ENV: &str = "METRIC_LOSS_THREADS";

/// The thread cap set in code (0: none set).
static THREADS_SET: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Caps the threads every loss call of this process may use, in code rather than through
/// [`THREADS_ENV`]: `Some(n)` for at most `n` (1 runs everything on the calling thread),
/// `None` to go back to the environment's or the machine's count. Results are identical
/// bit for bit whatever the cap. The helper threads are started on the first parallel
/// call, sized by the cap then in force; set it before training starts.
///
/// To share a training process's own rayon pool instead (no second pool beside it), call
/// the loss inside it: a call made from a rayon worker thread (`pool.install(|| ...)`)
/// splits its rows over that pool, at most [`max_threads`] of its threads, and starts no
/// threads of its own.
///
/// ```
/// use metric_loss_distances::parallel::{max_threads, set_max_threads};
///
/// set_max_threads(Some(1));
/// assert_eq!(max_threads(), 1);
/// set_max_threads(None);
/// ```
pub fn set_max_threads(threads: Option<usize>) {
    THREADS_SET.store(threads.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
}

/// The most threads a call may use: 1 without the `threads` feature; otherwise the cap set
/// with [`set_max_threads`], else [`THREADS_ENV`] if it holds a positive integer, else the
/// available parallelism (the environment is read once per process). Inside a rayon pool,
/// at most that pool's thread count.
pub fn max_threads() -> usize {
    #[cfg(feature = "threads")]
    {
        use std::sync::OnceLock;
        static THREADS: OnceLock<usize> = OnceLock::new();
        let set = THREADS_SET.load(std::sync::atomic::Ordering::Relaxed);
        let cap = if set > 0 {
            set
        } else {
            *THREADS.get_or_init(|| {
                std::env::var(THREADS_ENV)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .filter(|t| *t > 0)
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |p| p.get()))
            })
        };
        match rayon::current_thread_index() {
            Some(_) => cap.min(rayon::current_num_threads()),
            None => cap,
        }
    }
    #[cfg(not(feature = "threads"))]
    {
        1
    }
}

/// How many threads to use for `rows` rows: [`max_threads`], but at most one thread per
/// [`MIN_ROWS_PER_THREAD`] rows, and at least one.
pub fn threads_for(rows: usize) -> usize {
    max_threads().min(rows / MIN_ROWS_PER_THREAD).max(1)
}

/// Calls `f(first_row, a_chunk, b_chunk, c_chunk)` on consecutive row chunks of `a` and `b`
/// (one entry per row) and `c` (`c_stride` entries per row), on [`threads_for`] threads.
/// Returns the error of the lowest chunk that failed, so the first failing row wins as in
/// a sequential loop. (A slice of `()` is free for a per-row buffer the caller does not
/// need: `vec![(); rows]` does not allocate.)
///
/// # Panics
/// If the slices' lengths disagree (`a.len() != b.len()` or
/// `c.len() != a.len() * c_stride`), or if `f` panics.
pub fn for_row_chunks<A: Send, B: Send, C: Send, E: Send>(
    a: &mut [A],
    b: &mut [B],
    c: &mut [C],
    c_stride: usize,
    f: impl Fn(usize, &mut [A], &mut [B], &mut [C]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    for_row_chunks_on(threads_for(a.len()), a, b, c, c_stride, f)
}

/// [`for_row_chunks`] on exactly `threads` threads (at most one per row).
pub(crate) fn for_row_chunks_on<A: Send, B: Send, C: Send, E: Send>(
    threads: usize,
    a: &mut [A],
    b: &mut [B],
    c: &mut [C],
    c_stride: usize,
    f: impl Fn(usize, &mut [A], &mut [B], &mut [C]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    assert_eq!(a.len(), b.len(), "for_row_chunks: one `b` entry per row");
    assert_eq!(
        c.len(),
        a.len() * c_stride,
        "for_row_chunks: `c_stride` `c` entries per row"
    );
    let rows = a.len();
    let threads = threads.min(rows);
    if threads <= 1 || c_stride == 0 {
        return f(0, a, b, c);
    }
    let chunk = rows.div_ceil(threads);
    run_chunks(
        a.chunks_mut(chunk)
            .zip(b.chunks_mut(chunk))
            .zip(c.chunks_mut(chunk * c_stride))
            .enumerate()
            .map(|(i, ((a, b), c))| (i * chunk, a, b, c)),
        &f,
    )
}

/// [`for_row_chunks`] with one scratch value per chunk instead of a per-row `b`:
/// `f(first_row, a_chunk, scratch, c_chunk)`. `scratch` grows to the chunk count (with
/// `S::default()`) and is otherwise left as the previous call left it, so buffers inside
/// it are reused: a caller keeping `scratch` allocates nothing in steady state. Results
/// must not depend on what `scratch` held before (each row overwrites what it reads), or
/// they would depend on the thread count.
///
/// ```
/// use metric_loss_distances::parallel::for_row_chunks_with_scratch;
///
/// // Each chunk sorts its rows in its own reusable buffer.
/// let mut medians = vec![0u32; 300];
/// let mut rows: Vec<u32> = (0..300 * 5).map(|i| (i * 7919 % 13) as u32).collect();
/// let mut buffers: Vec<Vec<u32>> = Vec::new();
/// for_row_chunks_with_scratch(&mut medians, &mut rows, 5, &mut buffers, |_, out, buf, rows| {
///     for (m, row) in out.iter_mut().zip(rows.chunks_exact(5)) {
///         buf.clear();
///         buf.extend_from_slice(row);
///         buf.sort_unstable();
///         *m = buf[2];
///     }
///     Ok::<(), ()>(())
/// })
/// .unwrap();
/// assert!(!buffers.is_empty());
/// ```
///
/// # Panics
/// If `c.len() != a.len() * c_stride`, or if `f` panics.
pub fn for_row_chunks_with_scratch<A: Send, C: Send, S: Send + Default, E: Send>(
    a: &mut [A],
    c: &mut [C],
    c_stride: usize,
    scratch: &mut Vec<S>,
    f: impl Fn(usize, &mut [A], &mut S, &mut [C]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    for_row_chunks_with_scratch_on(threads_for(a.len()), a, c, c_stride, scratch, f)
}

/// [`for_row_chunks_with_scratch`] on exactly `threads` threads (at most one per row).
pub(crate) fn for_row_chunks_with_scratch_on<A: Send, C: Send, S: Send + Default, E: Send>(
    threads: usize,
    a: &mut [A],
    c: &mut [C],
    c_stride: usize,
    scratch: &mut Vec<S>,
    f: impl Fn(usize, &mut [A], &mut S, &mut [C]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    assert_eq!(
        c.len(),
        a.len() * c_stride,
        "for_row_chunks_with_scratch: `c_stride` `c` entries per row"
    );
    let rows = a.len();
    let threads = threads.min(rows).max(1);
    if scratch.len() < threads {
        scratch.resize_with(threads, S::default);
    }
    if threads == 1 || c_stride == 0 {
        return f(0, a, &mut scratch[0], c);
    }
    let chunk = rows.div_ceil(threads);
    run_chunks(
        a.chunks_mut(chunk)
            .zip(c.chunks_mut(chunk * c_stride))
            .zip(scratch.iter_mut())
            .enumerate()
            .map(|(i, ((a, c), s))| (i * chunk, a, std::slice::from_mut(s), c)),
        &|first, a, s: &mut [S], c| f(first, a, &mut s[0], c),
    )
}

/// Runs `f` on every chunk, the first on the calling thread and the others on
/// [`helpers`], and returns the lowest chunk's error.
///
/// Why a pool of our own, one thread short of [`max_threads`]: with rayon's global pool
/// (one worker per core) the caller blocked while the workers ran the chunks, and the
/// workers then spun looking for work while the caller ran the serial steps between
/// parallel ones, so on 2 cores three threads competed for two. The serial gradient after
/// the parallel mining took about twice as long on 2 threads as on one. Persistent
/// workers, rather than a thread spawned per call, because a fresh thread was often left
/// on the caller's core for much of a 2 ms call.
#[cfg(feature = "threads")]
fn run_chunks<'s, A: Send + 's, B: Send + 's, C: Send + 's, E: Send>(
    mut chunks: impl Iterator<Item = (usize, &'s mut [A], &'s mut [B], &'s mut [C])>,
    f: &(impl Fn(usize, &mut [A], &mut [B], &mut [C]) -> Result<(), E> + Sync),
) -> Result<(), E> {
    let Some((first, a, b, c)) = chunks.next() else {
        return Ok(());
    };
    // Collecting no further chunk allocates nothing: a single chunk costs no bookkeeping.
    let others: Vec<_> = chunks.collect();
    // Called from a rayon worker (the caller's own pool): split over that pool.
    let callers_pool = rayon::current_thread_index().is_some();
    if others.is_empty() {
        return f(first, a, b, c);
    }
    let pool = if callers_pool {
        None
    } else if let Some(pool) = helpers() {
        Some(pool)
    } else {
        f(first, a, b, c)?;
        return others
            .into_iter()
            .try_for_each(|(first, a, b, c)| f(first, a, b, c));
    };
    let mut results: Vec<Option<Result<(), E>>> = Vec::new();
    results.resize_with(others.len(), || None);
    let mut own = None;
    // One body for either pool (a closure cannot name the scope's lifetime).
    macro_rules! spawn_chunks {
        ($scope:ident) => {{
            for ((first, a, b, c), slot) in others.into_iter().zip(results.iter_mut()) {
                $scope.spawn(move |_| *slot = Some(f(first, a, b, c)));
            }
            own = Some(f(first, a, b, c));
        }};
    }
    match pool {
        Some(pool) => pool.in_place_scope(|scope| spawn_chunks!(scope)),
        None => rayon::in_place_scope(|scope| spawn_chunks!(scope)),
    }
    // The lowest chunk's error first.
    own.into_iter()
        .chain(results.into_iter().flatten())
        .collect()
}

/// The helper threads: [`max_threads`] − 1 of them (the caller is the last), started on
/// first use; `None` when there are none to start (or the OS refused them: the work then
/// runs on the calling thread).
#[cfg(feature = "threads")]
fn helpers() -> Option<&'static rayon::ThreadPool> {
    use std::sync::OnceLock;
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = max_threads().saturating_sub(1);
        (helpers > 0)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(helpers)
                    .thread_name(|i| format!("metric-loss-{i}"))
                    .build()
                    .ok()
            })
            .flatten()
    })
    .as_ref()
}

/// Without the `threads` feature the chunks run one after another on the calling thread.
#[cfg(not(feature = "threads"))]
fn run_chunks<'s, A: Send + 's, B: Send + 's, C: Send + 's, E: Send>(
    mut chunks: impl Iterator<Item = (usize, &'s mut [A], &'s mut [B], &'s mut [C])>,
    f: &(impl Fn(usize, &mut [A], &mut [B], &mut [C]) -> Result<(), E> + Sync),
) -> Result<(), E> {
    chunks.try_for_each(|(first, a, b, c)| f(first, a, b, c))
}

/// `f(first_row, rows)` on consecutive chunks of the `row_len`-wide rows of `out` (whole
/// rows only), on `threads` threads (at most one per row; see [`threads_for`]).
///
/// ```
/// use metric_loss_distances::parallel::for_rows_on;
/// let mut out = vec![0usize; 6 * 2];
/// for_rows_on(2, &mut out, 2, |r0, rows| {
///     for (t, v) in rows.iter_mut().enumerate() {
///         *v = r0 * 2 + t;
///     }
/// });
/// assert_eq!(out, (0..12).collect::<Vec<_>>());
/// ```
pub fn for_rows_on<T: Send>(
    threads: usize,
    out: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let (mut unused, mut also_unused) = (vec![(); rows], vec![(); rows]);
    infallible(for_row_chunks_on(
        threads,
        &mut unused,
        &mut also_unused,
        out,
        row_len,
        |r0, _, _, c| {
            f(r0, c);
            Ok(())
        },
    ));
}

/// Runs `f(first_row, rows)` on every chunk (see [`run_chunks`]).
fn run_rows<'s, T: Send + 's>(
    chunks: impl Iterator<Item = (usize, &'s mut [T])>,
    f: &(impl Fn(usize, &mut [T]) + Sync),
) {
    let chunks = chunks.map(|(r0, rows)| (r0, &mut [][..], &mut [][..], rows));
    infallible(run_chunks::<(), (), T, _>(chunks, &|r0, _, _, rows| {
        f(r0, rows);
        Ok(())
    }));
}

/// The result of work that cannot fail.
fn infallible(done: Result<(), std::convert::Infallible>) {
    match done {
        Ok(()) => {}
        Err(never) => match never {},
    }
}

/// The cost of a row of the upper triangle beyond its entries, in entries: the strips of
/// the triangle's product also compute the square block on their diagonal, about 64 more
/// entries per row. Without it, the part with the short rows (more strips) took ~15%
/// longer than the other at N = 1024 on 2 threads.
pub const ROW_OVERHEAD: usize = 64;

/// Row boundaries splitting an `n x n` upper triangle into `parts` ranges of about equal
/// cost: `bounds` becomes `0 = b₀ < b₁ < … < b_k = n`, with `k ≤ parts` (fewer when there
/// are fewer rows than parts). Row i costs its `n − i` entries plus [`ROW_OVERHEAD`].
///
/// ```
/// use metric_loss_distances::parallel::triangle_bounds;
/// let mut bounds = Vec::new();
/// triangle_bounds(1000, 2, &mut bounds);
/// // The first rows are the longest: the first part has fewer of them.
/// assert_eq!(bounds, [0, 311, 1000]);
/// ```
pub fn triangle_bounds(n: usize, parts: usize, bounds: &mut Vec<usize>) {
    // The cost of rows 0..s.
    let overhead = ROW_OVERHEAD as u128;
    let area = |s: u128| s * (n as u128 + overhead) - s * s.saturating_sub(1) / 2;
    let (total, parts) = (area(n as u128), parts.clamp(1, n.max(1)) as u128);
    bounds.clear();
    bounds.push(0);
    let mut s = 0;
    for k in 1..parts {
        while s < n && area(s as u128) * parts < total * k {
            s += 1;
        }
        if s > *bounds.last().unwrap_or(&0) && s < n {
            bounds.push(s);
        }
    }
    if n > 0 {
        bounds.push(n);
    }
}

/// Row boundaries splitting `n` rows into at most `parts` ranges of whole `block`-row
/// blocks counted from row 0 (the last block may be partial): `bounds` becomes
/// `0 = b₀ < b₁ < … < b_k = n` (`[0, 0]` for no rows), every bᵢ but the last a multiple of
/// `block`. A product that accumulates into its output (beta ≠ 0) keeps its bits on any
/// thread count when each thread takes such blocks and multiplies block by block, as in
/// one call.
///
/// ```
/// use metric_loss_distances::parallel::block_bounds;
/// let mut bounds = Vec::new();
/// block_bounds(1000, 256, 2, &mut bounds);
/// assert_eq!(bounds, [0, 512, 1000]);
/// block_bounds(100, 256, 2, &mut bounds);
/// assert_eq!(bounds, [0, 100]);
/// ```
pub fn block_bounds(n: usize, block: usize, parts: usize, bounds: &mut Vec<usize>) {
    bounds.clear();
    let block = block.max(1);
    let blocks = n.div_ceil(block);
    let parts = parts.min(blocks).max(1);
    bounds.extend((0..=parts).map(|p| (p * blocks / parts * block).min(n)));
}

/// `f(first_row, rows)` on the row ranges `bounds` splits `out` into (`row_len` entries
/// per row), one range per task, in parallel.
///
/// # Panics
/// If `bounds` does not run from 0 to `out.len() / row_len`, increasing.
pub fn for_row_ranges<T: Send>(
    bounds: &[usize],
    out: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    assert_eq!(bounds.first(), Some(&0), "bounds start at row 0");
    assert_eq!(
        bounds.last().map(|b| b * row_len),
        Some(out.len()),
        "bounds end at the last row"
    );
    let mut rest = out;
    let chunks = bounds.windows(2).map(|w| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut((w[1] - w[0]) * row_len);
        rest = tail;
        (w[0], head)
    });
    run_rows(chunks, &f);
}

/// Whether `test` holds for every chunk of consecutive whole rows of `data` (`row_len`
/// entries per row), the chunks tested on [`threads_for`] threads (a read-only pass over a
/// large matrix, such as a finiteness check, is otherwise a serial step between parallel
/// ones).
///
/// ```
/// use metric_loss_distances::parallel::all_row_chunks;
/// let m = vec![1.0f32; 512 * 512];
/// assert!(all_row_chunks(&m, 512, |rows| rows.iter().all(|v| v.is_finite())));
/// ```
pub fn all_row_chunks<T: Sync>(
    data: &[T],
    row_len: usize,
    test: impl Fn(&[T]) -> bool + Sync,
) -> bool {
    let rows = data.len().checked_div(row_len).unwrap_or(0);
    let threads = threads_for(rows);
    if threads <= 1 {
        return test(data);
    }
    let mut chunks: Vec<(&[T], bool)> = data
        .chunks(rows.div_ceil(threads) * row_len)
        .map(|c| (c, false))
        .collect();
    for_each_item(&mut chunks, &|(rows, holds)| *holds = test(rows));
    chunks.iter().all(|(_, holds)| *holds)
}

/// `task` on every item, each item a task of its own, in parallel (`threads` feature;
/// else one after another).
pub fn for_each_item<P: Send>(items: &mut [P], task: &(dyn Fn(&mut P) + Sync)) {
    run_rows(items.chunks_mut(1).enumerate(), &|_, item| {
        item.iter_mut().for_each(task)
    });
}

/// Multiply-adds a thread must get before [`gemm_rows`] splits a product: about 50 µs of
/// work, well above what handing a chunk to a helper thread costs.
const MIN_PRODUCT_WORK: usize = 1 << 21;

/// matrixmultiply's block of rows (its `MC` for f32 and f64). Rows at the edge of a block
/// take a masked kernel, which rounds `beta · C` differently from a full tile, so a split
/// elsewhere would change the bits of a product that accumulates into a non-zero `C`.
const KERNEL_ROWS: usize = 64;

/// `T::gemm` for `C = alpha · A B + beta · C` with `C` row-major and contiguous
/// (`rows x n`), its whole blocks of 64 rows (matrixmultiply's own row block) split over
/// threads by the work of the product rather than by its row count (a d×d product over
/// the rows of a batch has few rows but much work in each), the last partial block after
/// them. Every row goes through the same blocks and kernels as in one call, so the bits do
/// not depend on the thread count, whatever `beta`.
///
/// `a` and `b` are `(data, row stride, column stride)` and may be transposed views. The
/// bench's GEMM floor is this function, so the floor and the losses split alike.
///
/// # Panics
/// As [`Float::gemm`]: if a stride and shape reach past the end of a slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows<T: Float>(
    rows: usize,
    inner: usize,
    n: usize,
    alpha: T,
    a: (&[T], usize, usize),
    b: (&[T], usize, usize),
    beta: T,
    c: &mut [T],
) {
    debug_assert_eq!(c.len(), rows * n);
    let block = KERNEL_ROWS * n;
    if block == 0 {
        return;
    }
    let gemm = |r0: usize, chunk: &mut [T]| {
        T::gemm(
            chunk.len() / n,
            inner,
            n,
            alpha,
            (&a.0[r0 * a.1..], a.1, a.2),
            b,
            beta,
            (chunk, n, 1),
        );
    };
    let work = rows.saturating_mul(inner).saturating_mul(n);
    let threads = max_threads().min(work / MIN_PRODUCT_WORK).max(1);
    let whole = rows / KERNEL_ROWS;
    let (head, tail) = c.split_at_mut(whole * block);
    if threads == 1 {
        gemm(0, head);
    } else {
        for_rows_on(threads, head, block, |b0, chunk| {
            gemm(b0 * KERNEL_ROWS, chunk)
        });
    }
    if !tail.is_empty() {
        gemm(whole * KERNEL_ROWS, tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_split_gemm_matches_one_call() {
        // Enough work for every thread, a partial last block, inexact values and a non-zero
        // C scaled by beta. (The split that misses the kernel's blocks and changes VicReg's
        // bits is caught by the views' thread test on the loss itself.)
        let (rows, inner, n) = (301, 129, 257);
        let a: Vec<f64> = (0..rows * inner).map(|i| (i % 17) as f64 / 3.1).collect();
        let b: Vec<f64> = (0..inner * n).map(|i| (i % 13) as f64 / 7.3).collect();
        let c: Vec<f64> = (0..rows * n).map(|i| (i % 11) as f64 / 9.7).collect();
        let mut one = c.clone();
        f64::gemm(
            rows,
            inner,
            n,
            0.5,
            (&a, inner, 1),
            (&b, n, 1),
            0.7,
            (&mut one, n, 1),
        );
        let mut split = c;
        gemm_rows(
            rows,
            inner,
            n,
            0.5,
            (&a, inner, 1),
            (&b, n, 1),
            0.7,
            &mut split,
        );
        assert_eq!(one, split);
    }

    #[test]
    fn chunks_cover_every_row_once_and_the_first_error_wins() {
        for threads in [1, 2, 3, 7] {
            let mut a = vec![0usize; 1000];
            let mut b = vec![0u8; 1000];
            let mut c = vec![0usize; 3000];
            for_row_chunks_on(threads, &mut a, &mut b, &mut c, 3, |start, a, b, c| {
                for (t, ((x, y), z)) in a
                    .iter_mut()
                    .zip(b.iter_mut())
                    .zip(c.chunks_mut(3))
                    .enumerate()
                {
                    *x = start + t;
                    *y += 1;
                    z.fill(start + t);
                }
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(a.iter().enumerate().all(|(i, x)| *x == i));
            assert!(b.iter().all(|y| *y == 1));
            assert!(c.iter().enumerate().all(|(i, z)| *z == i / 3));
            let err =
                for_row_chunks_on(
                    threads,
                    &mut a,
                    &mut b,
                    &mut c,
                    3,
                    |start, a, _, _| match (start..start + a.len()).find(|r| r % 300 == 299) {
                        Some(r) => Err(r),
                        None => Ok(()),
                    },
                );
            assert_eq!(err, Err(299), "{threads} threads");
        }
    }

    #[test]
    fn chunk_scratch_is_one_per_chunk_and_reused() {
        for threads in [1, 2, 3, 7] {
            let mut a = vec![0usize; 1000];
            let mut c = vec![0usize; 2000];
            let mut scratch: Vec<Vec<usize>> = Vec::new();
            for _ in 0..2 {
                for_row_chunks_with_scratch_on(
                    threads,
                    &mut a,
                    &mut c,
                    2,
                    &mut scratch,
                    |start, a, s, c| {
                        s.clear();
                        s.extend(start..start + a.len());
                        for ((x, z), v) in a.iter_mut().zip(c.chunks_mut(2)).zip(s.iter()) {
                            *x = *v;
                            z.fill(*v);
                        }
                        Ok::<(), ()>(())
                    },
                )
                .unwrap();
            }
            assert!(a.iter().enumerate().all(|(i, x)| *x == i));
            assert!(c.iter().enumerate().all(|(i, z)| *z == i / 2));
            assert_eq!(scratch.len(), threads, "{threads} threads");
            assert_eq!(scratch.iter().map(Vec::len).sum::<usize>(), 1000);
        }
    }

    #[test]
    fn rows_are_split_whole() {
        let mut out = vec![0usize; 7 * 5];
        for_rows_on(3, &mut out, 5, |r0, rows| {
            assert_eq!(rows.len() % 5, 0);
            for (t, v) in rows.iter_mut().enumerate() {
                *v = r0 * 5 + t;
            }
        });
        assert!(out.iter().enumerate().all(|(i, v)| *v == i));
    }

    #[test]
    fn triangle_bounds_balance_the_area() {
        let mut b = Vec::new();
        for n in [0, 1, 2, 3, 10, 257, 1024, 4096] {
            for parts in [1, 2, 3, 8] {
                triangle_bounds(n, parts, &mut b);
                assert_eq!(b.first(), Some(&0));
                assert_eq!(*b.last().unwrap(), n, "n={n}");
                assert!(b.windows(2).all(|w| w[0] < w[1]) || n == 0, "{b:?}");
                assert!(b.len() - 1 <= parts.max(1));
                if n >= 1024 {
                    let area = |s: usize| s * (n + ROW_OVERHEAD) - s * s.saturating_sub(1) / 2;
                    let share = area(n) / parts;
                    for w in b.windows(2) {
                        let a = area(w[1]) - area(w[0]);
                        assert!(a.abs_diff(share) <= n, "n={n} parts={parts} {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn row_ranges_and_items_are_each_visited_once() {
        let mut out = vec![0usize; 10 * 3];
        for_row_ranges(&[0, 2, 7, 10], &mut out, 3, |r0, rows| {
            for (t, v) in rows.iter_mut().enumerate() {
                *v = r0 * 3 + t + 1;
            }
        });
        assert!(out.iter().enumerate().all(|(i, v)| *v == i + 1));
        let mut items = vec![1, 2, 3];
        for_each_item(&mut items, &|v| *v *= 10);
        assert_eq!(items, [10, 20, 30]);
    }

    #[test]
    fn a_thread_count_is_at_least_one() {
        assert_eq!(threads_for(0), 1);
        assert_eq!(threads_for(MIN_ROWS_PER_THREAD - 1), 1);
        assert!(max_threads() >= 1);
    }
}
