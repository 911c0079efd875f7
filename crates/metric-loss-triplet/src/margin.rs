//! The per-anchor loss L(x) applied to x = p − q, and its derivative.

use metric_loss_core::Float;

/// How x = pᵢ − qᵢ becomes the per-anchor loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Margin {
    /// max(x + m, 0). The gradient passes at exactly 0 (TF's `maximum` sends ties to its
    /// first argument).
    Hinge(f64),
    /// Soft-plus, ln(1 + eˣ), in TF Similarity 0.17.1's form ln(e⁻ˣ + 1) + x. Like TF, it is
    /// +∞ once e⁻ˣ overflows (x < −88.7 in f32, x < −709.8 in f64), with gradient 0.
    Soft,
    /// Soft-plus computed stably as ln(1 + e^−|x|) + max(x, 0): never overflows, and equals
    /// [`Margin::Soft`] to rounding wherever that one is finite.
    SoftStable,
}

impl Margin {
    /// (L(x), L'(x)).
    #[inline]
    pub fn apply<T: Float>(self, x: T) -> (T, T) {
        match self {
            Margin::Hinge(m) => {
                let z = x + T::from_f64(m);
                if z >= T::ZERO {
                    (z, T::ONE)
                } else {
                    (T::ZERO, T::ZERO)
                }
            }
            Margin::Soft => {
                // TF's logsumexp helper: shift c = x (0 if not finite), no gradient through c.
                let c = if x.is_finite() { x } else { T::ZERO };
                let (a, b) = ((-c).exp(), (x - c).exp());
                let s = a + b;
                (s.ln() + c, b / s)
            }
            Margin::SoftStable => {
                let e = (-x.abs()).exp();
                let value = e.ln_1p() + x.max(T::ZERO);
                let sigmoid = if x >= T::ZERO {
                    T::ONE / (T::ONE + e)
                } else {
                    e / (T::ONE + e)
                };
                (value, sigmoid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_soft_plus_keeps_tf_float32_quirks() {
        // Values TF 2.15.1 gives on the CPU in float32.
        let (v, _) = Margin::Soft.apply(-20.0f32);
        assert_eq!(v, 0.0);
        let (v, g) = Margin::Soft.apply(-100.0f32);
        assert!(v.is_infinite() && g == 0.0);
        let (v, _) = Margin::Soft.apply(10.0f32);
        assert!((v - 10.000046).abs() < 2e-6, "{v}");
    }

    #[test]
    fn stable_soft_plus_never_overflows() {
        for x in [-1e30f32, -100.0, -10.0, 0.0, 10.0, 1e30] {
            let (v, g) = Margin::SoftStable.apply(x);
            assert!(v.is_finite() && g.is_finite(), "{x}: {v} {g}");
        }
        let (v, _) = Margin::SoftStable.apply(-10.0f64);
        assert!((v - 4.5398899216870535e-5).abs() < 1e-15);
    }

    #[test]
    fn hinge_passes_gradient_at_zero() {
        assert_eq!(Margin::Hinge(0.5).apply(-0.5f64), (0.0, 1.0));
        assert_eq!(Margin::Hinge(0.5).apply(-0.6f64), (0.0, 0.0));
    }
}
