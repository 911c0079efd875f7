//! What the custom-loss examples share: load a loss from a config file (the command line's
//! first argument, or the example's own config), run it on a small batch, and write its
//! config back; and the check of the example's config file its tests make.

use std::path::{Path, PathBuf};

#[cfg(test)]
use metric_loss_core::MetricLoss;
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

/// Checks the example's config file: it runs, builds a loss whose outputs equal those of
/// `in_code` (the same loss written in code), and is written back and read again unchanged;
/// returns the error of `bad`, a config text that must not build.
#[cfg(test)]
pub(crate) fn check_config_file(file: &str, in_code: &dyn MetricLoss, bad: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(file);
    run(&path).unwrap();
    let x = [1.0f64, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8, 0.3, -0.9];
    let labels = [0, 0, 1, 1, 2];
    let from_file = metric_loss_registry::load(&path).unwrap();
    assert_eq!(
        from_file.evaluate(&labels, &x, 2).unwrap(),
        in_code.evaluate(&labels, &x, 2).unwrap()
    );
    // Written back and read again: the same loss.
    let text = from_file.to_config_string(Format::Json).unwrap();
    let back = metric_loss_registry::from_str(&text, Format::Json).unwrap();
    assert_eq!(back.to_config_string(Format::Json).unwrap(), text);
    metric_loss_registry::from_str(bad, Format::Json)
        .unwrap_err()
        .to_string()
}
