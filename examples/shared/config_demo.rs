//! What the custom-loss examples share: load a loss from a config file (the command line's
//! first argument, or the example's own config), run it on a small batch, and write its
//! config back.

use std::path::{Path, PathBuf};

use metric_loss_core::MetricLossExt;
use metric_loss_registry::Format;

/// The config named on the command line, or `examples/configs/<default>`.
pub(crate) fn config_path(default: &str) -> PathBuf {
    std::env::args_os().nth(1).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(default)
        },
        PathBuf::from,
    )
}

/// Loads the loss from `path`, runs it on five 2-d rows of three classes, prints the
/// result and the config it writes back.
pub(crate) fn run(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let loss = metric_loss_registry::load(path)?;
    println!("loaded {} from {}", loss.name(), path.display());
    let labels = [0, 0, 1, 1, 2];
    let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8, 0.3, -0.9];
    let out = loss.evaluate(&labels, &x, 2)?;
    println!("per-example losses: {:?}", out.per_example);
    println!("loss: {}", out.loss);
    println!("get_config:\n{}", loss.to_config_string(Format::Json)?);
    Ok(())
}
