//! The `metric-loss` binary: evaluate, check and benchmark metric-learning losses from a
//! config file and `.npy` arrays.
//!
//! ```sh
//! metric-loss eval --config triplet.toml --embeddings x.npy --labels y.npy
//! metric-loss list
//! metric-loss check-config triplet.yaml
//! metric-loss bench --n 1024 --d 128
//! ```
//!
//! Exit status 0 on success, 2 on any failure (with one `error: ...` line on stderr).
//! The implementation and the full documentation are in the `metric_loss_cli` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    metric_loss_cli::install_panic_hook();
    ExitCode::from(metric_loss_cli::run(std::env::args_os()))
}
