//! Tests of the ledger: spec vectors, proofs against the reference, a
//! model-based property test with restarts, tampering, group commit and
//! checkpoints.

mod checkpoint;
mod group_commit;
mod index;
mod migrate;
mod model;
mod postgres;
mod proofs;
mod tamper;
mod tiles;
mod vectors;

use std::path::Path;

use super::hash::{self, Hash};
use super::{Idempotency, Ledger, LedgerConfig, NewEntry};

/// `recorded_at` of entry 0 in the spec's test vectors.
pub(super) const T0: i64 = 1_764_000_000_000_000_000;

pub(super) fn entry(payload: impl Into<Vec<u8>>) -> NewEntry {
    NewEntry { payload: payload.into(), subject: Vec::new(), idempotency: None, details: Vec::new() }
}

pub(super) fn keyed(payload: &str, subject: &str, key: &str) -> NewEntry {
    NewEntry {
        payload: payload.as_bytes().to_vec(),
        subject: subject.as_bytes().to_vec(),
        idempotency: Some(Idempotency {
            key: key.as_bytes().to_vec(),
            fingerprint: *blake3::hash(payload.as_bytes()).as_bytes(),
        }),
        details: Vec::new(),
    }
}

/// The leaves of `n` synthetic entries, as `filled` stores them.
pub(super) fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| hash::entry_hash(i, T0 + i as i64, &i.to_be_bytes())).collect()
}

/// A ledger in `dir` holding the entries of [`leaves`]`(n)`, appended in
/// batches of varying size so group commits of all shapes write nodes.
pub(super) async fn filled(dir: &Path, n: u64) -> Ledger {
    let ledger = Ledger::open(LedgerConfig::new(dir)).unwrap();
    let mut seq = 0;
    let mut batch_len = 1;
    while seq < n {
        let end = (seq + batch_len).min(n);
        let batch = (seq..end).map(|i| (entry(i.to_be_bytes()), T0 + i as i64)).collect();
        ledger.append_at(batch).await.unwrap();
        seq = end;
        batch_len = batch_len % 5 + 1;
    }
    ledger
}

pub(super) fn hex(hash: &Hash) -> String {
    hash::to_hex(hash)
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}
