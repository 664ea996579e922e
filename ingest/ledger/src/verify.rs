//! Verification of a whole store: recompute the chain and the tree over
//! every entry and compare with the stored leaves, nodes, indexes, head and
//! the last signed checkpoint. Used by `open` and by offline `verify`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::engine::{Engine, NodeIter, StoredEntry};
use super::error::{Error, Result};
use super::files;
use super::hash::{self, Hash};
use super::log_store::LogStore;
use super::note;
use super::store::SledStore;
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
    /// How many index entries were checked against the index rebuilt from
    /// the entries below each (entries after the last one are checked by
    /// the next).
    pub index_entries: u64,
}

impl VerifyReport {
    pub(crate) fn of(verified: &Verified, anchor: Option<Anchor>, signature_checked: bool) -> VerifyReport {
        VerifyReport {
            entries: verified.frontier.size(),
            root: verified.frontier.root(),
            chain: verified.chain,
            checkpoint_size: anchor.map(|a| a.size),
            checkpoint_signature_checked: signature_checked,
            index_entries: verified.index_entries,
        }
    }
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
    /// The subject index of every entry, rebuilt in the same pass.
    pub index: tlog::index::Builder,
    pub last_is_index: bool,
    /// The last index entry's seq and the index it commits to.
    pub last_index: Option<(u64, tlog::index::Tree)>,
    /// How many index entries were checked.
    pub index_entries: u64,
}

/// Entries read per batch handed from the reading thread to the hashing one.
const READ_BATCH: usize = 1024;

/// How often (in entries) progress is reported.
const PROGRESS_EVERY: u64 = 16 * 1024;

/// One stored entry as verification passes it on, once its hashes are
/// checked: what a caller rebuilding derived state needs, read once.
#[derive(Clone, Copy, Debug)]
pub struct Visited<'a> {
    pub seq: u64,
    pub recorded_at_ns: i64,
    pub subject: &'a [u8],
    pub payload: &'a [u8],
    pub details: &'a [u8],
    pub entry_hash: Hash,
    pub chain_hash: Hash,
}

impl Visited<'_> {
    pub fn to_entry(&self) -> crate::Entry {
        crate::Entry {
            seq: self.seq,
            recorded_at_ns: self.recorded_at_ns,
            payload: self.payload.to_vec(),
            subject: self.subject.to_vec(),
            entry_hash: self.entry_hash,
            chain_hash: self.chain_hash,
            details: self.details.to_vec(),
        }
    }
}

/// An order-independent digest of a set of index records: the count and the
/// sum (mod 2^128) of a keyed 128-bit hash (SipHash-1-3) of each record,
/// under a key drawn at random for this verification. The same set on both
/// sides gives the same digest; since the key did not exist when the store
/// was written, nobody who damaged it could have chosen records whose
/// hashes cancel out, and a chance difference goes unseen with probability
/// about 2^-128.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct SetDigest {
    count: u64,
    sum: u128,
}

/// The random key of one verification's [`SetDigest`]s.
struct DigestKey([u8; 16]);

impl DigestKey {
    fn new() -> Result<DigestKey> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key)
            .map_err(|e| Error::Storage(format!("no randomness for verification: {e}")))?;
        Ok(DigestKey(key))
    }

    fn hash(&self, parts: &[&[u8]]) -> u128 {
        use std::hash::Hasher;
        let mut hasher = siphasher::sip128::SipHasher13::new_with_key(&self.0);
        for part in parts {
            // Length-prefixed, so part boundaries cannot shift.
            hasher.write_u64(part.len() as u64);
            hasher.write(part);
        }
        siphasher::sip128::Hasher128::finish128(&hasher).as_u128()
    }
}

impl SetDigest {
    fn add(&mut self, key: &DigestKey, parts: &[&[u8]]) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(key.hash(parts));
    }
}

/// Digests of both indexes, as the entries imply them or as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IndexDigests {
    subject: SetDigest,
    idempotency: SetDigest,
}

