//! Domain types and the pure, versioned scoring model of ecocode.
//!
//! Nothing here does I/O or reads a clock on its own: a score is a function
//! of (model, entries, evaluation time, ledger prefix).

#![forbid(unsafe_code)]

mod domain;
mod error;
mod uscc;

pub use domain::{
    limits, Enterprise, Record, RecordFields, Seq, Timestamp, NANOS_PER_DAY, NANOS_PER_SECOND,
};
pub use error::{Error, Result, ValidationError};
pub use uscc::Uscc;
