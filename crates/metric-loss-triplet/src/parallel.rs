//! Splitting per-anchor work over threads (the `threads` feature).
//!
//! Mining reads one row of the distance matrix per anchor and writes only that anchor's
//! results, so rows split into contiguous chunks, one per thread, with no synchronisation.
//! Without the feature (or for small batches) everything runs on the calling thread.

/// Rows per thread below which splitting is not worth a thread spawn (~20 µs).
#[cfg(feature = "threads")]
const MIN_ROWS_PER_THREAD: usize = 128;

/// How many threads to use for `rows` rows: 1 without the `threads` feature; otherwise
/// `MATMUL_NUM_THREADS` if set (the same cap as matrixmultiply's pool), else the available
/// parallelism, and at most one thread per `MIN_ROWS_PER_THREAD` rows. Read once.
pub(crate) fn threads_for(rows: usize) -> usize {
    #[cfg(feature = "threads")]
    {
        use std::sync::OnceLock;
        static THREADS: OnceLock<usize> = OnceLock::new();
        let max = *THREADS.get_or_init(|| {
            std::env::var("MATMUL_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|t| *t > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |p| p.get()))
        });
        max.min(rows / MIN_ROWS_PER_THREAD).max(1)
    }
    #[cfg(not(feature = "threads"))]
    {
        let _ = rows;
        1
    }
}

/// Calls `f(first_row, a_chunk, b_chunk, c_chunk)` on consecutive row chunks of `a` and `b`
/// (one entry per row) and `c` (`c_stride` entries per row), on [`threads_for`] threads.
/// Returns the error of the lowest chunk that failed, so the first failing row wins as in
/// a sequential loop.
pub(crate) fn for_row_chunks<A: Send, B: Send, C: Send, E: Send>(
    a: &mut [A],
    b: &mut [B],
    c: &mut [C],
    c_stride: usize,
    f: impl Fn(usize, &mut [A], &mut [B], &mut [C]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    debug_assert_eq!(a.len(), b.len());
    debug_assert_eq!(c.len(), a.len() * c_stride);
    let rows = a.len();
    let threads = threads_for(rows);
    if threads <= 1 || c_stride == 0 {
        return f(0, a, b, c);
    }
    let chunk = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let mut chunks = a
            .chunks_mut(chunk)
            .zip(b.chunks_mut(chunk))
            .zip(c.chunks_mut(chunk * c_stride))
            .enumerate();
        // The calling thread takes the first chunk itself.
        let (_, ((a0, b0), c0)) = chunks.next().expect("rows > 0");
        let handles: Vec<_> = chunks
            .map(|(i, ((a, b), c))| scope.spawn(move || f(i * chunk, a, b, c)))
            .collect();
        let first = f(0, a0, b0, c0);
        let rest = handles
            .into_iter()
            .map(|h| h.join().expect("a mining thread panicked"));
        std::iter::once(first)
            .chain(rest)
            .collect::<Result<(), E>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once_and_the_first_error_wins() {
        let mut a = vec![0usize; 1000];
        let mut b = vec![0u8; 1000];
        let mut c = vec![0usize; 3000];
        for_row_chunks(&mut a, &mut b, &mut c, 3, |start, a, b, c| {
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
        let err = for_row_chunks(&mut a, &mut b, &mut c, 3, |start, a, _, _| {
            match (start..start + a.len()).find(|r| r % 300 == 299) {
                Some(r) => Err(r),
                None => Ok(()),
            }
        });
        assert_eq!(err, Err(299));
    }
}
