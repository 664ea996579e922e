//! Score proof bundles (`"kind": "score"`, `docs/ledger.md` "Proof
//! bundles"): a signed score attestation, the signed checkpoint it refers
//! to, every entry about the enterprise below the checkpoint's index entry,
//! the scoring model's entry and the proofs that tie them to the signed
//! root. [`verify`] checks every signature and proof, that the entries are
//! exactly the index's list for the USCC, and recomputes the score with the
//! bundled model: the attestation must state exactly that.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use scoring::{LedgerRecord, Model, Seq, Timestamp};
use serde::{Deserialize, Serialize};
use tlog::hash::{self, Hash};
use tlog::index;

use crate::error::{Error, Result};
use crate::stored::{self, Stored};

/// The bundle's `kind`: always `score`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Score,
}

/// An entry exactly as stored: `payload` is standard base64.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    pub seq: u64,
    pub recorded_at_ns: i64,
    pub payload: String,
}

/// An entry with its inclusion proof in the checkpoint's tree (`hashes`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    pub seq: u64,
    pub recorded_at_ns: i64,
    pub payload: String,
    pub hashes: Vec<String>,
}

/// A score proof bundle.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScoreBundle {
    pub kind: Kind,
    /// The signed score note (`tlog::attestation`), with a `model_entry` line.
    pub attestation: String,
    /// The signed checkpoint note of size N; its last entry (N - 1) is the
    /// index entry.
    pub checkpoint: String,
    /// Every entry about the USCC below N - 1, ascending by seq.
    pub entries: Vec<BundleEntry>,
    /// The entry holding the model's exact file, included in the tree.
    pub model_entry: ProvenEntry,
    /// Entry N - 1, the index entry, included in the tree.
    pub index_entry: ProvenEntry,
    /// The USCC's membership proof in the index: sibling hashes from depth
    /// 0 down to its leaf.
    pub index_proof: Vec<String>,
}

/// What a verified score bundle established.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub uscc: String,
    pub points: i64,
    pub tree_size: u64,
    /// How many entries about the USCC the score counts (all of them).
    pub entries: u64,
    pub model: String,
    pub as_of: String,
}

fn invalid(what: impl Into<String>) -> Error {
    Error::Invalid(what.into())
}

fn decode_hash(what: &str, text: &str) -> Result<Hash> {
    B64.decode(text)
        .ok()
        .and_then(|b| Hash::try_from(b.as_slice()).ok())
        .ok_or_else(|| invalid(format!("{what}: not a base64 32-byte hash")))
}

fn decode_payload(what: &str, text: &str) -> Result<Vec<u8>> {
    B64.decode(text).map_err(|_| invalid(format!("{what}: payload is not standard base64")))
}

/// Checks a proven entry's inclusion in the tree (`size`, `root`); answers
/// its payload and entry hash.
fn included(what: &str, e: &ProvenEntry, size: u64, root: &Hash) -> Result<(Vec<u8>, Hash)> {
    let payload = decode_payload(what, &e.payload)?;
    let hashes = e.hashes.iter().map(|h| decode_hash(what, h)).collect::<Result<Vec<_>>>()?;
    let leaf = hash::entry_hash(e.seq, e.recorded_at_ns, &payload);
    if e.seq >= size || !tlog::proof::verify_inclusion(&leaf, e.seq, size, &hashes, root) {
        return Err(invalid(format!(
            "{what} (entry {}) is NOT included in the signed tree of size {size}",
            e.seq
        )));
    }
    Ok((payload, leaf))
}

