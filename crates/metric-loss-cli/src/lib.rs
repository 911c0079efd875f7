//! # `metric-loss`: the command line of the metric-loss workspace
//!
//! Evaluate a metric-learning loss (TF Similarity's `TripletLoss`, or any loss registered
//! with `metric-loss-registry`) on embeddings and labels stored as NumPy `.npy` files, check
//! a loss config, list the accepted names, and benchmark a loss.
//!
//! ```sh
//! cargo build --release            # at the workspace root: target/release/metric-loss
//! metric-loss --help
//! ```
//!
//! ## `eval`: compute a loss
//!
//! ```sh
//! cat > triplet.toml <<'EOF'
//! class_name = "TripletLoss"
//! [config]
//! distance = "cosine"
//! negative_mining_strategy = "hard"
//! margin = 0.5
//! EOF
//! python -c "import numpy as np; \
//!   np.save('x.npy', np.array([[1, 0], [.8, .6], [0, 1], [-.6, -.8]], np.float32)); \
//!   np.save('y.npy', np.array([0, 0, 1, 2]))"
//! metric-loss eval --config triplet.toml --embeddings x.npy --labels y.npy --grad-out g.npy
//! # {"loss":0.099999756,"per_example_loss":[0.0,0.3,0.09999901,0.0]}
//! ```
//!
//! - The config may be JSON, TOML or YAML (by extension), in Keras's shape
//!   `{"class_name": ..., "config": {...}}`; configs written by TF Similarity are read as
//!   they are (see `metric-loss-registry`).
//! - The precision follows the embeddings' dtype: `float32` or `float64`, shape `[n, d]`
//!   (C or Fortran order). Labels: `[n]` or `[n, 1]`, any integer dtype.
//! - `--sample-weight W.npy`: `[n]`, `[n, 1]` or a 0-d scalar, any numeric dtype.
//! - `--key-embeddings K.npy --key-labels KY.npy`: a separate key set (a memory bank);
//!   distances are then queries × keys. The pair (i, i) is not a positive unless
//!   `--keep-diagonal` is given (right when the keys start with the queries).
//! - `--grad-out G.npy`: d loss / d embeddings, `[n, d]`, in the embeddings' dtype;
//!   `--key-grad-out GK.npy`: d loss / d keys, `[m, d]`.
//! - A two-view loss (`SimCLRLoss`, `Barlow`, ...) takes no labels: `--embeddings A.npy
//!   --key-embeddings B.npy` are its two views, row i of one paired with row i of the
//!   other, and `--grad-out` / `--key-grad-out` receive d loss / d A and d loss / d B.
//!
//! The output is one JSON line, `{"loss": ..., "per_example_loss": [...]}` (per-example
//! losses without sample weights; the loss reduced and weighted). Numbers are the shortest
//! decimal that reads back to the same `f32`/`f64`; non-finite values are the strings
//! `"inf"`, `"-inf"`, `"nan"`. See [`eval::EvalReport`].
//!
//! ## `list`: accepted names
//!
//! ```sh
//! metric-loss list            # text
//! metric-loss list --json     # {"losses": [...], "distances": [{"name", "class_name", "aliases"}], ...}
//! ```
//!
//! ## `check-config`: validate and normalise a config
//!
//! ```sh
//! metric-loss check-config triplet.toml                 # the loss's get_config, as JSON
//! metric-loss check-config triplet.toml --format yaml
//! ```
//!
//! ## `bench`: time a loss
//!
//! ```sh
//! metric-loss bench --n 1024 --d 128 [--config FILE] [--threads T] [--reps 20] [--warmup 3]
//! # {"n":1024,"d":128,"fwd_ms":3.1,"fwd_bwd_ms":3.4}
//! ```
//!
//! The batch has `n / 4` classes of 4 rows, gaussian values, L2-normalised rows and a
//! fixed seed (`--seed`, default 42); see [`bench::synthetic_batch`]. Times are medians
//! (ms, `f32`) after a warm-up, reusing the workspace and the output buffers; `fwd_ms`
//! skips the gradient (`LossInput::without_gradient`). The default loss is the default
//! `TripletLoss`.
//!
//! **Threads.** With this crate's `threads` feature (on by default; it enables
//! `metric-loss-distances/threads`), distance matrices, gradient products and
//! `TripletLoss`'s mining are split over rows, one chunk per thread. `--threads T` sets
//! `METRIC_LOSS_THREADS=T` before the first call, which caps the thread count (without it:
//! the available parallelism). The variable works for `eval` too
//! (`METRIC_LOSS_THREADS=1 metric-loss eval ...`). Results are identical bit for bit.
//!
//! ## Errors and exit status
//!
//! `0` on success. Every failure — a missing file, a `.npy` file of the wrong dtype or
//! rank, labels and embeddings of different lengths, a NaN or infinite input, an invalid
//! config, a command-line usage error — exits with status `2` and prints one message on
//! stderr starting with `error:` that names the file and the problem, for example:
//!
//! ```text
//! error: y.npy: has 3 entries but x.npy has 4 rows; they must have one entry per example
//! error: x.npy: expected float32 or float64 embeddings, found dtype int64 ('<i8')
//! error: bad.toml: invalid TripletLoss config: unknown distance "chebyshev"; expected one of: ...
//! ```
//!
//! There is no panic or backtrace: a bug that panics is reported the same way (see
//! [`install_panic_hook`]).
//!
//! ## Library
//!
//! The binary is a thin `main` over this library: [`run`] takes the arguments and returns
//! the exit status; the modules hold each subcommand, the `.npy` reading ([`npy`]) and a
//! timing helper ([`timing`]).
//!
//! ## Feature flags
//! - `threads` (default): multi-threaded matrix products and TripletLoss row splitting
//!   (see above).
//!
//! ## Supported Rust versions
//! 1.89 or newer (nalgebra 0.35 requires it).

