//! Building blocks of the vectorised row arithmetic the losses share: per-lane
//! accumulators and an exponential the compiler can vectorise.
//!
//! Why lanes: a float sum or maximum kept in one accumulator fixes the order of the
//! operations, so the compiler must keep the loop scalar. Eight accumulators, combined at
//! the end in a fixed order, let it use vector registers; the result depends only on the
//! row, never on the thread count.

use metric_loss_core::Float;

/// Accumulators per reduction.
pub const LANES: usize = 8;

/// The element types of the vectorised rows: [`Float`] plus the exponential they use
/// and an order-preserving integer image (integer maxima vectorise; float ones, with their
/// NaN rules, do not).
pub trait DenseFloat: Float {
    /// The integer image of [`DenseFloat::key`].
    type Key: Ord + Copy;

    /// `e^x` with results below the smallest normal number flushed to 0, as TensorFlow's
    /// CPU kernels do (e^x is 0 below x ≈ −87.34 in f32, not a subnormal); +∞ above the
    /// range, NaN for NaN.
    fn exp_ftz(x: Self) -> Self;

    /// An integer with the order of the numbers (−0 just below +0; not for NaN).
    fn key(self) -> Self::Key;

    /// The number whose [`DenseFloat::key`] is `k`.
    fn from_key(k: Self::Key) -> Self;
}

impl DenseFloat for f32 {
    type Key = i32;

    /// Cephes's `expf` in a form the compiler vectorises on the SSE2 baseline: no libm call,
    /// no branch, no float-to-int conversion. k = round(x/ln 2) by the 1.5·2²³ rounding
    /// trick (k sits in the low bits of the sum), r = x − k ln 2 in two parts (Cody and
    /// Waite), e^r by a degree-6 polynomial on |r| ≤ ln 2 / 2, and 2^k as two powers of two
    /// built from exponent bits so that both stay normal over the whole range. About 1 ulp
    /// from the correctly rounded value.
    #[inline(always)]
    fn exp_ftz(x: f32) -> f32 {
        // The smallest f32 above ln of the smallest normal number: below it TF gives 0,
        // at it e^x is still normal (by ~40 ulp, far more than the error here).
        const FLUSH_BELOW: f32 = -87.336_54;
        const ROUND: f32 = 12_582_912.0;
        // Clamped so that 2^k stays within two normal halves and no lane computes a
        // subnormal (slow on x86): beyond 88.73 the product overflows to +∞ as it should,
        // below FLUSH_BELOW the value is replaced by 0.
        let xc = if x < FLUSH_BELOW { FLUSH_BELOW } else { x };
        let xc = if xc > 89.0 { 89.0 } else { xc };
        let v = xc * std::f32::consts::LOG2_E + ROUND;
        let kf = v - ROUND;
        let k = v.to_bits() as i32 - ROUND.to_bits() as i32;
        let r = (xc - kf * 0.693_359_4) - kf * -2.121_944_4e-4;
        let p = (((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r
            + 4.166_579_6e-2)
            * r
            + 0.166_666_65)
            * r
            + 0.5)
            * (r * r)
            + r
            + 1.0;
        let k1 = k >> 1;
        let two_k1 = f32::from_bits(((k1 + 127) << 23) as u32);
        let two_k2 = f32::from_bits(((k - k1 + 127) << 23) as u32);
        let e = p * two_k1 * two_k2;
        if x < FLUSH_BELOW || e < f32::MIN_POSITIVE {
            0.0
        } else {
            e
        }
    }

    #[inline(always)]
    fn key(self) -> i32 {
        let b = self.to_bits() as i32;
        b ^ (((b >> 31) as u32) >> 1) as i32
    }

    #[inline(always)]
    fn from_key(k: i32) -> f32 {
        f32::from_bits((k ^ (((k >> 31) as u32) >> 1) as i32) as u32)
    }
}

impl DenseFloat for f64 {
    type Key = i64;

    #[inline(always)]
    fn exp_ftz(x: f64) -> f64 {
        let e = x.exp();
        if e < f64::MIN_POSITIVE {
            0.0
        } else {
            e
        }
    }

    #[inline(always)]
    fn key(self) -> i64 {
        let b = self.to_bits() as i64;
        b ^ (((b >> 63) as u64) >> 1) as i64
    }

    #[inline(always)]
    fn from_key(k: i64) -> f64 {
        f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
    }
}

/// `v` where `keep`, else 0, without a branch.
#[inline(always)]
pub fn keep<T: Float>(keep: bool, v: T) -> T {
    if keep {
        v
    } else {
        T::ZERO
    }
}

