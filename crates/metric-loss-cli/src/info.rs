//! `metric-loss list` and `metric-loss check-config`.

use metric_loss_registry::{catalog, Format};
use serde_json::json;

use crate::cli::{CheckConfigArgs, ListArgs, OutputFormat};
use crate::{load_loss, CliError};

/// Runs `list`: the registered losses, the distances with their class names and aliases,
/// the mining strategies and the reductions, as text or (`--json`) one JSON object.
///
/// # Errors
/// None in practice (a JSON serialisation failure would be one).
pub fn list(args: &ListArgs) -> Result<String, CliError> {
    let names = catalog();
    if !args.json {
        return Ok(names.to_string());
    }
    let distances: Vec<_> = names
        .distances
        .iter()
        .map(|d| json!({"name": d.name, "class_name": d.class_name, "aliases": d.aliases}))
        .collect();
    let value = json!({
        "losses": names.losses,
        "distances": distances,
        "positive_mining_strategies": names.positive_mining_strategies,
        "negative_mining_strategies": names.negative_mining_strategies,
        "reductions": names.reductions,
    });
    pretty(&value)
}

/// Runs `check-config`: builds the loss and returns its normalised config (`get_config`).
///
/// # Errors
/// A [`CliError`] naming the file: missing, unknown extension, syntax error, unknown class
/// or key, wrong type, invalid value.
pub fn check_config(args: &CheckConfigArgs) -> Result<String, CliError> {
    let loss = load_loss(&args.file)?;
    let written = match args.format {
        OutputFormat::Json => loss.get_config().map_err(|e| e.to_string()).and_then(|v| {
            serde_json::to_string_pretty(&v)
                .map(|s| s + "\n")
                .map_err(|e| e.to_string())
        }),
        OutputFormat::Toml => loss
            .to_config_string(Format::Toml)
            .map_err(|e| e.to_string()),
        OutputFormat::Yaml => loss
            .to_config_string(Format::Yaml)
            .map_err(|e| e.to_string()),
    };
    written
        .map(|mut s| {
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        })
        .map_err(|e| CliError::in_file(&args.file, e))
}

fn pretty(value: &serde_json::Value) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::new(format!("cannot write JSON: {e}")))
}
