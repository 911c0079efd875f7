//! Principal component analysis with nalgebra's symmetric eigendecomposition.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// A PCA fitted on some data: its mean and the leading principal directions.
#[derive(Debug, Clone)]
pub(crate) struct Pca {
    mean: DVector<f64>,
    /// `k x dims`: one unit principal direction per row, by decreasing variance.
    components: DMatrix<f64>,
    /// The variance along each component.
    variances: Vec<f64>,
    /// The total variance of the data (the covariance matrix's trace).
    total_variance: f64,
}

impl Pca {
    /// Fits `k` components to `x` (row-major, `dims` columns): the top eigenvectors of the
    /// covariance matrix. Each direction's sign makes its largest-magnitude entry positive,
    /// so the result is deterministic.
    ///
    /// # Panics
    /// If `k > dims` or `x` holds fewer than 2 rows.
    pub(crate) fn fit(x: &[f32], dims: usize, k: usize) -> Self {
        assert!(k <= dims, "PCA: {k} components from {dims} dimensions");
        let n = x.len() / dims;
        assert!(n >= 2, "PCA needs at least 2 rows");
        // Columns are examples (nalgebra is column-major, our rows are contiguous).
        let data = DMatrix::from_iterator(dims, n, x.iter().map(|v| f64::from(*v)));
        let mean = data.column_mean();
        let centred = DMatrix::from_fn(dims, n, |r, c| data[(r, c)] - mean[r]);
        let covariance = (&centred * centred.transpose()) / (n as f64 - 1.0);
        let total_variance = covariance.trace();
        let eigen = SymmetricEigen::new(covariance);
        let mut order: Vec<usize> = (0..dims).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let mut components = DMatrix::zeros(k, dims);
        let mut variances = Vec::with_capacity(k);
        for (row, &i) in order.iter().take(k).enumerate() {
            let v = eigen.eigenvectors.column(i);
            let pivot = v
                .iter()
                .copied()
                .fold(0.0f64, |m, e| if e.abs() > m.abs() { e } else { m });
            let sign = if pivot < 0.0 { -1.0 } else { 1.0 };
            for d in 0..dims {
                components[(row, d)] = sign * v[d];
            }
            variances.push(eigen.eigenvalues[i].max(0.0));
        }
        Self {
            mean,
            components,
            variances,
            total_variance,
        }
    }

    /// The share of the data's variance the components keep.
    pub(crate) fn explained_variance_ratio(&self) -> f64 {
        self.variances.iter().sum::<f64>() / self.total_variance.max(f64::MIN_POSITIVE)
    }

    /// The variance along each component, largest first.
    #[cfg(test)]
    pub(crate) fn variances(&self) -> &[f64] {
        &self.variances
    }

    /// Projects `x` (row-major, the fitted width) onto the components: row-major, `k`
    /// columns.
    pub(crate) fn transform(&self, x: &[f32]) -> Vec<f32> {
        let dims = self.mean.len();
        let k = self.components.nrows();
        let mut out = Vec::with_capacity(x.len() / dims * k);
        let mut centred = DVector::zeros(dims);
        for row in x.chunks_exact(dims) {
            for d in 0..dims {
                centred[d] = f64::from(row[d]) - self.mean[d];
            }
            let projected = &self.components * &centred;
            out.extend(projected.iter().map(|v| *v as f32));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_direction_of_largest_variance() {
        // Points along (3, 4)/5 with a little uncorrelated spread along (-4, 3)/5, around
        // (1, 1).
        let mut x = Vec::new();
        for (t, s) in [
            (-2.0f32, 0.1f32),
            (-1.0, -0.1),
            (0.0, 0.0),
            (1.0, -0.1),
            (2.0, 0.1),
        ] {
            x.push(1.0 + 0.6 * t - 0.8 * s);
            x.push(1.0 + 0.8 * t + 0.6 * s);
        }
        let pca = Pca::fit(&x, 2, 2);
        let c = &pca.components;
        assert!(
            (c[(0, 0)] - 0.6).abs() < 1e-6 && (c[(0, 1)] - 0.8).abs() < 1e-6,
            "{c}"
        );
        // Variance of t: (4 + 1 + 0 + 1 + 4) / 4 = 2.5.
        assert!((pca.variances()[0] - 2.5).abs() < 1e-5);
        assert!(pca.variances()[1] < 0.02);
        assert!((pca.explained_variance_ratio() - 1.0).abs() < 1e-9);
        // Projecting gives back the coordinates t (and s, up to sign).
        let y = Pca::fit(&x, 2, 1).transform(&x);
        for (got, want) in y.iter().zip([-2.0, -1.0, 0.0, 1.0, 2.0]) {
            assert!((got - want).abs() < 1e-5, "{y:?}");
        }
    }

    #[test]
    fn the_mean_projects_to_zero_and_width_is_k() {
        let x = [1.0f32, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0, 5.0, 5.0];
        let pca = Pca::fit(&x, 3, 2);
        let y = pca.transform(&[7.0 / 3.0, 7.0 / 3.0, 3.0]);
        assert_eq!(y.len(), 2);
        assert!(y.iter().all(|v| v.abs() < 1e-5), "{y:?}");
    }
}