/// The lanes' sum, in a fixed order.
#[inline(always)]
pub fn total<T: Float>(lanes: [T; LANES]) -> T {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// Whether every entry is finite: 0·v is NaN exactly for ±∞ and NaN, and a NaN stays in
/// a sum.
#[inline(always)]
pub fn all_finite<T: Float>(v: &[T]) -> bool {
    let mut acc = [T::ZERO; LANES];
    let mut blocks = v.chunks_exact(LANES);
    for b in &mut blocks {
        for l in 0..LANES {
            acc[l] += b[l] * T::ZERO;
        }
    }
    for (l, x) in blocks.remainder().iter().enumerate() {
        acc[l] += *x * T::ZERO;
    }
    total(acc) == T::ZERO
}

/// Σ `v` over the lanes, in a fixed order.
#[inline(always)]
pub fn sum<T: Float>(v: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut blocks = v.chunks_exact(LANES);
    for b in &mut blocks {
        for l in 0..LANES {
            acc[l] += b[l];
        }
    }
    for (l, x) in blocks.remainder().iter().enumerate() {
        acc[l] += *x;
    }
    total(acc)
}

/// The largest entry of `v` (−∞ when empty; `v` holds no NaN).
#[inline(always)]
pub fn max<T: DenseFloat>(v: &[T]) -> T {
    let mut acc = [T::from_f64(f64::NEG_INFINITY).key(); LANES];
    let mut blocks = v.chunks_exact(LANES);
    for b in &mut blocks {
        for l in 0..LANES {
            acc[l] = acc[l].max(b[l].key());
        }
    }
    for (l, x) in blocks.remainder().iter().enumerate() {
        acc[l] = acc[l].max(x.key());
    }
    T::from_key(acc.into_iter().fold(acc[0], Ord::max))
}

/// Replaces each vⱼ by e^{vⱼ − c} and returns their sum: the denominator of a softmax
/// shifted by `c` (at least the largest vⱼ, so that nothing overflows).
#[inline(always)]
pub fn exp_shifted_sum<T: DenseFloat>(v: &mut [T], c: T) -> T {
    // A plain map first (the loop vectoriser's case, unlike an exponential inside per-lane
    // accumulators), then the sum.
    exp_shifted(v, c);
    sum(v)
}

/// Replaces each vⱼ by e^{vⱼ − c}: [`exp_shifted_sum`] for a caller that already has the
/// sum (a softmax's backward pass recomputing its numerators).
///
/// ```
/// let mut v = [0.0f32, 1.0];
/// metric_loss_distances::lanes::exp_shifted(&mut v, 1.0);
/// assert_eq!(v[1], 1.0);
/// assert!((v[0] - (-1.0f32).exp()).abs() < 1e-7);
/// ```
#[inline(always)]
pub fn exp_shifted<T: DenseFloat>(v: &mut [T], c: T) {
    for x in v.iter_mut() {
        *x = T::exp_ftz(*x - c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_flushes_subnormals_and_keeps_the_edges() {
        assert_eq!(f32::exp_ftz(-88.0), 0.0);
        assert!(f32::exp_ftz(-87.0) > 0.0);
        assert!(f64::exp_ftz(-88.0) > 0.0);
        assert_eq!(f32::exp_ftz(f32::NEG_INFINITY), 0.0);
        assert_eq!(f32::exp_ftz(89.0), f32::INFINITY);
        assert_eq!(f32::exp_ftz(f32::INFINITY), f32::INFINITY);
        assert!(f32::exp_ftz(f32::NAN).is_nan());
        assert_eq!(f32::exp_ftz(0.0), 1.0);
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_exact_value() {
        assert!(f32::exp_ftz(-87.336_54) >= f32::MIN_POSITIVE);
        assert_eq!(f32::exp_ftz(-87.336_55), 0.0);
        let mut x = -87.336_54f32;
        while x < 88.7 {
            let exact = f64::from(x).exp();
            let got = f64::from(f32::exp_ftz(x));
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!((got - exact).abs() <= 2.0 * ulp, "{x}: {got} vs {exact}");
            x += 0.001_37;
        }
        for x in [-1e-30f32, 1e-30, -0.0, 1e-7, -1e-7] {
            assert_eq!(f32::exp_ftz(x), x.exp(), "{x}");
        }
    }

    #[test]
    fn keys_keep_the_order() {
        let v = [
            f32::NEG_INFINITY,
            -3e38,
            -1.5,
            -1e-40,
            -0.0,
            0.0,
            1e-40,
            2.0,
            3e38,
            f32::INFINITY,
        ];
        for w in v.windows(2) {
            assert!(w[0].key() < w[1].key(), "{w:?}");
            assert_eq!(f32::from_key(w[0].key()).to_bits(), w[0].to_bits());
        }
        let v = [f64::NEG_INFINITY, -1.5, -0.0, 0.0, 1e-310, 2.0];
        for w in v.windows(2) {
            assert!(w[0].key() < w[1].key(), "{w:?}");
            assert_eq!(f64::from_key(w[1].key()).to_bits(), w[1].to_bits());
        }
    }

    #[test]
    fn all_finite_sees_every_position() {
        for len in [0usize, 1, 7, 8, 9, 23] {
            let v = vec![1.5f32; len];
            assert!(all_finite(&v));
            for at in 0..len {
                for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                    let mut w = v.clone();
                    w[at] = bad;
                    assert!(!all_finite(&w), "{len} {at} {bad}");
                }
            }
        }
    }

    #[test]
    fn sums_and_maxima_see_every_entry() {
        for len in [0usize, 1, 7, 8, 9, 23] {
            let v: Vec<f32> = (0..len).map(|i| i as f32 - 3.5).collect();
            assert_eq!(sum(&v), v.iter().sum::<f32>());
            let top = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&v), top);
            let mut e = v.clone();
            let s = exp_shifted_sum(&mut e, top.max(0.0));
            assert!((s - v.iter().map(|x| (x - top.max(0.0)).exp()).sum::<f32>()).abs() < 1e-5);
        }
    }
}
