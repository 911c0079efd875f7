//! `metric-loss eval`: a loss from a config, evaluated on `.npy` arrays.

use std::path::Path;

use metric_loss_core::{
    Batch, Embeddings, Float, LossInput, LossOutput, MetricLoss, MetricLossExt, SampleWeight,
    Workspace,
};
use serde::{Serialize, Serializer};

use crate::cli::EvalArgs;
use crate::npy::{self, FloatMatrix, Matrix, Weights};
use crate::{load_loss, CliError};

/// What `eval` prints: the reduced loss and the unweighted per-example losses, in the
/// precision of the embeddings.
///
/// Serialised as one JSON object, `{"loss": ..., "per_example_loss": [...]}`. Numbers are
/// written with the shortest representation that reads back to the same `f32` (or `f64`);
/// a non-finite value (the TF Similarity soft margin gives `inf` below x ≈ −88.7 in
/// float32) is written as the string `"inf"`, `"-inf"` or `"nan"`, as in TF Similarity's
/// fixture files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport<T: Float + Serialize> {
    /// The reduced, weighted loss.
    pub loss: JsonFloat<T>,
    /// ℓᵢ for each query, without sample weights.
    pub per_example_loss: Vec<JsonFloat<T>>,
}

impl<T: Float + Serialize> EvalReport<T> {
    /// The report of a loss output.
    pub fn new(out: &LossOutput<T>) -> Self {
        Self {
            loss: JsonFloat(out.loss),
            per_example_loss: out.per_example.iter().copied().map(JsonFloat).collect(),
        }
    }
}

/// A float written as a JSON number, or as `"inf"` / `"-inf"` / `"nan"` when not finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JsonFloat<T>(pub T);

impl<T: Float + Serialize> Serialize for JsonFloat<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            v.serialize(serializer)
        } else if v.partial_cmp(&T::ZERO).is_none() {
            serializer.serialize_str("nan")
        } else if v > T::ZERO {
            serializer.serialize_str("inf")
        } else {
            serializer.serialize_str("-inf")
        }
    }
}

/// Runs `eval` and returns what it prints on stdout (one JSON line). Writes the gradients
/// to `--grad-out` / `--key-grad-out` when asked.
///
/// # Errors
/// A [`CliError`] naming the file at fault: an unreadable or invalid config or `.npy`
/// file, inputs of inconsistent lengths, widths or dtypes, or a loss that rejects the
/// input (for example an snr distance on a constant row).
pub fn run(args: &EvalArgs) -> Result<String, CliError> {
    let loss = load_loss(&args.config)?;
    let x = npy::read_embeddings(&args.embeddings)?;
    let labels = match &args.labels {
        Some(path) => {
            let labels = npy::read_labels(path)?;
            check_len(path, labels.len(), &args.embeddings, x.rows())?;
            Some(labels)
        }
        None => None,
    };
    let weights = match &args.sample_weight {
        Some(path) => {
            let w = npy::read_weights(path)?;
            if let Weights::PerExample(v) = &w {
                check_len(path, v.len(), &args.embeddings, x.rows())?;
            }
            Some((path.as_path(), w))
        }
        None => None,
    };
    let keys = match &args.key_embeddings {
        Some(kx) => {
            let k = npy::read_embeddings(kx)?;
            if k.dtype() != x.dtype() {
                return Err(CliError::in_file(
                    kx,
                    format!(
                        "key embeddings are {} but the embeddings ({}) are {}; save both in the same precision",
                        k.dtype(),
                        args.embeddings.display(),
                        x.dtype()
                    ),
                ));
            }
            if k.cols() != x.cols() && k.rows() > 0 && x.rows() > 0 {
                return Err(CliError::in_file(
                    kx,
                    format!(
                        "key embeddings have {} columns but the embeddings ({}) have {}; they must match",
                        k.cols(),
                        args.embeddings.display(),
                        x.cols()
                    ),
                ));
            }
            let key_labels = match (&labels, &args.key_labels) {
                (Some(_), Some(ky)) => {
                    let key_labels = npy::read_labels(ky)?;
                    check_len(ky, key_labels.len(), kx, k.rows())?;
                    Some(key_labels)
                }
                (Some(_), None) => {
                    return Err(CliError::in_file(
                        kx,
                        "key embeddings of a labelled batch need --key-labels (a two-view loss takes neither --labels nor --key-labels)",
                    ))
                }
                (None, _) => None,
            };
            Some((k, key_labels))
        }
        None => None,
    };
    let request = Request {
        loss: &loss,
        labels: labels.as_deref(),
        weights,
        args,
    };
    match x {
        FloatMatrix::F32(x) => request.evaluate(x, keys.map(|(k, l)| (f32::take(k), l))),
        FloatMatrix::F64(x) => request.evaluate(x, keys.map(|(k, l)| (f64::take(k), l))),
    }
}

/// The two precisions `eval` computes in.
trait Precision: Float + Serialize + npyz::AutoSerialize {
    /// The matrix of this precision (the caller checked the dtype).
    fn take(m: FloatMatrix) -> Matrix<Self>;
}

impl Precision for f32 {
    fn take(m: FloatMatrix) -> Matrix<f32> {
        match m {
            FloatMatrix::F32(m) => m,
            #[allow(clippy::cast_possible_truncation)]
            FloatMatrix::F64(m) => Matrix {
                data: m.data.iter().map(|v| *v as f32).collect(),
                rows: m.rows,
                cols: m.cols,
            },
        }
    }
}

