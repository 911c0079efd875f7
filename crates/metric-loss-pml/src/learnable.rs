//! What the losses with a learnable matrix share: the checks at the start of a call (no
//! separate keys, the built width, labels within the classes), the f64 master copy rounded
//! into the call's precision, the scratch they reuse, and [`learnable_loss!`], which
//! declares a loss's config (PML's keywords plus `seed`), the loss holding its
//! [`Parameters`], and its `MetricLoss` impl.

use metric_loss_core::{
    AllowNonFinite, Distance, Embeddings, Float, LossError, LossInput, LossOutput, ParameterShape,
    Parameters, SampleWeight, Workspace,
};
use metric_loss_distances::lanes::DenseFloat;
use metric_loss_triplet::{
    check_matrix_size, finite_distances, DenseParts, MAX_DISTANCE_MATRIX_BYTES,
};

/// A loss's required constructor arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizes {
    /// Labels lie in `0..num_classes`.
    pub(crate) num_classes: usize,
    /// The embeddings' width.
    pub(crate) embedding_size: usize,
}

/// A loss whose parameter matrix is its second operand: ArcFace's classes, ProxyAnchor's
/// proxies.
pub(crate) trait Learnable {
    /// The class name, for errors.
    const CLASS: &'static str;

    /// The classes (labels must lie in `0..num_classes`) and the embedding width.
    fn sizes(&self) -> Sizes;

    /// The parameter matrix's name and shape.
    fn shape(&self) -> ParameterShape;

    /// The standard deviation of the normal the matrix is initialised from (PML's).
    fn init_std(&self) -> f64;

    /// Refuses parts the loss cannot use (checked once, at build).
    ///
    /// # Errors
    /// [`LossError::UnsupportedDistance`] and the like.
    fn check_parts(&self, parts: &DenseParts) -> Result<(), LossError> {
        let _ = parts;
        Ok(())
    }

    /// The loss on a validated call: `scratch.params` holds the parameters in `T`, `out` is
    /// reset (with `grad_parameters` sized when the gradient is wanted).
    fn run<T: DenseFloat>(
        &self,
        parts: &DenseParts,
        input: &LossInput<'_, T>,
        scratch: &mut Scratch<T>,
        out: &mut LossOutput<T>,
    ) -> Result<(), LossError>;
}

/// Reusable memory of one call, in the call's precision.
#[derive(Default)]
pub(crate) struct Scratch<T> {
    /// The parameters rounded to `T`.
    pub(crate) params: Vec<T>,
    /// The keys the distance compares the rows with (the parameters, transposed if need be).
    pub(crate) keys: Vec<T>,
    /// The `n x m` distance (or similarity) matrix.
    pub(crate) matrix: Vec<T>,
    /// ∂L/∂matrix.
    pub(crate) grad: Vec<T>,
    /// ∂L/∂keys.
    pub(crate) key_grad: Vec<T>,
    /// The distance's own memory.
    pub(crate) stats: Vec<T>,
    /// Per element: its value, reducer scale and weight.
    pub(crate) values: Vec<T>,
    pub(crate) scales: Vec<T>,
    pub(crate) weights: Vec<T>,
    /// Per row: the logits (classifiers).
    pub(crate) logits: Vec<T>,
    /// Per row: its loss, the target margin's slope and the log-softmax normaliser
    /// (classifiers).
    pub(crate) row_stats: Vec<[T; 3]>,
    /// Each thread's row of exponentials (classifiers).
    pub(crate) exps: Vec<Vec<T>>,
    /// Per class: maxima, sums, then shares (ProxyAnchor).
    pub(crate) class_stats: Vec<T>,
    /// Per class: its rows (ProxyAnchor).
    pub(crate) counts: Vec<usize>,
}

/// Runs `formula` on `input` with `params`: checks the call, rounds the parameters into
/// the workspace, runs the formula, and checks that the result is finite.
///
/// # Errors
/// Invalid input ([`LossInput::validate`]); [`LossError::Unsupported`] for separate keys
/// (PML's `ref_emb`); [`LossError::EmbeddingSize`]; [`LossError::LabelOutOfRange`];
/// [`LossError::TooLarge`]; the formula's errors; [`LossError::NonFiniteResult`].
pub(crate) fn run_learnable<T: DenseFloat, F: Learnable>(
    formula: &F,
    params: &Parameters,
    parts: &DenseParts,
    input: &LossInput<'_, T>,
    workspace: &mut Workspace,
    out: &mut LossOutput<T>,
) -> Result<(), LossError> {
    input.validate()?;
    if !input.keys_are_queries() {
        return Err(LossError::Unsupported {
            loss: F::CLASS.into(),
            message: "separate keys (PML's ref_emb) are not supported: the rows are compared \
                      with the loss's own parameters; pass the batch alone"
                .into(),
        });
    }
    let queries = input.queries();
    let (n, dims) = (queries.len(), queries.embeddings().cols());
    let Sizes {
        num_classes: classes,
        embedding_size,
    } = formula.sizes();
    if dims != embedding_size && n > 0 {
        return Err(LossError::EmbeddingSize {
            got: dims,
            expected: embedding_size,
        });
    }
    let out_of_range = |l: i64| usize::try_from(l).map_or(true, |c| c >= classes);
    if let Some(index) = queries.labels().iter().position(|l| out_of_range(*l)) {
        return Err(LossError::LabelOutOfRange {
            index,
            label: queries.labels()[index],
            num_classes: classes,
        });
    }
    let gradient = input.wants_gradient();
    out.reset(n, 0, dims, gradient);
    out.reset_parameters(formula.shape().len(), gradient);
    if n == 0 {
        return Ok(());
    }
    // Two n x m matrices: the distances and their gradient.
    check_matrix_size::<T>(n, formula.shape().len() / dims.max(1), 2)?;
    let scratch = workspace.get::<Scratch<T>>();
    params.copy_into(&mut scratch.params);
    formula.run(parts, input, scratch, out)?;
    out.check_finite(AllowNonFinite::Never)
}

