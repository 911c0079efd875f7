//! Reading a loss from a config, and writing its config back.

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;

use metric_loss_core::LossError;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::de::{DeError, Kind, ValueDeserializer};
use crate::{Format, RegisteredLoss, RegistryError};

/// The largest config accepted, in bytes (1 MiB): configs are a few hundred bytes, and
/// the limit bounds what an untrusted file can make the parsers do.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The prefix Keras's registry adds to TF Similarity's classes (`"Similarity>TripletLoss"`);
/// it is removed before the class name is looked up.
pub const KERAS_PACKAGE_PREFIX: &str = "Similarity>";

/// Top-level keys of a Keras config besides `class_name` and `config`, accepted and
/// ignored (TF 2.13+ writes them).
const IGNORED_TOP_LEVEL: [&str; 2] = ["module", "registered_name"];
const TOP_LEVEL: [&str; 4] = ["class_name", "config", "module", "registered_name"];

/// Reads a loss from a config file; the format comes from the extension (`.json`,
/// `.toml`, `.yaml`, `.yml`).
///
/// ```
/// use metric_loss_core::MetricLossExt;
/// let path = std::env::temp_dir().join(format!("triplet-{}.toml", std::process::id()));
/// std::fs::write(&path, "class_name = \"TripletLoss\"\n[config]\nmargin = 0.5\n")?;
/// let loss = metric_loss_registry::load(&path)?;
/// # std::fs::remove_file(&path)?;
/// assert_eq!(loss.name(), "TripletLoss");
/// let out = loss.evaluate(&[0, 0, 1, 1], &[1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8], 2)?;
/// assert!(out.loss.is_finite());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A [`RegistryError`] naming the file: missing or unreadable ([`RegistryError::Io`]),
/// empty, larger than [`MAX_CONFIG_BYTES`], an unknown extension, a syntax error, or any
/// error of [`from_value`].
pub fn load(path: impl AsRef<Path>) -> Result<Box<dyn RegisteredLoss>, RegistryError> {
    let path = path.as_ref();
    let value = read_config(path)?;
    from_value_at(&value, &path.display().to_string())
}

/// Reads a config file into its Keras-shaped value (`{"class_name": ..., "config": {...}}`)
/// without building the loss.
///
/// # Errors
/// As [`load`], except the checks of the keys and values.
pub fn read_config(path: impl AsRef<Path>) -> Result<Value, RegistryError> {
    let path = path.as_ref();
    let format = Format::from_path(path)?;
    let io = |source| RegistryError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(io)?;
    // Read at most one byte past the limit, whatever the metadata says (the file may grow).
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(RegistryError::TooLarge {
            origin,
            size,
            limit: MAX_CONFIG_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e})"),
        ))
    })?;
    format.parse(&text, &origin)
}

/// Reads a loss from config text in `format`.
///
/// ```
/// use metric_loss_registry::{from_str, Format};
/// let loss = from_str("class_name = \"TripletLoss\"\n[config]\nmargin = 0.2\n", Format::Toml)?;
/// assert_eq!(loss.get_config()?["config"]["margin"], 0.2);
/// # Ok::<(), metric_loss_registry::RegistryError>(())
/// ```
///
/// # Errors
/// As [`load`]; messages name the origin `"<toml string>"` (and so on).
pub fn from_str(text: &str, format: Format) -> Result<Box<dyn RegisteredLoss>, RegistryError> {
    let origin = format!("<{} string>", format.extension());
    let value = format.parse(text, &origin)?;
    from_value_at(&value, &origin)
}

