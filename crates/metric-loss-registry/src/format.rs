//! Config file formats: parsing to the Keras-shaped JSON value, and writing it back.

// Without both format features some helpers are unused.
#![cfg_attr(
    not(all(feature = "toml", feature = "yaml")),
    allow(dead_code, unused_imports)
)]

use std::fmt;
use std::path::Path;

use serde_json::{Map, Number, Value};

use crate::RegistryError;

/// A config file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JSON (`.json`): Keras's own format, no comments.
    Json,
    /// TOML (`.toml`): `class_name = "..."` and a `[config]` table. Feature `toml`.
    Toml,
    /// YAML (`.yaml`, `.yml`). Feature `yaml`.
    Yaml,
}

impl Format {
    /// Every format, whether or not its feature is enabled.
    pub const ALL: [Format; 3] = [Format::Json, Format::Toml, Format::Yaml];

    /// The format of a file, from its extension (case-insensitive): `.json`, `.toml`,
    /// `.yaml` or `.yml`.
    ///
    /// ```
    /// use metric_loss_registry::Format;
    /// assert_eq!(Format::from_path("a/b.YML").unwrap(), Format::Yaml);
    /// assert!(Format::from_path("loss.ini").is_err());
    /// ```
    ///
    /// # Errors
    /// [`RegistryError::UnknownFormat`] for any other extension.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match extension.as_str() {
            "json" => Ok(Format::Json),
            "toml" => Ok(Format::Toml),
            "yaml" | "yml" => Ok(Format::Yaml),
            _ => Err(RegistryError::UnknownFormat {
                path: path.to_path_buf(),
                extension,
            }),
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Toml => "toml",
            Format::Yaml => "yaml",
        }
    }

    /// Parses `text` into the Keras-shaped value (without checking its keys).
    ///
    /// # Errors
    /// [`RegistryError::Empty`], [`RegistryError::TooLarge`], [`RegistryError::Syntax`]
    /// (with line and column), [`RegistryError::NonFinite`], [`RegistryError::WrongType`]
    /// (a TOML date, a YAML tag or non-string key), or [`RegistryError::Syntax`] naming the
    /// missing feature when the format is compiled out.
    pub(crate) fn parse(self, text: &str, origin: &str) -> Result<Value, RegistryError> {
        if text.len() as u64 > crate::MAX_CONFIG_BYTES {
            return Err(RegistryError::TooLarge {
                origin: origin.to_owned(),
                size: text.len() as u64,
                limit: crate::MAX_CONFIG_BYTES,
            });
        }
        if text.trim().is_empty() {
            return Err(RegistryError::Empty {
                origin: origin.to_owned(),
            });
        }
        let syntax = |line, column, message: String| RegistryError::Syntax {
            origin: origin.to_owned(),
            format: self,
            line,
            column,
            message,
        };
        let value = match self {
            Format::Json => serde_json::from_str::<Value>(text).map_err(|e| {
                let (line, column) = (e.line(), e.column());
                let known = line > 0;
                syntax(
                    known.then_some(line),
                    known.then_some(column),
                    e.to_string(),
                )
            })?,
            Format::Toml => parse_toml(text, origin, &syntax)?,
            Format::Yaml => parse_yaml(text, origin, &syntax)?,
        };
        if value.is_null() {
            // A YAML file holding only comments, or `~`.
            return Err(RegistryError::Empty {
                origin: origin.to_owned(),
            });
        }
        Ok(value)
    }

    /// Writes a Keras-shaped value in this format (pretty, ending with a newline).
    pub(crate) fn write(self, value: &Value) -> Result<String, RegistryError> {
        let write_error = |message: String| RegistryError::Write {
            format: self,
            message,
        };
        match self {
            Format::Json => serde_json::to_string_pretty(value)
                .map(|s| s + "\n")
                .map_err(|e| write_error(e.to_string())),
            #[cfg(feature = "toml")]
            Format::Toml => toml::to_string_pretty(value).map_err(|e| write_error(e.to_string())),
            #[cfg(feature = "yaml")]
            Format::Yaml => serde_norway::to_string(value).map_err(|e| write_error(e.to_string())),
            #[allow(unreachable_patterns)]
            _ => Err(write_error(format!(
                "this build has no {self} support; enable the `{}` feature of metric-loss-registry",
                self.feature()
            ))),
        }
    }

    #[allow(dead_code)]
    fn feature(self) -> &'static str {
        match self {
            Format::Json => "default",
            Format::Toml => "toml",
            Format::Yaml => "yaml",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        })
    }
}

type SyntaxFn<'a> = dyn Fn(Option<usize>, Option<usize>, String) -> RegistryError + 'a;

#[cfg(feature = "toml")]
fn parse_toml(text: &str, origin: &str, syntax: &SyntaxFn<'_>) -> Result<Value, RegistryError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_column(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        syntax(line, column, e.message().trim().to_owned())
    })?;
    toml_to_json(toml::Value::Table(table), origin, &mut Vec::new())
}

#[cfg(not(feature = "toml"))]
fn parse_toml(_: &str, _: &str, syntax: &SyntaxFn<'_>) -> Result<Value, RegistryError> {
    Err(syntax(
        None,
        None,
        "this build has no TOML support; enable the `toml` feature of metric-loss-registry".into(),
    ))
}

