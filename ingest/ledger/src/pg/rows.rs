//! One group commit as a single statement: its rows as column arrays,
//! inserted with `unnest`, and the new head.

use crate::engine::{Commit, StoredHead};

/// One group commit's rows and the new head, in one statement.
pub(super) const WRITE_COMMIT: &str = "WITH e AS (
        INSERT INTO ledger_entries (seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload, details)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[], $20::bytea[])
    ), s AS (
        INSERT INTO ledger_subjects (subject, seq) SELECT * FROM unnest($8::bytea[], $9::bigint[])
    ), i AS (
        INSERT INTO ledger_idempotency (key, seq, fingerprint)
        SELECT * FROM unnest($10::bytea[], $11::bigint[], $12::bytea[])
    ), n AS (
        INSERT INTO ledger_nodes (level, index, hash) SELECT * FROM unnest($13::smallint[], $14::bigint[], $15::bytea[])
    )
    UPDATE ledger_head SET size = $16, root = $17, chain = $18, last_recorded_at_ns = $19";

/// A commit as column arrays, owned, for `unnest` inserts.
pub(super) struct CommitRows {
    pub(super) seq: Vec<i64>,
    pub(super) recorded_at: Vec<i64>,
    pub(super) chain: Vec<Vec<u8>>,
    pub(super) subject: Vec<Vec<u8>>,
    pub(super) key: Vec<Option<Vec<u8>>>,
    pub(super) fingerprint: Vec<Option<Vec<u8>>>,
    pub(super) payload: Vec<Vec<u8>>,
    pub(super) details: Vec<Vec<u8>>,
    pub(super) subject_key: Vec<Vec<u8>>,
    pub(super) subject_seq: Vec<i64>,
    pub(super) idem_key: Vec<Vec<u8>>,
    pub(super) idem_seq: Vec<i64>,
    pub(super) idem_fingerprint: Vec<Vec<u8>>,
    pub(super) node_level: Vec<i16>,
    pub(super) node_index: Vec<i64>,
    pub(super) node_hash: Vec<Vec<u8>>,
    pub(super) head: Option<StoredHead>,
}

impl CommitRows {
    pub(super) fn of(commit: &Commit) -> CommitRows {
        let n = commit.entries.len();
        let mut rows = CommitRows {
            seq: Vec::with_capacity(n),
            recorded_at: Vec::with_capacity(n),
            chain: Vec::with_capacity(n),
            subject: Vec::with_capacity(n),
            key: Vec::with_capacity(n),
            fingerprint: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            subject_key: Vec::new(),
            subject_seq: Vec::new(),
            idem_key: Vec::new(),
            idem_seq: Vec::new(),
            idem_fingerprint: Vec::new(),
            node_level: Vec::with_capacity(commit.nodes.len()),
            node_index: Vec::with_capacity(commit.nodes.len()),
            node_hash: Vec::with_capacity(commit.nodes.len()),
            head: commit.head,
        };
        for entry in &commit.entries {
            let seq = entry.seq as i64;
            rows.seq.push(seq);
            rows.recorded_at.push(entry.recorded_at_ns);
            rows.chain.push(entry.chain_hash.to_vec());
            rows.subject.push(entry.subject.clone());
            rows.payload.push(entry.payload.clone());
            rows.details.push(entry.details.clone());
            match &entry.idempotency {
                None => {
                    rows.key.push(None);
                    rows.fingerprint.push(None);
                }
                Some((key, fingerprint)) => {
                    rows.key.push(Some(key.clone()));
                    rows.fingerprint.push(Some(fingerprint.to_vec()));
                    rows.idem_key.push(key.clone());
                    rows.idem_seq.push(seq);
                    rows.idem_fingerprint.push(fingerprint.to_vec());
                }
            }
            if !entry.subject.is_empty() {
                rows.subject_key.push(entry.subject.clone());
                rows.subject_seq.push(seq);
            }
        }
        for (level, index, hash) in &commit.nodes {
            rows.node_level.push(*level as i16);
            rows.node_index.push(*index as i64);
            rows.node_hash.push(hash.to_vec());
        }
        rows
    }
}