/// Builds a loss from an already-parsed Keras-shaped value:
/// `{"class_name": "TripletLoss", "config": {...}}`.
///
/// Accepted as TF Similarity and Keras write it: a `"Similarity>"` prefix on the class
/// name, top-level `module` and `registered_name` keys (ignored), a missing `config`
/// (all defaults), and a `distance` given as a Keras object
/// (`{"class_name": "CosineDistance", "config": {"name": "cosine"}}`), which becomes its
/// class name. For `XBM`, the wrapped `loss` may be flat or a Keras object (the same rules
/// apply inside it), and `name: null` is the default name. Missing config keys take the
/// loss's defaults; unknown keys are errors.
///
/// ```
/// use serde_json::json;
/// let loss = metric_loss_registry::from_value(&json!({
///     "class_name": "Similarity>TripletLoss",
///     "config": {"distance": {"class_name": "Similarity>EuclideanDistance", "config": {}},
///                "margin": null, "reduction": "sum"}
/// }))?;
/// let config = loss.get_config()?;
/// assert_eq!(config["config"]["distance"], "euclidean");
/// assert_eq!(config["config"]["soft_margin"], true);
/// # Ok::<(), metric_loss_registry::RegistryError>(())
/// ```
///
/// # Errors
/// [`RegistryError::UnknownClass`] (listing the registered names),
/// [`RegistryError::DuplicateClass`], [`RegistryError::UnknownKey`],
/// [`RegistryError::MissingKey`], [`RegistryError::WrongType`],
/// [`RegistryError::InvalidValue`] (wrapping the [`LossError`]).
pub fn from_value(value: &Value) -> Result<Box<dyn RegisteredLoss>, RegistryError> {
    from_value_at(value, "<config value>")
}

fn from_value_at(value: &Value, origin: &str) -> Result<Box<dyn RegisteredLoss>, RegistryError> {
    let top = value.as_object().ok_or_else(|| RegistryError::WrongType {
        origin: origin.to_owned(),
        key: "the top level".into(),
        expected: "a table with class_name and config".into(),
        found: kind_of(value),
    })?;
    if let Some(key) = top.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(RegistryError::UnknownKey {
            origin: origin.to_owned(),
            section: "the top level".into(),
            key: key.clone(),
            expected: TOP_LEVEL.iter().map(|s| s.to_string()).collect(),
        });
    }
    let class_name = match top.get("class_name") {
        Some(Value::String(s)) => s.trim(),
        Some(other) => return Err(wrong(origin, "class_name", "a string", other)),
        None => {
            return Err(RegistryError::MissingKey {
                origin: origin.to_owned(),
                section: "the top level".into(),
                key: "class_name".into(),
            })
        }
    };
    for key in IGNORED_TOP_LEVEL {
        if let Some(v) = top.get(key) {
            if !v.is_string() {
                return Err(wrong(origin, key, "a string", v));
            }
        }
    }
    let class_name = class_name
        .strip_prefix(KERAS_PACKAGE_PREFIX)
        .unwrap_or(class_name);

    let all = all_registered_names();
    if !all.contains(&class_name) {
        let mut registered: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        registered.dedup();
        return Err(RegistryError::UnknownClass {
            origin: origin.to_owned(),
            given: class_name.to_owned(),
            registered,
        });
    }
    if all.iter().filter(|n| **n == class_name).count() > 1 {
        return Err(RegistryError::DuplicateClass {
            origin: origin.to_owned(),
            class_name: class_name.to_owned(),
        });
    }

    let config = match top.get("config") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => normalize_config(class_name, map, origin, "config")?,
        Some(other) => return Err(wrong(origin, "config", "a table", other)),
    };
    let mut normalized = Map::new();
    normalized.insert("class_name".into(), Value::String(class_name.to_owned()));
    normalized.insert("config".into(), Value::Object(config));
    let normalized = Value::Object(normalized);

    LAST_LOSS_ERROR.with(|slot| slot.borrow_mut().take());
    crate::de::forget();
    let result = Box::<dyn RegisteredLoss>::deserialize(ValueDeserializer(&normalized));
    let reported = LAST_LOSS_ERROR.with(|slot| slot.borrow_mut().take());
    result.map_err(|e| {
        let config = &normalized["config"];
        convert(e, origin, class_name, config, reported)
    })
}

