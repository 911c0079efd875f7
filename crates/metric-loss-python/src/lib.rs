//! The native half of the `metric-loss` Python package (imported as `metric_loss`): any
//! registered loss, read from a Keras-shaped config, evaluated on NumPy arrays.
//!
//! The Python half (`python/metric_loss`) gives the TF Similarity-shaped API (one class per
//! loss, keyword arguments, `get_config` / `from_config`) and normalises its inputs, so this
//! module sees only what it can borrow: C-contiguous `float32` / `float64` embeddings and
//! `int64` labels. Arrays arriving in another layout are still accepted here (copied into
//! row-major order), so calling the native module directly can never give a wrong answer.
//!
//! Build it with maturin (`pip install ./crates/metric-loss-python`); `cargo build` only
//! checks that it compiles.

use std::borrow::Cow;
use std::sync::Mutex;

use metric_loss_core::{
    Batch, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss, MetricLossExt,
    SampleWeight, Workspace,
};
use metric_loss_registry::{Format, RegisteredLoss, RegistryError};
use numpy::ndarray::{Array2, Dimension};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray, PyReadonlyArray1,
    PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyFloat;

/// A Rust error as the Python exception a caller would expect for it.
fn loss_error(error: LossError) -> PyErr {
    PyValueError::new_err(error.to_string())
}

/// Keys the loss does not know, missing keys and values of the wrong type are what Python
/// reports as `TypeError` for a call; a file that cannot be read is an `OSError`; every
/// other config problem (an invalid value, a syntax error) is a `ValueError`.
fn registry_error(error: RegistryError) -> PyErr {
    let message = error.to_string();
    match error {
        RegistryError::UnknownKey { .. }
        | RegistryError::MissingKey { .. }
        | RegistryError::WrongType { .. } => PyTypeError::new_err(message),
        RegistryError::Io { .. } => PyOSError::new_err(message),
        _ => PyValueError::new_err(message),
    }
}

/// Borrows a NumPy array's data when it is C-contiguous (row-major), copies it into
/// row-major order otherwise (`as_slice` alone would also hand out a Fortran-ordered
/// buffer, read in the wrong order).
fn row_major<'a, T: Element + Copy, D: Dimension>(
    array: &'a PyReadonlyArray<'_, T, D>,
) -> Cow<'a, [T]> {
    match array.as_slice() {
        Ok(slice) if array.is_c_contiguous() => Cow::Borrowed(slice),
        _ => Cow::Owned(array.as_array().iter().copied().collect()),
    }
}

/// A 2-d array of `T` from `object`, or a `TypeError` naming what was given.
fn matrix<'py, T: Element>(
    object: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    let array = object.cast::<PyArray2<T>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a 2-d NumPy array of float32 or float64 (keys in the dtype of the queries), got {}",
            describe(object)
        ))
    })?;
    array.try_readonly().map_err(|e| {
        PyValueError::new_err(format!(
            "{what} cannot be read while it is borrowed for writing: {e}"
        ))
    })
}

/// `ndarray(float32, ndim=3)` or the Python type name, for error messages.
fn describe(object: &Bound<'_, PyAny>) -> String {
    let dtype = object
        .getattr("dtype")
        .and_then(|d| d.str().map(|s| s.to_string()));
    let ndim = object.getattr("ndim").and_then(|n| n.extract::<usize>());
    match (dtype, ndim) {
        (Ok(dtype), Ok(ndim)) => format!("an array of {dtype} with {ndim} dimensions"),
        _ => object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "an object".into()),
    }
}

/// A loss read from a config, ready to evaluate.
///
/// The workspace is reused between calls (no allocation in the loss once warmed up); a
/// call made while another thread holds it gets a fresh one instead of waiting.
#[pyclass(module = "metric_loss._native", frozen)]
struct NativeLoss {
    loss: Box<dyn RegisteredLoss>,
    workspace: Mutex<Workspace>,
}

/// What `compute` hands back to Python: `(loss, per_example, grad, grad_keys)`
/// (`compute_learnable`: `grad_parameters` in the last place).
type Computed<'py> = (
    f64,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
);

