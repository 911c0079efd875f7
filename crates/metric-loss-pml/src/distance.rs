//! pytorch-metric-learning's distances: [`LpDistance`], [`CosineSimilarity`] and
//! [`DotProductSimilarity`], with its row normalisation x / max(‖x‖ₚ, 1e-12).
//!
//! Each is a [`Distance`] (so any loss of the workspace can use it) and a
//! [`RegisteredDistance`], so a config names it as pytorch-metric-learning's constructor
//! would be called: `{"class_name": "LpDistance", "config": {"normalize_embeddings": false}}`.

use std::sync::Arc;

use metric_loss_core::{
    dense_vjp_by_halves, Distance, Embeddings, Float, LossError, PartConfig, RegisteredDistance,
};
use metric_loss_distances::parallel::gemm_rows;
use metric_loss_distances::{add_transpose, lanes};
use serde::{Deserialize, Serialize};

/// The floor of a row's norm in the normalisation (PML's, in the tensor's dtype).
const NORM_FLOOR: f64 = 1e-12;

/// PML switches the euclidean distance from the direct formula to the expanded one
/// ‖a‖² + ‖b‖² − 2a·b (a product) when either side has more rows than this.
const DIRECT_EUCLIDEAN_MAX_ROWS: usize = 25;

/// What is computed between two normalised rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// ‖a − b‖₂.
    Euclidean,
    /// ‖a − b‖₁.
    Manhattan,
    /// a · b.
    Dot,
}

/// The computation behind every PML distance: the form, whether rows are normalised
/// first, and whether the result is squared (`power = 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    form: Form,
    normalize: bool,
    squared: bool,
}

/// The `power` PML raises the matrix to: 1 or 2 here.
fn squared(power: u32) -> Result<bool, LossError> {
    match power {
        1 => Ok(false),
        2 => Ok(true),
        other => Err(LossError::InvalidParameter {
            name: "power",
            value: f64::from(other),
            expected: "1 or 2",
        }),
    }
}

impl Geometry {
    /// The divisor of a row of norm `norm`: max(‖x‖, 1e-12), or 1 without normalisation.
    fn scale<T: Float>(&self, row: &[T]) -> (T, T) {
        if !self.normalize {
            return (T::ONE, T::ONE);
        }
        let norm = match self.form {
            Form::Manhattan => row.iter().fold(T::ZERO, |s, v| s + v.abs()),
            Form::Euclidean | Form::Dot => row.iter().fold(T::ZERO, |s, v| s + *v * *v).sqrt(),
        };
        (norm, norm.max(T::from_f64(NORM_FLOOR)))
    }

    /// The un-powered value between two normalised rows, by the direct formula.
    fn direct<T: Float>(&self, a: &[T], sa: T, b: &[T], sb: T) -> T {
        let pairs = a.iter().zip(b).map(|(x, y)| (*x / sa, *y / sb));
        match self.form {
            Form::Euclidean => pairs
                .fold(T::ZERO, |s, (x, y)| s + (x - y) * (x - y))
                .sqrt(),
            Form::Manhattan => pairs.fold(T::ZERO, |s, (x, y)| s + (x - y).abs()),
            Form::Dot => pairs.fold(T::ZERO, |s, (x, y)| s + x * y),
        }
    }

    fn power<T: Float>(&self, v: T) -> T {
        if self.squared {
            v * v
        } else {
            v
        }
    }

