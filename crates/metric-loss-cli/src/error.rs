//! The command's one error type.

use std::fmt;
use std::path::Path;

/// The exit status of every failure (bad input, bad config, usage error).
pub const EXIT_FAILURE: u8 = 2;

/// A failure of a command: printed as one `error: ...` line on stderr, exit status
/// [`EXIT_FAILURE`].
///
/// The message names the file involved and the problem, e.g.
/// `x.npy: expected a 2-D array [n, d], found shape [8]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    message: String,
}

impl CliError {
    /// An error with this message (without the `error:` prefix).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// An error about `path`: `"<path>: <problem>"`.
    pub fn in_file(path: &Path, problem: impl fmt::Display) -> Self {
        Self::new(format!("{}: {problem}", path.display()))
    }

    /// The message (without the `error:` prefix).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line: multi-line messages from other crates are folded.
        let mut first = true;
        for line in self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(line)?;
            first = false;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = CliError::in_file(Path::new("a.npy"), "bad\n  header\n");
        assert_eq!(e.to_string(), "a.npy: bad header");
    }
}
