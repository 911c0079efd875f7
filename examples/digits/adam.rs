//! Keras's `Adam` (TF 2.x / Keras 3 defaults: β₁ 0.9, β₂ 0.999, ε 1e-7, no weight decay),
//! step for step:
//!
//! ```text
//! t += 1;  α = lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)
//! m += (g − m)(1 − β₁);  v += (g² − v)(1 − β₂);  w −= α · m / (√v + ε)
//! ```
//!
//! candle-nn's `AdamW` divides by `√v̂ + ε` with the bias-corrected `v̂` instead, i.e. an
//! effective ε of `ε / √(1 − β₂ᵗ)` in Keras's form (32x larger at step 1), defaults to
//! ε 1e-8 and a weight decay of 0.01, and runs a dozen small tensor ops per variable.
//! This one updates each variable in one pass over plain `f32` slices (`keras_adam.rs`).

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::keras_adam::KerasAdam;

/// Adam with Keras's update rule on candle variables.
pub(crate) struct Adam {
    vars: Vec<Var>,
    rule: KerasAdam,
}

impl Adam {
    /// An optimiser of `vars` (f32) with learning rate `lr`.
    pub(crate) fn new(vars: Vec<Var>, lr: f64) -> Self {
        Self {
            rule: KerasAdam::new(vars.iter().map(|var| var.elem_count()), lr),
            vars,
        }
    }

    /// Back-propagates `loss` and applies one update.
    pub(crate) fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.step(&loss.backward()?)
    }

    /// Applies one update with the gradients in `grads` (variables without one are left
    /// as they are, as Keras does).
    pub(crate) fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.rule.begin_step();
        for (index, var) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g: Vec<f32> = grad.flatten_all()?.to_vec1()?;
            let mut w: Vec<f32> = var.as_tensor().flatten_all()?.to_vec1()?;
            self.rule.update(index, &mut w, &g);
            var.set(&Tensor::from_vec(w, var.shape(), var.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_steps_by_hand() {
        // The third gradient is tiny, so its update depends on ε and where ε is added
        // (with candle's form or ε 1e-8 it would be off by ~3e-5). loss = Σ gᵢ·wᵢ with a fixed g, so the gradient is g at every step.
        let w0 = [1.0f32, -2.0, 0.5];
        let g = [0.3f32, -4.0, 1e-9];
        let var = Var::from_slice(&w0, 3, &Device::Cpu).unwrap();
        let gt = Tensor::from_slice(&g, 3, &Device::Cpu).unwrap();
        let mut adam = Adam::new(vec![var.clone()], 0.01);
        let (mut m, mut v, mut w) = ([0.0f64; 3], [0.0f64; 3], w0.map(f64::from));
        for t in 1..=2 {
            let loss = (var.as_tensor() * &gt).unwrap().sum_all().unwrap();
            adam.backward_step(&loss).unwrap();
            let alpha = 0.01 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t));
            for i in 0..3 {
                let gi = f64::from(g[i]);
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                w[i] -= alpha * m[i] / (v[i].sqrt() + 1e-7);
            }
        }
        let got: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        for i in 0..3 {
            assert!((f64::from(got[i]) - w[i]).abs() < 1e-6, "{got:?} vs {w:?}");
        }
    }
}