    /// Fills `out` (`n x m`): normalised copies of the rows go to `scratch`; dot products
    /// and the expanded euclidean form go through one product, the rest row by row.
    fn matrix<T: Float>(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        scratch: &mut Vec<T>,
        out: &mut [T],
    ) -> Result<(), LossError> {
        let (n, m, dims) = (q.rows(), k.rows(), q.cols());
        if k.cols() != dims {
            return Err(LossError::DimensionMismatch {
                queries: dims,
                keys: k.cols(),
            });
        }
        let direct = match self.form {
            Form::Manhattan => true,
            Form::Euclidean => n <= DIRECT_EUCLIDEAN_MAX_ROWS && m <= DIRECT_EUCLIDEAN_MAX_ROWS,
            Form::Dot => false,
        };
        if direct {
            for i in 0..n {
                let (a, (_, sa)) = (q.row(i), self.scale(q.row(i)));
                for j in 0..m {
                    let (b, (_, sb)) = (k.row(j), self.scale(k.row(j)));
                    out[i * m + j] = self.power(self.direct(a, sa, b, sb));
                }
            }
            return Ok(());
        }
        // Normalised rows of both sides, then one product.
        scratch.clear();
        scratch.resize((n + m) * dims + n + m, T::ZERO);
        let (qh, rest) = scratch.split_at_mut(n * dims);
        let (kh, sq) = rest.split_at_mut(m * dims);
        self.normalize_into(q, qh);
        self.normalize_into(k, kh);
        let alpha = if self.form == Form::Dot {
            T::ONE
        } else {
            T::from_f64(-2.0)
        };
        gemm_rows(
            n,
            dims,
            m,
            alpha,
            (qh, dims, 1),
            (kh, 1, dims),
            T::ZERO,
            out,
        );
        if self.form == Form::Euclidean {
            let (sq_q, sq_k) = sq.split_at_mut(n);
            for (s, row) in sq_q.iter_mut().zip(qh.chunks_exact(dims)) {
                *s = row.iter().fold(T::ZERO, |a, v| a + *v * *v);
            }
            for (s, row) in sq_k.iter_mut().zip(kh.chunks_exact(dims)) {
                *s = row.iter().fold(T::ZERO, |a, v| a + *v * *v);
            }
            for (i, row) in out.chunks_exact_mut(m).enumerate() {
                for (v, sk) in row.iter_mut().zip(sq_k.iter()) {
                    *v = (*v + sq_q[i] + *sk).max(T::ZERO).sqrt();
                }
            }
        }
        if self.squared {
            out.iter_mut().for_each(|v| *v = *v * *v);
        }
        Ok(())
    }

    /// Writes the rows of `x` divided by their [`Geometry::scale`] into `out`.
    fn normalize_into<T: Float>(&self, x: Embeddings<'_, T>, out: &mut [T]) {
        let dims = x.cols();
        for (i, dst) in out.chunks_exact_mut(dims.max(1)).take(x.rows()).enumerate() {
            let (_, s) = self.scale(x.row(i));
            for (d, v) in dst.iter_mut().zip(x.row(i)) {
                *d = *v / s;
            }
        }
    }

    /// Adds `v` (a gradient with respect to the normalised row x̂) to `grad`, through the
    /// normalisation x̂ = x / max(‖x‖₂, 1e-12).
    fn normalize_vjp<T: Float>(&self, x: &[T], v: &[T], grad: &mut [T]) {
        let floor = T::from_f64(NORM_FLOOR);
        let (norm, _) = self.scale(x);
        if !self.normalize {
            grad.iter_mut().zip(v).for_each(|(o, v)| *o += *v);
        } else if norm <= floor {
            grad.iter_mut().zip(v).for_each(|(o, v)| *o += *v / floor);
        } else {
            let xv = x
                .iter()
                .zip(v)
                .fold(T::ZERO, |s, (a, b)| s + *a / norm * *b);
            for ((o, a), b) in grad.iter_mut().zip(x).zip(v) {
                *o += (*b - *a / norm * xv) / norm;
            }
        }
    }

    /// Turns the upstream gradient `a` (`n x m`) into A, each entry's derivative with
    /// respect to its un-squared dot product or distance, given the normalised rows
    /// (`base`, `n x m`, is memory for the dot products a squared dot product needs).
    #[allow(clippy::too_many_arguments)]
    fn entry_slopes<T: Float>(
        &self,
        n: usize,
        m: usize,
        dims: usize,
        (qh, kh): (&[T], &[T]),
        dist: &[T],
        a: &mut [T],
        base: &mut [T],
    ) {
        let two = T::from_f64(2.0);
        match (self.form == Form::Dot, self.squared) {
            (true, false) => {}
            (true, true) => {
                // d(s²)/ds = 2s needs the sign of s: the dot products again.
                gemm_rows(
                    n,
                    dims,
                    m,
                    T::ONE,
                    (qh, dims, 1),
                    (kh, 1, dims),
                    T::ZERO,
                    base,
                );
                a.iter_mut()
                    .zip(base.iter())
                    .for_each(|(g, s)| *g = *g * two * *s);
            }
            // A zero distance has the zero subgradient.
            (false, false) => a.iter_mut().zip(dist).for_each(|(g, d)| {
                *g = if *d > T::ZERO { *g / *d } else { T::ZERO };
            }),
            (false, true) => a.iter_mut().for_each(|g| *g *= two),
        }
    }