/// Rewrites what TF Similarity and Keras write into what the loss's config struct reads:
/// a Keras distance object becomes its class name; for `XBM`, a `name: null` (TF leaves the
/// name unset) is dropped and the wrapped `loss` is flattened (see [`normalize_wrapped`]).
/// `at` is the dotted path of `map`, for error messages.
fn normalize_config(
    class_name: &str,
    map: &Map<String, Value>,
    origin: &str,
    at: &str,
) -> Result<Map<String, Value>, RegistryError> {
    let mut out = map.clone();
    if let Some(Value::Object(distance)) = map.get("distance").filter(|d| !is_registered_part(d)) {
        let name = match (
            distance.get("class_name"),
            distance.get("config"),
            distance.get("name"),
        ) {
            (Some(Value::String(class)), _, _) => class
                .trim()
                .strip_prefix(KERAS_PACKAGE_PREFIX)
                .unwrap_or(class.trim()),
            (None, Some(Value::Object(inner)), _)
                if inner.get("name").is_some_and(Value::is_string) =>
            {
                inner["name"].as_str().unwrap_or_default()
            }
            (None, _, Some(Value::String(name))) => name,
            _ => {
                return Err(RegistryError::WrongType {
                    origin: origin.to_owned(),
                    key: format!("{at}.distance"),
                    expected: "a distance name, or a Keras object with a class_name".into(),
                    found: "a table without class_name".into(),
                })
            }
        };
        out.insert("distance".into(), Value::String(name.to_owned()));
    }
    if class_name == "XBM" {
        if map.get("name").is_some_and(Value::is_null) {
            out.remove("name");
        }
        if let Some(Value::Object(loss)) = map.get("loss") {
            let at = format!("{at}.loss");
            out.insert(
                "loss".into(),
                Value::Object(normalize_wrapped(loss, origin, &at)?),
            );
        }
    }
    Ok(out)
}

/// A `{"class_name": ..., "config": ...}` distance that is not one of TF Similarity's (by
/// any of its names, with or without Keras's package prefix): a user's registered
/// distance, left for serde to build.
fn is_registered_part(distance: &Value) -> bool {
    match distance.get("class_name") {
        Some(Value::String(class)) => {
            let class = class.trim();
            !class.starts_with(KERAS_PACKAGE_PREFIX)
                && metric_loss_distances::DistanceKind::from_name(class).is_err()
        }
        _ => false,
    }
}

/// XBM's wrapped loss, as `XBMConfig` reads it: `{"class_name": ..., <its config keys>}`.
///
/// Accepted: that flat form, or the Keras form `tf.keras.losses.serialize` writes,
/// `{"class_name": ..., "config": {...}}` (with TF 2.13's `module` and `registered_name`,
/// ignored). Either way the class name may have the `"Similarity>"` prefix and the wrapped
/// loss's `distance` may be a Keras object.
fn normalize_wrapped(
    loss: &Map<String, Value>,
    origin: &str,
    at: &str,
) -> Result<Map<String, Value>, RegistryError> {
    // A class name that is not a string is left to serde to report.
    let Some(Value::String(class)) = loss.get("class_name") else {
        return Ok(loss.clone());
    };
    let class = class
        .trim()
        .strip_prefix(KERAS_PACKAGE_PREFIX)
        .unwrap_or(class.trim());
    let mut out = Map::new();
    out.insert("class_name".into(), Value::String(class.to_owned()));
    if !loss.contains_key("config") {
        // The flat form.
        let rest: Map<String, Value> = loss
            .iter()
            .filter(|(k, _)| k.as_str() != "class_name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.extend(normalize_config(class, &rest, origin, at)?);
        return Ok(out);
    }
    let section = format!("the wrapped loss at {at}");
    if let Some(key) = loss.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
        return Err(RegistryError::UnknownKey {
            origin: origin.to_owned(),
            section,
            key: key.clone(),
            expected: TOP_LEVEL.iter().map(|s| s.to_string()).collect(),
        });
    }
    for key in IGNORED_TOP_LEVEL {
        if let Some(v) = loss.get(key) {
            if !v.is_string() {
                return Err(wrong(origin, &format!("{at}.{key}"), "a string", v));
            }
        }
    }
    let at = format!("{at}.config");
    let inner = match &loss["config"] {
        Value::Null => Map::new(),
        Value::Object(inner) => normalize_config(class, inner, origin, &at)?,
        other => return Err(wrong(origin, &at, "a table", other)),
    };
    if inner.contains_key("class_name") {
        return Err(RegistryError::UnknownKey {
            origin: origin.to_owned(),
            section: format!("the config of {class} at {at}"),
            key: "class_name".into(),
            expected: wrapped_keys(class),
        });
    }
    out.extend(inner);
    Ok(out)
}