pub mod bench;
pub mod cli;
mod error;
pub mod eval;
pub mod info;
pub mod npy;
pub mod timing;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use metric_loss_registry::RegisteredLoss;

pub use error::{CliError, EXIT_FAILURE};

use cli::{Cli, Command};

/// Parses `args` (the program name first), runs the subcommand, prints its output on
/// stdout or one `error: ...` line on stderr, and returns the exit status: 0 on success
/// (and for `--help` / `--version`), [`EXIT_FAILURE`] (2) on any failure.
pub fn run<I, A>(args: I) -> u8
where
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap's messages start with "error:" (usage errors) or are the help text, except
            // for a missing subcommand, where clap prints the help on stderr.
            let e = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                Cli::command().error(
                    ErrorKind::MissingSubcommand,
                    "a subcommand is required: eval, list, check-config or bench",
                )
            } else {
                e
            };
            let _ = e.print();
            return if e.use_stderr() { EXIT_FAILURE } else { 0 };
        }
    };
    match execute(&cli.command) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => 0,
                // `metric-loss list | head -1`: the reader left, nothing to report.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(e) => report(&CliError::new(format!("cannot write to stdout: {e}"))),
            }
        }
        Err(e) => report(&e),
    }
}

/// Runs one subcommand and returns what it prints on stdout.
///
/// # Errors
/// The subcommand's [`CliError`].
pub fn execute(command: &Command) -> Result<String, CliError> {
    match command {
        Command::Eval(args) => eval::run(args),
        Command::List(args) => info::list(args),
        Command::CheckConfig(args) => info::check_config(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// Replaces the panic message and backtrace with one `error: internal error ...` line
/// on stderr and exit status [`EXIT_FAILURE`], so that even a bug keeps the command's
/// error contract.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = CliError::new(format!(
            "internal error (a bug in metric-loss, please report it): {info}"
        ));
        let _ = writeln!(std::io::stderr(), "error: {message}");
        std::process::exit(i32::from(EXIT_FAILURE));
    }));
}

/// Reads a loss from a config file through `metric-loss-registry`.
///
/// # Errors
/// The registry's error as a [`CliError`]; its message names the file.
pub fn load_loss(path: &Path) -> Result<Box<dyn RegisteredLoss>, CliError> {
    metric_loss_registry::load(path).map_err(|e| {
        let message = e.to_string();
        if message.contains(&path.display().to_string()) {
            CliError::new(message)
        } else {
            CliError::in_file(path, message)
        }
    })
}

fn report(error: &CliError) -> u8 {
    let _ = writeln!(std::io::stderr(), "error: {error}");
    EXIT_FAILURE
}