/// Checks `bundle` with the service's verifier key; `Err` names the first
/// thing wrong (which seq, which field).
pub fn verify(bundle: &ScoreBundle, key_name: &str, key: &[u8; 32]) -> Result<Verified> {
    // 1. The signed checkpoint: size N and root.
    let body = tlog::note::verify(&bundle.checkpoint, key_name, key)
        .map_err(|e| invalid(format!("checkpoint: {e}")))?;
    let (_origin, size, root, _chain) =
        tlog::note::parse_checkpoint(&body).map_err(|e| invalid(format!("checkpoint: {e}")))?;
    // 2. The signed attestation, about that very tree.
    let att = tlog::attestation::verify(&bundle.attestation, key_name, key)
        .map_err(|e| invalid(format!("attestation: {e}")))?;
    if att.tree_size != size || att.root != root {
        return Err(invalid(format!(
            "attestation field tree_size/root: the attestation is about the tree of size {}, the checkpoint is of size {size}",
            att.tree_size
        )));
    }
    let model_hash = att
        .model_entry
        .ok_or_else(|| invalid("attestation field model_entry: missing; the score names no model entry"))?;
    // 3. The index entry ends the checkpoint's tree and commits to the
    //    index of every entry below it.
    if size == 0 || bundle.index_entry.seq != size - 1 {
        return Err(invalid(format!(
            "index_entry: is entry {}, but the checkpoint of size {size} ends with entry {}",
            bundle.index_entry.seq,
            size.saturating_sub(1)
        )));
    }
    let (payload, _) = included("index_entry", &bundle.index_entry, size, &root)?;
    let commitment = index::Commitment::parse(&payload).map_err(|e| invalid(format!("index_entry: {e}")))?;
    if commitment.size != size - 1 {
        return Err(invalid(format!(
            "index_entry: indexes {} entries, not the {} below it",
            commitment.size,
            size - 1
        )));
    }
    // 4. The entries: ascending, below the index entry, each about the USCC.
    let uscc = att.uscc.as_str();
    let mut value = index::Value::default();
    let mut records = Vec::new();
    let mut registered = false;
    let mut previous: Option<u64> = None;
    for e in &bundle.entries {
        let seq = e.seq;
        if let Some(p) = previous {
            if seq == p {
                return Err(invalid(format!("entries: entry {seq} is given twice")));
            }
            if seq < p {
                return Err(invalid(format!("entries: entry {seq} comes after entry {p}; they must ascend")));
            }
        }
        previous = Some(seq);
        if seq >= commitment.size {
            return Err(invalid(format!(
                "entries: entry {seq} is at or after the index entry {} of the checkpoint",
                commitment.size
            )));
        }
        let payload = decode_payload(&format!("entries: entry {seq}"), &e.payload)?;
        let entry_hash = hash::entry_hash(seq, e.recorded_at_ns, &payload);
        let about = match stored::decode(seq, &payload).map_err(|e| invalid(format!("entries: {e}")))? {
            Stored::Registration(enterprise) => {
                registered = true;
                enterprise.uscc.to_string()
            }
            Stored::Record(record) => {
                let about = record.uscc.to_string();
                records.push(LedgerRecord { seq: Seq(seq), record });
                about
            }
            Stored::ScoringModel { .. } => "platform".to_owned(),
            Stored::Other(other) => other_subject(&other),
        };
        if about != uscc {
            return Err(invalid(format!("entries: entry {seq} is about {about}, not {uscc}")));
        }
        value.push(seq, &entry_hash);
    }
    if !registered {
        return Err(invalid(format!("entries: none registers {uscc}")));
    }
    // 5. Exactly the index's list: count and seq chain against its root.
    let siblings =
        bundle.index_proof.iter().map(|h| decode_hash("index_proof", h)).collect::<Result<Vec<_>>>()?;
    let proof = index::Proof { siblings, end: index::End::Member };
    proof.verify(&commitment.root, uscc.as_bytes(), Some(&value)).map_err(|e| {
        invalid(format!(
            "entries: the {} entries given are not the index's list for {uscc} at tree size {size} ({e})",
            value.count
        ))
    })?;
    // 6. The model the score names, from the log.
    let (payload, leaf) = included("model_entry", &bundle.model_entry, size, &root)?;
    if leaf != model_hash {
        return Err(invalid(format!(
            "model_entry: entry {} has hash {}, but the attestation names model entry {}",
            bundle.model_entry.seq,
            B64.encode(leaf),
            B64.encode(model_hash)
        )));
    }
    let Stored::ScoringModel { version, model } =
        stored::decode(bundle.model_entry.seq, &payload).map_err(|e| invalid(format!("model_entry: {e}")))?
    else {
        return Err(invalid(format!("model_entry: entry {} is not a scoring model", bundle.model_entry.seq)));
    };
    let text = String::from_utf8(model).map_err(|_| invalid("model_entry: the model file is not UTF-8"))?;
    let model = Model::from_toml(&text).map_err(|e| invalid(format!("model_entry: {e}")))?;
    if version != att.model || model.version() != att.model {
        return Err(invalid(format!(
            "attestation field model: says {}, the model entry holds {}",
            att.model,
            model.version()
        )));
    }
    // 7. Recompute at the attestation's as_of and compare every field.
    let at = Timestamp::parse_rfc3339(&att.as_of)
        .ok_or_else(|| invalid(format!("attestation field as_of: {:?} is not RFC 3339", att.as_of)))?;
    let score = model.score(&records, at, size);
    let recomputed: [(&str, String, String); 5] = [
        ("points", att.points.to_string(), score.points.to_string()),
        ("grade", att.grade.clone(), score.grade.as_str().to_owned()),
        ("code", att.code.clone(), score.code.as_str().to_owned()),
        ("veto", att.veto.to_string(), score.veto.to_string()),
        ("disputed", att.disputed.to_string(), score.disputed.to_string()),
    ];
    for (field, says, is) in recomputed {
        if says != is {
            return Err(invalid(format!(
                "attestation field {field}: says {says}, but the score recomputed from the {} entries is {is}",
                value.count
            )));
        }
    }
    Ok(Verified {
        uscc: uscc.to_owned(),
        points: att.points,
        tree_size: size,
        entries: value.count,
        model: att.model.clone(),
        as_of: att.as_of.clone(),
    })
}

/// The USCC an event other than a registration or record is about.
fn other_subject(event: &ecocode_messages::v1::ledger_event::Event) -> String {
    use ecocode_messages::v1::ledger_event::Event;
    match event {
        Event::MonitoringPoint(p) => p.uscc.clone(),
        Event::EnterpriseUpdate(u) => u.uscc.clone(),
        Event::PlatformOutage(_) | Event::ScoringModel(_) => "platform".to_owned(),
        Event::Registration(e) => e.uscc.clone(),
        Event::Record(r) => r.uscc.clone(),
        Event::CommittedRecord(r) => r.uscc.clone(),
        Event::AccessGrant(g) => g.uscc.clone(),
        Event::AccessRevocation(r) => r.uscc.clone(),
    }
}
