//! The server's errors and the one table that maps each to a gRPC status.

use scoring::ValidationError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Ledger(#[from] ledger::Error),
    #[error(transparent)]
    Inquiries(#[from] inquiries::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { what: what.into(), source }
    }

    /// The gRPC code for this error. Exhaustive on purpose: a new variant
    /// must be placed in this table before the code compiles.
    pub fn code(&self) -> Code {
        match self {
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::InvalidArgument(_) | Error::Invalid(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Internal(_) | Error::Io { .. } => Code::Internal,
            Error::Ledger(e) => match e {
                ledger::Error::NotFound { .. } => Code::NotFound,
                ledger::Error::OutOfRange(_) => Code::OutOfRange,
                ledger::Error::InvalidArgument(_) => Code::InvalidArgument,
                ledger::Error::Corruption { .. } | ledger::Error::Tampered { .. } => Code::DataLoss,
                ledger::Error::ShuttingDown | ledger::Error::Unavailable(_) => Code::Unavailable,
                ledger::Error::NoSpace { .. } => Code::ResourceExhausted,
                ledger::Error::Io(_) | ledger::Error::Storage(_) | ledger::Error::Key(_) => Code::Internal,
            },
            Error::Inquiries(e) => match e {
                inquiries::Error::BadCursor => Code::InvalidArgument,
                inquiries::Error::Corruption { .. } => Code::DataLoss,
                inquiries::Error::Storage(_) => Code::Internal,
                inquiries::Error::Unavailable(_) => Code::Unavailable,
            },
        }
    }
}

impl Error {
    /// Whether the same call may succeed if made again later, unchanged:
    /// the service was unavailable, out of space or failing inside
    /// (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `INTERNAL`, and `ABORTED`,
    /// `UNKNOWN` should they appear). Everything else (bad input, no right,
    /// not found, a conflict, data that failed verification) is refused for
    /// good. A column of the one status table, decided by [`Error::code`]
    /// alone, so it cannot drift from what callers are told; the HJ 212
    /// gateway's sink keeps a day open on exactly these.
    pub fn is_transient(&self) -> bool {
        match self.code() {
            Code::Unavailable | Code::Internal | Code::ResourceExhausted | Code::Aborted | Code::Unknown => {
                true
            }
            Code::Ok
            | Code::Cancelled
            | Code::InvalidArgument
            | Code::DeadlineExceeded
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::DataLoss
            | Code::Unauthenticated => false,
        }
    }
}

/// The HTTP status of a gRPC code, for the web page: the second column of
/// the one status table (each error's code is decided by [`Error::code`]
/// alone). Exhaustive on purpose.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as S;
    match code {
        Code::Ok => S::OK,
        Code::InvalidArgument | Code::OutOfRange => S::BAD_REQUEST,
        Code::Unauthenticated => S::UNAUTHORIZED,
        Code::PermissionDenied => S::FORBIDDEN,
        Code::NotFound => S::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => S::CONFLICT,
        Code::FailedPrecondition => S::UNPROCESSABLE_ENTITY,
        Code::ResourceExhausted => S::TOO_MANY_REQUESTS,
        Code::Cancelled => S::REQUEST_TIMEOUT,
        Code::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        Code::Unavailable => S::SERVICE_UNAVAILABLE,
        Code::Unimplemented => S::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => S::INTERNAL_SERVER_ERROR,
    }
}

impl Error {
    /// The HTTP status of this error: [`Error::code`], then [`http_status`],
    /// with one exception. A full disk is `RESOURCE_EXHAUSTED` in gRPC (the
    /// code gRPC names for "the file system is out of space"), but on the web
    /// `429` would tell the visitor they sent too much; the server is what
    /// cannot take the filing, so it is `503` (try again later).
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Error::Ledger(ledger::Error::NoSpace { .. }) => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http_status(self.code()),
        }
    }

    /// What the caller is told (a gRPC status message, a web error page):
    /// internal details go to the log, not to the caller, and no message
    /// grows with what the caller sent.
    pub fn public_message(&self) -> String {
        let code = self.code();
        if code == Code::Internal {
            tracing::error!(error = %self, "internal error");
            return "internal error; the operator can find details in the server log".into();
        }
        if code == Code::DataLoss {
            tracing::error!(error = %self, "stored data failed verification");
        }
        let message = self.to_string();
        if message.chars().count() > MAX_STATUS_MESSAGE_CHARS {
            let cut: String = message.chars().take(MAX_STATUS_MESSAGE_CHARS).collect();
            return format!("{cut}... (cut)");
        }
        message
    }
}

