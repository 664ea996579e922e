//! The inquiry log: every score read by a lender or a regulator, recorded
//! durably before the answer is sent, so an enterprise can see who looked
//! at its code and why (as credit bureaus tell a subject who queried its
//! file).
//!
//! The log lives beside the ledger (`DATA/inquiries`, its own sled database
//! opened through `kv`) and is not part of the hash chain: it records
//! reads, not facts about enterprises. Who may list which inquiries is the
//! service's decision; this crate answers a [`Scope`].
//!
//!
//! Modules: `lib.rs` holds the types and the facade ([`InquiryLog`]),
//! which strips control characters from purposes and picks a backend:
//! `local.rs` (sled in a local directory, the default: its key layout is
//! documented there), with `wal.rs` (the write-ahead log and group commit
//! in front of it, and the indexer behind it), or `shared.rs` (the shared
//! PostgreSQL store).

#![forbid(unsafe_code)]

mod local;
mod shared;
#[cfg(test)]
mod tests;
mod wal;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::local::LocalLog;

/// One read of one enterprise's score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inquiry {
    pub uscc: String,
    /// The enterprise's region when it was read, so a regulator's listing
    /// filters without a second lookup.
    pub region_code: String,
    pub principal: String,
    pub role: String,
    /// The short gRPC method name, e.g. `GetScore`.
    pub method: String,
    /// The caller's `x-ecocode-purpose`, e.g. a loan application number.
    pub purpose: String,
    /// Unix nanoseconds.
    pub at_ns: i64,
    /// The ledger seq of the lender's access grant the read was made
    /// under; `None` for other readers and under open lender access
    /// (and for inquiries recorded before grants existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_seq: Option<u64>,
}

/// Which inquiries a listing may show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every inquiry on one enterprise.
    Enterprise(String),
    /// One inquirer's own inquiries, optionally on one enterprise only.
    Inquirer { principal: String, uscc: Option<String> },
    /// Inquiries on enterprises whose region starts with the prefix.
    Region(String),
    /// Everything.
    All,
}

/// A listing request.
#[derive(Clone, Debug)]
pub struct Query {
    pub scope: Scope,
    /// Only inquiries at or after this instant (unix ns).
    pub from_ns: Option<i64>,
    /// Only inquiries before this instant (unix ns).
    pub to_ns: Option<i64>,
    pub page_size: usize,
    /// Continue after this cursor, from a previous [`Page::next`].
    pub after: Option<Vec<u8>>,
}

/// One page, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub inquiries: Vec<Inquiry>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Vec<u8>>,
}

/// Most entries one listing examines, so a sparse filter (a region among
/// many) costs a bounded amount per call; the caller continues with
/// [`Page::next`].
pub const MAX_EXAMINED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed; the message is the engine's.
    #[error("inquiry log storage: {0}")]
    Storage(String),
    /// The store cannot answer now (the shared store is unreachable, or a
    /// local log's index is still behind what it acknowledged); retrying
    /// later may work.
    #[error("inquiry log unavailable: {0}")]
    Unavailable(String),
    /// A stored inquiry does not decode: only this crate writes the log.
    #[error("inquiry log corrupt at key {key}: {what}")]
    Corruption { key: String, what: String },
    /// A cursor that this log did not hand out for this scope.
    #[error("page_token: not a token returned by ListInquiries for this query")]
    BadCursor,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::Storage(e.to_string())
    }
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

impl std::fmt::Debug for InquiryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InquiryLog").finish_non_exhaustive()
    }
}

/// Whether `c` acts on a terminal or reorders displayed text: the rule of
/// `scoring::is_control` (this crate uses only `kv` of ours).
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with line breaks and tabs as spaces and other controls dropped.
fn printable(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() && is_control(c) => Some(' '),
            c if is_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// The inquiry log, in a local directory or in the shared PostgreSQL
/// store (see the crate documentation).
pub struct InquiryLog {
    backend: Backend,
}

enum Backend {
    Local(LocalLog),
    Shared(Box<shared::SharedLog>),
}

impl InquiryLog {
    /// Opens (creating if new) the log in `dir`, first replaying any WAL
    /// files a crash left (see `wal.rs`).
    pub fn open(dir: &Path) -> Result<InquiryLog> {
        Ok(InquiryLog { backend: Backend::Local(LocalLog::open(dir)?) })
    }

    /// The log in the shared PostgreSQL store at `url` (its table is
    /// created by the ledger's migrations), so every node records and
    /// lists the same inquiries.
    pub fn open_shared(url: &str) -> Result<InquiryLog> {
        Ok(InquiryLog { backend: Backend::Shared(Box::new(shared::SharedLog::open(url)?)) })
    }

    /// Records `inquiries` durably: when this returns `Ok`, they survive a
    /// crash of this process (and, shared, of this node). A purpose is
    /// stored without control characters, whoever passes it in: it is
    /// shown to the enterprise read, on its terminal and its pages.
    pub async fn record(&self, inquiries: &[Inquiry]) -> Result<()> {
        let owned: Vec<Inquiry>;
        let inquiries = if inquiries.iter().any(|i| i.purpose.chars().any(is_control)) {
            owned =
                inquiries.iter().map(|i| Inquiry { purpose: printable(&i.purpose), ..i.clone() }).collect();
            &owned
        } else {
            inquiries
        };
        match &self.backend {
            Backend::Local(log) => log.record(inquiries).await,
            Backend::Shared(log) => log.record(inquiries).await,
        }
    }

    /// A page of the inquiries `query` asks for, newest first, showing
    /// every inquiry whose `record` returned before this call; purposes
    /// recorded before they were stripped of control characters come out
    /// stripped. Local, it may wait (at most 10 s, then
    /// [`Error::Unavailable`]) for the index to take in what was
    /// acknowledged: call it where blocking is allowed.
    pub fn list(&self, query: &Query) -> Result<Page> {
        let mut page = match &self.backend {
            Backend::Local(log) => log.list(query),
            Backend::Shared(log) => log.list(query),
        }?;
        for inquiry in &mut page.inquiries {
            if inquiry.purpose.chars().any(is_control) {
                inquiry.purpose = printable(&inquiry.purpose);
            }
        }
        Ok(page)
    }

    /// How many `fdatasync`s of the WAL this log has done (0 when shared):
    /// the benchmark divides records by it for the group size.
    #[doc(hidden)]
    pub fn wal_syncs(&self) -> u64 {
        match &self.backend {
            Backend::Local(log) => log.wal_syncs(),
            Backend::Shared(_) => 0,
        }
    }
}
