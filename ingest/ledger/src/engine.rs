//! The storage engine boundary: the [`Engine`] trait the ledger talks to
//! and the values that cross it. The engines implement it (`store.rs`:
//! files in a local directory (`log_store.rs`; `store.rs` reads an older
//! release's sled store), `pg.rs`: PostgreSQL shared by several
//! nodes) and know nothing of each other; the rest of the crate knows
//! only this trait, never which engine is behind it (as TiKV's
//! `engine_traits` knows nothing of RocksDB).

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
    /// Whether nodes of binary `level` are stored (else [`Engine::nodes`]
    /// yields none and [`Engine::node_opt`] hashes them up from a stored
    /// level below).
    fn stores_level(&self, level: u8) -> bool {
        let _ = level;
        true
    }
    /// Whether node `(level, index)` is a cache this engine rebuilds when
    /// it is not stored (derived tiles above the last signed checkpoint)
    /// rather than a node that must be there.
    fn rebuilds_node(&self, level: u8, index: u64) -> bool {
        let _ = (level, index);
        false
    }
    /// Stores the node verification recomputed in place of a missing one
    /// [`Engine::rebuilds_node`] allows.
    fn rebuild_node(&self, level: u8, index: u64, hash: Hash) -> Result<()> {
        let _ = hash;
        Err(Error::tampered(index << level, format!("merkle node (level {level}, index {index}) is missing")))
    }
    /// Whether the indexes are rebuilt from the entries whenever the store
    /// opens (so nothing stored can disagree with them, and verification
    /// need not compare them).
    fn indexes_are_derived(&self) -> bool {
        false
    }
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
    /// The ledger closed: no more commits or checkpoints come, so an
    /// engine holding a lock against other writers releases it, and the
    /// data directory can be opened again while handles that only read
    /// this one are still alive.
    fn release_writer(&self) {}
    /// Until [`Engine::unpin`], answers `head` and the whole-store
    /// iterators as of the head now, ignoring what is committed meanwhile
    /// (verification of a store other nodes keep appending to).
    fn pin(&self) -> Result<()> {
        Ok(())
    }
    fn unpin(&self) {}

    // Checkpoints: kept outside the entries, since a damaged or rolled-back
    // store can come up shorter but self-consistent (the embedded engine
    // keeps the note in a file beside it).

    /// The latest signed checkpoint note and when it was signed.
    fn read_checkpoint(&self) -> Result<Option<(String, i64)>>;
    /// Stores a signed checkpoint note of `tree_size`; a second note for
    /// the same size (another node signed the same head) keeps the first.
    fn write_checkpoint(&self, tree_size: u64, note: &str, signed_at_ns: i64) -> Result<()>;

    // Other nodes: a shared engine is written by several processes.

    /// Whether other processes append to this store.
    fn is_shared(&self) -> bool {
        false
    }
    /// Calls `poke` whenever another node may have moved the head, until
    /// the engine is dropped. An engine only this process writes never does.
    fn follow(&self, poke: Box<dyn Fn() + Send + Sync>) {
        drop(poke);
    }
    /// Entries `[from, to)` in seq order, each present and well-formed
    /// (else [`Error::Tampered`] naming the seq): what another node appended.
    fn entries_between(&self, from: u64, to: u64) -> Result<Vec<StoredEntry>> {
        (from..to)
            .map(|seq| {
                self.entry(seq)
                    .map_err(|e| Error::tampered(seq, format!("entry record is malformed: {e}")))?
                    .ok_or_else(|| Error::tampered(seq, "entry is missing from the store"))
            })
            .collect()
    }

    // The commit strategy.

    /// A shared engine sequences group commits: it locks the stored head
    /// and answers the lock, the stored head and, read in the same round
    /// trip, the first entries other nodes appended beyond `held` (this
    /// node's size), so the writer takes them in and stages its group on
    /// top before [`Engine::commit_locked`]. `None`: this process is the
    /// only writer, and stages on its own head and calls [`Engine::commit`].
    fn lock_head(&self, held: u64) -> Result<Option<LockedHead>> {
        let _ = held;
        Ok(None)
    }
    /// Writes `commit` under `lock` (from [`Engine::lock_head`]) and
    /// makes it durable; dropping the lock instead writes nothing.
    fn commit_locked(&self, lock: HeadLock, commit: &Commit) -> Result<()> {
        drop((lock, commit));
        Err(Error::Storage("this engine has no head lock: it is the only writer".into()))
    }
    /// Overwrites the raw record under `key`, so tests can damage a live store.
    #[cfg(test)]
    fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<()>;
}

/// What [`Engine::lock_head`] answers.
pub(crate) struct LockedHead {
    pub lock: HeadLock,
    /// The stored head under the lock (`None`: empty).
    pub head: Option<StoredHead>,
    /// Entries from `held` on, at most [`CATCH_UP_BATCH`], present and
    /// well-formed as [`Engine::entries_between`] promises; the writer
    /// reads any further ones itself.
    pub appended: Vec<StoredEntry>,
}

/// Entries read per round trip when catching up with other nodes.
pub(crate) const CATCH_UP_BATCH: u64 = 4096;

/// A shared engine's lock on the stored head, held from before a group is
/// staged until [`Engine::commit_locked`]; dropped unused, nothing is
/// written. Opaque here: each engine puts its own transaction inside.
pub(crate) struct HeadLock(Box<dyn std::any::Any + Send>);

impl HeadLock {
    pub(crate) fn new(inner: impl std::any::Any + Send) -> HeadLock {
        HeadLock(Box::new(inner))
    }

    /// The engine's own lock, or `None` if another engine made it.
    pub(crate) fn into_inner<T: std::any::Any>(self) -> Option<T> {
        self.0.downcast().ok().map(|b| *b)
    }
}