    /// The gradient of Σᵢⱼ Gᵢⱼ Dᵢⱼ for the dot and euclidean forms through products: with
    /// A the derivative of each entry with respect to its un-squared dot product or
    /// distance (written over `dist_grad`), ∂/∂x̂ᵢ is (A K̂)ᵢ for a dot product and
    /// (Σⱼ Aᵢⱼ) x̂ᵢ − (A K̂)ᵢ for the euclidean distance, and the same with Aᵀ for the keys.
    #[allow(clippy::too_many_arguments)]
    fn dense_vjp<T: Float>(
        &self,
        q: Embeddings<'_, T>,
        k: Embeddings<'_, T>,
        dist: &[T],
        a: &mut [T],
        grad_q: &mut [T],
        grad_k: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        let (n, m, dims) = (q.rows(), k.rows(), q.cols());
        let dot = self.form == Form::Dot;
        scratch.clear();
        let base_len = if dot && self.squared { n * m } else { 0 };
        scratch.resize(2 * (n + m) * dims + base_len, T::ZERO);
        let (qh, rest) = scratch.split_at_mut(n * dims);
        let (kh, rest) = rest.split_at_mut(m * dims);
        let (v, rest) = rest.split_at_mut(n * dims);
        let (w, base) = rest.split_at_mut(m * dims);
        self.normalize_into(q, qh);
        self.normalize_into(k, kh);
        self.entry_slopes(n, m, dims, (qh, kh), dist, a, base);
        let sign = if dot { T::ONE } else { -T::ONE };
        gemm_rows(n, m, dims, sign, (a, m, 1), (kh, dims, 1), T::ZERO, v);
        gemm_rows(m, n, dims, sign, (a, 1, m), (qh, dims, 1), T::ZERO, w);
        if !dot {
            // The row sums scale x̂ᵢ, the column sums k̂ⱼ.
            let column = |j: usize| (0..n).fold(T::ZERO, |s, i| s + a[i * m + j]);
            for j in 0..m {
                let total = column(j);
                for (o, y) in w[j * dims..(j + 1) * dims].iter_mut().zip(&kh[j * dims..]) {
                    *o += total * *y;
                }
            }
            for (i, row) in a.chunks_exact(m.max(1)).take(n).enumerate() {
                let total = row.iter().fold(T::ZERO, |s, x| s + *x);
                for (o, x) in v[i * dims..(i + 1) * dims].iter_mut().zip(&qh[i * dims..]) {
                    *o += total * *x;
                }
            }
        }
        for i in 0..n {
            let at = i * dims..(i + 1) * dims;
            self.normalize_vjp(q.row(i), &v[at.clone()], &mut grad_q[at]);
        }
        for j in 0..m {
            let at = j * dims..(j + 1) * dims;
            self.normalize_vjp(k.row(j), &w[at.clone()], &mut grad_k[at]);
        }
    }

