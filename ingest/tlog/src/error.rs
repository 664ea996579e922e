//! What checking a note, key, proof or attestation can fail with.

/// Every failure is the input's: nothing here touches I/O or a clock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A key (signer or verifier) is malformed, or its name or id is wrong.
    #[error("key: {0}")]
    Key(String),
    /// A note, checkpoint, bundle or attestation is malformed or does not
    /// verify.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