/// Recomputes everything over all stored entries; the first mismatch is
/// returned as `Tampered`, naming the first bad seq when there is one.
///
/// One sequential pass: entries and each level of Merkle nodes are read in
/// key order side by side (no lookup per entry), while a second thread
/// reads both indexes and digests them ([`SetDigest`]); the entries' side
/// of the digests is computed in the pass. Only when the digests differ
/// are the indexes looked up entry by entry, to name the first bad seq.
/// `visit` sees every entry once its hashes are checked.
pub(crate) fn verify_store(
    engine: &dyn Engine,
    anchor: Option<Anchor>,
    progress: &mut dyn FnMut(u64, u64),
    visit: &mut dyn FnMut(&Visited<'_>),
) -> Result<Verified> {
    let key = DigestKey::new()?;
    engine.pin()?;
    struct Unpin<'a>(&'a dyn Engine);
    impl Drop for Unpin<'_> {
        fn drop(&mut self) {
            self.0.unpin();
        }
    }
    let _unpin = Unpin(engine);
    // Indexes rebuilt from the entries by the engine itself have nothing
    // stored to compare with, so the entries' side is not digested either.
    let derived = engine.indexes_are_derived();
    // Batches sent and not yet taken: the reader hashes the entries itself
    // only while the other thread has work queued, and leaves them to it
    // while it waits, so both cores stay busy whichever is slower here.
    let queued = std::sync::atomic::AtomicUsize::new(0);
    let (walked, stored) = std::thread::scope(|scope| {
        let stored = scope.spawn(|| match derived {
            true => Ok(None),
            false => stored_index_digests(engine, &key).map(Some),
        });
        // Reading and decoding entries on a third thread, in batches, keeps
        // this one hashing; it stops when this one hangs up.
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<_>>(8);
        let queued = &queued;
        let reader = scope.spawn(move || {
            // Where the two threads wait on each other (RUST_LOG=debug):
            // the one that waits less sets the pace.
            let started = Instant::now();
            let mut blocked = Duration::ZERO;
            let mut send = |full| {
                let at = Instant::now();
                queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let sent = batches.send(full).is_ok();
                blocked += at.elapsed();
                sent
            };
            let mut batch = Vec::with_capacity(READ_BATCH);
            let mut hash_here = true;
            for item in engine.entries() {
                // Entry hashes computed here (see `queued`) run on this
                // core; the rest are computed there.
                let item = item.map(|(seq, entry)| {
                    let leaf = entry
                        .as_ref()
                        .filter(|_| hash_here)
                        .map(|e| hash::entry_hash(seq, e.recorded_at_ns, &e.payload));
                    (seq, entry, leaf)
                });
                batch.push(item);
                if batch.len() == READ_BATCH {
                    hash_here = queued.load(std::sync::atomic::Ordering::Relaxed) >= 2;
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH));
                    if !send(full) {
                        return (started.elapsed(), blocked);
                    }
                }
            }
            send(batch);
            (started.elapsed(), blocked)
        });
        let mut waited = Duration::ZERO;
        let received = std::iter::from_fn(|| {
            let at = Instant::now();
            let next = received.recv().ok();
            waited += at.elapsed();
            if next.is_some() {
                queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            next
        });
        let started = Instant::now();
        let key = (!derived).then_some(&key);
        let walked = walk(engine, received.flatten(), anchor, key, progress, visit);
        let walking = started.elapsed();
        if let Ok((reading, blocked)) = reader.join() {
            tracing::debug!(
                reader_ms = reading.as_millis() as u64,
                reader_waiting_ms = blocked.as_millis() as u64,
                walker_ms = walking.as_millis() as u64,
                walker_waiting_ms = waited.as_millis() as u64,
                "verification threads: reading and hashing entries, then chain, tree and index"
            );
        }
        let stored =
            stored.join().unwrap_or_else(|_| Err(Error::Storage("index verification thread failed".into())));
        (walked, stored)
    });
    let (verified, implied) = walked?;
    if let Some(stored) = stored?
        && implied != stored
    {
        name_index_damage(engine, verified.frontier.size())?;
        return Err(Error::tampered(
            None,
            format!(
                "an index differs from the entries (subject index {} keys for {} indexed entries, idempotency index {} keys for {} keyed entries)",
                stored.subject.count,
                implied.subject.count,
                stored.idempotency.count,
                implied.idempotency.count
            ),
        ));
    }
    Ok(verified)
}

