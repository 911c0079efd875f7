//! Borrowed views of embeddings and labelled batches.

use crate::float::first_non_finite;
use crate::{Float, LossError};

/// A borrowed `rows x cols` matrix of embeddings, one embedding per row, stored row-major
/// and contiguous (the layout of NumPy, PyTorch and candle tensors).
///
/// Building one checks only the shape; values are checked for finiteness when a loss runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Embeddings<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
}

impl<'a, T: Float> Embeddings<'a, T> {
    /// Views `data` as `rows x cols`, row-major.
    ///
    /// ```
    /// use metric_loss_core::Embeddings;
    /// let x = Embeddings::from_row_major(&[1.0f32, 0.0, 0.0, 1.0], 2, 2).unwrap();
    /// assert_eq!(x.row(1), &[0.0, 1.0]);
    /// ```
    ///
    /// # Errors
    /// [`LossError::BufferLength`] if `data.len() != rows * cols`.
    pub fn from_row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self, LossError> {
        match rows.checked_mul(cols) {
            Some(expected) if expected == data.len() => Ok(Self { data, rows, cols }),
            _ => Err(LossError::BufferLength {
                what: "embeddings",
                got: data.len(),
                rows,
                cols,
                expected: rows.saturating_mul(cols),
            }),
        }
    }

    /// Views an nalgebra matrix whose **columns** are the embeddings (a `dims x n` matrix),
    /// without copying: nalgebra stores columns contiguously, which is exactly our row layout.
    ///
    /// ```
    /// use metric_loss_core::Embeddings;
    /// use nalgebra::DMatrix;
    /// let m = DMatrix::from_column_slice(2, 3, &[1.0f64, 0.0, 0.0, 1.0, 0.6, 0.8]);
    /// let x = Embeddings::from_columns(&m);
    /// assert_eq!((x.rows(), x.cols()), (3, 2));
    /// assert_eq!(x.row(2), &[0.6, 0.8]);
    /// ```
    pub fn from_columns(matrix: &'a nalgebra::DMatrix<T>) -> Self {
        Self {
            data: matrix.as_slice(),
            rows: matrix.ncols(),
            cols: matrix.nrows(),
        }
    }

    /// Number of embeddings.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Dimension of each embedding.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The row-major values.
    pub fn as_slice(&self) -> &'a [T] {
        self.data
    }

    /// Embedding `i`.
    ///
    /// # Panics
    /// If `i >= rows`.
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// The embeddings `rows.start..rows.end` as a view of their own, without copying: lets a
    /// loss work through a large batch a block of rows at a time.
    ///
    /// ```
    /// use metric_loss_core::Embeddings;
    /// let x = Embeddings::from_row_major(&[1.0f32, 0.0, 0.0, 1.0, 0.6, 0.8], 3, 2).unwrap();
    /// let tail = x.row_range(1..3);
    /// assert_eq!((tail.rows(), tail.row(0)), (2, &[0.0, 1.0][..]));
    /// ```
    ///
    /// # Panics
    /// If the range is decreasing or ends past `rows`, as slicing does.
    pub fn row_range(&self, rows: std::ops::Range<usize>) -> Self {
        Self {
            data: &self.data[rows.start * self.cols..rows.end * self.cols],
            rows: rows.len(),
            cols: self.cols,
        }
    }

    /// Checks every value is finite; `what` names the input in the error.
    ///
    /// # Errors
    /// [`LossError::NonFiniteEmbedding`] at the first NaN or infinity.
    pub fn check_finite(&self, what: &'static str) -> Result<(), LossError> {
        let Some(at) = first_non_finite(self.data) else {
            return Ok(());
        };
        Err(LossError::NonFiniteEmbedding {
            what,
            row: at / self.cols.max(1),
            col: at % self.cols.max(1),
            value: self.data[at].to_f64(),
        })
    }
}

/// A copy of an nalgebra `n x dims` matrix (one embedding per row, nalgebra's usual
/// orientation) in the row-major layout losses read.
///
/// Use [`Embeddings::from_columns`] instead when your embeddings are already columns: it
/// does not copy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowMajorBuffer<T> {
    data: Vec<T>,
    rows: usize,
    cols: usize,
}

impl<T: Float> RowMajorBuffer<T> {
    /// Copies `matrix` (rows are embeddings) into row-major order, reusing this buffer's
    /// allocation.
    pub fn copy_from<R: nalgebra::Dim, C: nalgebra::Dim, S: nalgebra::RawStorage<T, R, C>>(
        &mut self,
        matrix: &nalgebra::Matrix<T, R, C, S>,
    ) -> Embeddings<'_, T> {
        let (rows, cols) = matrix.shape();
        self.data.clear();
        self.data.reserve(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                self.data.push(matrix[(i, j)]);
            }
        }
        self.rows = rows;
        self.cols = cols;
        self.view()
    }

    /// The buffer as embeddings.
    pub fn view(&self) -> Embeddings<'_, T> {
        Embeddings {
            data: &self.data,
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// Labels and embeddings of one set of examples (queries or keys), with equal lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch<'a, T> {
    labels: &'a [i64],
    embeddings: Embeddings<'a, T>,
}

impl<'a, T: Float> Batch<'a, T> {
    /// Pairs labels with embeddings.
    ///
    /// # Errors
    /// [`LossError::LengthMismatch`] if there is not exactly one label per embedding row.
    pub fn new(labels: &'a [i64], embeddings: Embeddings<'a, T>) -> Result<Self, LossError> {
        if labels.len() != embeddings.rows() {
            return Err(LossError::LengthMismatch {
                what: "labels",
                got: labels.len(),
                reference: "embeddings",
                expected: embeddings.rows(),
            });
        }
        Ok(Self { labels, embeddings })
    }

    /// Embeddings without labels: one view of a two-view input
    /// ([`crate::LossInput::views`]). Kept inside the crate so that a labelled loss can
    /// never be handed a batch whose label slice is shorter than its rows.
    pub(crate) fn unlabelled(embeddings: Embeddings<'a, T>) -> Self {
        Self {
            labels: &[],
            embeddings,
        }
    }

    /// One label per example (empty for a view of a two-view input, which
    /// [`crate::LossInput::validate`] rejects before any label is read).
    pub fn labels(&self) -> &'a [i64] {
        self.labels
    }

    /// The embeddings.
    pub fn embeddings(&self) -> Embeddings<'a, T> {
        self.embeddings
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.embeddings.rows()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.embeddings.rows() == 0
    }
}