    /// [`Geometry::dense_vjp`] for the batch against itself, with one product instead of
    /// two: the query and key halves of row i are both gradients with respect to x̂ᵢ, so
    /// they add before the normalisation's backward pass, and A K̂ + Aᵀ Q̂ = (A + Aᵀ) X̂
    /// (with (A + Aᵀ)'s row sums for the euclidean form).
    fn dense_vjp_same<T: Float>(
        &self,
        x: Embeddings<'_, T>,
        dist: &[T],
        a: &mut [T],
        grad: &mut [T],
        scratch: &mut Vec<T>,
    ) {
        let (n, dims) = (x.rows(), x.cols());
        let dot = self.form == Form::Dot;
        scratch.clear();
        let base_len = if dot && self.squared { n * n } else { 0 };
        scratch.resize(2 * n * dims + base_len, T::ZERO);
        let (xh, rest) = scratch.split_at_mut(n * dims);
        let (v, base) = rest.split_at_mut(n * dims);
        self.normalize_into(x, xh);
        self.entry_slopes(n, n, dims, (xh, xh), dist, a, base);
        add_transpose(a, n);
        let sign = if dot { T::ONE } else { -T::ONE };
        gemm_rows(n, n, dims, sign, (a, n, 1), (xh, dims, 1), T::ZERO, v);
        if !dot {
            for (i, row) in a.chunks_exact(n.max(1)).take(n).enumerate() {
                let total = lanes::sum(row);
                for (o, y) in v[i * dims..(i + 1) * dims].iter_mut().zip(&xh[i * dims..]) {
                    *o += total * *y;
                }
            }
        }
        for i in 0..n {
            let at = i * dims..(i + 1) * dims;
            self.normalize_vjp(x.row(i), &v[at.clone()], &mut grad[at]);
        }
    }

    /// Adds `g · ∂value(a, b)/∂a` to `grad`, `value` being this geometry's (powered)
    /// result, through the normalisation of `a` and `b`. Every distance here is symmetric,
    /// so the key side is the same call with the rows swapped.
    fn pair_grad<T: Float>(&self, a: &[T], b: &[T], g: T, grad: &mut [T]) {
        let ((na, sa), (_, sb)) = (self.scale(a), self.scale(b));
        let base = self.direct(a, sa, b, sb);
        // u = ∂value/∂â as a function of the coordinate t, times g.
        let coef = match (self.form, self.squared) {
            (Form::Dot, false) | (Form::Manhattan, false) => g,
            (Form::Dot, true) | (Form::Manhattan, true) => g * T::from_f64(2.0) * base,
            // A zero distance has the zero subgradient (PML's, and no NaN).
            (Form::Euclidean, false) if base == T::ZERO => return,
            (Form::Euclidean, false) => g / base,
            (Form::Euclidean, true) => g * T::from_f64(2.0),
        };
        let form = self.form;
        let u = |t: usize| {
            let (x, y) = (a[t] / sa, b[t] / sb);
            coef * match form {
                Form::Dot => y,
                Form::Euclidean => x - y,
                Form::Manhattan => sign(x - y),
            }
        };
        let floor = T::from_f64(NORM_FLOOR);
        if !self.normalize {
            grad.iter_mut().enumerate().for_each(|(t, o)| *o += u(t));
        } else if na <= floor {
            // Below the floor x̂ = x / 1e-12: the norm carries no gradient.
            grad.iter_mut()
                .enumerate()
                .for_each(|(t, o)| *o += u(t) / floor);
        } else if form == Form::Manhattan {
            // x̂ = x / ‖x‖₁: ∂/∂x = u/n − sign(x) (x·u) / n².
            let xu = (0..a.len()).fold(T::ZERO, |s, t| s + a[t] * u(t));
            for (t, o) in grad.iter_mut().enumerate() {
                *o += u(t) / na - sign(a[t]) * xu / (na * na);
            }
        } else {
            // x̂ = x / ‖x‖₂: ∂/∂x = (u − x̂ (x̂·u)) / n.
            let xu = (0..a.len()).fold(T::ZERO, |s, t| s + a[t] / na * u(t));
            for (t, o) in grad.iter_mut().enumerate() {
                *o += (u(t) - a[t] / na * xu) / na;
            }
        }
    }
}

fn sign<T: Float>(v: T) -> T {
    if v > T::ZERO {
        T::ONE
    } else if v < T::ZERO {
        -T::ONE
    } else {
        T::ZERO
    }
}

