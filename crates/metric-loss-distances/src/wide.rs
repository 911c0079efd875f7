//! Row loops compiled for AVX2 when the CPU has it, chosen at run time.
//!
//! Why: the row arithmetic of the dense and softmax losses (the exponential, the per-lane
//! sums and maxima, the side masks) is plain Rust that the compiler vectorises. On the
//! x86-64 baseline that means 4-wide SSE2; the same code compiled for AVX2 runs 8 lanes
//! per instruction. A binary built for the baseline still runs everywhere: the AVX2 copy
//! is only entered after the CPU was seen to have it.
//! Measured (`metric-loss bench --n 1024 --d 128 --threads 1`, forward, with and without
//! `METRIC_LOSS_NO_AVX2=1`): MultiSimilarity 6.9 -> 5.1 ms, Circle 7.3 -> 5.3 ms,
//! SoftNearestNeighbor 7.0 -> 6.4 ms. Calling the AVX2 copy is the one `unsafe` here.
//!
//! The numbers do not change: only AVX2 is enabled (no FMA, and Rust never fuses a
//! multiply and an add on its own), so every operation rounds as in the baseline copy, and
//! sums keep their fixed lane order. Tests compare the two copies bit for bit.

use std::sync::atomic::{AtomicBool, Ordering};

/// Calls `f`, with everything inlined into it compiled for AVX2 when this CPU has it (and
/// as usual otherwise). The results are the same bits either way.
///
/// ```
/// use metric_loss_distances::wide::with_avx2;
/// let v = [1.0f32, 2.0, 3.0];
/// assert_eq!(with_avx2(|| v.iter().map(|x| x * 2.0).sum::<f32>()), 12.0);
/// ```
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if avx2_active() {
        // SAFETY: `avx2_copy` requires only the AVX2 instructions, which were just detected
        // on this CPU; its body is `f`, safe code.
        #[allow(unsafe_code)]
        return unsafe { avx2_copy(f) };
    }
    f()
}

/// Whether [`with_avx2`] runs its AVX2 copy: this CPU has AVX2 (never off x86-64), the
/// environment variable `METRIC_LOSS_NO_AVX2` was not set when this was first asked, and
/// [`set_avx2_enabled`] did not turn it off.
pub fn avx2_active() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static USABLE: OnceLock<bool> = OnceLock::new();
        let usable = *USABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::env::var_os("METRIC_LOSS_NO_AVX2").is_none()
        });
        usable && !DISABLED.load(Ordering::Relaxed)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

static DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the AVX2 copies off (`false`) or back on (`true`, the default) for the whole
/// process: for comparing the two copies, which give the same bits.
pub fn set_avx2_enabled(enabled: bool) {
    DISABLED.store(!enabled, Ordering::Relaxed);
}

/// `f` compiled with AVX2 enabled: what LLVM inlines into it is compiled for AVX2 too.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2_copy<R>(f: impl FnOnce() -> R) -> R {
    f()
}
