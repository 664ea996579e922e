//! Domain types and the pure, versioned scoring model of ecocode.
//!
//! Nothing here does I/O or reads a clock on its own: a score is a function
//! of (model, entries, evaluation time, ledger prefix).
//!
//! The `batch` feature adds the batch scorer on polars ([`score_all`]),
//! which must agree with the online scorer; the service does not enable it.

#![forbid(unsafe_code)]

#[cfg(feature = "batch")]
mod batch;
mod domain;
mod error;
mod model;
mod publicity;
mod score;
mod timeline;
mod uscc;
mod workflow;

#[cfg(feature = "batch")]
pub use batch::{evaluations_frame, score_all};
pub use domain::{
    Enterprise, NANOS_PER_DAY, NANOS_PER_SECOND, Record, RecordFields, Seq, Timestamp, check_new_text,
    is_control, limits, strip_controls,
};
pub use error::{Error, QUOTE_CHARS, Result, ValidationError, quoted};
pub use model::{KindClass, Model, MonitoringRules, RecordRule, WorkflowKind};
pub use publicity::{NotPublishedWhy, Publicity, PublicityClass, PublicityPlan};
pub use score::{BASE_POINTS, Code, Evaluation, Grade, LedgerRecord, MeeLevel, Reason};
pub use timeline::{Step, summarize};
pub use uscc::Uscc;
pub use workflow::Ineligible;