/// Refuses a parameter matrix larger than a distance matrix may be
/// ([`MAX_DISTANCE_MATRIX_BYTES`]): a config's sizes are untrusted input.
///
/// # Errors
/// [`LossError::TooLarge`].
pub(crate) fn check_parameter_size(shape: ParameterShape) -> Result<(), LossError> {
    let bytes = shape.rows as u128 * shape.cols as u128 * std::mem::size_of::<f64>() as u128;
    if bytes > MAX_DISTANCE_MATRIX_BYTES {
        return Err(LossError::TooLarge {
            what: "the parameter matrix",
            rows: shape.rows,
            cols: shape.cols,
            bytes,
            limit: MAX_DISTANCE_MATRIX_BYTES,
        });
    }
    Ok(())
}

/// Fills `scratch.matrix` with `distance(x, keys)` (`keys`: `m` rows of width
/// `x.cols()`), refusing a non-finite entry.
///
/// # Errors
/// The distance's error, or [`LossError::NonFiniteDistance`].
pub(crate) fn distances<T: Float>(
    distance: &dyn Distance<T>,
    x: Embeddings<'_, T>,
    keys: &[T],
    m: usize,
    matrix: &mut Vec<T>,
    stats: &mut Vec<T>,
) -> Result<(), LossError> {
    let k = Embeddings::from_row_major(keys, m, x.cols())?;
    matrix.clear();
    matrix.resize(x.rows() * m, T::ZERO);
    stats.clear();
    distance.matrix(x, k, false, stats, matrix)?;
    finite_distances(distance.name(), matrix, m)
}

/// Adds ∂L/∂x into `grad_x` and writes ∂L/∂keys into `grad_keys` (zeroed first), from
/// ∂L/∂matrix in `dist_grad` (overwritten), through the distance's vector-Jacobian product.
#[allow(clippy::too_many_arguments)]
pub(crate) fn distance_vjp<T: Float>(
    distance: &dyn Distance<T>,
    x: Embeddings<'_, T>,
    keys: &[T],
    matrix: &[T],
    dist_grad: &mut [T],
    grad_x: &mut [T],
    grad_keys: &mut Vec<T>,
    stats: &mut Vec<T>,
) {
    let m = keys.len() / x.cols().max(1);
    let k = Embeddings::from_row_major(keys, m, x.cols())
        .expect("the keys were checked when the matrix was computed");
    grad_keys.clear();
    grad_keys.resize(keys.len(), T::ZERO);
    distance.dense_vjp_with_scratch(x, k, matrix, dist_grad, grad_x, grad_keys, stats);
}

/// Reduces `values` (each times its weight) with the loss's reducer, writing each
/// element's ∂L/∂value into `scales`; returns the reduced value.
pub(crate) fn reduce_elements<T: Float>(
    parts: &DenseParts,
    values: &[T],
    weights: &[T],
    scales: &mut [T],
) -> T {
    let reducer = T::reducer(parts.reducer_part());
    scales.iter_mut().for_each(|s| *s = T::ZERO);
    reducer.reduce(values, &SampleWeight::PerExample(weights), scales)
}

