//! The one error type every crate of the workspace returns.

use std::fmt;

/// Which of a loss's two mining strategies an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyRole {
    /// The positive mining strategy (`easy` | `hard`).
    Positive,
    /// The negative mining strategy (`easy` | `hard` | `semi-hard`).
    Negative,
}

impl fmt::Display for StrategyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StrategyRole::Positive => "positive",
            StrategyRole::Negative => "negative",
        })
    }
}

/// Everything that can go wrong when building or evaluating a loss.
///
/// Each message names what was given and what was expected. The enum is
/// `#[non_exhaustive]`: new failure modes can be added without breaking callers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LossError {
    /// Two inputs that must have one row each per example disagree.
    #[error("{what} has {got} entries but {reference} has {expected}; they must have one entry per example")]
    LengthMismatch {
        /// The input whose length is wrong.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The input it was compared with.
        reference: &'static str,
        /// The expected length.
        expected: usize,
    },
    /// A flat buffer does not hold `rows × cols` values.
    #[error("{what} buffer holds {got} values, but {rows} rows x {cols} columns need {expected}")]
    BufferLength {
        /// The input.
        what: &'static str,
        /// Values in the buffer.
        got: usize,
        /// Declared rows.
        rows: usize,
        /// Declared columns.
        cols: usize,
        /// `rows * cols`.
        expected: usize,
    },
    /// Embeddings with rows but no columns.
    #[error("{what} have {rows} rows but zero columns; an embedding needs at least one dimension")]
    ZeroWidth {
        /// The input.
        what: &'static str,
        /// Its number of rows.
        rows: usize,
    },
    /// A separate key set with no rows for a non-empty query set: no distance to mine.
    #[error("the key set is empty but there are {queries} queries; give at least one key")]
    EmptyKeys {
        /// Number of queries.
        queries: usize,
    },
    /// Query and key embeddings have different widths.
    #[error(
        "query embeddings have {queries} columns but key embeddings have {keys}; they must match"
    )]
    DimensionMismatch {
        /// Query width.
        queries: usize,
        /// Key width.
        keys: usize,
    },
    /// An embedding value is NaN or infinite.
    #[error("{what} contain a non-finite value ({value}) at row {row}, column {col}; every value must be finite")]
    NonFiniteEmbedding {
        /// The input.
        what: &'static str,
        /// Row of the first bad value.
        row: usize,
        /// Column of the first bad value.
        col: usize,
        /// The value, widened to f64.
        value: f64,
    },
    /// A sample weight is NaN or infinite.
    #[error("sample_weight[{index}] is {value}; every weight must be finite")]
    NonFiniteWeight {
        /// Index of the first bad weight.
        index: usize,
        /// The weight, widened to f64.
        value: f64,
    },
    /// A distance overflowed although its inputs were finite.
    #[error("the {distance} distance between query {row} and key {col} is {value} in {dtype}: the embeddings are too large; rescale them (for example L2-normalise)")]
    NonFiniteDistance {
        /// Canonical distance name.
        distance: &'static str,
        /// Query row.
        row: usize,
        /// Key column.
        col: usize,
        /// The non-finite value.
        value: f64,
        /// `f32` or `f64`.
        dtype: &'static str,
    },
    /// A result overflowed although every input was finite: a per-example loss beyond the
    /// precision's range (a huge margin or distance), a sample weight times a per-example
    /// loss, the reduced sum, or a gradient entry.
    #[error("the {what} at index {index} is {value} in {dtype} although every input is finite: it overflowed; rescale the embeddings, the sample weights or the margin")]
    NonFiniteResult {
        /// What overflowed (`"per-example loss"`, `"loss"`, `"gradient"`).
        what: &'static str,
        /// Its index (the example, or the flat gradient entry; 0 for the scalar loss).
        index: usize,
        /// The value, widened to f64.
        value: f64,
        /// `f32` or `f64`.
        dtype: &'static str,
    },
    /// The signal-to-noise distance divides by the variance of the query row.
    #[error("the snr distance is undefined for query row {row}: its values are all equal (zero variance); give rows that vary")]
    ZeroVariance {
        /// The constant query row.
        row: usize,
    },
    /// A distance name that is neither a canonical name nor an alias.
    #[error("unknown distance {given:?}; expected one of: {expected}")]
    UnknownDistance {
        /// The name as given.
        given: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// A mining strategy name outside the accepted set.
    #[error("invalid {role} mining strategy {given:?}; expected one of: {expected}")]
    InvalidStrategy {
        /// Positive or negative.
        role: StrategyRole,
        /// The name as given.
        given: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// A reduction name outside Keras's set.
    #[error("unknown reduction {given:?}; expected one of: auto, sum_over_batch_size, sum, none")]
    UnknownReduction {
        /// The name as given.
        given: String,
    },
    /// `soft_margin = true` together with a margin other than 1.0 (TF Similarity 0.16's rule).
    #[error("margin value is not used when soft_margin is set: got soft_margin = true with margin = {margin}; use margin = 1.0 (or leave it out), or soft_margin = false")]
    MarginWithSoftMargin {
        /// The margin given.
        margin: f64,
    },
    /// A numeric hyper-parameter outside its domain.
    #[error("invalid value {value} for {name}: {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the parameter accepts.
        expected: &'static str,
    },
    /// An input so large that the loss's workspace would not fit in memory.
    #[error("{what} of {rows} x {cols} would need {bytes} bytes, more than the {limit} bytes allowed; use smaller batches")]
    TooLarge {
        /// What would be allocated.
        what: &'static str,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes needed.
        bytes: u128,
        /// The limit.
        limit: u128,
    },
    /// A distance, miner or reducer broke its contract: a matrix or output of the wrong
    /// size, an index out of range, a non-finite value where a finite one is required.
    #[error("the {part} {name:?} broke its contract: {problem}")]
    InvalidPartOutput {
        /// `"distance"`, `"miner"` or `"reducer"`.
        part: &'static str,
        /// The part's name.
        name: String,
        /// What it returned, and what was expected.
        problem: String,
    },
    /// A loss given the other kind of input: a labelled loss given two unlabelled views
    /// ([`crate::LossInput::views`]), or a two-view loss given labelled embeddings
    /// ([`crate::LossInput::new`]).
    #[error("this loss takes {expected}, but the input is {got}")]
    InputKind {
        /// The input the loss takes.
        expected: &'static str,
        /// The input it was given.
        got: &'static str,
    },
    /// A loss without learnable parameters was asked to read or set them.
    #[error("{loss} has no learnable parameters; only losses with a parameter matrix (a classifier's weights, proxies) can read or set them")]
    NoParameters {
        /// The loss's name.
        loss: String,
    },
    /// A parameter value given to a loss is NaN or infinite.
    #[error("{name}[{index}] is {value}; every parameter value must be finite")]
    NonFiniteParameter {
        /// The parameter's name.
        name: &'static str,
        /// The flat (row-major) index of the first bad value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A label outside the classes a loss with one weight vector (or proxy) per class knows.
    #[error("label {label} at index {index} is outside the {num_classes} classes; labels must be in 0..{num_classes}")]
    LabelOutOfRange {
        /// The example.
        index: usize,
        /// Its label.
        label: i64,
        /// The loss's `num_classes`.
        num_classes: usize,
    },
    /// Embeddings whose width is not the `embedding_size` a loss's parameters were built for.
    #[error(
        "embeddings have {got} columns but the loss was built with embedding_size = {expected}"
    )]
    EmbeddingSize {
        /// The embeddings' width.
        got: usize,
        /// The loss's `embedding_size`.
        expected: usize,
    },
    /// A required constructor argument missing from a config.
    #[error("{loss} requires {name}: {expected}")]
    MissingArgument {
        /// The loss's class name.
        loss: &'static str,
        /// The argument.
        name: &'static str,
        /// What it accepts.
        expected: &'static str,
    },
    /// A part of a kind the loss cannot use (a classifier loss given a distance other than
    /// the cosine similarity).
    #[error("{loss} requires the distance to be {expected}, but it is {given}")]
    UnsupportedDistance {
        /// The loss's class name.
        loss: &'static str,
        /// The distance's name.
        given: String,
        /// The distance it requires.
        expected: &'static str,
    },
    /// A precondition of a specific loss (for example a stateful loss given the wrong batch).
    #[error("{loss}: {message}")]
    Unsupported {
        /// The loss's name.
        loss: String,
        /// What is not supported, and what to do instead.
        message: String,
    },
}
