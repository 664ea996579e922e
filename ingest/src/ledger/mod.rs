//! The append-only, hash-chained, verifiable ledger.
