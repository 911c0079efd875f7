//! The six distances by name, with TF Similarity's aliases.

use std::fmt;
use std::str::FromStr;

use metric_loss_core::{LossError, PartConfig, RegisteredDistance};

/// One of TF Similarity's distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DistanceKind {
    /// `max(1 − q·k, 0)`; expects L2-normalised rows (default).
    #[default]
    Cosine,
    /// `q·k`: a similarity, so mining and margins work with inverted signs.
    InnerProduct,
    /// `√s · [s ≥ 1e-18]` with `s = (‖q‖² − 2q·k) + ‖k‖²`.
    Euclidean,
    /// `max((‖q‖² − 2q·k) + ‖k‖², 0)`.
    SquaredEuclidean,
    /// `Σ |qₜ − kₜ|`.
    Manhattan,
    /// `Var(q − k) / Var(q)` (population variances): asymmetric.
    Snr,
}

impl DistanceKind {
    /// Every distance, in TF Similarity's order.
    pub const ALL: [DistanceKind; 6] = [
        DistanceKind::Cosine,
        DistanceKind::InnerProduct,
        DistanceKind::Euclidean,
        DistanceKind::SquaredEuclidean,
        DistanceKind::Manhattan,
        DistanceKind::Snr,
    ];

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            DistanceKind::Cosine => "cosine",
            DistanceKind::InnerProduct => "inner_product",
            DistanceKind::Euclidean => "euclidean",
            DistanceKind::SquaredEuclidean => "squared_euclidean",
            DistanceKind::Manhattan => "manhattan",
            DistanceKind::Snr => "snr",
        }
    }

    /// TF Similarity's Keras class name, e.g. `"CosineDistance"`.
    pub fn class_name(self) -> &'static str {
        match self {
            DistanceKind::Cosine => "CosineDistance",
            DistanceKind::InnerProduct => "InnerProductSimilarity",
            DistanceKind::Euclidean => "EuclideanDistance",
            DistanceKind::SquaredEuclidean => "SquaredEuclideanDistance",
            DistanceKind::Manhattan => "ManhattanDistance",
            DistanceKind::Snr => "SNRDistance",
        }
    }

    /// The other names TF Similarity 0.17.1 accepts (the canonical name excluded).
    pub fn aliases(self) -> &'static [&'static str] {
        match self {
            DistanceKind::Cosine => &[],
            DistanceKind::InnerProduct => &["ip"],
            DistanceKind::Euclidean => &["l2", "pythagorean"],
            DistanceKind::SquaredEuclidean => &["sql2", "sqeuclidean"],
            DistanceKind::Manhattan => &["l1", "taxicab"],
            DistanceKind::Snr => &["signal-to-noise-ratio"],
        }
    }

    /// Looks a distance up the way TF Similarity does: lower-cased, surrounding white space
    /// removed, then the canonical names, the 0.17.1 aliases, and (as later releases accept)
    /// the class names such as `CosineDistance`.
    ///
    /// ```
    /// use metric_loss_distances::DistanceKind;
    /// assert_eq!(DistanceKind::from_name(" L2 ").unwrap(), DistanceKind::Euclidean);
    /// assert_eq!(DistanceKind::from_name("SQL2").unwrap(), DistanceKind::SquaredEuclidean);
    /// assert!(DistanceKind::from_name("chebyshev").is_err());
    /// ```
    ///
    /// # Errors
    /// [`LossError::UnknownDistance`], listing the accepted names.
    pub fn from_name(name: &str) -> Result<Self, LossError> {
        let wanted = name.trim().to_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| {
                k.name() == wanted
                    || k.aliases().contains(&wanted.as_str())
                    || k.class_name().to_lowercase() == wanted
            })
            .ok_or_else(|| LossError::UnknownDistance {
                given: name.to_owned(),
                expected: Self::accepted_names().join(", "),
            })
    }

    /// Every accepted name: canonical names and aliases.
    pub fn accepted_names() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .flat_map(|k| std::iter::once(k.name()).chain(k.aliases().iter().copied()))
            .collect()
    }
}

impl fmt::Display for DistanceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DistanceKind {
    type Err = LossError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s)
    }
}

/// A built-in distance as a config names it, so that a config's `distance` setter takes a
/// `DistanceKind` as well as a name.
impl From<DistanceKind> for PartConfig<dyn RegisteredDistance> {
    fn from(kind: DistanceKind) -> Self {
        PartConfig::Name(kind.name().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_of_the_spec_resolves() {
        let table = [
            ("cosine", DistanceKind::Cosine),
            ("inner_product", DistanceKind::InnerProduct),
            ("ip", DistanceKind::InnerProduct),
            ("euclidean", DistanceKind::Euclidean),
            ("l2", DistanceKind::Euclidean),
            ("pythagorean", DistanceKind::Euclidean),
            ("squared_euclidean", DistanceKind::SquaredEuclidean),
            ("sql2", DistanceKind::SquaredEuclidean),
            ("sqeuclidean", DistanceKind::SquaredEuclidean),
            ("manhattan", DistanceKind::Manhattan),
            ("l1", DistanceKind::Manhattan),
            ("taxicab", DistanceKind::Manhattan),
            ("snr", DistanceKind::Snr),
            ("signal-to-noise-ratio", DistanceKind::Snr),
            ("Cosine", DistanceKind::Cosine),
            (" L2 ", DistanceKind::Euclidean),
            ("SQL2", DistanceKind::SquaredEuclidean),
            ("Manhattan", DistanceKind::Manhattan),
            ("CosineDistance", DistanceKind::Cosine),
            ("SNRDistance", DistanceKind::Snr),
        ];
        for (name, kind) in table {
            assert_eq!(DistanceKind::from_name(name).unwrap(), kind, "{name}");
        }
    }

    #[test]
    fn unknown_names_list_the_accepted_ones() {
        let err = DistanceKind::from_name("chebyshev")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chebyshev") && err.contains("sqeuclidean"),
            "{err}"
        );
    }
}
