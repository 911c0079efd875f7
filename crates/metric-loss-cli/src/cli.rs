//! The command line, as `clap` derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The `metric-loss` command line.
#[derive(Debug, Parser)]
#[command(
    name = "metric-loss",
    version,
    about = "Evaluate, check and benchmark metric-learning losses (TF Similarity's TripletLoss and friends) from a config file and .npy arrays.",
    after_help = "\
Examples:
  metric-loss eval --config triplet.toml --embeddings x.npy --labels y.npy
  metric-loss list
  metric-loss check-config triplet.yaml
  metric-loss bench --n 1024 --d 128

Every failure exits with status 2 and one line on stderr starting with `error:`."
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate a loss on embeddings and labels (or two views); print {"loss", "per_example_loss"} as JSON.
    Eval(EvalArgs),
    /// List the registered losses, the distances with their aliases, the mining strategies
    /// and the reductions.
    List(ListArgs),
    /// Validate a config file and print it normalised (every key, canonical names).
    CheckConfig(CheckConfigArgs),
    /// Time the forward and forward+backward pass (f32) on a synthetic batch.
    Bench(BenchArgs),
}

/// `metric-loss eval`.
#[derive(Debug, Args)]
#[command(after_help = "\
The precision follows the embeddings' dtype: float32 or float64 (.npy, C or Fortran order).
Labels: [n] or [n, 1], any integer dtype. A two-view loss (SimCLRLoss, Barlow, ...) takes no
labels: --embeddings is view A and --key-embeddings view B, row i of one paired with row i
of the other; --grad-out and --key-grad-out get d loss / d A and d loss / d B.
Sample weights: [n], [n, 1] or a scalar, any numeric dtype. The output is one JSON line;
a non-finite value (possible with the soft margin) is written as the string \"inf\",
\"-inf\" or \"nan\".

Examples:
  metric-loss eval --config triplet.json --embeddings x.npy --labels y.npy
  metric-loss eval --config triplet.toml --embeddings x.npy --labels y.npy \\
      --sample-weight w.npy --grad-out grad.npy
  metric-loss eval --config triplet.yaml --embeddings q.npy --labels qy.npy \\
      --key-embeddings bank.npy --key-labels bank_y.npy --keep-diagonal
  metric-loss eval --config simclr.yaml --embeddings view_a.npy --key-embeddings view_b.npy

Output:
  {\"loss\":0.099999756,\"per_example_loss\":[0.0,0.3,0.09999901,0.0]}")]
pub struct EvalArgs {
    /// The loss config (.json, .toml, .yaml or .yml), e.g. {"class_name": "TripletLoss",
    /// "config": {"margin": 0.5}}.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Query embeddings: a float32 or float64 .npy array of shape [n, d].
    #[arg(long, value_name = "X.npy")]
    pub embeddings: PathBuf,
    /// Query labels: an integer .npy array of shape `[n]` or `[n, 1]`; left out for a
    /// two-view loss.
    #[arg(
        long,
        value_name = "Y.npy",
        required_unless_present = "key_embeddings",
        help = "Query labels: an integer .npy array of shape [n] or [n, 1]; left out for a two-view loss"
    )]
    pub labels: Option<PathBuf>,
    /// Per-example weights: a .npy array of shape `[n]` or `[n, 1]`, or a scalar.
    #[arg(
        long,
        value_name = "W.npy",
        help = "Per-example weights: a .npy array of shape [n] or [n, 1], or a scalar"
    )]
    pub sample_weight: Option<PathBuf>,
    /// A separate key set (e.g. a memory bank) of shape [m, d], same dtype as the
    /// embeddings; distances are then queries x keys. Without labels: view B of a two-view
    /// loss.
    #[arg(
        long,
        value_name = "K.npy",
        help = "A separate key set (e.g. a memory bank) of shape [m, d], same dtype as the embeddings; distances are then queries x keys. Without --labels: view B of a two-view loss"
    )]
    pub key_embeddings: Option<PathBuf>,
    /// The labels of the key set, shape `[m]` or `[m, 1]`.
    #[arg(
        long,
        value_name = "KY.npy",
        requires_all = ["key_embeddings", "labels"],
        help = "The labels of the key set, shape [m] or [m, 1]"
    )]
    pub key_labels: Option<PathBuf>,
    /// With separate keys: count the pair (i, i) as an ordinary pair. By default it is not
    /// a positive, which is right when the keys start with the queries.
    #[arg(long, requires = "key_labels")]
    pub keep_diagonal: bool,
    /// Write d loss / d embeddings here, as .npy of shape [n, d] in the embeddings' dtype.
    #[arg(long, value_name = "G.npy")]
    pub grad_out: Option<PathBuf>,
    /// Write d loss / d key embeddings here, as .npy of shape [m, d].
    #[arg(long, value_name = "GK.npy", requires = "key_embeddings")]
    pub key_grad_out: Option<PathBuf>,
}

/// `metric-loss list`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  metric-loss list
  metric-loss list --json")]
pub struct ListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `metric-loss check-config`.
#[derive(Debug, Args)]
#[command(after_help = "\
Prints the config the loss would write back (its get_config): every key filled in, the
distance under its canonical name. Exits with status 2 and names the problem when the
config is invalid.

Examples:
  metric-loss check-config triplet.toml
  metric-loss check-config tfsim_config.json --format yaml")]
pub struct CheckConfigArgs {
    /// The config file (.json, .toml, .yaml or .yml).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The format to print the normalised config in.
    #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
    pub format: OutputFormat,
}

/// How `check-config` prints the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Pretty-printed JSON.
    Json,
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

/// `metric-loss bench`.
#[derive(Debug, Args)]
#[command(after_help = "\
The batch: n rows in n/4 classes of 4 (labels i / 4), gaussian values, each row
L2-normalised, from a fixed seed; a two-view loss gets a second such batch (seed + 1) as
its other view instead of the labels. The forward pass (no gradient) and the forward+backward
pass are each run --warmup times untimed, then --reps times timed, reusing the workspace
and the output buffers; the medians are printed in milliseconds (f32).

Threads: --threads T sets METRIC_LOSS_THREADS=T before the first call; it caps the row
splitting of the distance matrix, the gradient products and mining. Without --threads the
environment decides (default: all cores). Needs the `threads` feature (on by default).

Examples:
  metric-loss bench --n 1024 --d 128
  metric-loss bench --n 4096 --d 256 --config triplet.toml --threads 1 --reps 50

Output:
  {\"n\":1024,\"d\":128,\"fwd_ms\":1.234,\"fwd_bwd_ms\":1.567}")]
pub struct BenchArgs {
    /// Batch size (rows).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub n: u64,
    /// Embedding width (columns).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub d: u64,
    /// The loss config; default: the default TripletLoss (cosine, hard / semi-hard,
    /// margin 1.0).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Threads for the row splitting of matrices and mining (sets METRIC_LOSS_THREADS).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub reps: u64,
    /// Untimed warm-up repetitions.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub warmup: u64,
    /// Seed of the synthetic batch.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