/// Implements [`Distance`] for a PML distance through its [`Geometry`], and registers it
/// under PML's class name.
macro_rules! pml_distance {
    ($ty:ident, $class:literal, $similarity:expr) => {
        impl<T: Float> Distance<T> for $ty {
            fn name(&self) -> &'static str {
                $class
            }

            fn matrix(
                &self,
                q: Embeddings<'_, T>,
                k: Embeddings<'_, T>,
                _same: bool,
                scratch: &mut Vec<T>,
                out: &mut [T],
            ) -> Result<(), LossError> {
                self.geometry().matrix(q, k, scratch, out)
            }

            fn pair_vjp_query(&self, q: &[T], k: &[T], _value: T, g: T, grad_q: &mut [T]) {
                self.geometry().pair_grad(q, k, g, grad_q);
            }

            fn pair_vjp_key(&self, q: &[T], k: &[T], _value: T, g: T, grad_k: &mut [T]) {
                self.geometry().pair_grad(k, q, g, grad_k);
            }

            fn dense_vjp_with_scratch(
                &self,
                q: Embeddings<'_, T>,
                k: Embeddings<'_, T>,
                dist: &[T],
                dist_grad: &mut [T],
                grad_q: &mut [T],
                grad_k: &mut [T],
                scratch: &mut Vec<T>,
            ) {
                let geometry = self.geometry();
                if geometry.form == Form::Manhattan {
                    self.dense_vjp(q, k, dist, dist_grad, grad_q, grad_k);
                } else {
                    geometry.dense_vjp(q, k, dist, dist_grad, grad_q, grad_k, scratch);
                }
            }

            fn dense_vjp_same(
                &self,
                x: Embeddings<'_, T>,
                dist: &[T],
                dist_grad: &mut [T],
                grad: &mut [T],
                scratch: &mut Vec<T>,
            ) {
                let geometry = self.geometry();
                if geometry.form == Form::Manhattan {
                    dense_vjp_by_halves(self, x, dist, dist_grad, grad, scratch);
                } else {
                    geometry.dense_vjp_same(x, dist, dist_grad, grad, scratch);
                }
            }

            fn is_similarity(&self) -> bool {
                $similarity
            }
        }

        #[typetag::serde(name = $class)]
        impl RegisteredDistance for $ty {}

        /// A config's `distance`.
        impl From<$ty> for PartConfig<dyn RegisteredDistance> {
            fn from(distance: $ty) -> Self {
                PartConfig::Registered(Arc::new(distance))
            }
        }
    };
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn two() -> u32 {
    2
}

/// `LpDistance(normalize_embeddings=True, p=2, power=1)`: ‖x̂ᵢ − r̂ⱼ‖ₚ, the rows first
/// divided by max(‖x‖ₚ, 1e-12) unless `normalize_embeddings` is false.
///
/// `p` is 1 or 2 and `power` 1 or 2 (PML accepts any; these are the ones its losses are
/// used with). The euclidean distance switches to the expanded form
/// √max(‖a‖² + ‖b‖² − 2a·b, 0) above 25 rows on either side, as PML's does, so identical
/// rows can sit at a rounding-noise distance there; a distance of exactly 0 has gradient 0.
///
/// ```
/// use metric_loss_core::{Distance, Embeddings};
/// use metric_loss_pml::LpDistance;
///
/// let x = [3.0f32, 4.0, 0.0, 2.0];
/// let e = Embeddings::from_row_major(&x, 2, 2)?;
/// let mut d = [0.0f32; 4];
/// // Normalised: (0.6, 0.8) and (0, 1).
/// LpDistance::default().matrix(e, e, true, &mut Vec::new(), &mut d)?;
/// assert!((d[1] - (0.36f32 + 0.04).sqrt()).abs() < 1e-6);
/// # Ok::<(), metric_loss_core::LossError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "LpDistanceConfig")]
pub struct LpDistance {
    normalize_embeddings: bool,
    p: u32,
    power: u32,
}

/// [`LpDistance`]'s keyword arguments, as a config spells them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LpDistanceConfig {
    #[serde(default = "yes")]
    normalize_embeddings: bool,
    #[serde(default = "two")]
    p: u32,
    #[serde(default = "one")]
    power: u32,
}

impl TryFrom<LpDistanceConfig> for LpDistance {
    type Error = LossError;

    fn try_from(c: LpDistanceConfig) -> Result<Self, LossError> {
        LpDistance::new(c.normalize_embeddings, c.p, c.power)
    }
}

impl Default for LpDistance {
    fn default() -> Self {
        Self {
            normalize_embeddings: true,
            p: 2,
            power: 1,
        }
    }
}