/// Longest status message sent. Messages quote inputs only through
/// [`scoring::quoted`]; this is the net below that rule, so no answer can
/// grow with what the caller sent.
const MAX_STATUS_MESSAGE_CHARS: usize = 1024;

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        Status::new(err.code(), err.public_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: Error, code: Code, message: &str) {
        let status = Status::from(err);
        assert_eq!(status.code(), code);
        assert!(status.message().contains(message), "{:?} lacks {message:?}", status.message());
    }

    #[test]
    fn every_arm_of_the_status_table() {
        check(Error::Unauthenticated("no token".into()), Code::Unauthenticated, "no token");
        check(Error::PermissionDenied("not yours".into()), Code::PermissionDenied, "not yours");
        check(Error::InvalidArgument("x".into()), Code::InvalidArgument, "x");
        check(Error::Invalid(ValidationError::new("uscc", "bad")), Code::InvalidArgument, "uscc: bad");
        check(Error::NotFound("n".into()), Code::NotFound, "n");
        check(Error::AlreadyExists("a".into()), Code::AlreadyExists, "a");
        check(Error::FailedPrecondition("f".into()), Code::FailedPrecondition, "f");
        check(Error::ResourceExhausted("r".into()), Code::ResourceExhausted, "r");
        check(Error::Unavailable("u".into()), Code::Unavailable, "u");
        check(Error::Internal("secret detail".into()), Code::Internal, "internal error");
        check(Error::io("read x", std::io::Error::other("disk")), Code::Internal, "server log");
        check(ledger::Error::NotFound { seq: 7 }.into(), Code::NotFound, "7");
        check(ledger::Error::OutOfRange("seq 9 >= tree size 3".into()).into(), Code::OutOfRange, "tree size");
        check(ledger::Error::InvalidArgument("from > to".into()).into(), Code::InvalidArgument, "from > to");
        check(ledger::Error::Corruption { seq: 4, what: "entry hash".into() }.into(), Code::DataLoss, "4");
        check(ledger::Error::Tampered { seq: Some(4), what: "chain".into() }.into(), Code::DataLoss, "4");
        check(ledger::Error::ShuttingDown.into(), Code::Unavailable, "");
        check(
            inquiries::Error::Unavailable("PostgreSQL is unreachable".into()).into(),
            Code::Unavailable,
            "PostgreSQL is unreachable",
        );
        check(
            ledger::Error::Unavailable("PostgreSQL is unreachable".into()).into(),
            Code::Unavailable,
            "PostgreSQL is unreachable",
        );
        check(
            ledger::Error::NoSpace { available: 1, reserve: 2 }.into(),
            Code::ResourceExhausted,
            "space is freed",
        );
        check(ledger::Error::Io(std::io::Error::other("disk")).into(), Code::Internal, "server log");
        check(ledger::Error::Storage("sled".into()).into(), Code::Internal, "server log");
        check(ledger::Error::Key("bad key".into()).into(), Code::Internal, "server log");
        check(inquiries::Error::BadCursor.into(), Code::InvalidArgument, "page_token");
        check(
            inquiries::Error::Corruption { key: "a".into(), what: "json".into() }.into(),
            Code::DataLoss,
            "inquiry log corrupt",
        );
        check(inquiries::Error::Storage("disk".into()).into(), Code::Internal, "server log");
    }

    #[test]
    fn transient_errors_are_those_worth_retrying() {
        let transient: [Error; 6] = [
            Error::Unavailable("u".into()),
            Error::ResourceExhausted("r".into()),
            Error::Internal("i".into()),
            ledger::Error::ShuttingDown.into(),
            ledger::Error::NoSpace { available: 1, reserve: 2 }.into(),
            inquiries::Error::Storage("disk".into()).into(),
        ];
        for e in transient {
            assert!(e.is_transient(), "{e:?}");
        }
        let refused: [Error; 7] = [
            Error::Invalid(ValidationError::new("uscc", "bad")),
            Error::NotFound("n".into()),
            Error::PermissionDenied("p".into()),
            Error::AlreadyExists("a".into()),
            Error::FailedPrecondition("f".into()),
            ledger::Error::Tampered { seq: Some(4), what: "chain".into() }.into(),
            inquiries::Error::BadCursor.into(),
        ];
        for e in refused {
            assert!(!e.is_transient(), "{e:?}");
        }
    }

    #[test]
    fn every_arm_of_the_http_column() {
        use http::StatusCode as S;
        let table = [
            (Code::Ok, S::OK),
            (Code::InvalidArgument, S::BAD_REQUEST),
            (Code::OutOfRange, S::BAD_REQUEST),
            (Code::Unauthenticated, S::UNAUTHORIZED),
            (Code::PermissionDenied, S::FORBIDDEN),
            (Code::NotFound, S::NOT_FOUND),
            (Code::AlreadyExists, S::CONFLICT),
            (Code::Aborted, S::CONFLICT),
            (Code::FailedPrecondition, S::UNPROCESSABLE_ENTITY),
            (Code::ResourceExhausted, S::TOO_MANY_REQUESTS),
            (Code::Cancelled, S::REQUEST_TIMEOUT),
            (Code::DeadlineExceeded, S::GATEWAY_TIMEOUT),
            (Code::Unavailable, S::SERVICE_UNAVAILABLE),
            (Code::Unimplemented, S::NOT_IMPLEMENTED),
            (Code::Unknown, S::INTERNAL_SERVER_ERROR),
            (Code::Internal, S::INTERNAL_SERVER_ERROR),
            (Code::DataLoss, S::INTERNAL_SERVER_ERROR),
        ];
        for (code, status) in table {
            assert_eq!(http_status(code), status, "{code:?}");
        }
        assert_eq!(Error::NotFound("x".into()).http_status(), S::NOT_FOUND);
        assert_eq!(Error::ResourceExhausted("50 a day".into()).http_status(), S::TOO_MANY_REQUESTS);
        let full = Error::Ledger(ledger::Error::NoSpace { available: 1, reserve: 2 });
        assert_eq!(full.http_status(), S::SERVICE_UNAVAILABLE);
        assert!(!Error::Internal("/secret".into()).public_message().contains("/secret"));
        assert_eq!(Error::NotFound("no such".into()).public_message(), "no such");
    }

    #[test]
    fn a_message_quoting_a_huge_input_is_cut() {
        let status = Status::from(Error::InvalidArgument("x".repeat(1 << 20)));
        assert!(status.message().len() < 2 * MAX_STATUS_MESSAGE_CHARS);
    }

    #[test]
    fn internal_details_are_not_sent() {
        let status = Status::from(Error::Internal("path /secret/x".into()));
        assert!(!status.message().contains("/secret"));
    }
}