/// One evaluation's results as Python values: [`Computed`] and the gradient with respect
/// to the loss's parameters (`None` without parameters or gradient).
struct Results<'py> {
    computed: Computed<'py>,
    grad_parameters: Option<Bound<'py, PyAny>>,
}

/// The arguments of one evaluation, before their dtype is known.
/// Without labels it is a two-view call: the embeddings are view A, the keys view B.
struct Call<'py, 'a> {
    labels: Option<&'a [i64]>,
    /// The Python names of the embeddings and the keys, for errors.
    names: [&'static str; 2],
    embeddings: &'a Bound<'py, PyAny>,
    sample_weight: Option<&'a Bound<'py, PyAny>>,
    keys: Option<(&'a Bound<'py, PyAny>, Option<&'a [i64]>)>,
    remove_diagonal: bool,
    gradient: bool,
}

impl NativeLoss {
    fn new(loss: Box<dyn RegisteredLoss>) -> Self {
        NativeLoss {
            loss,
            workspace: Mutex::new(Workspace::new()),
        }
    }

    /// Runs `loss` with the GIL released, on the shared workspace when it is free.
    fn run<T: Float>(
        &self,
        py: Python<'_>,
        input: &LossInput<'_, T>,
    ) -> Result<LossOutput<T>, LossError> {
        py.detach(|| {
            let mut out = LossOutput::new();
            match self.workspace.try_lock() {
                Ok(mut workspace) => self.loss.compute_into(input, &mut workspace, &mut out),
                Err(_) => self
                    .loss
                    .compute_into(input, &mut Workspace::new(), &mut out),
            }
            .map(|()| out)
        })
    }

    fn dispatch<'py>(&self, py: Python<'py>, call: &Call<'py, '_>) -> PyResult<Results<'py>> {
        if call.embeddings.cast::<PyArray2<f64>>().is_ok() {
            self.compute_typed::<f64>(py, call)
        } else {
            self.compute_typed::<f32>(py, call)
        }
    }

    fn compute_typed<'py, T: Float + Element>(
        &self,
        py: Python<'py>,
        call: &Call<'py, '_>,
    ) -> PyResult<Results<'py>> {
        let x = matrix::<T>(call.embeddings, call.names[0])?;
        let (rows, dims) = (x.shape()[0], x.shape()[1]);
        let x_data = row_major(&x);

        let weights = match call.sample_weight {
            None => None,
            Some(w) if w.is_instance_of::<PyFloat>() => Some(Err(T::from_f64(w.extract()?))),
            Some(w) => {
                let w = w.cast::<PyArray1<T>>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "sample_weight must be a float or a 1-d array of the embeddings' dtype, got {}",
                        describe(w)
                    ))
                })?;
                Some(Ok(w.try_readonly().map_err(|e| {
                    PyValueError::new_err(format!("sample_weight cannot be read: {e}"))
                })?))
            }
        };
        let weight_data = match &weights {
            Some(Ok(w)) => Some(row_major(w)),
            _ => None,
        };

        let keys = match call.keys {
            Some((k, labels)) => Some((matrix::<T>(k, call.names[1])?, labels)),
            None => None,
        };
        let key_data = keys
            .as_ref()
            .map(|(k, labels)| (row_major(k), k.shape()[0], k.shape()[1], *labels));

        let x_view = Embeddings::from_row_major(&x_data, rows, dims).map_err(loss_error)?;
        let key_view = match &key_data {
            Some((data, m, kd, _)) => {
                Some(Embeddings::from_row_major(data, *m, *kd).map_err(loss_error)?)
            }
            None => None,
        };
        let mut input = match (call.labels, key_view, &key_data) {
            (None, Some(b), _) => LossInput::views(x_view, b),
            (None, None, _) => {
                return Err(PyValueError::new_err(
                    "a two-view loss needs both views: view_b is missing",
                ))
            }
            (Some(labels), keys, key_data) => {
                let queries = Batch::new(labels, x_view).map_err(loss_error)?;
                let input = LossInput::new(queries).remove_diagonal(call.remove_diagonal);
                match (keys, key_data) {
                    (Some(keys), Some((_, _, _, Some(labels)))) => {
                        input.with_keys(Batch::new(labels, keys).map_err(loss_error)?)
                    }
                    (Some(_), _) => {
                        return Err(PyValueError::new_err(
                            "keys and key_labels go together: give both or neither",
                        ))
                    }
                    (None, _) => input,
                }
            }
        };
        input = match (&weights, &weight_data) {
            (Some(Err(scalar)), _) => input.with_sample_weight(SampleWeight::Scalar(*scalar)),
            (_, Some(w)) => input.with_sample_weight(SampleWeight::PerExample(w)),
            _ => input,
        };
        if !call.gradient {
            input = input.without_gradient();
        }

        let out = self.run(py, &input).map_err(loss_error)?;
        let per_example = out.per_example.into_pyarray(py).into_any();
        let as_matrix = |values: Vec<T>, rows: usize, dims: usize| -> PyResult<Bound<'py, PyAny>> {
            let array = Array2::from_shape_vec((rows, dims), values)
                .map_err(|e| PyValueError::new_err(format!("gradient shape: {e}")))?;
            Ok(array.into_pyarray(py).into_any())
        };
        let grad = if call.gradient {
            Some(as_matrix(out.grad_queries, rows, dims)?)
        } else {
            None
        };
        let grad_keys = match &key_data {
            Some((_, m, _, _)) if call.gradient => Some(as_matrix(out.grad_keys, *m, dims)?),
            _ => None,
        };
        let grad_parameters = match self.loss.parameter_shape() {
            Some(shape) if call.gradient => {
                Some(as_matrix(out.grad_parameters, shape.rows, shape.cols)?)
            }
            _ => None,
        };
        Ok(Results {
            computed: (out.loss.to_f64(), per_example, grad, grad_keys),
            grad_parameters,
        })
    }

    /// The loss's parameter shape, or a `ValueError` naming the loss.
    fn shape(&self) -> PyResult<metric_loss_core::ParameterShape> {
        self.loss.parameter_shape().ok_or_else(|| {
            loss_error(LossError::NoParameters {
                loss: self.loss.name().to_owned(),
            })
        })
    }
}

