//! What decoding stored entries or checking a score proof can fail with.

/// Every failure is the input's: nothing here touches I/O or a clock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A stored payload does not decode to a valid event.
    #[error("entry {seq}: {what}")]
    Payload { seq: u64, what: String },
    /// A score proof bundle is malformed or does not verify; the message
    /// names the first thing wrong.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
