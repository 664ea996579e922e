//! One group commit as a single statement: its rows as column arrays,
//! inserted with `unnest`, and the new head.

use crate::engine::{Commit, StoredHead};

/// One group commit's rows and the new head, in one statement: one row per
/// entry (its leaf and keys in it, so the subject and idempotency lookups
/// are indexes on the same row) and a node row only for the tile levels
/// above the leaves (binary levels 8, 16, …: one per 256 entries).
pub(super) const WRITE_COMMIT: &str = "WITH e AS (
        INSERT INTO ledger_entries (seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload, details, leaf)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[])
    ), n AS (
        INSERT INTO ledger_nodes (level, index, hash) SELECT * FROM unnest($10::smallint[], $11::bigint[], $12::bytea[])
    )
    UPDATE ledger_head SET size = $13, root = $14, chain = $15, last_recorded_at_ns = $16";

/// Binary levels stored as node rows: those of tile levels above the
/// leaves; levels in between are hashed up from the stored level below.
pub(super) fn is_stored_level(level: u8) -> bool {
    level.is_multiple_of(8)
}

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
    pub(super) leaf: Vec<Vec<u8>>,
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
            leaf: Vec::with_capacity(n),
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
                }
            }
        }
        for (level, index, hash) in &commit.nodes {
            if *level == 0 {
                // The frontier reports each entry's leaf in seq order.
                debug_assert_eq!(rows.seq.get(rows.leaf.len()), Some(&(*index as i64)));
                rows.leaf.push(hash.to_vec());
                continue;
            }
            if !is_stored_level(*level) {
                continue;
            }
            rows.node_level.push(*level as i16);
            rows.node_index.push(*index as i64);
            rows.node_hash.push(hash.to_vec());
        }
        rows
    }
}
