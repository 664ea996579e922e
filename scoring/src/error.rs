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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scoring model: {0}")]
    Model(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