#[pymethods]
impl NativeLoss {
    /// Reads a loss from its Keras-shaped config as JSON text.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        metric_loss_registry::from_str(text, Format::Json)
            .map(NativeLoss::new)
            .map_err(registry_error)
    }

    /// Reads a loss from a `.json`, `.toml`, `.yaml` or `.yml` config file.
    #[staticmethod]
    fn load(path: std::path::PathBuf) -> PyResult<Self> {
        metric_loss_registry::load(path)
            .map(NativeLoss::new)
            .map_err(registry_error)
    }

    /// The loss's Keras-shaped config as JSON text.
    fn config_json(&self) -> PyResult<String> {
        self.loss
            .to_config_string(Format::Json)
            .map_err(registry_error)
    }

    /// The loss's name (Keras's `name`).
    #[getter]
    fn name(&self) -> String {
        self.loss.name().to_owned()
    }

    /// Forgets state kept between calls (a cross-batch memory); stateless losses do nothing.
    fn reset_state(&self) {
        self.loss.reset_state();
    }

    /// Evaluates the loss: `(loss, per_example, grad, grad_keys)`, the arrays in the
    /// embeddings' dtype; `grad` is `None` without `gradient`, `grad_keys` without keys.
    #[pyo3(signature = (labels, embeddings, sample_weight=None, keys=None, key_labels=None, remove_diagonal=true, gradient=true))]
    #[allow(clippy::too_many_arguments)]
    fn compute<'py>(
        &self,
        py: Python<'py>,
        labels: PyReadonlyArray1<'py, i64>,
        embeddings: &Bound<'py, PyAny>,
        sample_weight: Option<&Bound<'py, PyAny>>,
        keys: Option<&Bound<'py, PyAny>>,
        key_labels: Option<PyReadonlyArray1<'py, i64>>,
        remove_diagonal: bool,
        gradient: bool,
    ) -> PyResult<Computed<'py>> {
        let label_data = row_major(&labels);
        let key_label_data = key_labels.as_ref().map(row_major);
        let keys = match (keys, &key_label_data) {
            (Some(k), Some(l)) => Some((k, &l[..])),
            (None, None) => None,
            _ => {
                return Err(PyValueError::new_err(
                    "keys and key_labels go together: give both or neither",
                ))
            }
        };
        self.dispatch(
            py,
            &Call {
                labels: Some(&label_data),
                names: ["y_pred", "keys"],
                embeddings,
                sample_weight,
                keys: keys.map(|(k, l)| (k, Some(l))),
                remove_diagonal,
                gradient,
            },
        )
        .map(|r| r.computed)
    }

    /// Evaluates a two-view loss (row i of `view_a` pairs with row i of `view_b`):
    /// `(loss, per_example, grad_a, grad_b)`, as [`NativeLoss::compute`].
    #[pyo3(signature = (view_a, view_b, sample_weight=None, gradient=true))]
    fn compute_views<'py>(
        &self,
        py: Python<'py>,
        view_a: &Bound<'py, PyAny>,
        view_b: &Bound<'py, PyAny>,
        sample_weight: Option<&Bound<'py, PyAny>>,
        gradient: bool,
    ) -> PyResult<Computed<'py>> {
        self.dispatch(
            py,
            &Call {
                labels: None,
                names: ["view_a", "view_b"],
                embeddings: view_a,
                sample_weight,
                keys: Some((view_b, None)),
                remove_diagonal: false,
                gradient,
            },
        )
        .map(|r| r.computed)
    }

    /// Evaluates a loss with learnable parameters: `(loss, per_example, grad,
    /// grad_parameters)`, the arrays in the embeddings' dtype (`grad_parameters` in the
    /// parameters' shape); the gradients are `None` without `gradient`.
    #[pyo3(signature = (labels, embeddings, sample_weight=None, gradient=true))]
    fn compute_learnable<'py>(
        &self,
        py: Python<'py>,
        labels: PyReadonlyArray1<'py, i64>,
        embeddings: &Bound<'py, PyAny>,
        sample_weight: Option<&Bound<'py, PyAny>>,
        gradient: bool,
    ) -> PyResult<Computed<'py>> {
        self.shape()?;
        let label_data = row_major(&labels);
        let r = self.dispatch(
            py,
            &Call {
                labels: Some(&label_data),
                names: ["y_pred", "keys"],
                embeddings,
                sample_weight,
                keys: None,
                remove_diagonal: true,
                gradient,
            },
        )?;
        let (loss, per_example, grad, _) = r.computed;
        Ok((loss, per_example, grad, r.grad_parameters))
    }

    /// The shape of the loss's parameter matrix as `(name, rows, cols)`, or `None` for a
    /// loss without parameters.
    #[getter]
    fn parameter_shape(&self) -> Option<(&'static str, usize, usize)> {
        self.loss
            .parameter_shape()
            .map(|s| (s.name, s.rows, s.cols))
    }

    /// A copy of the loss's parameters, a float64 array of their shape.
    fn read_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let shape = self.shape()?;
        let mut values = vec![0.0; shape.len()];
        self.loss.read_parameters(&mut values).map_err(loss_error)?;
        let array = Array2::from_shape_vec((shape.rows, shape.cols), values)
            .map_err(|e| PyValueError::new_err(format!("parameter shape: {e}")))?;
        Ok(array.into_pyarray(py))
    }

    /// Replaces the loss's parameters with a float64 array of their shape.
    fn set_parameters(&self, values: PyReadonlyArray2<'_, f64>) -> PyResult<()> {
        let shape = self.shape()?;
        if values.shape() != [shape.rows, shape.cols] {
            return Err(PyValueError::new_err(format!(
                "{} must have shape ({}, {}), got {:?}",
                shape.name,
                shape.rows,
                shape.cols,
                values.shape()
            )));
        }
        self.loss
            .set_parameters(&row_major(&values))
            .map_err(loss_error)
    }

    fn __repr__(&self) -> String {
        format!("NativeLoss({:?})", self.loss.name())
    }
}

/// The class names every config may use, built-in and linked-in losses alike.
#[pyfunction]
fn registered_names() -> Vec<&'static str> {
    metric_loss_registry::registered_names()
}

/// The native module, `metric_loss._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeLoss>()?;
    m.add_function(wrap_pyfunction!(registered_names, m)?)?;
    Ok(())
}
