//! Reading fixture files: `.json` or `.json.gz`, with TF Similarity's float encoding
//! (non-finite values as the strings `"nan"`, `"inf"`, `"-inf"`).

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// A fixture file: its generator block and its cases.
#[derive(Debug, Clone)]
pub struct FixtureFile {
    /// The file's path, for messages.
    pub path: String,
    /// `generator.dtype`: `"float32"` or `"float64"`.
    pub dtype: String,
    /// `generator.loss`: the class the file is about, when the generator names it.
    pub loss: Option<String>,
    /// The cases, as parsed JSON objects.
    pub cases: Vec<Value>,
}

/// Loads a fixture file (gzip-compressed when the name ends in `.gz`).
///
/// # Errors
/// A message naming the file when it cannot be read or parsed.
pub fn load(path: &Path) -> Result<FixtureFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .map_err(|e| format!("{}: not valid gzip: {e}", path.display()))?;
        s
    } else {
        String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8: {e}", path.display()))?
    };
    let mut root: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dtype = root["generator"]["dtype"]
        .as_str()
        .unwrap_or("float32")
        .to_owned();
    let loss = root["generator"]["loss"].as_str().map(str::to_owned);
    let cases = match root.get_mut("cases").map(Value::take) {
        Some(Value::Array(cases)) => cases,
        _ => return Err(format!("{}: no \"cases\" array", path.display())),
    };
    Ok(FixtureFile {
        path: path.display().to_string(),
        dtype,
        loss,
        cases,
    })
}

/// A JSON number or one of the strings `"nan"`, `"inf"`, `"-inf"`.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A flat list of numbers from a (possibly nested) JSON array.
pub(crate) fn numbers(v: &Value) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    flatten(v, &mut out)?;
    Some(out)
}

fn flatten(v: &Value, out: &mut Vec<f64>) -> Option<()> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        other => {
            out.push(number(other)?);
            Some(())
        }
    }
}

/// A list of integers (labels, anchor indices).
pub(crate) fn integers(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(Value::as_i64).collect()
}
