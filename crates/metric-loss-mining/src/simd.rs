//! The row scan of [`mine_row_grouped`](crate::mine_row_grouped) in explicit AVX2, chosen
//! at run time.
//!
//! Why explicit SIMD: the portable scan (four accumulators over 8-lane arrays) is what
//! LLVM's vectorisers make of compare-and-select code on baseline x86-64: SSE with lane
//! reversals and spills, ~0.75 ns per entry on a hot 1024-entry f32 row on this 2-core
//! AMD EPYC. Compiling the same code for the native CPU did not help (it got slower). This
//! kernel takes 0.12 ns per entry on the same row, and mining was ~20% of a TripletLoss call
//! at N = 1024 (perf).
//!
//! The semantics are the portable scan's: `min`/`max` skip NaN (x86's `min`/`max` return
//! their second operand, the accumulator, when either is NaN), `beyond` is the smallest
//! entry strictly above the threshold, and NaNs are counted. Zero signs of the extremes
//! may differ from the portable scan's, which is allowed (see `ValueScan`). A test checks
//! both scans against each other on rows with NaN, ±∞, signed zeros and ties.

use metric_loss_core::Float;

use crate::row::{pick_max, pick_min};

/// A scan's result: (min, max, beyond, NaN count).
pub(crate) type Scan<F> = (F, F, F, usize);

/// The scan in AVX2 if this CPU has it (detected once by `std`, then a relaxed load).
pub(crate) fn scan_f32<const SEMI: bool>(row: &[f32], threshold: f32) -> Option<Scan<f32>> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `scan_f32_avx2` only needs AVX2, which was just detected on this CPU.
        // It reads `row` through safe slice indexing; nothing else is unsafe.
        #[allow(unsafe_code)]
        return Some(unsafe { x86::scan_f32_avx2::<SEMI>(row, threshold) });
    }
    let _ = (row, threshold);
    None
}

/// [`scan_f32`] for `f64` rows (4 lanes per vector).
pub(crate) fn scan_f64<const SEMI: bool>(row: &[f64], threshold: f64) -> Option<Scan<f64>> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as in `scan_f32`: AVX2 was just detected.
        #[allow(unsafe_code)]
        return Some(unsafe { x86::scan_f64_avx2::<SEMI>(row, threshold) });
    }
    let _ = (row, threshold);
    None
}

/// The first index of an entry equal to `target` and the number of such entries (NaN
/// equals nothing), in AVX2 if this CPU has it.
pub(crate) fn locate_f32(row: &[f32], target: f32) -> Option<(usize, u32)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as in `scan_f32`: AVX2 was just detected.
        #[allow(unsafe_code)]
        return Some(unsafe { x86::locate_f32_avx2(row, target) });
    }
    let _ = (row, target);
    None
}

/// [`locate_f32`] for `f64` rows.
pub(crate) fn locate_f64(row: &[f64], target: f64) -> Option<(usize, u32)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: as in `scan_f32`: AVX2 was just detected.
        #[allow(unsafe_code)]
        return Some(unsafe { x86::locate_f64_avx2(row, target) });
    }
    let _ = (row, target);
    None
}

