//! The registry's error type.

use std::path::PathBuf;

use metric_loss_core::LossError;

use crate::Format;

/// Everything that can go wrong reading, validating or writing a loss config.
///
/// Every message names where the config came from (`origin`: a file path, or
/// `"<toml string>"` and the like), and what was given and expected. Reading a config
/// never panics. The enum is `#[non_exhaustive]`: new failure modes can be added without
/// breaking callers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The file could not be read or written (missing, unreadable, not UTF-8...).
    #[error("cannot {action} config file {}: {source}", path.display())]
    Io {
        /// `"read"` or `"write"`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The config holds nothing (no bytes, only white space or only comments).
    #[error("{origin} is empty; a loss config needs at least a class_name (for example class_name = \"TripletLoss\")")]
    Empty {
        /// Where the config came from.
        origin: String,
    },
    /// The config is larger than [`crate::MAX_CONFIG_BYTES`].
    #[error("{origin} is {size} bytes, more than the {limit} bytes a loss config may have")]
    TooLarge {
        /// Where the config came from.
        origin: String,
        /// Its size in bytes (at least; reading stops past the limit).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A file name whose extension is not `.json`, `.toml`, `.yaml` or `.yml`.
    #[error("cannot tell the config format of {}: its extension is {extension:?}; use .json, .toml, .yaml or .yml", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// The extension found (empty when there is none).
        extension: String,
    },
    /// The text is not valid JSON, TOML or YAML.
    #[error("{origin}: {format} syntax error{}: {message}", location(*line, *column))]
    Syntax {
        /// Where the config came from.
        origin: String,
        /// The format it was parsed as.
        format: Format,
        /// 1-based line of the error, when the parser gives one.
        line: Option<usize>,
        /// 1-based column of the error, when the parser gives one.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A `class_name` no registered loss has.
    #[error("{origin}: unknown loss class_name {given:?}; registered losses: {}", registered.join(", "))]
    UnknownClass {
        /// Where the config came from.
        origin: String,
        /// The class name as given.
        given: String,
        /// Every registered class name.
        registered: Vec<String>,
    },
    /// Two losses were registered under the same class name, so neither can be loaded.
    #[error("{origin}: class_name {class_name:?} is registered by more than one loss type; give each a unique #[typetag::serde(name = ...)]")]
    DuplicateClass {
        /// Where the config came from.
        origin: String,
        /// The ambiguous class name.
        class_name: String,
    },
    /// A key the loss (or the top level) does not know.
    #[error("{origin}: unknown key {key:?} in {section}; expected one of: {}", expected.join(", "))]
    UnknownKey {
        /// Where the config came from.
        origin: String,
        /// `"the top level"` or `"the config of <class>"`.
        section: String,
        /// The key.
        key: String,
        /// The accepted keys.
        expected: Vec<String>,
    },
    /// A required key is absent.
    #[error("{origin}: missing key {key:?} in {section}")]
    MissingKey {
        /// Where the config came from.
        origin: String,
        /// Where the key was expected.
        section: String,
        /// The key.
        key: String,
    },
    /// A value of the wrong type (a string where a number is expected...).
    #[error("{origin}: wrong type for {key}: expected {expected}, found {found}")]
    WrongType {
        /// Where the config came from.
        origin: String,
        /// Dotted path of the value, e.g. `config.margin`.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A NaN or infinite number (TOML's `inf`, YAML's `.nan`...): configs take finite numbers.
    #[error("{origin}: {key} is {value}; config numbers must be finite")]
    NonFinite {
        /// Where the config came from.
        origin: String,
        /// Dotted path of the value.
        key: String,
        /// The value.
        value: f64,
    },
    /// The values have the right types but the loss rejects them (an unknown distance,
    /// an invalid strategy, `soft_margin` with a margin other than 1.0...).
    #[error("{origin}: invalid {class_name} config: {message}")]
    InvalidValue {
        /// Where the config came from.
        origin: String,
        /// The loss.
        class_name: String,
        /// The loss's message.
        message: String,
        /// The typed error, when the loss reported one (always for the built-in losses;
        /// for your own, when you use [`crate::invalid_config`]).
        #[source]
        source: Option<Box<LossError>>,
    },
    /// The loss's config cannot be written in the requested format (for example a `null`
    /// in TOML, which has none).
    #[error("cannot write the config as {format}: {message}")]
    Write {
        /// The format.
        format: Format,
        /// The serializer's message.
        message: String,
    },
}

impl RegistryError {
    /// The [`LossError`] behind an [`RegistryError::InvalidValue`], if any.
    pub fn loss_error(&self) -> Option<&LossError> {
        match self {
            RegistryError::InvalidValue { source, .. } => source.as_deref(),
            _ => None,
        }
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}
