//! Verification of a whole store: recompute the chain and the tree over
//! every entry and compare with the stored leaves, nodes, indexes, head and
//! the last signed checkpoint. Used by `open` and by offline `verify`.

use std::path::Path;

use super::error::{Error, Result};
use super::files;
use super::hash::{self, Hash};
use super::note;
use super::store::{Engine, SledStore};
use super::tree::Frontier;

/// What an offline verification found (all of it consistent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub root: Hash,
    pub chain: Hash,
    /// Size of the last signed checkpoint, if there is one.
    pub checkpoint_size: Option<u64>,
    /// Whether the checkpoint's signature was checked: only possible when
    /// the data directory holds the key (`ledger.key`).
    pub checkpoint_signature_checked: bool,
}

/// The part of a checkpoint verification compares against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anchor {
    pub size: u64,
    pub root: Hash,
    pub chain: Hash,
}

/// The in-memory state rebuilt by a successful verification.
#[derive(Debug)]
pub(crate) struct Verified {
    pub frontier: Frontier,
    pub chain: Hash,
    pub last_recorded_at_ns: i64,
}

/// How often (in entries) progress is reported.
const PROGRESS_EVERY: u64 = 1024;

/// Recomputes everything over all stored entries; the first mismatch is
/// returned as `Tampered`, naming the first bad seq when there is one.
pub(crate) fn verify_store(
    engine: &dyn Engine,
    anchor: Option<Anchor>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verified> {
    let head = engine.head()?;
    let total = head.map_or(0, |h| h.size);
    progress(0, total);

    let mut frontier = Frontier::default();
    let mut chain = hash::ZERO;
    let mut last_recorded_at_ns = i64::MIN;
    let (mut with_subject, mut with_idempotency) = (0u64, 0u64);
    let mut anchor_checked = false;

    for item in engine.entries() {
        let (seq, entry) = item?;
        let expected = frontier.size();
        if seq != expected {
            return Err(Error::tampered(
                expected,
                format!("entry {expected} is missing (the next stored entry is {seq})"),
            ));
        }
        let entry = entry.ok_or_else(|| Error::tampered(seq, "entry record is malformed"))?;
        if entry.recorded_at_ns < last_recorded_at_ns {
            return Err(Error::tampered(seq, "recorded_at decreases"));
        }
        let leaf = hash::entry_hash(seq, entry.recorded_at_ns, &entry.payload);
        match engine.node_opt(0, seq)? {
            Some(stored) if stored == leaf => {}
            Some(stored) => {
                return Err(Error::tampered(
                    seq,
                    format!(
                        "entry hash {} does not match the stored leaf {}",
                        hash::to_hex(&leaf),
                        hash::to_hex(&stored)
                    ),
                ));
            }
            None => return Err(Error::tampered(seq, "stored leaf is missing")),
        }
        chain = hash::chain_hash(&chain, &leaf);
        if entry.chain_hash != chain {
            return Err(Error::tampered(seq, "chain hash does not match the recomputed chain"));
        }
        let mut bad_node = None;
        frontier.push(leaf, |level, index, computed| {
            if level > 0 && bad_node.is_none() {
                match engine.node_opt(level, index) {
                    Ok(Some(stored)) if stored == computed => {}
                    Ok(_) => {
                        bad_node = Some(Error::tampered(
                            seq,
                            format!(
                                "merkle node (level {level}, index {index}) differs from the recomputed one"
                            ),
                        ))
                    }
                    Err(e) => bad_node = Some(e),
                }
            }
        });
        if let Some(e) = bad_node {
            return Err(e);
        }
        if !entry.subject.is_empty() {
            with_subject += 1;
            if !engine.has_subject(&entry.subject, seq)? {
                return Err(Error::tampered(seq, "subject index lacks this entry"));
            }
        }
        if let Some((key, fingerprint)) = &entry.idempotency {
            with_idempotency += 1;
            if engine.idempotency(key)? != Some((seq, *fingerprint)) {
                return Err(Error::tampered(seq, "idempotency index does not point at this entry"));
            }
        }
        last_recorded_at_ns = entry.recorded_at_ns;
        if let Some(anchor) = anchor.filter(|a| a.size == frontier.size()) {
            check_anchor(&anchor, &frontier.root(), &chain)?;
            anchor_checked = true;
        }
        if frontier.size() % PROGRESS_EVERY == 0 {
            progress(frontier.size(), total.max(frontier.size()));
        }
    }

    let size = frontier.size();
    let root = frontier.root();
    match head {
        None if size > 0 => return Err(Error::tampered(None, format!("{size} entries but no stored head"))),
        None => {}
        Some(head) => {
            if head.size != size {
                return Err(Error::tampered(
                    size.min(head.size),
                    format!("the store holds {size} entries but its head says {}", head.size),
                ));
            }
            if head.root != root {
                return Err(Error::tampered(None, "stored head root differs from the recomputed root"));
            }
            if head.chain != chain {
                return Err(Error::tampered(None, "stored head chain differs from the recomputed chain"));
            }
            if size > 0 && head.last_recorded_at_ns != last_recorded_at_ns {
                return Err(Error::tampered(None, "stored head recorded_at differs from the last entry's"));
            }
        }
    }
    if let Some(anchor) = anchor {
        if anchor.size > size {
            return Err(Error::tampered(
                size,
                format!(
                    "the store holds {size} entries but the last signed checkpoint covers {} (rolled back)",
                    anchor.size
                ),
            ));
        }
        if anchor.size == 0 {
            check_anchor(&anchor, &hash::empty_root(), &hash::ZERO)?;
        } else if !anchor_checked {
            // Every size in 1..=size was passed in the loop; kept as a check
            // rather than a panic because this path guards the data.
            return Err(Error::tampered(None, "the last signed checkpoint was not compared"));
        }
    }
    let subject_keys = engine.subject_index_len()?;
    if subject_keys != with_subject {
        return Err(Error::tampered(
            None,
            format!("subject index has {subject_keys} keys for {with_subject} indexed entries"),
        ));
    }
    let idempotency_keys = engine.idempotency_index_len()?;
    if idempotency_keys != with_idempotency {
        return Err(Error::tampered(
            None,
            format!("idempotency index has {idempotency_keys} keys for {with_idempotency} keyed entries"),
        ));
    }
    progress(size, size);
    Ok(Verified {
        frontier,
        chain,
        last_recorded_at_ns: if size == 0 { i64::MIN } else { last_recorded_at_ns },
    })
}

fn check_anchor(anchor: &Anchor, root: &Hash, chain: &Hash) -> Result<()> {
    if anchor.root != *root {
        return Err(Error::tampered(
            None,
            format!("root at size {} differs from the last signed checkpoint", anchor.size),
        ));
    }
    if anchor.chain != *chain {
        return Err(Error::tampered(
            None,
            format!("chain at size {} differs from the last signed checkpoint", anchor.size),
        ));
    }
    Ok(())
}

/// Reads and checks the checkpoint file: signature (when the key is known)
/// and format. Returns the anchor and the parsed origin.
pub(crate) fn read_anchor(
    dir: &Path,
    key: Option<(&str, &[u8; 32])>,
) -> Result<Option<(Anchor, String, String, i64)>> {
    let Some((text, written_ns)) = files::read_checkpoint(dir)? else {
        return Ok(None);
    };
    let body = match key {
        Some((name, public)) => note::verify(&text, name, public).map_err(|e| {
            Error::tampered(None, format!("the checkpoint file does not verify with the service key: {e}"))
        })?,
        None => match text.rfind("\n\n") {
            Some(split) => text[..split + 1].to_string(),
            None => return Err(Error::tampered(None, "the checkpoint file is not a signed note")),
        },
    };
    let (origin, size, root, chain) = note::parse_checkpoint(&body)
        .map_err(|e| Error::tampered(None, format!("the checkpoint file is malformed: {e}")))?;
    Ok(Some((Anchor { size, root, chain }, origin, text, written_ns)))
}

/// Verifies the ledger in `dir` offline and never writes to `dir`: sled is
/// opened on a private copy of the store, because opening sled in place may
/// rewrite its files during recovery. The server must be stopped: a copy
/// taken mid-write can look damaged.
pub fn verify(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
    let key_path = dir.join(files::KEY_FILE);
    let key = if key_path.exists() {
        let public = files::read_public_key(&key_path)?;
        let text = std::fs::read_to_string(&key_path)?;
        let (name, _) = note::decode_signer_key(&text)?;
        Some((name, public))
    } else {
        None
    };
    let anchor = read_anchor(dir, key.as_ref().map(|(n, p)| (n.as_str(), p)))?;
    let store_dir = dir.join(files::STORE_DIR);
    if !store_dir.is_dir() && anchor.is_none() {
        return Err(Error::InvalidArgument(format!("no ledger in {}", dir.display())));
    }
    let copy = tempfile::tempdir()?;
    if store_dir.is_dir() {
        copy_dir(&store_dir, copy.path())?;
    }
    let engine = SledStore::open(copy.path())?;
    let verified = verify_store(&engine, anchor.as_ref().map(|a| a.0), progress)?;
    Ok(VerifyReport {
        entries: verified.frontier.size(),
        root: verified.frontier.root(),
        chain: verified.chain,
        checkpoint_size: anchor.map(|a| a.0.size),
        checkpoint_signature_checked: key.is_some(),
    })
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for item in std::fs::read_dir(from)? {
        let item = item?;
        let target = to.join(item.file_name());
        if item.file_type()?.is_dir() {
            copy_dir(&item.path(), &target)?;
        } else {
            std::fs::copy(item.path(), target)?;
        }
    }
    Ok(())
}
