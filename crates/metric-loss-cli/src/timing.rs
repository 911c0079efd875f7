//! A small timing helper: the median of repeated runs after a warm-up.

use std::time::Instant;

/// Runs `f` `warmup` times untimed, then `reps` times timed, and returns the median
/// duration in milliseconds (the mean of the two middle values for an even count).
///
/// ```
/// let ms = metric_loss_cli::timing::median_ms(1, 5, || Ok::<(), ()>(())).unwrap();
/// assert!(ms >= 0.0);
/// ```
///
/// # Errors
/// The first error `f` returns.
pub fn median_ms<E>(
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<f64, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut times))
}

/// The median of `values` (0 when empty); sorts them in place.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn errors_stop_the_runs() {
        let mut calls = 0;
        let r = median_ms(1, 5, || {
            calls += 1;
            if calls == 3 {
                Err("boom")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("boom"));
        assert_eq!(calls, 3);
    }
}