/// The config keys of a loss XBM can wrap (empty for an unknown class).
fn wrapped_keys(class: &str) -> Vec<String> {
    let probe = serde_json::json!({ "class_name": class, "\u{0}": null });
    match metric_loss_losses::WrappedLossConfig::deserialize(ValueDeserializer(&probe)) {
        Err(DeError {
            kind: Kind::UnknownField { expected, .. },
            ..
        }) => expected.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn convert(
    e: DeError,
    origin: &str,
    class_name: &str,
    config: &Value,
    reported: Option<LossError>,
) -> RegistryError {
    let origin = origin.to_owned();
    let path = e.path();
    let section = if path.is_empty() {
        "the top level".to_owned()
    } else if path == "config" {
        format!("the config of {class_name}")
    } else {
        format!("the config of {class_name} at {path}")
    };
    match e.kind {
        Kind::UnknownField { field, expected } => RegistryError::UnknownKey {
            origin,
            section,
            key: field,
            expected: expected.iter().map(|s| s.to_string()).collect(),
        },
        Kind::MissingField(field) => RegistryError::MissingKey {
            origin,
            section,
            key: field.to_owned(),
        },
        Kind::InvalidType {
            unexpected,
            expected,
        } => RegistryError::WrongType {
            origin,
            key: path,
            expected: humanize(&expected),
            found: unexpected,
        },
        Kind::UnknownVariant { variant, expected } if path.is_empty() => {
            RegistryError::UnknownClass {
                origin,
                given: variant,
                registered: expected.iter().map(|s| s.to_string()).collect(),
            }
        }
        // A part object (`"distance": {"class_name": ...}`) naming nothing registered.
        Kind::UnknownVariant { variant, expected } if path.ends_with(".class_name") => {
            let part = path.trim_end_matches(".class_name");
            RegistryError::InvalidValue {
                origin,
                class_name: class_name.to_owned(),
                message: format!(
                    "{part}: {variant:?} is not a registered part (registered: {expected:?}); \
                     a built-in one is named by a string (see `metric-loss list`)"
                ),
                source: None,
            }
        }
        Kind::Custom(message) if message.starts_with("non-unique tag") => {
            RegistryError::DuplicateClass {
                origin,
                class_name: class_name.to_owned(),
            }
        }
        kind => {
            let source = reported.or_else(|| builtin_loss_error(class_name, config));
            let message = match &source {
                Some(err) => err.to_string(),
                None if path.is_empty() || path == "config" => crate::de::describe(&kind),
                None => format!("{path}: {}", crate::de::describe(&kind)),
            };
            RegistryError::InvalidValue {
                origin,
                class_name: class_name.to_owned(),
                message,
                source: source.map(Box::new),
            }
        }
    }
}

/// The typed error of a built-in loss whose validation failed (serde only carries its
/// message across typetag).
fn builtin_loss_error(class_name: &str, config: &Value) -> Option<LossError> {
    use metric_loss_losses::{
        CircleLossConfig, MultiSimilarityLossConfig, PNLossConfig, SoftNearestNeighborLossConfig,
        XBMConfig,
    };
    use metric_loss_pml::{
        ArcFaceLossConfig, CosFaceLossConfig, ProxyAnchorLossConfig, SubCenterArcFaceLossConfig,
    };
    use metric_loss_triplet::TripletLossConfig;

    /// Deserializes the config again and returns its build error.
    fn build_error<'de, C: Deserialize<'de>, L>(
        config: &Value,
        build: impl FnOnce(&C) -> Result<L, LossError>,
    ) -> Option<LossError> {
        build(&C::deserialize(ValueDeserializer(config)).ok()?).err()
    }

    match class_name {
        "TripletLoss" => build_error(config, TripletLossConfig::build),
        "PNLoss" => build_error(config, PNLossConfig::build),
        "MultiSimilarityLoss" => build_error(config, MultiSimilarityLossConfig::build),
        "CircleLoss" => build_error(config, CircleLossConfig::build),
        "SoftNearestNeighborLoss" => build_error(config, SoftNearestNeighborLossConfig::build),
        "XBM" => build_error(config, XBMConfig::build),
        "ArcFaceLoss" => build_error(config, ArcFaceLossConfig::build),
        "CosFaceLoss" => build_error(config, CosFaceLossConfig::build),
        "SubCenterArcFaceLoss" => build_error(config, SubCenterArcFaceLossConfig::build),
        "ProxyAnchorLoss" => build_error(config, ProxyAnchorLossConfig::build),
        _ => None,
    }
}

/// serde's primitive names in words.
fn humanize(expected: &str) -> String {
    match expected {
        "f32" | "f64" => "a number".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128" | "isize"
        | "usize" => format!("an integer ({expected})"),
        "option" => "a value or null".into(),
        other => other.into(),
    }
}

fn wrong(origin: &str, key: &str, expected: &str, found: &Value) -> RegistryError {
    RegistryError::WrongType {
        origin: origin.to_owned(),
        key: key.to_owned(),
        expected: expected.to_owned(),
        found: kind_of(found),
    }
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "a table".into(),
    }
}

thread_local! {
    static LAST_LOSS_ERROR: RefCell<Option<LossError>> = const { RefCell::new(None) };
}

/// Turns a [`LossError`] into a deserialisation error, keeping the typed error for the
/// registry: use it in your loss's `Deserialize` impl so that a bad config gives a
/// [`RegistryError::InvalidValue`] whose [`RegistryError::loss_error`] is your error (serde
/// otherwise keeps only its message).
///
/// ```
/// use metric_loss_core::LossError;
/// use serde::de::value::Error;
/// let err: Error = metric_loss_registry::invalid_config(LossError::InvalidParameter {
///     name: "scale", value: -1.0, expected: "a positive number" });
/// assert!(err.to_string().contains("scale"));
/// ```
pub fn invalid_config<E: serde::de::Error>(error: LossError) -> E {
    let e = E::custom(&error);
    LAST_LOSS_ERROR.with(|slot| *slot.borrow_mut() = Some(error));
    e
}

/// Every registration, sorted, duplicates kept.
fn all_registered_names() -> Vec<&'static str> {
    // typetag lists its registered names in the "unknown variant" error: ask for a class
    // name no loss can have and read the list from the structured error.
    let probe = serde_json::json!({ "class_name": "\u{0}", "config": {} });
    crate::de::forget();
    match Box::<dyn RegisteredLoss>::deserialize(ValueDeserializer(&probe)) {
        Err(DeError {
            kind: Kind::UnknownVariant { expected, .. },
            ..
        }) => {
            let mut names = expected.to_vec();
            names.sort_unstable();
            names
        }
        _ => Vec::new(),
    }
}

