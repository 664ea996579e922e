//! The sled engine: the ledger's embedded default, an [`Engine`] over one
//! local sled database, with the signed checkpoint in a file beside it.
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

use std::path::{Path, PathBuf};

use super::engine::{Commit, Committed, Engine, NodeIter, StoredEntry, StoredHead};
use super::error::{Error, Result};
use super::hash::Hash;
use super::tree::NodeSource;

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
    /// The data directory the store lies in (`DATA/ledger`): the signed
    /// checkpoint is the file `DATA/checkpoint` beside it.
    data_dir: PathBuf,
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
        let data_dir = path.parent().unwrap_or(path).to_path_buf();
        Ok(SledStore { tree, _db: db, data_dir })
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

    fn read_checkpoint(&self) -> Result<Option<(String, i64)>> {
        crate::files::read_checkpoint(&self.data_dir)
    }

    fn write_checkpoint(&self, _tree_size: u64, note: &str, _signed_at_ns: i64) -> Result<()> {
        crate::files::write_checkpoint(&self.data_dir, note)
    }

    #[cfg(test)]
    fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(key, value).map_err(storage)?;
        Ok(())
    }
}