impl LpDistance {
    /// `LpDistance(normalize_embeddings, p, power)`.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for a `p` or `power` other than 1 or 2.
    pub fn new(normalize_embeddings: bool, p: u32, power: u32) -> Result<Self, LossError> {
        squared(power)?;
        if !matches!(p, 1 | 2) {
            return Err(LossError::InvalidParameter {
                name: "p",
                value: f64::from(p),
                expected: "1 or 2",
            });
        }
        Ok(Self {
            normalize_embeddings,
            p,
            power,
        })
    }

    /// Whether rows are normalised first.
    pub fn normalize_embeddings(&self) -> bool {
        self.normalize_embeddings
    }

    /// The norm: 1 or 2.
    pub fn p(&self) -> u32 {
        self.p
    }

    /// The power the distance is raised to: 1 or 2.
    pub fn power(&self) -> u32 {
        self.power
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            form: if self.p == 1 {
                Form::Manhattan
            } else {
                Form::Euclidean
            },
            normalize: self.normalize_embeddings,
            squared: self.power == 2,
        }
    }
}

pml_distance!(LpDistance, "LpDistance", false);

/// `CosineSimilarity(power=1)`: x̂ᵢ · r̂ⱼ, the rows divided by max(‖x‖₂, 1e-12) (a zero
/// row has cosine 0 with everything). A similarity: larger is closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "PowerConfig")]
pub struct CosineSimilarity {
    power: u32,
}

/// The keyword argument of [`CosineSimilarity`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerConfig {
    #[serde(default = "one")]
    power: u32,
}

impl TryFrom<PowerConfig> for CosineSimilarity {
    type Error = LossError;

    fn try_from(c: PowerConfig) -> Result<Self, LossError> {
        CosineSimilarity::new(c.power)
    }
}

impl Default for CosineSimilarity {
    fn default() -> Self {
        Self { power: 1 }
    }
}

impl CosineSimilarity {
    /// `CosineSimilarity(power)`.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for a `power` other than 1 or 2.
    pub fn new(power: u32) -> Result<Self, LossError> {
        squared(power)?;
        Ok(Self { power })
    }

    /// The power the similarity is raised to: 1 or 2.
    pub fn power(&self) -> u32 {
        self.power
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            form: Form::Dot,
            normalize: true,
            squared: self.power == 2,
        }
    }
}

pml_distance!(CosineSimilarity, "CosineSimilarity", true);

/// `DotProductSimilarity(normalize_embeddings=True, power=1)`: xᵢ · rⱼ, of the normalised
/// rows by default (then it equals [`CosineSimilarity`]). A similarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "DotProductConfig")]
pub struct DotProductSimilarity {
    normalize_embeddings: bool,
    power: u32,
}

/// The keyword arguments of [`DotProductSimilarity`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DotProductConfig {
    #[serde(default = "yes")]
    normalize_embeddings: bool,
    #[serde(default = "one")]
    power: u32,
}

impl TryFrom<DotProductConfig> for DotProductSimilarity {
    type Error = LossError;

    fn try_from(c: DotProductConfig) -> Result<Self, LossError> {
        DotProductSimilarity::new(c.normalize_embeddings, c.power)
    }
}

impl Default for DotProductSimilarity {
    fn default() -> Self {
        Self {
            normalize_embeddings: true,
            power: 1,
        }
    }
}

impl DotProductSimilarity {
    /// `DotProductSimilarity(normalize_embeddings, power)`.
    ///
    /// # Errors
    /// [`LossError::InvalidParameter`] for a `power` other than 1 or 2.
    pub fn new(normalize_embeddings: bool, power: u32) -> Result<Self, LossError> {
        squared(power)?;
        Ok(Self {
            normalize_embeddings,
            power,
        })
    }

    /// Whether rows are normalised first.
    pub fn normalize_embeddings(&self) -> bool {
        self.normalize_embeddings
    }

    /// The power the similarity is raised to: 1 or 2.
    pub fn power(&self) -> u32 {
        self.power
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            form: Form::Dot,
            normalize: self.normalize_embeddings,
            squared: self.power == 2,
        }
    }
}

pml_distance!(DotProductSimilarity, "DotProductSimilarity", true);

#[cfg(test)]
mod tests {
    use super::*;
    use metric_loss_testkit as _;

