//! The storage engine behind the ledger: the [`Engine`] trait the rest of
//! the module talks to, the record encodings, and its sled implementation.
//!
//! Everything sled-specific lives in this file. Layout, all in one sled
//! tree `ledger.v1` so that one `apply_batch` covers a whole group commit:
//!
//! | key                                          | value |
//! |----------------------------------------------|-------|
//! | `e` u64_be(seq)                              | entry record (see [`StoredEntry::encode`]) |
//! | `s` u32_be(len) subject u64_be(seq)          | empty: subject index |
//! | `i` idempotency key                          | u64_be(seq) fingerprint[32] |
//! | `n` u8(level) u64_be(index)                  | hash of the complete subtree (level 0 = entry hash) |
//! | `h`                                          | head record (see [`StoredHead::encode`]) |
//!
//! The subject length prefix keeps subject `AB` from matching `ABC` in a
//! prefix scan.

use std::path::Path;

use super::error::{Error, Result};
use super::hash::Hash;
use super::tree::NodeSource;

/// One ledger entry as stored. The leaf (entry hash) is not in here: it is
/// node `(0, seq)`, so a read can check the payload against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredEntry {
    pub seq: u64,
    pub recorded_at_ns: i64,
    pub chain_hash: Hash,
    pub subject: Vec<u8>,
    pub idempotency: Option<(Vec<u8>, Hash)>,
    pub payload: Vec<u8>,
    /// A committed record's details: stored beside the entry, not hashed
    /// (`docs/ledger.md`, "Committed records"); empty for other entries.
    pub details: Vec<u8>,
}

/// The tree head as of the last commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoredHead {
    pub size: u64,
    pub root: Hash,
    pub chain: Hash,
    pub last_recorded_at_ns: i64,
}

/// Everything one group commit writes, applied atomically.
#[derive(Debug, Default)]
pub(crate) struct Commit {
    /// The ledger size the entries were staged on: their first seq.
    pub base: u64,
    pub entries: Vec<StoredEntry>,
    /// `(level, index, hash)` of every subtree completed by these entries,
    /// leaves included.
    pub nodes: Vec<(u8, u64, Hash)>,
    pub head: Option<StoredHead>,
}

/// What [`Engine::commit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Committed {
    Done,
    /// Nothing was written: another node extended the ledger to this size
    /// since the commit was staged (only a shared engine says this).
    HeadMoved(u64),
}

const RECORD_VERSION: u8 = 1;
/// An entry record with details: version 1's layout with the details
/// (length-prefixed) before the payload. Entries without details keep
/// version 1, byte for byte.
const RECORD_WITH_DETAILS: u8 = 2;

