//! Proof bundles: what a bank or a court files to check, offline and without
//! trusting the server, that an entry is in the ledger (inclusion) or that
//! the ledger only grew between two checkpoints (consistency).
//!
//! A bundle is JSON holding signed checkpoint notes and the proof; every
//! hash is standard base64. Verification checks the notes' signatures with
//! the service's verifier key, then the proof against the signed roots.

use crate::error::{Error, Result};
use crate::hash::{self, Hash};
use crate::{note, proof};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Bundle {
    /// Entry `seq` (its exact stored bytes) is in the tree of `checkpoint`.
    Inclusion { checkpoint: String, seq: u64, recorded_at_ns: i64, payload: String, hashes: Vec<String> },
    /// The tree of `old_checkpoint` is a prefix of the tree of `checkpoint`.
    Consistency { old_checkpoint: String, checkpoint: String, hashes: Vec<String> },
}

/// What a verified bundle established, for display.
#[derive(Debug, PartialEq)]
pub enum Verified {
    Inclusion { seq: u64, tree_size: u64, entry_hash: Hash },
    Consistency { from_size: u64, to_size: u64 },
}

pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

fn decode_hash(text: &str) -> Result<Hash> {
    B64.decode(text).ok().and_then(|b| Hash::try_from(b.as_slice()).ok()).ok_or_else(|| {
        let shown: String = text.chars().take(64).collect();
        Error::Invalid(format!("{shown:?} is not a base64 32-byte hash"))
    })
}

/// The signed (size, root) of a checkpoint note.
fn signed_head(note_text: &str, key_name: &str, key: &[u8; 32]) -> Result<(u64, Hash)> {
    let body =
        note::verify(note_text, key_name, key).map_err(|e| Error::Invalid(format!("checkpoint: {e}")))?;
    let (_origin, size, root, _chain) =
        note::parse_checkpoint(&body).map_err(|e| Error::Invalid(format!("checkpoint: {e}")))?;
    Ok((size, root))
}

/// Checks the bundle's signed checkpoint(s) with the verifier key, then its
/// proof against the signed roots.
pub fn verify(bundle: &Bundle, key_name: &str, key: &[u8; 32]) -> Result<Verified> {
    match bundle {
        Bundle::Inclusion { checkpoint, seq, recorded_at_ns, payload, hashes } => {
            let (size, root) = signed_head(checkpoint, key_name, key)?;
            let payload = B64.decode(payload).map_err(|_| Error::Invalid("payload is not base64".into()))?;
            let hashes = hashes.iter().map(|h| decode_hash(h)).collect::<Result<Vec<_>>>()?;
            let leaf = hash::entry_hash(*seq, *recorded_at_ns, &payload);
            if !proof::verify_inclusion(&leaf, *seq, size, &hashes, &root) {
                return Err(Error::Invalid(format!(
                    "entry {seq} is NOT included in the signed tree of size {size}"
                )));
            }
            Ok(Verified::Inclusion { seq: *seq, tree_size: size, entry_hash: leaf })
        }
        Bundle::Consistency { old_checkpoint, checkpoint, hashes } => {
            let (from, old_root) = signed_head(old_checkpoint, key_name, key)?;
            let (to, new_root) = signed_head(checkpoint, key_name, key)?;
            let hashes = hashes.iter().map(|h| decode_hash(h)).collect::<Result<Vec<_>>>()?;
            if !proof::verify_consistency(from, to, &old_root, &new_root, &hashes) {
                return Err(Error::Invalid(format!(
                    "the tree of size {from} is NOT a prefix of the tree of size {to}"
                )));
            }
            Ok(Verified::Consistency { from_size: from, to_size: to })
        }
    }
}
