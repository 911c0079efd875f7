//! Keras's `Adam` update rule on plain `f32` slices (see `adam.rs` for the rule and why
//! it is not candle-nn's `AdamW`); the candle and burn demos share it.

/// Keras's defaults.
const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f32 = 1e-7;

/// Keras's Adam on plain `f32` slices, one entry per variable.
pub(crate) struct KerasAdam {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    step: i32,
    lr: f64,
    alpha: f32,
}

impl KerasAdam {
    /// An optimiser of variables of `sizes` elements each, with learning rate `lr`.
    pub(crate) fn new(sizes: impl IntoIterator<Item = usize>, lr: f64) -> Self {
        let (m, v) = sizes
            .into_iter()
            .map(|n| (vec![0.0f32; n], vec![0.0f32; n]))
            .unzip();
        Self {
            m,
            v,
            step: 0,
            lr,
            alpha: 0.0,
        }
    }

    /// Starts a step: the bias-corrected step size for the updates that follow.
    pub(crate) fn begin_step(&mut self) {
        self.step += 1;
        self.alpha =
            (self.lr * (1.0 - BETA2.powi(self.step)).sqrt() / (1.0 - BETA1.powi(self.step))) as f32;
    }

    /// Updates variable `index`'s values `w` with its gradient `g`.
    pub(crate) fn update(&mut self, index: usize, w: &mut [f32], g: &[f32]) {
        let (b1, b2) = ((1.0 - BETA1) as f32, (1.0 - BETA2) as f32);
        let (m, v) = (&mut self.m[index], &mut self.v[index]);
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m += (g - *m) * b1;
            *v += (g * g - *v) * b2;
            *w -= self.alpha * *m / (v.sqrt() + EPSILON);
        }
    }
}