impl StoredEntry {
    /// `version u8 | recorded_at i64_be | chain[32] | u32_be subject_len | subject
    ///  | u8 has_idempotency [| u32_be key_len | key | fingerprint[32]]
    ///  [| u32_be details_len | details] | payload`, the details (version 2)
    /// only when there are any.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(86 + self.subject.len() + self.details.len() + self.payload.len());
        out.push(if self.details.is_empty() { RECORD_VERSION } else { RECORD_WITH_DETAILS });
        out.extend_from_slice(&self.recorded_at_ns.to_be_bytes());
        out.extend_from_slice(&self.chain_hash);
        out.extend_from_slice(&(self.subject.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.subject);
        match &self.idempotency {
            None => out.push(0),
            Some((key, fingerprint)) => {
                out.push(1);
                out.extend_from_slice(&(key.len() as u32).to_be_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(fingerprint);
            }
        }
        if !self.details.is_empty() {
            out.extend_from_slice(&(self.details.len() as u32).to_be_bytes());
            out.extend_from_slice(&self.details);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// `None` when the bytes are not an entry record.
    pub fn decode(seq: u64, bytes: &[u8]) -> Option<StoredEntry> {
        let mut r = Reader(bytes);
        let with_details = match r.take(1)? {
            [RECORD_VERSION] => false,
            [RECORD_WITH_DETAILS] => true,
            _ => return None,
        };
        let recorded_at_ns = i64::from_be_bytes(r.array()?);
        let chain_hash = r.array()?;
        let subject_len = u32::from_be_bytes(r.array()?) as usize;
        let subject = r.take(subject_len)?.to_vec();
        let idempotency = match r.take(1)? {
            [0] => None,
            [1] => {
                let key_len = u32::from_be_bytes(r.array()?) as usize;
                let key = r.take(key_len)?.to_vec();
                Some((key, r.array()?))
            }
            _ => return None,
        };
        let details = match with_details {
            false => Vec::new(),
            true => {
                let len = u32::from_be_bytes(r.array()?) as usize;
                r.take(len)?.to_vec()
            }
        };
        Some(StoredEntry {
            seq,
            recorded_at_ns,
            chain_hash,
            subject,
            idempotency,
            payload: r.0.to_vec(),
            details,
        })
    }
}

impl StoredHead {
    /// `version u8 | size u64_be | root[32] | chain[32] | last_recorded_at i64_be`
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(81);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.chain);
        out.extend_from_slice(&self.last_recorded_at_ns.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<StoredHead> {
        let mut r = Reader(bytes);
        if r.take(1)? != [RECORD_VERSION] {
            return None;
        }
        let head = StoredHead {
            size: u64::from_be_bytes(r.array()?),
            root: r.array()?,
            chain: r.array()?,
            last_recorded_at_ns: i64::from_be_bytes(r.array()?),
        };
        r.0.is_empty().then_some(head)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Stored Merkle nodes of one level in index order, `None` if malformed.
pub(crate) type NodeIter<'a> = Box<dyn Iterator<Item = Result<(u64, Option<Hash>)>> + 'a>;

/// What the ledger needs from a storage engine. Implementations must make
/// [`Engine::commit`] atomic and durable before it returns.
pub(crate) trait Engine: NodeSource + Send + Sync {
    /// Entry `seq`; `Err(Corruption)` if it is there but undecodable.
    fn entry(&self, seq: u64) -> Result<Option<StoredEntry>>;
    /// Every stored entry in seq order; an undecodable record is reported
    /// as `Ok((seq, None))` so verification can name it.
    fn entries(&self) -> Box<dyn Iterator<Item = Result<(u64, Option<StoredEntry>)>> + '_>;
    fn node_opt(&self, level: u8, index: u64) -> Result<Option<Hash>>;
    /// Every stored node of `level` in index order; a malformed one is
    /// `Ok((index, None))`.
    fn nodes(&self, level: u8) -> NodeIter<'_>;
    /// Every `(subject, seq)` of the subject index, in key order.
    fn subject_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, u64)>> + '_>;
    /// Every `(key, seq, fingerprint)` of the idempotency index, in key
    /// order; a malformed value is `Ok((key, None))`.
    #[allow(clippy::type_complexity)]
    fn idempotency_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, Option<(u64, Hash)>)>> + '_>;
    /// `Ok(None)` for a fresh store; `Err(Tampered)` if undecodable.
    fn head(&self) -> Result<Option<StoredHead>>;
    /// Seqs indexed under `subject`, ascending.
    fn subject_seqs(&self, subject: &[u8]) -> Result<Vec<u64>>;
    fn has_subject(&self, subject: &[u8], seq: u64) -> Result<bool>;
    /// The entries indexed under `subject` below seq `below`, ascending,
    /// each with its stored leaf (the caller checks them).
    #[allow(clippy::type_complexity)]
    fn subject_entries(
        &self,
        subject: &[u8],
        below: u64,
    ) -> Result<Vec<(u64, Option<StoredEntry>, Option<Hash>)>> {
        let mut out = Vec::new();
        for seq in self.subject_seqs(subject)? {
            if seq >= below {
                break;
            }
            out.push((seq, self.entry(seq)?, self.node_opt(0, seq)?));
        }
        Ok(out)
    }
    /// `(seq, fingerprint)` stored under an idempotency key.
    fn idempotency(&self, key: &[u8]) -> Result<Option<(u64, Hash)>>;
    /// Applies `commit` atomically and makes it durable, if the stored
    /// size is still `commit.base`.
    fn commit(&self, commit: &Commit) -> Result<Committed>;
    /// Until [`Engine::unpin`], answers `head` and the whole-store
    /// iterators as of the head now, ignoring what is committed meanwhile
    /// (verification of a store other nodes keep appending to).
    fn pin(&self) -> Result<()> {
        Ok(())
    }
    fn unpin(&self) {}
    /// The PostgreSQL engine, for what only it has (checkpoint rows,
    /// catching up, following other nodes).
    fn as_postgres(&self) -> Option<&crate::pg::PgStore> {
        None
    }
    /// Overwrites the raw record under `key`, so tests can damage a live store.
    #[cfg(test)]
    fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<()>;
}

pub(crate) mod keys {
    //! Key encodings of the sled layout (also used by tamper tests).

    pub const ENTRY: u8 = b'e';
    pub const SUBJECT: u8 = b's';
    pub const IDEMPOTENCY: u8 = b'i';
    pub const NODE: u8 = b'n';
    pub const HEAD: &[u8] = b"h";
    pub const TREE: &str = "ledger.v1";

    pub fn entry(seq: u64) -> [u8; 9] {
        let mut key = [ENTRY; 9];
        key[1..].copy_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn subject_prefix(subject: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(13 + subject.len());
        key.push(SUBJECT);
        key.extend_from_slice(&(subject.len() as u32).to_be_bytes());
        key.extend_from_slice(subject);
        key
    }

    pub fn subject(subject: &[u8], seq: u64) -> Vec<u8> {
        let mut key = subject_prefix(subject);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn idempotency(idempotency_key: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(1 + idempotency_key.len());
        key.push(IDEMPOTENCY);
        key.extend_from_slice(idempotency_key);
        key
    }

    pub fn node(level: u8, index: u64) -> [u8; 10] {
        let mut key = [NODE; 10];
        key[1] = level;
        key[2..].copy_from_slice(&index.to_be_bytes());
        key
    }
}

/// The sled 0.34 engine.
pub(crate) struct SledStore {
    // Fields drop in order: the tree first, so that dropping the database
    // afterwards releases its file lock before the store's drop returns.
    tree: sled::Tree,
    _db: kv::Db,
}

fn storage(e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::Io(io),
        other => Error::Storage(other.to_string()),
    }
}

impl SledStore {
    /// Opens (or creates) the sled database in `path`. sled refusing to
    /// recover its log is reported as tampering: the ledger cannot vouch
    /// for any of it.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        let db = kv::open(sled::Config::new().cache_capacity(cache_bytes), path).map_err(|e| match e {
            sled::Error::Corruption { .. } => {
                Error::tampered(None, format!("the storage engine refuses to open: {e}"))
            }
            other => storage(other),
        })?;
        let tree = db.open_tree(keys::TREE).map_err(storage)?;
        Ok(SledStore { tree, _db: db })
    }
}

impl NodeSource for SledStore {
    fn node(&self, level: u8, index: u64) -> Result<Hash> {
        self.node_opt(level, index)?.ok_or_else(|| {
            Error::corruption(
                index << level,
                format!("merkle node (level {level}, index {index}) is missing"),
            )
        })
    }
}

impl Engine for SledStore {
    fn entry(&self, seq: u64) -> Result<Option<StoredEntry>> {
        match self.tree.get(keys::entry(seq)).map_err(storage)? {
            None => Ok(None),
            Some(bytes) => StoredEntry::decode(seq, &bytes)
                .map(Some)
                .ok_or_else(|| Error::corruption(seq, "entry record is malformed")),
        }
    }

