//! The message types of the `ecocode.v1` contract (prost), without services:
//! what a ledger payload (`LedgerEvent`) decodes to. No gRPC runtime, so an
//! offline verifier links it; `ecocode-proto` re-exports every type here.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/ecocode.v1.rs"));
}