/// Declares `$loss` (holding its [`Learnable`] `$formula`, its parts, its [`Parameters`] and
/// its validated config) and `$config`: `num_classes` and `embedding_size` (required),
/// the extra fields `$field: $ty = $default`, `distance`, `reducer`, `seed` and `name`;
/// `$build` turns the config into the formula (validating it).
macro_rules! learnable_loss {
    (
        $(#[$loss_doc:meta])*
        loss: $loss:ident,
        $(#[$config_doc:meta])*
        config: $config:ident,
        class: $class:literal,
        distance: $distance:expr,
        reducer: $reducer:expr,
        fields: { $($(#[$field_doc:meta])* $field:ident: $ty:ty = $default:expr),* $(,)? },
        build: |$c:ident, $sizes:ident| -> $formula:ty $build:block
    ) => {
        $(#[$config_doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $config {
            /// The number of classes (required): labels lie in `0..num_classes`.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub num_classes: Option<usize>,
            /// The embedding width (required).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub embedding_size: Option<usize>,
            $($(#[$field_doc])* pub $field: $ty,)*
            /// The distance, as PML's constructor takes it.
            pub distance: metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredDistance>,
            /// The reducer, as PML's constructor takes it.
            pub reducer: metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredReducer>,
            /// The seed of the parameters' initial values (PML's distribution, not torch's
            /// random stream); default 0.
            pub seed: u64,
            /// The loss's name.
            pub name: String,
        }

        impl Default for $config {
            fn default() -> Self {
                Self {
                    num_classes: None,
                    embedding_size: None,
                    $($field: $default,)*
                    distance: $distance.into(),
                    reducer: $reducer.into(),
                    seed: 0,
                    name: $class.into(),
                }
            }
        }

        impl $config {
            /// The config with PML's defaults for `num_classes` classes of embeddings of
            /// width `embedding_size`.
            pub fn new(num_classes: usize, embedding_size: usize) -> Self {
                Self {
                    num_classes: Some(num_classes),
                    embedding_size: Some(embedding_size),
                    ..Self::default()
                }
            }

            metric_loss_core::config_setters! {
                /// Sets `num_classes`.
                num_classes: impl Into<Option<usize>>,
                /// Sets `embedding_size`.
                embedding_size: impl Into<Option<usize>>,
                $(#[doc = concat!("Sets `", stringify!($field), "`.")] $field: $ty,)*
                /// Sets the distance.
                distance: impl Into<metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredDistance>>,
                /// Sets the reducer.
                reducer: impl Into<metric_loss_core::PartConfig<dyn metric_loss_core::RegisteredReducer>>,
                /// Sets the seed of the initial parameters.
                seed: u64,
                /// Sets the name.
                name: impl Into<String>,
            }

            /// Validates the config and builds the loss, its parameters drawn from `seed`.
            ///
            /// # Errors
            /// [`LossError::MissingArgument`](metric_loss_core::LossError) without
            /// `num_classes` or `embedding_size` (or either 0),
            /// [`LossError::InvalidParameter`](metric_loss_core::LossError) naming a bad
            /// argument, an unknown distance or reducer name, or a distance the loss cannot
            /// use.
            pub fn build(&self) -> Result<$loss, metric_loss_core::LossError> {
                let required = |name, value: Option<usize>| {
                    value.filter(|v| *v > 0).ok_or(metric_loss_core::LossError::MissingArgument {
                        loss: $class,
                        name,
                        expected: "a positive integer",
                    })
                };
                let $sizes = $crate::learnable::Sizes {
                    num_classes: required("num_classes", self.num_classes)?,
                    embedding_size: required("embedding_size", self.embedding_size)?,
                };
                let $c = self;
                let formula: $formula = $build;
                let parts = metric_loss_triplet::DenseParts::from_config(&self.distance, &self.reducer)?;
                $crate::learnable::Learnable::check_parts(&formula, &parts)?;
                let shape = $crate::learnable::Learnable::shape(&formula);
                $crate::learnable::check_parameter_size(shape)?;
                let std = $crate::learnable::Learnable::init_std(&formula);
                Ok($loss {
                    name: self.name.clone(),
                    formula,
                    parts,
                    params: metric_loss_core::Parameters::normal(shape, std, self.seed),
                    config: self.clone(),
                })
            }
        }

        $(#[$loss_doc])*
        #[derive(Debug, Clone)]
        pub struct $loss {
            name: String,
            formula: $formula,
            parts: metric_loss_triplet::DenseParts,
            params: metric_loss_core::Parameters,
            config: $config,
        }

        impl $loss {
            /// The loss with PML's defaults for `num_classes` classes of embeddings of
            /// width `embedding_size`.
            ///
            /// # Errors
            /// As [`
            #[doc = stringify!($config)]
            /// ::build`].
            pub fn new(num_classes: usize, embedding_size: usize) -> Result<Self, metric_loss_core::LossError> {
                $config::new(num_classes, embedding_size).build()
            }

            /// The config it was built from (`get_config`).
            pub fn config(&self) -> $config {
                self.config.clone()
            }

            /// Its distance and reducer.
            pub fn parts(&self) -> &metric_loss_triplet::DenseParts {
                &self.parts
            }

            /// The parameter matrix (read and set it through `MetricLoss`'s methods).
            pub fn parameters(&self) -> &metric_loss_core::Parameters {
                &self.params
            }
        }

        $crate::loss_config::config_serde!($loss, $config);

        $crate::loss_config::impl_metric_loss!($loss, |loss, input, workspace, out| {
            $crate::learnable::run_learnable(&loss.formula, &loss.params, &loss.parts, input, workspace, out)
        }, {
            fn parameter_shape(&self) -> Option<metric_loss_core::ParameterShape> {
                Some(self.params.shape())
            }

            fn read_parameters(&self, out: &mut [f64]) -> Result<(), metric_loss_core::LossError> {
                self.params.read(out)
            }

            fn set_parameters(&self, values: &[f64]) -> Result<(), metric_loss_core::LossError> {
                self.params.set(values)
            }
        });
    };
}
pub(crate) use learnable_loss;
