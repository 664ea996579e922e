//! The ledger's error type: expected outcomes, caller mistakes and fail-stop conditions.

/// Everything the ledger can fail with.
///
/// `NotFound`, `OutOfRange` and `InvalidArgument` are the caller's business;
/// `Corruption` and `Tampered` are fail-stop: the stored data no longer
/// matches its hashes and the service must not keep serving as if it did.
/// Duplicates and idempotency conflicts are not errors at all: they are
/// ordinary answers of [`Ledger::append`](super::Ledger::append).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no ledger entry with seq {seq}")]
    NotFound { seq: u64 },
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A stored entry read back does not hash to its stored leaf.
    #[error("stored entry {seq} is corrupt: {what}")]
    Corruption { seq: u64, what: String },
    /// Verification at open (or offline) found the store inconsistent with
    /// itself or with the last signed checkpoint.
    #[error("ledger has been tampered with{}: {what}", seq.map(|s| format!(" at seq {s}")).unwrap_or_default())]
    Tampered { seq: Option<u64>, what: String },
    #[error("the ledger is shutting down; retry on another node or later")]
    ShuttingDown,
    /// The disk is (nearly) full: appends are refused before they could
    /// leave the store half-written, and resume once space is freed.
    #[error(
        "the ledger's disk has {available} bytes free, less than its {reserve}-byte reserve; \
         appends resume by themselves once space is freed"
    )]
    NoSpace { available: u64, reserve: u64 },
    /// The database is unreachable (PostgreSQL engine): retry; the node
    /// recovers by itself once it is back.
    #[error("ledger store unavailable: {0}")]
    Unavailable(String),
    #[error("ledger i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The storage engine failed; the message is the engine's.
    #[error("ledger storage: {0}")]
    Storage(String),
    /// The signing key could not be created, read or used.
    #[error("ledger key: {0}")]
    Key(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One failed group commit answers every caller in it, so errors are
/// cloned; an I/O error keeps its kind and message.
impl Clone for Error {
    fn clone(&self) -> Error {
        match self {
            Error::NotFound { seq } => Error::NotFound { seq: *seq },
            Error::OutOfRange(what) => Error::OutOfRange(what.clone()),
            Error::InvalidArgument(what) => Error::InvalidArgument(what.clone()),
            Error::Corruption { seq, what } => Error::Corruption { seq: *seq, what: what.clone() },
            Error::Tampered { seq, what } => Error::Tampered { seq: *seq, what: what.clone() },
            Error::ShuttingDown => Error::ShuttingDown,
            Error::NoSpace { available, reserve } => {
                Error::NoSpace { available: *available, reserve: *reserve }
            }
            Error::Unavailable(what) => Error::Unavailable(what.clone()),
            Error::Io(e) => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
            Error::Storage(what) => Error::Storage(what.clone()),
            Error::Key(what) => Error::Key(what.clone()),
        }
    }
}

impl From<tlog::Error> for Error {
    fn from(err: tlog::Error) -> Error {
        match err {
            tlog::Error::Key(what) => Error::Key(what),
            tlog::Error::Invalid(what) => Error::InvalidArgument(what),
        }
    }
}

impl Error {
    /// True for conditions after which the data can no longer be trusted.
    pub fn is_fail_stop(&self) -> bool {
        matches!(self, Error::Corruption { .. } | Error::Tampered { .. })
    }

    pub(crate) fn tampered(seq: impl Into<Option<u64>>, what: impl Into<String>) -> Error {
        Error::Tampered { seq: seq.into(), what: what.into() }
    }

    pub(crate) fn corruption(seq: u64, what: impl Into<String>) -> Error {
        Error::Corruption { seq, what: what.into() }
    }
}
