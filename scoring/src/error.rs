//! Errors of the domain layer.

use std::fmt;

/// Input that breaks a rule; names the field and the rule.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ValidationError {
    pub field: String,
    pub rule: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> ValidationError {
        ValidationError { field: field.into(), rule: rule.into() }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

impl std::error::Error for ValidationError {}

/// Characters of a caller's input an error message shows at most.
pub const QUOTE_CHARS: usize = 64;

/// A caller's input as error messages show it: quoted, and cut to
/// [`QUOTE_CHARS`] characters with the full length after it, so an answer
/// never carries a large input back to its sender.
pub fn quoted(input: &str) -> String {
    let mut chars = input.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_none() {
        format!("{head:?}")
    } else {
        format!("{head:?}... ({} characters)", input.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_input_is_cut_in_messages() {
        assert_eq!(quoted("beilun"), "\"beilun\"");
        let long = "x".repeat(4 * 1024 * 1024);
        let shown = quoted(&long);
        assert!(shown.len() < 100, "{shown}");
        assert!(shown.ends_with("(4194304 characters)"));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scoring model: {0}")]
    Model(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