/// The class names of every registered loss, sorted, each once.
///
/// A loss registered in a crate your binary never names is not here (see the crate docs,
/// "Registering a loss from another crate").
///
/// ```
/// assert!(metric_loss_registry::registered_names().contains(&"TripletLoss"));
/// ```
pub fn registered_names() -> Vec<&'static str> {
    let mut names = all_registered_names();
    names.dedup();
    names
}

/// Class names registered by more than one loss type (which can then not be loaded):
/// empty in a correct build.
///
/// ```
/// assert!(metric_loss_registry::duplicate_names().is_empty());
/// ```
pub fn duplicate_names() -> Vec<&'static str> {
    let names = all_registered_names();
    let mut dups: Vec<&'static str> = names
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    dups.dedup();
    dups
}

impl dyn RegisteredLoss {
    /// The loss's Keras-shaped config, `{"class_name": ..., "config": {...}}` (Keras's
    /// `get_config` wrapped as `tf.keras.losses.serialize` writes it). Reading it back with
    /// [`from_value`] gives an identical loss.
    ///
    /// # Errors
    /// [`RegistryError::Write`] if the loss's `Serialize` impl fails.
    pub fn get_config(&self) -> Result<Value, RegistryError> {
        serde_json::to_value(self).map_err(|e| RegistryError::Write {
            format: Format::Json,
            message: e.to_string(),
        })
    }

    /// The config as text in `format`.
    ///
    /// ```
    /// use metric_loss_registry::{Format, RegisteredLoss};
    /// use metric_loss_triplet::TripletLoss;
    /// let loss: Box<dyn RegisteredLoss> = Box::new(TripletLoss::default());
    /// let text = loss.to_config_string(Format::Toml)?;
    /// assert!(text.starts_with("class_name = \"TripletLoss\""));
    /// # Ok::<(), metric_loss_registry::RegistryError>(())
    /// ```
    ///
    /// # Errors
    /// [`RegistryError::Write`].
    pub fn to_config_string(&self, format: Format) -> Result<String, RegistryError> {
        format.write(&self.get_config()?)
    }

    /// Writes the config to `path`, in the format of its extension.
    ///
    /// # Errors
    /// [`RegistryError::UnknownFormat`], [`RegistryError::Write`], [`RegistryError::Io`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), RegistryError> {
        let path = path.as_ref();
        let text = self.to_config_string(Format::from_path(path)?)?;
        std::fs::write(path, text).map_err(|source| RegistryError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }
}
