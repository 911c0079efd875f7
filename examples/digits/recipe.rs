//! What the candle and burn digits demos share besides the data: the model's widths and
//! the command-line options, so that one command line trains both alike.

use std::fmt::Debug;
use std::path::PathBuf;

use crate::data::{self, Digits};

/// The embedding width.
pub(crate) const EMBEDDING: usize = 16;
/// The hidden layer's width.
pub(crate) const HIDDEN: usize = 64;

/// The loss, data, steps, seed and learning rate of a run.
#[derive(Debug, clap::Args)]
pub(crate) struct Recipe {
    /// The loss config (Keras-shaped: class_name and a [config] table; .toml, .json, .yaml).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/triplet_default.toml"))]
    pub(crate) config: PathBuf,
    /// The data set: gzip-compressed CSV, 64 pixels and a label per row.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/uci-digits/digits.csv.gz"))]
    pub(crate) data: PathBuf,
    /// Training steps.
    #[arg(long, default_value_t = 1500)]
    pub(crate) steps: usize,
    /// Seed of the split, the initial weights and the batches.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub(crate) lr: f64,
}

impl Recipe {
    /// The data set split per class 70 / 30 with the seed (training, test), after a line
    /// that names the sizes and the `loss`.
    pub(crate) fn split_data(&self, loss: &dyn Debug) -> Result<(Digits, Digits), String> {
        let digits = data::load(&self.data)?;
        let (train, test) = data::split(&digits, 0.7, self.seed);
        println!(
            "data: {} images ({} train, {} test), loss: {loss:?}",
            digits.len(),
            train.len(),
            test.len(),
        );
        Ok((train, test))
    }
}