impl Precision for f64 {
    fn take(m: FloatMatrix) -> Matrix<f64> {
        match m {
            FloatMatrix::F64(m) => m,
            FloatMatrix::F32(m) => Matrix {
                data: m.data.iter().map(|v| f64::from(*v)).collect(),
                rows: m.rows,
                cols: m.cols,
            },
        }
    }
}

struct Request<'a> {
    loss: &'a dyn MetricLoss,
    /// `None` for two views.
    labels: Option<&'a [i64]>,
    weights: Option<(&'a Path, Weights)>,
    args: &'a EvalArgs,
}

impl Request<'_> {
    fn evaluate<T: Precision>(
        self,
        x: Matrix<T>,
        keys: Option<(Matrix<T>, Option<Vec<i64>>)>,
    ) -> Result<String, CliError> {
        let args = self.args;
        let shape_error = |path: &Path, e: metric_loss_core::LossError| CliError::in_file(path, e);
        let queries = Embeddings::from_row_major(&x.data, x.rows, x.cols)
            .map_err(|e| shape_error(&args.embeddings, e))?;
        let kx = args.key_embeddings.as_deref().unwrap_or(Path::new("keys"));
        let key_embeddings = match &keys {
            Some((k, _)) => Some(
                Embeddings::from_row_major(&k.data, k.rows, k.cols)
                    .map_err(|e| shape_error(kx, e))?,
            ),
            None => None,
        };
        let key_labels = keys.as_ref().and_then(|(_, l)| l.as_deref());
        let mut input = match (self.labels, key_embeddings, key_labels) {
            (Some(labels), keys, key_labels) => {
                let labels_path = args.labels.as_deref().unwrap_or(Path::new("labels"));
                let queries =
                    Batch::new(labels, queries).map_err(|e| shape_error(labels_path, e))?;
                let input = LossInput::new(queries);
                match (keys, key_labels) {
                    (Some(e), Some(l)) => input
                        .with_keys(Batch::new(l, e).map_err(|e| shape_error(kx, e))?)
                        .remove_diagonal(!args.keep_diagonal),
                    _ => input,
                }
            }
            (None, Some(view_b), _) => LossInput::views(queries, view_b),
            (None, None, _) => return Err(CliError::new(
                "give --labels (a labelled loss) or --key-embeddings as view B (a two-view loss)",
            )),
        };

        let weights: Option<Vec<T>> = match &self.weights {
            Some((path, w)) => {
                let values = match w {
                    Weights::Scalar(v) => vec![T::from_f64(*v)],
                    Weights::PerExample(v) => v.iter().map(|v| T::from_f64(*v)).collect(),
                };
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(CliError::in_file(
                        path,
                        format!("sample weight at index {i} overflows {}", T::DTYPE),
                    ));
                }
                Some(values)
            }
            None => None,
        };
        match (&self.weights, &weights) {
            (Some((_, Weights::Scalar(_))), Some(w)) => {
                input = input.with_sample_weight(SampleWeight::Scalar(w[0]));
            }
            (Some(_), Some(w)) => {
                input = input.with_sample_weight(SampleWeight::PerExample(w));
            }
            _ => {}
        }

        if args.grad_out.is_none() && args.key_grad_out.is_none() {
            input = input.without_gradient();
        }

        let mut out = LossOutput::new();
        self.loss
            .compute_into(&input, &mut Workspace::new(), &mut out)
            .map_err(|e| {
                CliError::in_file(
                    &args.embeddings,
                    format!(
                        "{} (from {}) cannot be evaluated: {e}",
                        self.loss.name(),
                        args.config.display()
                    ),
                )
            })?;

        if let Some(path) = &args.grad_out {
            npy::write_matrix(path, &out.grad_queries, x.rows, x.cols)?;
        }
        if let (Some(path), Some((k, _))) = (&args.key_grad_out, &keys) {
            // With keys, grad_keys is m x d, or empty for an empty query batch (all zeros).
            let grad = if out.grad_keys.is_empty() {
                vec![T::ZERO; k.rows * k.cols]
            } else {
                out.grad_keys.clone()
            };
            npy::write_matrix(path, &grad, k.rows, k.cols)?;
        }

        let mut line = serde_json::to_string(&EvalReport::new(&out))
            .map_err(|e| CliError::new(format!("cannot write the result as JSON: {e}")))?;
        line.push('\n');
        Ok(line)
    }
}

fn check_len(path: &Path, got: usize, reference: &Path, rows: usize) -> Result<(), CliError> {
    if got == rows {
        return Ok(());
    }
    Err(CliError::in_file(
        path,
        format!(
            "has {got} entries but {} has {rows} rows; they must have one entry per example",
            reference.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_strings() {
        let out = LossOutput {
            per_example: vec![0.5f32, f32::INFINITY, f32::NEG_INFINITY, f32::NAN],
            loss: 0.1,
            grad_queries: vec![],
            grad_keys: vec![],
            grad_parameters: vec![],
        };
        let json = serde_json::to_string(&EvalReport::new(&out)).unwrap();
        assert_eq!(
            json,
            r#"{"loss":0.1,"per_example_loss":[0.5,"inf","-inf","nan"]}"#
        );
    }
}