    fn entries(&self) -> Box<dyn Iterator<Item = Result<(u64, Option<StoredEntry>)>> + '_> {
        Box::new(self.tree.scan_prefix([keys::ENTRY]).map(|item| {
            let (key, value) = item.map_err(storage)?;
            let seq: [u8; 8] = key[1..]
                .try_into()
                .map_err(|_| Error::tampered(None, format!("entry key of {} bytes", key.len())))?;
            let seq = u64::from_be_bytes(seq);
            Ok((seq, StoredEntry::decode(seq, &value)))
        }))
    }

    fn node_opt(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        match self.tree.get(keys::node(level, index)).map_err(storage)? {
            None => Ok(None),
            Some(bytes) => <Hash>::try_from(&bytes[..]).map(Some).map_err(|_| {
                Error::corruption(
                    index << level,
                    format!("merkle node (level {level}, index {index}) is malformed"),
                )
            }),
        }
    }

    fn nodes(&self, level: u8) -> NodeIter<'_> {
        Box::new(self.tree.scan_prefix([keys::NODE, level]).map(|item| {
            let (key, value) = item.map_err(storage)?;
            let index: [u8; 8] = key[2..]
                .try_into()
                .map_err(|_| Error::tampered(None, format!("merkle node key of {} bytes", key.len())))?;
            Ok((u64::from_be_bytes(index), <Hash>::try_from(&value[..]).ok()))
        }))
    }

    fn subject_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, u64)>> + '_> {
        Box::new(self.tree.scan_prefix([keys::SUBJECT]).keys().map(|key| {
            let key = key.map_err(storage)?;
            let malformed = || Error::tampered(None, "malformed subject index key");
            let len: [u8; 4] = key.get(1..5).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?;
            let len = u32::from_be_bytes(len) as usize;
            let subject = key.get(5..5 + len).ok_or_else(malformed)?.to_vec();
            let seq: [u8; 8] = key.get(5 + len..).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?;
            Ok((subject, u64::from_be_bytes(seq)))
        }))
    }

    fn idempotency_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, Option<(u64, Hash)>)>> + '_> {
        Box::new(self.tree.scan_prefix([keys::IDEMPOTENCY]).map(|item| {
            let (key, value) = item.map_err(storage)?;
            let record = (value.len() == 40).then(|| {
                let mut seq = [0u8; 8];
                seq.copy_from_slice(&value[..8]);
                let mut fingerprint = [0u8; 32];
                fingerprint.copy_from_slice(&value[8..]);
                (u64::from_be_bytes(seq), fingerprint)
            });
            Ok((key[1..].to_vec(), record))
        }))
    }

    fn head(&self) -> Result<Option<StoredHead>> {
        match self.tree.get(keys::HEAD).map_err(storage)? {
            None => Ok(None),
            Some(bytes) => StoredHead::decode(&bytes)
                .map(Some)
                .ok_or_else(|| Error::tampered(None, "stored head record is malformed")),
        }
    }

    fn subject_seqs(&self, subject: &[u8]) -> Result<Vec<u64>> {
        let prefix = keys::subject_prefix(subject);
        let mut seqs = Vec::new();
        for key in self.tree.scan_prefix(&prefix).keys() {
            let key = key.map_err(storage)?;
            let seq: [u8; 8] = key[prefix.len()..]
                .try_into()
                .map_err(|_| Error::Storage("malformed subject index key".into()))?;
            seqs.push(u64::from_be_bytes(seq));
        }
        Ok(seqs)
    }

    fn has_subject(&self, subject: &[u8], seq: u64) -> Result<bool> {
        self.tree.contains_key(keys::subject(subject, seq)).map_err(storage)
    }

    fn idempotency(&self, key: &[u8]) -> Result<Option<(u64, Hash)>> {
        match self.tree.get(keys::idempotency(key)).map_err(storage)? {
            None => Ok(None),
            Some(bytes) if bytes.len() == 40 => {
                let seq = u64::from_be_bytes(bytes[..8].try_into().expect("length checked"));
                Ok(Some((seq, bytes[8..].try_into().expect("length checked"))))
            }
            Some(_) => Err(Error::Storage("malformed idempotency index record".into())),
        }
    }

    fn commit(&self, commit: &Commit) -> Result<Committed> {
        let mut batch = sled::Batch::default();
        for entry in &commit.entries {
            batch.insert(&keys::entry(entry.seq), entry.encode());
            if !entry.subject.is_empty() {
                batch.insert(keys::subject(&entry.subject, entry.seq), &[][..]);
            }
            if let Some((key, fingerprint)) = &entry.idempotency {
                let mut value = Vec::with_capacity(40);
                value.extend_from_slice(&entry.seq.to_be_bytes());
                value.extend_from_slice(fingerprint);
                batch.insert(keys::idempotency(key), value);
            }
        }
        for (level, index, hash) in &commit.nodes {
            batch.insert(&keys::node(*level, *index), &hash[..]);
        }
        if let Some(head) = &commit.head {
            batch.insert(keys::HEAD, head.encode());
        }
        self.tree.apply_batch(batch).map_err(storage)?;
        // Durable before anyone is answered: sled's own periodic flush is
        // not a receipt-grade guarantee.
        self.tree.flush().map_err(storage)?;
        Ok(Committed::Done)
    }

    #[cfg(test)]
    fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(key, value).map_err(storage)?;
        Ok(())
    }
}
