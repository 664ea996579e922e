//! Evidence about a score that anyone can check offline.
//!
//! * [`convert`]: the stored forms of the scoring inputs (registrations,
//!   records) from their protobuf messages; the server decodes with the
//!   very same functions, so online and offline scoring cannot drift.
//! * [`stored`]: a stored `LedgerEvent` payload, decoded into what scoring
//!   needs.
//! * [`score`]: score proof bundles and their recomputing verifier.
//!
//! Pure: no server, store, runtime or RPC (checked by
//! `tests/it/architecture.rs`), so a bank links it with `tlog` and
//! `scoring` alone.

#![forbid(unsafe_code)]

pub mod convert;
pub mod score;
pub mod stored;

mod error;

pub use error::{Error, Result};