fn stored_index_digests(engine: &dyn Engine, key: &DigestKey) -> Result<IndexDigests> {
    let mut digests = IndexDigests::default();
    for item in engine.subject_index() {
        let (subject, seq) = item?;
        digests.subject.add(key, &[&subject, &seq.to_be_bytes()]);
    }
    for item in engine.idempotency_index() {
        let (idempotency_key, record) = item?;
        let Some((seq, fingerprint)) = record else {
            return Err(Error::tampered(None, "malformed idempotency index record"));
        };
        digests.idempotency.add(key, &[&idempotency_key, &seq.to_be_bytes(), &fingerprint]);
    }
    Ok(digests)
}

/// The stored nodes of one level, read in order as the frontier asks.
struct Level<'a> {
    nodes: std::iter::Peekable<NodeIter<'a>>,
}

fn walk(
    engine: &dyn Engine,
    entries: impl Iterator<Item = Result<(u64, Option<StoredEntry>, Option<Hash>)>>,
    anchor: Option<Anchor>,
    key: Option<&DigestKey>,
    progress: &mut dyn FnMut(u64, u64),
    visit: &mut dyn FnMut(&Visited<'_>),
) -> Result<(Verified, IndexDigests)> {
    let head = engine.head()?;
    let total = head.map_or(0, |h| h.size);
    progress(0, total);

    let mut frontier = Frontier::default();
    let mut chain = hash::ZERO;
    let mut last_recorded_at_ns = i64::MIN;
    let mut implied = IndexDigests::default();
    let mut anchor_checked = false;
    let mut levels: Vec<Level<'_>> = Vec::new();
    let mut index = tlog::index::Builder::default();
    let mut last_is_index = false;
    let mut last_index = None;
    let mut index_entries = 0;

    for item in entries {
        let (seq, entry, leaf) = item?;
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
        let leaf = leaf.unwrap_or_else(|| hash::entry_hash(seq, entry.recorded_at_ns, &entry.payload));
        chain = hash::chain_hash(&chain, &leaf);
        if entry.chain_hash != chain {
            // The leaf check below names a changed payload more precisely.
            match next_node(engine, &mut levels, 0, seq)? {
                Some(stored) if stored != leaf => return Err(leaf_mismatch(seq, &leaf, &stored)),
                _ => return Err(Error::tampered(seq, "chain hash does not match the recomputed chain")),
            }
        }
        let mut bad_node = None;
        frontier.push(leaf, |level, index, computed| {
            if bad_node.is_some() || !engine.stores_level(level) {
                return;
            }
            bad_node = match next_node(engine, &mut levels, level, index) {
                Ok(Some(stored)) if stored == computed => None,
                // Derived tiles above the last checkpoint: a crash may
                // have lost or torn them, and they are rebuilt here.
                Ok(_) if engine.rebuilds_node(level, index) => {
                    engine.rebuild_node(level, index, computed).err()
                }
                Ok(Some(stored)) if level == 0 => Some(leaf_mismatch(seq, &computed, &stored)),
                Ok(Some(_)) => Some(Error::tampered(
                    seq,
                    format!("merkle node (level {level}, index {index}) differs from the recomputed one"),
                )),
                Ok(None) if level == 0 => Some(Error::tampered(seq, "stored leaf is missing")),
                Ok(None) => Some(Error::tampered(
                    seq,
                    format!("merkle node (level {level}, index {index}) is missing"),
                )),
                Err(e) => Some(e),
            };
        });
        if let Some(e) = bad_node {
            return Err(e);
        }
        if let Some(key) = key
            && !entry.subject.is_empty()
        {
            implied.subject.add(key, &[&entry.subject, &seq.to_be_bytes()]);
        }
        // Every index entry must commit to the index of the entries below
        // it, rebuilt here; a changed entry or subject is named at the next
        // index entry.
        last_is_index = tlog::index::is_index_payload(&entry.payload);
        if last_is_index {
            if !entry.subject.is_empty() {
                return Err(Error::tampered(seq, "index entry has a subject"));
            }
            let commitment = tlog::index::Commitment::parse(&entry.payload)
                .map_err(|e| Error::tampered(seq, e.to_string()))?;
            // The last snapshot goes first, so the commit updates the
            // index in place instead of copying what it touches.
            drop(last_index.take());
            let tree = index.commit().clone();
            check_index_entry(seq, &commitment, &tree)?;
            last_index = Some((seq, tree));
            index_entries += 1;
        }
        index.push(seq, &entry.subject, &leaf).map_err(|e| Error::tampered(seq, e.to_string()))?;
        if let Some(key) = key
            && let Some((idempotency_key, fingerprint)) = &entry.idempotency
        {
            implied.idempotency.add(key, &[idempotency_key, &seq.to_be_bytes(), fingerprint]);
        }
        last_recorded_at_ns = entry.recorded_at_ns;
        if let Some(anchor) = anchor.filter(|a| a.size == frontier.size()) {
            check_anchor(&anchor, &frontier.root(), &chain)?;
            anchor_checked = true;
        }
        visit(&Visited {
            seq,
            recorded_at_ns: entry.recorded_at_ns,
            subject: &entry.subject,
            payload: &entry.payload,
            details: &entry.details,
            entry_hash: leaf,
            chain_hash: chain,
        });
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
    // Nodes the frontier never asked for: none may be stored.
    for level in 0..64u8 {
        let extra = match levels.get_mut(usize::from(level)) {
            Some(stored) => stored.nodes.next().transpose()?,
            None => engine.nodes(level).next().transpose()?,
        };
        if let Some((index, _)) = extra {
            return Err(Error::tampered(
                None,
                format!("merkle node (level {level}, index {index}) is stored but no entry makes it"),
            ));
        }
    }
    progress(size, size);
    let verified = Verified {
        frontier,
        chain,
        last_recorded_at_ns: if size == 0 { i64::MIN } else { last_recorded_at_ns },
        index,
        last_is_index,
        last_index,
        index_entries,
    };
    Ok((verified, implied))
}

/// The stored node `(level, index)` if the next one stored at `level` is
/// it; `None` if it is missing (the next stored one is further on).
fn next_node<'a>(
    engine: &'a dyn Engine,
    levels: &mut Vec<Level<'a>>,
    level: u8,
    index: u64,
) -> Result<Option<Hash>> {
    while levels.len() <= usize::from(level) {
        let next = levels.len() as u8;
        levels.push(Level { nodes: engine.nodes(next).peekable() });
    }
    let nodes = &mut levels[usize::from(level)].nodes;
    match nodes.peek() {
        Some(Ok((stored, _))) if *stored < index => {
            return Err(Error::tampered(
                index << level,
                format!("merkle node (level {level}, index {stored}) is stored twice or out of place"),
            ));
        }
        Some(Ok((stored, _))) if *stored > index => return Ok(None),
        None => return Ok(None),
        _ => {}
    }
    match nodes.next() {
        Some(Ok((_, Some(hash)))) => Ok(Some(hash)),
        Some(Ok((_, None))) => Err(Error::tampered(
            index << level,
            format!("merkle node (level {level}, index {index}) is malformed"),
        )),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    }
}

fn leaf_mismatch(seq: u64, leaf: &Hash, stored: &Hash) -> Error {
    Error::tampered(
        seq,
        format!("entry hash {} does not match the stored leaf {}", hash::to_hex(leaf), hash::to_hex(stored)),
    )
}

/// The digests of the indexes differ from the entries': look each entry's
/// keys up to name the first one whose index record is wrong.
fn name_index_damage(engine: &dyn Engine, size: u64) -> Result<()> {
    for seq in 0..size {
        let Some(entry) = engine.entry(seq)? else { continue };
        if !entry.subject.is_empty() && !engine.has_subject(&entry.subject, seq)? {
            return Err(Error::tampered(seq, "subject index lacks this entry"));
        }
        if let Some((key, fingerprint)) = &entry.idempotency
            && engine.idempotency(key)? != Some((seq, *fingerprint))
        {
            return Err(Error::tampered(seq, "idempotency index does not point at this entry"));
        }
    }
    Ok(())
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
    parse_anchor(files::read_checkpoint(dir)?, key)
}

/// The last signed checkpoint (`text`, when it was written) as an anchor,
/// its signature checked when `key` is given; also its origin and note.
pub(crate) fn parse_anchor(
    checkpoint: Option<(String, i64)>,
    key: Option<(&str, &[u8; 32])>,
) -> Result<Option<(Anchor, String, String, i64)>> {
    let Some((text, written_ns)) = checkpoint else {
        return Ok(None);
    };
    let body = match key {
        Some((name, public)) => note::verify(&text, name, public).map_err(|e| {
            Error::tampered(None, format!("the last checkpoint does not verify with the service key: {e}"))
        })?,
        None => files::unsigned_body(&text)?.to_string(),
    };
    let (origin, size, root, chain) = note::parse_checkpoint(&body)
        .map_err(|e| Error::tampered(None, format!("the last checkpoint is malformed: {e}")))?;
    Ok(Some((Anchor { size, root, chain }, origin, text, written_ns)))
}

/// Verifies the ledger in `dir` offline and never writes to `dir`. The
/// file engine is read in place, as of the moment it is opened (a server
/// may keep appending meanwhile); an older release's sled store is read
/// from a private copy, because opening sled in place may rewrite its
/// files, and its server must be stopped.
pub fn verify(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<VerifyReport> {
    let key_path = dir.join(files::KEY_FILE);
    let key = key_of(Some(&key_path).filter(|p| p.exists()).map(|p| p.as_path()))?;
    let anchor = read_anchor(dir, key.as_ref().map(|(n, p)| (n.as_str(), p)))?;
    if !crate::holds_ledger(dir) && anchor.is_none() {
        return Err(Error::InvalidArgument(format!("no ledger in {}", dir.display())));
    }
    let (engine, _copy) = open_offline(dir)?;
    let verified = verify_store(&*engine, anchor.as_ref().map(|a| a.0), progress, &mut |_| {})?;
    Ok(VerifyReport::of(&verified, anchor.map(|a| a.0), key.is_some()))
}

/// The embedded store of the ledger in `dir` for reading only: the file
/// engine in place, or (a release before it) a private copy of the sled
/// store, because opening sled in place may rewrite its files; keep the
/// returned directory until done with the engine.
pub(crate) fn open_offline(dir: &Path) -> Result<(Box<dyn Engine>, Option<tempfile::TempDir>)> {
    if LogStore::exists(dir) {
        return Ok((Box::new(LogStore::open(dir, false)?), None));
    }
    let store_dir = dir.join(files::STORE_DIR);
    let copy = tempfile::tempdir()?;
    if store_dir.is_dir() {
        copy_dir(&store_dir, copy.path())?;
    }
    Ok((Box::new(SledStore::open(copy.path(), crate::DEFAULT_CACHE_BYTES)?), Some(copy)))
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
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

/// The signer key's name and public key in `key_file`, if given.
fn key_of(key_file: Option<&Path>) -> Result<Option<(String, [u8; 32])>> {
    let Some(path) = key_file else { return Ok(None) };
    let public = files::read_public_key(path)?;
    let text = std::fs::read_to_string(path)?;
    let (name, _) = note::decode_signer_key(&text)?;
    Ok(Some((name, public)))
}

/// Verifies the ledger in the PostgreSQL database at `url` (entries,
/// chain, tree, indexes, head and the last signed checkpoint; its
/// signature too when the signer `key_file` is given). Reads only: nodes
/// may keep appending meanwhile, and what they append after the head read
/// at the start is not part of this check.
pub fn verify_postgres(
    url: &str,
    key_file: Option<&Path>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let key = key_of(key_file)?;
    let engine = crate::pg::PgStore::open(url, false)?;
    let anchor = parse_anchor(engine.read_checkpoint()?, key.as_ref().map(|(n, p)| (n.as_str(), p)))?;
    let verified = verify_store(&engine, anchor.as_ref().map(|a| a.0), progress, &mut |_| {})?;
    Ok(VerifyReport::of(&verified, anchor.map(|a| a.0), key.is_some()))
}

/// Whether the index entry at `seq` commits to `tree`, the index of the
/// entries below it.
pub(crate) fn check_index_entry(
    seq: u64,
    commitment: &tlog::index::Commitment,
    tree: &tlog::index::Tree,
) -> Result<()> {
    if commitment.size != seq {
        return Err(Error::tampered(seq, format!("index entry says size {} at seq {seq}", commitment.size)));
    }
    if *commitment != tlog::index::Commitment::of(seq, tree) {
        return Err(Error::tampered(
            seq,
            "index entry differs from the index rebuilt from the entries below it (an entry or its subject was changed)",
        ));
    }
    Ok(())
}