#[cfg(feature = "yaml")]
fn parse_yaml(text: &str, origin: &str, syntax: &SyntaxFn<'_>) -> Result<Value, RegistryError> {
    // The YAML parser takes time quadratic in the nesting of flow collections (a 200 KB
    // config of nested `[` took minutes): refuse deep nesting before parsing. Counted
    // outside quotes and comments; a config never comes close.
    if let Some((line, column)) = flow_depth_exceeded(text, MAX_YAML_FLOW_DEPTH) {
        return Err(syntax(
            Some(line),
            Some(column),
            format!("flow collections ([...] or {{...}}) nested deeper than {MAX_YAML_FLOW_DEPTH}"),
        ));
    }
    let value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
        let loc = e.location();
        syntax(
            loc.as_ref().map(|l| l.line()),
            loc.as_ref().map(|l| l.column()),
            e.to_string(),
        )
    })?;
    yaml_to_json(value, origin, &mut Vec::new())
}

#[cfg(not(feature = "yaml"))]
fn parse_yaml(_: &str, _: &str, syntax: &SyntaxFn<'_>) -> Result<Value, RegistryError> {
    Err(syntax(
        None,
        None,
        "this build has no YAML support; enable the `yaml` feature of metric-loss-registry".into(),
    ))
}

/// The deepest flow-collection nesting a YAML config may have (serde's own recursion
/// limit is 128).
#[cfg(feature = "yaml")]
const MAX_YAML_FLOW_DEPTH: usize = 128;

/// The 1-based (line, column) where `[` / `{` nesting outside quotes and comments first
/// exceeds `limit`, in one linear pass.
#[cfg(feature = "yaml")]
fn flow_depth_exceeded(text: &str, limit: usize) -> Option<(usize, usize)> {
    let (mut depth, mut quote, mut comment) = (0usize, None::<char>, false);
    let (mut line, mut column) = (1, 0);
    let mut prev = ' ';
    for c in text.chars() {
        column += 1;
        if c == '\n' {
            (line, column, comment) = (line + 1, 0, false);
        } else if comment {
        } else if let Some(q) = quote {
            if c == q && !(q == '"' && prev == '\\') {
                quote = None;
            }
        } else {
            match c {
                // A quote opens a quoted scalar only where a scalar can start (in
                // `it's` it is a plain character).
                '"' | '\'' if prev.is_whitespace() || "[{,:".contains(prev) => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > limit {
                        return Some((line, column));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
}

/// 1-based (line, column) of a byte offset; the column counts characters.
#[cfg_attr(not(feature = "toml"), allow(dead_code))]
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

fn finite(value: f64, origin: &str, path: &[String]) -> Result<Value, RegistryError> {
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| RegistryError::NonFinite {
            origin: origin.to_owned(),
            key: dotted(path),
            value,
        })
}

pub(crate) fn dotted(path: &[String]) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        path.join(".")
    }
}

fn wrong_type(origin: &str, path: &[String], found: String) -> RegistryError {
    RegistryError::WrongType {
        origin: origin.to_owned(),
        key: dotted(path),
        expected: "a string, number, boolean, array or table".into(),
        found,
    }
}

#[cfg(feature = "toml")]
fn toml_to_json(
    value: toml::Value,
    origin: &str,
    path: &mut Vec<String>,
) -> Result<Value, RegistryError> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::Number(i.into()),
        toml::Value::Float(f) => finite(f, origin, path)?,
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => {
            return Err(wrong_type(origin, path, format!("the date-time {d}")))
        }
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                out.push(toml_to_json(item, origin, path)?);
                path.pop();
            }
            Value::Array(out)
        }
        toml::Value::Table(table) => {
            let mut out = Map::new();
            for (k, v) in table {
                path.push(k.clone());
                let v = toml_to_json(v, origin, path)?;
                path.pop();
                out.insert(k, v);
            }
            Value::Object(out)
        }
    })
}

#[cfg(feature = "yaml")]
fn yaml_to_json(
    value: serde_norway::Value,
    origin: &str,
    path: &mut Vec<String>,
) -> Result<Value, RegistryError> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::Number(u.into())
            } else if let Some(i) = n.as_i64() {
                Value::Number(i.into())
            } else {
                finite(n.as_f64().unwrap_or(f64::NAN), origin, path)?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                path.push(format!("[{i}]"));
                out.push(yaml_to_json(item, origin, path)?);
                path.pop();
            }
            Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => {
                        return Err(RegistryError::WrongType {
                            origin: origin.to_owned(),
                            key: dotted(path),
                            expected: "string keys".into(),
                            found: format!("the key {}", yaml_kind(&other)),
                        })
                    }
                };
                path.push(key.clone());
                let v = yaml_to_json(v, origin, path)?;
                path.pop();
                out.insert(key, v);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            return Err(wrong_type(
                origin,
                path,
                format!("a value tagged {}", tagged.tag),
            ));
        }
    })
}

#[cfg(feature = "yaml")]
fn yaml_kind(value: &serde_norway::Value) -> String {
    use serde_norway::Value as Y;
    match value {
        Y::Null => "null".into(),
        Y::Bool(b) => format!("{b}"),
        Y::Number(n) => format!("{n}"),
        Y::String(s) => format!("{s:?}"),
        Y::Sequence(_) => "a sequence".into(),
        Y::Mapping(_) => "a mapping".into(),
        Y::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