/// Adds the entries the vectors did not cover to the vectors' (already folded) result,
/// with the portable scan's rules (`pick_min`/`pick_max` skip NaN).
fn finish<F: Float>(body: Scan<F>, tail: &[F], threshold: F, semi: bool) -> Scan<F> {
    let (mut min, mut max, mut beyond, mut nans) = body;
    for &v in tail {
        min = pick_min(min, v);
        max = pick_max(max, v);
        // `v != v`: NaN.
        #[allow(clippy::eq_op)]
        let is_nan = v != v;
        nans += usize::from(is_nan);
        if semi && v > threshold {
            beyond = pick_min(beyond, v);
        }
    }
    (min, max, beyond, nans)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{finish, Scan};

    /// The scan and the locate for one precision: written once, instantiated with that
    /// precision's intrinsics. The scan takes two vectors per step (two independent
    /// dependency chains per accumulator).
    macro_rules! row_kernels {
        (
            $float:ty, lanes: $lanes:literal, scan: $scan:ident, locate: $locate:ident,
            load: |$c:ident| $load:expr, set1: $set1:ident, min: $min:ident, max: $max:ident,
            cmp: $cmp:ident, blendv: $blendv:ident, to_bits: $to_bits:ident,
            movemask: $movemask:ident, add: $add:ident, sub: $sub:ident,
            hmin: $hmin:ident, hmax: $hmax:ident, hsum: $hsum:ident
        ) => {
            #[target_feature(enable = "avx2")]
            pub(super) fn $scan<const SEMI: bool>(
                row: &[$float],
                threshold: $float,
            ) -> Scan<$float> {
                let inf = $set1(<$float>::INFINITY);
                let t = $set1(threshold);
                let (mut mn0, mut mn1) = (inf, inf);
                let ninf = $set1(<$float>::NEG_INFINITY);
                let (mut mx0, mut mx1) = (ninf, ninf);
                let (mut by0, mut by1) = (inf, inf);
                let mut nan_lanes = _mm256_setzero_si256();
                let chunks = row.chunks_exact(2 * $lanes);
                let tail = chunks.remainder();
                let load = |$c: &[$float]| $load;
                for c in chunks {
                    let (v0, v1) = (load(&c[..$lanes]), load(&c[$lanes..]));
                    mn0 = $min(v0, mn0);
                    mn1 = $min(v1, mn1);
                    mx0 = $max(v0, mx0);
                    mx1 = $max(v1, mx1);
                    if SEMI {
                        let g0 = $cmp::<_CMP_GT_OQ>(v0, t);
                        let g1 = $cmp::<_CMP_GT_OQ>(v1, t);
                        by0 = $min($blendv(inf, v0, g0), by0);
                        by1 = $min($blendv(inf, v1, g1), by1);
                    }
                    // An unordered compare is all ones (-1) on NaN lanes.
                    let u0 = $to_bits($cmp::<_CMP_UNORD_Q>(v0, v0));
                    let u1 = $to_bits($cmp::<_CMP_UNORD_Q>(v1, v1));
                    nan_lanes = $sub(nan_lanes, $add(u0, u1));
                }
                let body = (
                    $hmin($min(mn0, mn1)),
                    $hmax($max(mx0, mx1)),
                    $hmin($min(by0, by1)),
                    $hsum(nan_lanes),
                );
                finish(body, tail, threshold, SEMI)
            }

            /// The first index of an entry equal to `target` (NaN never is) and how many are.
            #[target_feature(enable = "avx2")]
            pub(super) fn $locate(row: &[$float], target: $float) -> (usize, u32) {
                let t = $set1(target);
                let (mut first, mut ties) = (usize::MAX, 0u32);
                let chunks = row.chunks_exact($lanes);
                let tail = chunks.remainder();
                for (b, $c) in chunks.enumerate() {
                    let hits = $movemask($cmp::<_CMP_EQ_OQ>($load, t)) as u32;
                    if hits != 0 {
                        if first == usize::MAX {
                            first = b * $lanes + hits.trailing_zeros() as usize;
                        }
                        ties += hits.count_ones();
                    }
                }
                let base = row.len() - tail.len();
                for (j, v) in tail.iter().enumerate() {
                    if *v == target {
                        first = first.min(base + j);
                        ties += 1;
                    }
                }
                (first, ties)
            }
        };
    }

    row_kernels!(
        f32, lanes: 8, scan: scan_f32_avx2, locate: locate_f32_avx2,
        load: |c| _mm256_setr_ps(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]),
        set1: _mm256_set1_ps, min: _mm256_min_ps, max: _mm256_max_ps, cmp: _mm256_cmp_ps,
        blendv: _mm256_blendv_ps, to_bits: _mm256_castps_si256, movemask: _mm256_movemask_ps,
        add: _mm256_add_epi32, sub: _mm256_sub_epi32,
        hmin: hmin_ps, hmax: hmax_ps, hsum: hsum_epi32
    );

    row_kernels!(
        f64, lanes: 4, scan: scan_f64_avx2, locate: locate_f64_avx2,
        load: |c| _mm256_setr_pd(c[0], c[1], c[2], c[3]),
        set1: _mm256_set1_pd, min: _mm256_min_pd, max: _mm256_max_pd, cmp: _mm256_cmp_pd,
        blendv: _mm256_blendv_pd, to_bits: _mm256_castpd_si256, movemask: _mm256_movemask_pd,
        add: _mm256_add_epi64, sub: _mm256_sub_epi64,
        hmin: hmin_pd, hmax: hmax_pd, hsum: hsum_epi64
    );

    // Horizontal reductions in registers. The accumulators never hold NaN (NaN entries
    // leave them unchanged), so the order of the pairwise min/max does not matter.

    #[target_feature(enable = "avx2")]
    fn hmin_ps(v: __m256) -> f32 {
        let m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_min_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_min_ss(m, _mm_shuffle_ps::<0b01>(m, m)))
    }

    #[target_feature(enable = "avx2")]
    fn hmax_ps(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m)))
    }

    #[target_feature(enable = "avx2")]
    fn hmin_pd(v: __m256d) -> f64 {
        let m = _mm_min_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        _mm_cvtsd_f64(_mm_min_sd(m, _mm_unpackhi_pd(m, m)))
    }

    #[target_feature(enable = "avx2")]
    fn hmax_pd(v: __m256d) -> f64 {
        let m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        _mm_cvtsd_f64(_mm_max_sd(m, _mm_unpackhi_pd(m, m)))
    }

    /// The sum of the eight 32-bit lanes, each read as unsigned (NaN counts).
    #[target_feature(enable = "avx2")]
    fn hsum_epi32(v: __m256i) -> usize {
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256::<1>(v);
        // Widen to 64 bits before adding: per-lane counts are below 2³², sums may not be.
        let wide = _mm256_add_epi64(_mm256_cvtepu32_epi64(lo), _mm256_cvtepu32_epi64(hi));
        hsum_epi64(wide)
    }

    /// The sum of the four 64-bit lanes.
    #[target_feature(enable = "avx2")]
    fn hsum_epi64(v: __m256i) -> usize {
        let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
        _mm_cvtsi128_si64(s) as u64 as usize
    }
}
