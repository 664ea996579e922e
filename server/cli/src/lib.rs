//! Everything client-side of ecocode, behind the `ecocode` binary.
//!
//! * [`cli`]: the command line (clap), `serve` through the service's
//!   composition root, operators' offline tools (`principal`, `verify`,
//!   `key`, `attest verify`, `proof verify`) and a client for people
//!   without a gRPC tool;
//! * [`append`]: JSON Lines files of records, streamed in bounded chunks;
//! * [`client`]: connecting, authenticating and reporting gRPC errors;
//! * [`rows`] and [`import`]: spreadsheets (CSV, Parquet via polars) to
//!   records, and their import over `Ingest.AppendRecords`;
//! * [`batch`]: `score-all` and `report`, the batch scorer over
//!   `Ledger.ListEntries`.
//! * [`mirror`]: `ecocode mirror`, a verified local copy of a log
//!   followed through its tiles.
//! * [`witness`]: `witness serve|key`, a C2SP tlog-witness.
//!
//! The service library (`server`) has none of this: no argument parsing,
//! no polars, no progress bars.

#![forbid(unsafe_code)]

pub mod append;
pub mod batch;
pub mod cli;
pub mod client;
pub mod import;
pub mod mirror;
pub mod rows;
pub mod witness;

pub use client::Connection;
