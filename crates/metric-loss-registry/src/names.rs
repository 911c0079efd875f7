//! The names a config may use.

use std::fmt;

use metric_loss_core::{NegativeStrategy, PositiveStrategy, Reduction};
use metric_loss_distances::DistanceKind;

/// One distance's accepted names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DistanceNames {
    /// The canonical name, e.g. `"euclidean"` (what `get_config` writes).
    pub name: &'static str,
    /// TF Similarity's Keras class name, e.g. `"EuclideanDistance"` (also accepted).
    pub class_name: &'static str,
    /// The other accepted names, e.g. `["l2", "pythagorean"]`.
    pub aliases: &'static [&'static str],
}

/// Every name a config may use: registered losses, distances, mining strategies and
/// reductions. Its `Display` is a human-readable listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// Registered loss class names, sorted.
    pub losses: Vec<&'static str>,
    /// The distances, in TF Similarity's order.
    pub distances: Vec<DistanceNames>,
    /// `positive_mining_strategy` values.
    pub positive_mining_strategies: &'static [&'static str],
    /// `negative_mining_strategy` values.
    pub negative_mining_strategies: &'static [&'static str],
    /// `reduction` values (Keras's).
    pub reductions: &'static [&'static str],
}

/// The names a config may use.
///
/// ```
/// let names = metric_loss_registry::catalog();
/// assert!(names.losses.contains(&"TripletLoss"));
/// assert!(names.distances.iter().any(|d| d.aliases.contains(&"l2")));
/// assert_eq!(names.reductions, &["auto", "sum_over_batch_size", "sum", "none"]);
/// println!("{names}");
/// ```
pub fn catalog() -> Catalog {
    Catalog {
        losses: crate::registered_names(),
        distances: DistanceKind::ALL
            .iter()
            .map(|k| DistanceNames {
                name: k.name(),
                class_name: k.class_name(),
                aliases: k.aliases(),
            })
            .collect(),
        positive_mining_strategies: &PositiveStrategy::NAMES,
        negative_mining_strategies: &NegativeStrategy::NAMES,
        reductions: &Reduction::NAMES,
    }
}

impl fmt::Display for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "losses (class_name): {}", self.losses.join(", "))?;
        writeln!(f, "distances:")?;
        for d in &self.distances {
            write!(f, "  {} (class {}", d.name, d.class_name)?;
            if !d.aliases.is_empty() {
                write!(f, "; aliases {}", d.aliases.join(", "))?;
            }
            writeln!(f, ")")?;
        }
        writeln!(
            f,
            "positive_mining_strategy: {}",
            self.positive_mining_strategies.join(", ")
        )?;
        writeln!(
            f,
            "negative_mining_strategy: {}",
            self.negative_mining_strategies.join(", ")
        )?;
        writeln!(f, "reduction: {}", self.reductions.join(", "))
    }
}
