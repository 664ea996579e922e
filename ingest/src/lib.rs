//! The hash-chained ledger and the ways data comes in.
//!
//! * [`ledger`]: the append-only, BLAKE3 hash-chained, Merkle-tree store
//!   (sled underneath, never visible in the API).
//! * [`hj212`]: the HJ 212 online-monitoring protocol and the daily
//!   aggregation that turns packets into behaviour records.

#![forbid(unsafe_code)]

pub mod hj212;
pub mod import;
pub mod ledger;
