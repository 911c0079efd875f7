//! What a loss returns.

use crate::Float;

/// The result of one loss evaluation. Reuse one across calls: its buffers keep their
/// capacity, so steady-state training allocates nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LossOutput<T> {
    /// ℓᵢ for each query, **without** sample weights (shape `[n]`).
    pub per_example: Vec<T>,
    /// The reduced, weighted loss (see [`crate::Reduction`]).
    pub loss: T,
    /// d loss / d query embeddings, row-major `n x dims`. When the keys are the queries,
    /// this is the total gradient with respect to the batch. Empty when the gradient was
    /// not requested.
    pub grad_queries: Vec<T>,
    /// d loss / d key embeddings, row-major `m x dims`, for a separate key set; empty
    /// otherwise.
    pub grad_keys: Vec<T>,
}

impl<T: Float> LossOutput<T> {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resets the buffers for a batch of `n` queries, `m` separate keys (0 when the keys
    /// are the queries) and `dims` columns, keeping their capacity.
    pub fn reset(&mut self, n: usize, m: usize, dims: usize, gradient: bool) {
        self.loss = T::ZERO;
        fill(&mut self.per_example, n);
        fill(&mut self.grad_queries, if gradient { n * dims } else { 0 });
        fill(&mut self.grad_keys, if gradient { m * dims } else { 0 });
    }

    /// The gradient row of query `i`.
    pub fn grad_query_row(&self, i: usize, dims: usize) -> &[T] {
        &self.grad_queries[i * dims..(i + 1) * dims]
    }
}

fn fill<T: Float>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::ZERO);
}