    fn matrix(d: &dyn Distance<f64>, x: &[f64], n: usize, dims: usize) -> Vec<f64> {
        let e = Embeddings::from_row_major(x, n, dims).unwrap();
        let mut out = vec![0.0; n * n];
        d.matrix(e, e, true, &mut Vec::new(), &mut out).unwrap();
        out
    }

    /// The gradient of Σ g_ij D_ij by the pair VJPs against central differences.
    fn check_gradient(d: &dyn Distance<f64>, n: usize, dims: usize) {
        // Distinct rows (a low-discrepancy sequence), so no distance sits on the kink at 0.
        let x: Vec<f64> = (0..n * dims)
            .map(|i| ((i as f64 + 1.0) * 0.754_877_666_2).fract() * 2.0 - 1.0)
            .collect();
        // No weight on the diagonal: above 25 rows PML's expanded form puts it at
        // √(rounding noise), whose finite difference is noise too.
        let g: Vec<f64> = (0..n * n)
            .map(|i| {
                if i % (n + 1) == 0 {
                    0.0
                } else {
                    ((i * 7 % 5) as f64 - 2.0) / 2.0
                }
            })
            .collect();
        let f = |x: &[f64]| -> f64 {
            matrix(d, x, n, dims)
                .iter()
                .zip(&g)
                .map(|(a, b)| a * b)
                .sum()
        };
        let mut grad = vec![0.0; n * dims];
        let dist = matrix(d, &x, n, dims);
        for i in 0..n {
            for j in 0..n {
                let (a, b) = (&x[i * dims..(i + 1) * dims], &x[j * dims..(j + 1) * dims]);
                let gij = g[i * n + j];
                let mut gi = vec![0.0; dims];
                let mut gj = vec![0.0; dims];
                d.pair_vjp(a, b, dist[i * n + j], gij, &mut gi, &mut gj);
                for t in 0..dims {
                    grad[i * dims + t] += gi[t];
                    grad[j * dims + t] += gj[t];
                }
            }
        }
        for t in 0..n * dims {
            let h = 1e-6;
            let (mut up, mut down) = (x.clone(), x.clone());
            up[t] += h;
            down[t] -= h;
            let fd = (f(&up) - f(&down)) / (2.0 * h);
            assert!(
                (fd - grad[t]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{d:?} n={n}: entry {t}: finite difference {fd}, analytic {}",
                grad[t]
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (n, dims) in [(4, 3), (30, 5)] {
            check_gradient(&LpDistance::default(), n, dims);
            check_gradient(&LpDistance::new(false, 2, 2).unwrap(), n, dims);
            check_gradient(&LpDistance::new(true, 1, 1).unwrap(), n, dims);
            check_gradient(&LpDistance::new(true, 2, 2).unwrap(), n, dims);
            check_gradient(&CosineSimilarity::default(), n, dims);
            check_gradient(&CosineSimilarity::new(2).unwrap(), n, dims);
            check_gradient(&DotProductSimilarity::new(false, 1).unwrap(), n, dims);
        }
    }

    #[test]
    fn the_product_vjp_equals_the_sum_of_pair_vjps() {
        let (n, m, dims) = (7, 5, 3);
        let x: Vec<f64> = (0..n * dims)
            .map(|i| ((i as f64 + 1.0) * 0.7548).fract() - 0.5)
            .collect();
        let y: Vec<f64> = (0..m * dims)
            .map(|i| ((i as f64 + 3.0) * 0.5698).fract() - 0.5)
            .collect();
        let (q, k) = (
            Embeddings::from_row_major(&x, n, dims).unwrap(),
            Embeddings::from_row_major(&y, m, dims).unwrap(),
        );
        let g: Vec<f64> = (0..n * m)
            .map(|i| ((i * 7 % 5) as f64 - 2.0) / 2.0)
            .collect();
        let parts: [&dyn Distance<f64>; 6] = [
            &LpDistance::default(),
            &LpDistance::new(false, 2, 1).unwrap(),
            &LpDistance::new(true, 2, 2).unwrap(),
            &CosineSimilarity::default(),
            &CosineSimilarity::new(2).unwrap(),
            &DotProductSimilarity::new(false, 1).unwrap(),
        ];
        for d in parts {
            let mut dist = vec![0.0; n * m];
            d.matrix(q, k, false, &mut Vec::new(), &mut dist).unwrap();
            let (mut gq, mut gk) = (vec![0.0; n * dims], vec![0.0; m * dims]);
            d.dense_vjp(q, k, &dist, &mut g.clone(), &mut gq, &mut gk);
            let (mut fq, mut fk) = (vec![0.0; n * dims], vec![0.0; m * dims]);
            d.dense_vjp_with_scratch(
                q,
                k,
                &dist,
                &mut g.clone(),
                &mut fq,
                &mut fk,
                &mut Vec::new(),
            );
            for (a, b) in gq.iter().zip(&fq).chain(gk.iter().zip(&fk)) {
                assert!((a - b).abs() < 1e-12, "{d:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn the_batch_against_itself_takes_one_product_for_both_halves() {
        // 40 rows: the euclidean form takes its product path (above the direct one's size).
        let (n, dims) = (40, 3);
        let x: Vec<f64> = (0..n * dims)
            .map(|i| ((i as f64 + 1.0) * 0.7548).fract() - 0.5)
            .collect();
        let x = Embeddings::from_row_major(&x, n, dims).unwrap();
        let g: Vec<f64> = (0..n * n)
            .map(|i| ((i * 7 % 5) as f64 - 2.0) / 2.0)
            .collect();
        // The euclidean distance of a row to itself is the square root of a rounding error
        // in the expanded form, and G/D there is ~1e8: the two summation orders cancel it
        // to ~1e-8 (as in the distances crate's own test of this product).
        let parts: [(&dyn Distance<f64>, f64); 7] = [
            (&LpDistance::default(), 1e-6),
            (&LpDistance::new(false, 2, 1).unwrap(), 1e-6),
            (&LpDistance::new(true, 2, 2).unwrap(), 1e-12),
            (&LpDistance::new(true, 1, 1).unwrap(), 1e-12),
            (&CosineSimilarity::default(), 1e-12),
            (&CosineSimilarity::new(2).unwrap(), 1e-12),
            (&DotProductSimilarity::new(false, 1).unwrap(), 1e-12),
        ];
        for (d, tol) in parts {
            let mut dist = vec![0.0; n * n];
            d.matrix(x, x, true, &mut Vec::new(), &mut dist).unwrap();
            let mut halves = vec![0.0; n * dims];
            dense_vjp_by_halves(d, x, &dist, &mut g.clone(), &mut halves, &mut Vec::new());
            let mut once = vec![0.0; n * dims];
            d.dense_vjp_same(x, &dist, &mut g.clone(), &mut once, &mut Vec::new());
            for (a, b) in halves.iter().zip(&once) {
                assert!((a - b).abs() < tol * (1.0 + a.abs()), "{d:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn direct_and_expanded_euclidean_agree() {
        let x: Vec<f64> = (0..30 * 4).map(|i| ((i * 13 % 7) as f64) - 3.0).collect();
        let expanded = matrix(&LpDistance::default(), &x, 30, 4);
        let e = Embeddings::from_row_major(&x, 30, 4).unwrap();
        let g = LpDistance::default().geometry();
        for i in 0..30 {
            for j in 0..30 {
                let (a, b) = (e.row(i), e.row(j));
                let direct = g.direct(a, g.scale(a).1, b, g.scale(b).1);
                assert!((direct - expanded[i * 30 + j]).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn a_zero_row_has_cosine_zero_and_configs_are_checked() {
        let d = matrix(&CosineSimilarity::default(), &[0.0, 0.0, 1.0, 0.0], 2, 2);
        assert_eq!(d, [0.0, 0.0, 0.0, 1.0]);
        assert!(LpDistance::new(true, 3, 1).is_err());
        assert!(CosineSimilarity::new(3).is_err());
        let lp: LpDistance = serde_json::from_str(r#"{"normalize_embeddings": false}"#).unwrap();
        assert_eq!(lp, LpDistance::new(false, 2, 1).unwrap());
        assert!(serde_json::from_str::<LpDistance>(r#"{"power": 3}"#).is_err());
        assert!(serde_json::from_str::<CosineSimilarity>(r#"{"p": 1}"#).is_err());
    }
}
