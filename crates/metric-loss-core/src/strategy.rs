//! Mining strategy names (the algorithms live in `metric-loss-mining`).

use std::fmt;
use std::str::FromStr;

use crate::{LossError, StrategyRole};

/// Which positive each anchor is paired with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PositiveStrategy {
    /// The closest positive.
    Easy,
    /// The farthest positive (default).
    #[default]
    Hard,
}

/// Which negative each anchor is paired with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NegativeStrategy {
    /// The farthest negative.
    Easy,
    /// The closest negative.
    Hard,
    /// The closest negative farther than the hardest positive, else the farthest negative
    /// (default).
    #[default]
    SemiHard,
}

impl PositiveStrategy {
    /// The accepted names.
    pub const NAMES: [&'static str; 2] = ["easy", "hard"];

    /// TF Similarity's name.
    pub fn name(self) -> &'static str {
        match self {
            PositiveStrategy::Easy => "easy",
            PositiveStrategy::Hard => "hard",
        }
    }
}

impl NegativeStrategy {
    /// The accepted names.
    pub const NAMES: [&'static str; 3] = ["easy", "hard", "semi-hard"];

    /// TF Similarity's name.
    pub fn name(self) -> &'static str {
        match self {
            NegativeStrategy::Easy => "easy",
            NegativeStrategy::Hard => "hard",
            NegativeStrategy::SemiHard => "semi-hard",
        }
    }
}

impl FromStr for PositiveStrategy {
    type Err = LossError;

    /// Exact, case-sensitive names, as TF Similarity checks them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "easy" => Ok(PositiveStrategy::Easy),
            "hard" => Ok(PositiveStrategy::Hard),
            _ => Err(LossError::InvalidStrategy {
                role: StrategyRole::Positive,
                given: s.to_owned(),
                expected: "easy, hard",
            }),
        }
    }
}

impl FromStr for NegativeStrategy {
    type Err = LossError;

    /// Exact, case-sensitive names, as TF Similarity checks them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "easy" => Ok(NegativeStrategy::Easy),
            "hard" => Ok(NegativeStrategy::Hard),
            "semi-hard" => Ok(NegativeStrategy::SemiHard),
            _ => Err(LossError::InvalidStrategy {
                role: StrategyRole::Negative,
                given: s.to_owned(),
                expected: "easy, hard, semi-hard",
            }),
        }
    }
}

impl fmt::Display for PositiveStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for NegativeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_exactly() {
        for n in PositiveStrategy::NAMES {
            assert_eq!(n.parse::<PositiveStrategy>().unwrap().name(), n);
        }
        for n in NegativeStrategy::NAMES {
            assert_eq!(n.parse::<NegativeStrategy>().unwrap().name(), n);
        }
        assert!("semi-hard".parse::<PositiveStrategy>().is_err());
        assert!("medium".parse::<NegativeStrategy>().is_err());
        assert!("Hard".parse::<PositiveStrategy>().is_err());
    }
}
