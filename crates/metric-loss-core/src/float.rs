//! The scalar types losses are computed in: `f32` and `f64`.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::{
    AnyDistance, AnyMiner, AnyReducer, Distance, LossError, LossInput, LossOutput, MetricLoss,
    Miner, Reducer, Workspace,
};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point type losses are computed in. Implemented for `f32` and `f64` only (sealed).
///
/// Besides arithmetic it carries the matrix product the distance kernels need, so that
/// generic code gets the fast `matrixmultiply` kernel of each precision.
pub trait Float:
    sealed::Sealed
    + Copy
    + Default
    + PartialOrd
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + nalgebra::Scalar
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// The type's name, `"f32"` or `"f64"`.
    const DTYPE: &'static str;

    /// Rounds an `f64` to this type.
    fn from_f64(v: f64) -> Self;
    /// Widens (or keeps) the value as an `f64`.
    fn to_f64(self) -> f64;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + self)`, accurate near 0.
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Neither NaN nor infinite.
    fn is_finite(self) -> bool;
    /// The sign bit is set (true for −0.0).
    fn is_sign_negative(self) -> bool;
    /// The larger of two values (the other one if either is NaN).
    fn max(self, other: Self) -> Self;
    /// The smaller of two values (the other one if either is NaN).
    fn min(self, other: Self) -> Self;

    /// `c = alpha * a * b + beta * c` for an `m x k` matrix `a`, a `k x n` matrix `b` and an
    /// `m x n` matrix `c`, each given by a slice and its row and column strides (in elements).
    ///
    /// # Panics
    /// If a stride and shape reach past the end of its slice. Callers inside the workspace
    /// derive strides from validated shapes, so this is a bug check, not an input check.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: (&[Self], usize, usize),
        b: (&[Self], usize, usize),
        beta: Self,
        c: (&mut [Self], usize, usize),
    );

    /// The slice as `&[f32]` if `Self` is `f32`, else `None`: lets generic code hand a
    /// slice to a kernel written for one precision (explicit SIMD) without a cast.
    fn as_f32s(values: &[Self]) -> Option<&[f32]>;

    /// The slice as `&[f64]` if `Self` is `f64`, else `None` (see [`Float::as_f32s`]).
    fn as_f64s(values: &[Self]) -> Option<&[f64]>;

    /// The distance in this precision (`&dyn AnyDistance` as `&dyn Distance<Self>`), for
    /// code generic over the precision.
    fn distance(d: &dyn AnyDistance) -> &dyn Distance<Self>;

    /// The miner in this precision (see [`Float::distance`]).
    fn miner(m: &dyn AnyMiner) -> &dyn Miner<Self>;

    /// The reducer in this precision (see [`Float::distance`]).
    fn reducer(r: &dyn AnyReducer) -> &dyn Reducer<Self>;

    #[doc(hidden)]
    /// Routes a generic call to `compute_f32` or `compute_f64`.
    fn dispatch<L: MetricLoss + ?Sized>(
        loss: &L,
        input: &LossInput<'_, Self>,
        workspace: &mut Workspace,
        out: &mut LossOutput<Self>,
    ) -> Result<(), LossError>;
}

/// The largest index a `rows x cols` operand with these strides touches, plus one.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

macro_rules! impl_float {
    ($t:ty, $gemm:ident, $compute:ident, $as_f32s:expr, $as_f64s:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const DTYPE: &'static str = stringify!($t);

            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn is_sign_negative(self) -> bool {
                <$t>::is_sign_negative(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn min(self, other: Self) -> Self {
                <$t>::min(self, other)
            }

            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: (&[Self], usize, usize),
                b: (&[Self], usize, usize),
                beta: Self,
                c: (&mut [Self], usize, usize),
            ) {
                assert!(extent(m, k, a.1, a.2) <= a.0.len(), "gemm: a out of bounds");
                assert!(extent(k, n, b.1, b.2) <= b.0.len(), "gemm: b out of bounds");
                assert!(extent(m, n, c.1, c.2) <= c.0.len(), "gemm: c out of bounds");
                if m == 0 || n == 0 {
                    return;
                }
                // SAFETY: the three asserts above prove every element matrixmultiply reads or
                // writes lies inside its slice; `c` is a unique borrow, so it aliases neither
                // input. Strides are in elements and fit in isize because they index slices.
                // Why unsafe at all: nalgebra's safe `gemm` takes its small-matrix path on
                // strided views (nalgebra#1616) and otherwise needs column-major copies of both
                // operands; calling the same kernel directly on our row-major buffers avoids that
                // copy and its allocation on every call (benches/benches/matmul.rs compares both:
                // `X Xᵀ` in f32, nalgebra with the column-major copy / this direct call, measured
                // 1.46x at 256 x 128 and 1.13x at 1024 x 128 on a shared 2-core AMD EPYC, load ~5).
                #[allow(unsafe_code)]
                unsafe {
                    matrixmultiply::$gemm(
                        m,
                        k,
                        n,
                        alpha,
                        a.0.as_ptr(),
                        a.1 as isize,
                        a.2 as isize,
                        b.0.as_ptr(),
                        b.1 as isize,
                        b.2 as isize,
                        beta,
                        c.0.as_mut_ptr(),
                        c.1 as isize,
                        c.2 as isize,
                    );
                }
            }

            #[inline(always)]
            fn as_f32s(values: &[Self]) -> Option<&[f32]> {
                $as_f32s(values)
            }

            #[inline(always)]
            fn as_f64s(values: &[Self]) -> Option<&[f64]> {
                $as_f64s(values)
            }

            fn dispatch<L: MetricLoss + ?Sized>(
                loss: &L,
                input: &LossInput<'_, Self>,
                workspace: &mut Workspace,
                out: &mut LossOutput<Self>,
            ) -> Result<(), LossError> {
                loss.$compute(input, workspace, out)
            }

            fn distance(d: &dyn AnyDistance) -> &dyn Distance<Self> {
                d
            }

            fn miner(m: &dyn AnyMiner) -> &dyn Miner<Self> {
                m
            }

            fn reducer(r: &dyn AnyReducer) -> &dyn Reducer<Self> {
                r
            }
        }
    };
}

impl_float!(f32, sgemm, compute_f32, Some, |_| None);
impl_float!(f64, dgemm, compute_f64, |_| None, Some);

/// The index of the first entry that is NaN or infinite. Blocks are checked without an
/// early exit (an `&` of compares, which vectorises) and only a failing block is searched:
/// an element-by-element search with an exit per entry was ~6% of a TripletLoss call
/// at N = 1024 (the gradient's check) and ~2% (the embeddings').
pub(crate) fn first_non_finite<T: Float>(v: &[T]) -> Option<usize> {
    const BLOCK: usize = 256;
    let block = v
        .chunks(BLOCK)
        .position(|c| !c.iter().fold(true, |all, x| all & x.is_finite()))?;
    let start = block * BLOCK;
    v[start..]
        .iter()
        .position(|x| !x.is_finite())
        .map(|i| start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_row_major_times_transpose() {
        // a: 2x3 row-major, b = a^T via strides => c = a a^T.
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut c = [0.0f32; 4];
        f32::gemm(2, 3, 2, 1.0, (&a, 3, 1), (&a, 1, 3), 0.0, (&mut c, 2, 1));
        assert_eq!(c, [14.0, 32.0, 32.0, 77.0]);
    }

    #[test]
    fn gemm_empty_is_a_no_op() {
        let mut c: [f64; 0] = [];
        f64::gemm(0, 3, 0, 1.0, (&[], 3, 1), (&[], 1, 3), 0.0, (&mut c, 0, 1));
    }

    #[test]
    fn the_first_non_finite_entry_is_found_in_any_block() {
        for len in [0, 1, 255, 256, 257, 1000] {
            let clean = vec![1.5f32; len];
            assert_eq!(first_non_finite(&clean), None);
            for at in [0, len / 2, len.saturating_sub(1)] {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    if len == 0 {
                        continue;
                    }
                    let mut v = clean.clone();
                    v[at] = bad;
                    // A later bad entry does not hide the first.
                    if at + 300 < len {
                        v[at + 300] = f32::NAN;
                    }
                    assert_eq!(first_non_finite(&v), Some(at), "len {len} at {at}");
                }
            }
        }
    }
}
