//! The append-only, hash-chained, verifiable ledger.
//!
//! Every fact the service knows is one [`Entry`]: a dense `seq`, a server
//! timestamp and the payload bytes, stored verbatim. Entries are chained
//! (`chain_hash`) and are the leaves of an RFC 9162 Merkle tree (BLAKE3), so
//! inclusion and consistency proofs let a bank or a court check what they
//! were shown against a signed [`Checkpoint`]. See `docs/ledger.md`.
//!
//! Data directory:
//! * `log/`: the embedded engine's files (layout in `log_store.rs`): group
//!   frames of entries, each written once with one `fdatasync`, and the
//!   Merkle tree as tlog-tiles level files; never exposed.
//! * `ledger/`: the sled database of releases before the file engine
//!   (layout in `store.rs`), migrated into `log/` on first open and then
//!   kept as `ledger.before-log/` for the operator to remove.
//! * `checkpoint`: the last signed checkpoint note, replaced atomically; the
//!   store being shorter than it, or disagreeing with it, is tampering.
//! * `ledger.key`: the Ed25519 signer key (mode 0600) in the Go
//!   `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>` form (see
//!   [`note`]); created on first open unless [`LedgerConfig::key_file`] is set.
//!
//! Module map: the pure formats ([`hash`], [`proof`], [`note`]) come from the
//! `tlog` crate and are re-exported here; `tree` answers roots and proofs
//! from stored subtree hashes; `log_store` is the embedded engine (files),
//! `pg` the shared one (PostgreSQL) and `store` reads an older release's
//! sled store for `migrate`, the only code that knows sled;
//! `writer` is the group-commit thread; `verify` recomputes a whole store.

#![forbid(unsafe_code)]

pub use tlog::{Hash, hash, note, proof};

mod engine;
mod error;
mod files;
mod log_store;
mod migrate;
mod pg;
mod store;
mod tree;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use error::{Error, Result};
pub use files::read_public_key;
pub use migrate::migrate_to_postgres;
pub use pg::Documents;
pub use verify::{VerifyReport, Visited, verify, verify_postgres};

use engine::Engine;
use files::ServiceKey;
use log_store::LogStore;
use pg::PgStore;
use verify::Anchor;

/// Whether the data directory `dir` holds an embedded ledger (of this
/// release's file engine or an older release's sled store).
pub fn holds_ledger(dir: &Path) -> bool {
    LogStore::exists(dir) || dir.join(files::STORE_DIR).is_dir()
}

/// Where and how to open a ledger.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Data directory: the file engine in `dir/log/`, the last signed checkpoint in
    /// `dir/checkpoint`, the key in `dir/ledger.key`.
    pub dir: PathBuf,
    /// The checkpoint's origin line.
    pub origin: String,
    /// The signed-note key name.
    pub key_name: String,
    /// Load the signer key from here instead of `dir/ledger.key` (same
    /// format; never created). Its key name must equal `key_name`.
    pub key_file: Option<PathBuf>,
    /// [`Ledger::sign_checkpoint_if_due`] signs a new checkpoint at most this often.
    pub checkpoint_interval: Duration,
    /// Appends are refused ([`Error::NoSpace`]) while the data directory's
    /// disk has less than this many bytes available, so a full disk never
    /// fails a commit half-way; they resume once space is freed.
    pub min_free_bytes: u64,
    /// sled's `cache_capacity` (bytes) when reading a sled store of an
    /// older release to migrate it; the file engine relies on the OS page
    /// cache.
    pub cache_bytes: u64,
    /// `None`: the file engine in `dir/log/`. `Some(url)`: the PostgreSQL database
    /// at `url` (`postgres://USER@HOST/DB`), shared with every other node
    /// given the same URL; the checkpoints live in it too, and `dir` holds
    /// only the key (unless `key_file` is given).
    pub store: Option<String>,
    /// A replica (a mirror's copy of another log): appends are that log's
    /// entries taken verbatim, index entries included (each checked against
    /// the index this copy computes), and the copy never writes an index
    /// entry of its own, so its tree stays the log's.
    pub replica: bool,
}

/// [`LedgerConfig::cache_bytes`] by default: enough for the hot part of
/// the tree and the indexes; the OS page cache holds the rest.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

impl LedgerConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LedgerConfig {
            dir: dir.into(),
            origin: "ecocode.local/ledger".to_string(),
            key_name: "ecocode.local".to_string(),
            key_file: None,
            checkpoint_interval: Duration::from_secs(1),
            min_free_bytes: 64 * 1024 * 1024,
            cache_bytes: DEFAULT_CACHE_BYTES,
            store: None,
            replica: false,
        }
    }
}

/// One entry to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    pub payload: Vec<u8>,
    /// Index key (e.g. a USCC) for [`Ledger::entries_for_subject`]; empty =
    /// not indexed.
    pub subject: Vec<u8>,
    pub idempotency: Option<Idempotency>,
    /// Stored beside the entry and not hashed: a committed record's
    /// details (`docs/ledger.md`, "Committed records"); usually empty.
    pub details: Vec<u8>,
}

/// Same key and same fingerprint is a duplicate; same key and another
/// fingerprint is a [`Conflict`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    pub key: Vec<u8>,
    pub fingerprint: Hash,
}

/// Proof that an entry is durably in the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub entry_hash: Hash,
    pub chain_hash: Hash,
    pub recorded_at_ns: i64,
    /// True when this answers a re-send of an entry already in the ledger.
    pub duplicate: bool,
}

/// The idempotency key is taken by an entry with another fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub existing: Receipt,
}

/// A stored entry, its hash checked on the way out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub recorded_at_ns: i64,
    pub payload: Vec<u8>,
    pub subject: Vec<u8>,
    pub entry_hash: Hash,
    pub chain_hash: Hash,
    /// What was stored beside the entry, unhashed ([`NewEntry::details`]).
    pub details: Vec<u8>,
}

/// The current tree head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
    /// `chain_hash(size - 1)`; zeros when empty.
    pub chain: Hash,
}

/// A signed tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root: Hash,
    pub chain: Hash,
    /// When it was signed (unix ns). Not part of the signed note.
    pub timestamp_ns: i64,
    /// The C2SP signed note.
    pub note: String,
    pub public_key: [u8; 32],
}

/// What a checkpoint's index entry says about one subject
/// ([`Ledger::subject_index`]); everything a verifier needs besides the
/// entries themselves and their inclusion proofs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectIndex {
    /// The checkpoint's size `N`; the index entry is entry `N - 1`.
    pub tree_size: u64,
    /// The index entry (its payload holds the root).
    pub index_entry: Entry,
    pub index_root: Hash,
    /// Every seq about the subject below `N - 1`, ascending.
    pub seqs: Vec<u64>,
    /// Membership (or, with no seqs, non-membership) against `index_root`.
    pub proof: tlog::index::Proof,
}

/// One answer of [`Ledger::append`] per input entry.
pub type AppendResult = std::result::Result<Receipt, Conflict>;

/// A handle on an open ledger; clones share it.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("dir", &self.inner.core.dir)
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

/// Owned by the handles only: dropping the last handle closes the queue,
/// which lets the writer thread finish and release the store.
struct Inner {
    core: Arc<Core>,
    /// Shared with the follower of a PostgreSQL store; taking the sender
    /// out closes the writer's queue.
    queue: Arc<Mutex<Option<std::sync::mpsc::Sender<writer::Request>>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(lock(&self.queue).take());
        if let Some(handle) = lock(&self.writer).take() {
            // The writer finishes what is queued and exits; waiting here
            // means the store's file lock is released when the last handle
            // is gone, so the same directory can be reopened.
            let _ = handle.join();
        }
    }
}

/// State shared by the handles and the writer thread.
struct Core {
    dir: PathBuf,
    /// [`LedgerConfig::replica`].
    replica: bool,
    origin: String,
    key: ServiceKey,
    interval: Duration,
    engine: Box<dyn Engine>,
    /// Replaced by the writer after each durable group commit.
    state: RwLock<writer::State>,
    checkpoint: Mutex<CheckpointSlot>,
    /// Number of group commits made durable (one flush each).
    flushes: AtomicU64,
    /// Set when a commit failed: what is on disk is then unknown, so no more
    /// appends until a restart re-verifies.
    failed: Mutex<Option<String>>,
    /// [`LedgerConfig::min_free_bytes`], adjustable while running.
    min_free: AtomicU64,
    /// The index at each of the latest index entries (by seq), newest
    /// last, so [`Ledger::subject_index`] at a recent checkpoint needs no
    /// rebuild. Kept by the writer.
    index_snapshots: Mutex<std::collections::VecDeque<(u64, tlog::index::Tree)>>,
    /// The subject index of every durable entry this node holds; only the
    /// writer thread changes it.
    index: Mutex<tlog::index::Builder>,
    /// Told of every new entry before the head that holds it is published.
    observer: std::sync::OnceLock<Observer>,
    /// Told of every entry another node appended, after the head that
    /// holds it is published.
    foreign: std::sync::OnceLock<ForeignObserver>,
}

/// See [`Ledger::observe_commits`].
pub type Observer = Box<dyn Fn(u64, &[u8]) + Send + Sync>;

/// See [`Ledger::observe_foreign_entries`].
pub type ForeignObserver = Box<dyn Fn(&Entry) + Send + Sync>;

/// When [`Core::checkpoint`] signs a new checkpoint of the head.
#[derive(Clone, Copy)]
enum Sign {
    Now,
    /// If the head moved and the interval has passed.
    IfDue,
    /// If the latest checkpoint holds fewer than this many entries.
    Covering(u64),
}

#[derive(Default)]
struct CheckpointSlot {
    latest: Option<Checkpoint>,
    /// None for a checkpoint loaded from disk: it may be replaced at once.
    signed_at: Option<Instant>,
}

// A panic elsewhere while holding a lock leaves plain data behind; nothing
// here has invariants a half-done update could break.
pub(crate) use kv::lock;

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Ledger {
    /// Opens (creating if new) the ledger in `cfg.dir`, verifying every
    /// stored entry first.
    pub fn open(cfg: LedgerConfig) -> Result<Ledger> {
        Self::open_with_progress(cfg, &mut |_, _| {})
    }

    /// [`Ledger::open`], reporting `(done, total)` entries while verifying.
    pub fn open_with_progress(cfg: LedgerConfig, progress: &mut dyn FnMut(u64, u64)) -> Result<Ledger> {
        Self::open_visiting(cfg, progress, &mut |_| {})
    }

    /// [`Ledger::open_with_progress`], also handing every entry to `visit`
    /// as verification reads it (once its hashes are checked), so a caller
    /// rebuilding derived state needs no second pass over the store. If
    /// verification then fails, `open` fails: discard what was built.
    pub fn open_visiting(
        cfg: LedgerConfig,
        progress: &mut dyn FnMut(u64, u64),
        visit: &mut dyn FnMut(&Visited<'_>),
    ) -> Result<Ledger> {
        note::check_key_name(&cfg.key_name)?;
        if cfg.origin.is_empty() || cfg.origin.contains('\n') {
            return Err(Error::InvalidArgument("origin must be one non-empty line".into()));
        }
        std::fs::create_dir_all(&cfg.dir)?;
        let key = files::load_or_create_key(&cfg.dir, cfg.key_file.as_deref(), &cfg.key_name)?;
        let opening = Instant::now();
        let engine: Box<dyn Engine> = match &cfg.store {
            None => {
                if !LogStore::exists(&cfg.dir) && cfg.dir.join(files::STORE_DIR).is_dir() {
                    migrate::sled_to_log(&cfg.dir, cfg.cache_bytes, &mut |_, done, total| {
                        progress(done, total)
                    })?;
                }
                Box::new(LogStore::open(&cfg.dir, true)?)
            }
            Some(url) => Box::new(PgStore::open(url, true)?),
        };
        let opened = opening.elapsed();
        // The anchor before the head: another node may sign a newer
        // checkpoint meanwhile, but never one beyond the stored head.
        let checkpoint_text = engine.read_checkpoint()?;
        let anchor = verify::parse_anchor(checkpoint_text, Some((&key.name, &key.public)))?;
        let mut slot = CheckpointSlot::default();
        if let Some((anchor, origin, note, written_ns)) = &anchor {
            if *origin != cfg.origin {
                return Err(Error::InvalidArgument(format!(
                    "the last checkpoint was signed for origin {origin:?} but the configured origin is {:?}",
                    cfg.origin
                )));
            }
            slot.latest = Some(Checkpoint {
                tree_size: anchor.size,
                root: anchor.root,
                chain: anchor.chain,
                timestamp_ns: *written_ns,
                note: note.clone(),
                public_key: key.public,
            });
        }
        let mut verified = verify::verify_store(&*engine, anchor.map(|a| a.0), progress, visit)?;
        let index = std::mem::take(&mut verified.index);
        let snapshots = verified.last_index.take().into_iter().collect();
        tracing::info!(
            store_open_ms = opened.as_millis() as u64,
            verification_ms = (opening.elapsed() - opened).as_millis() as u64,
            "store opened and verified"
        );
        let never_signed = slot.latest.is_none();
        tracing::info!(
            dir = %cfg.dir.display(),
            entries = verified.frontier.size(),
            "ledger verified and open"
        );
        let core = Arc::new(Core {
            dir: cfg.dir,
            origin: cfg.origin,
            key,
            interval: cfg.checkpoint_interval,
            engine,
            state: RwLock::new(writer::State::new(verified)),
            checkpoint: Mutex::new(slot),
            flushes: AtomicU64::new(0),
            failed: Mutex::new(None),
            min_free: AtomicU64::new(cfg.min_free_bytes),
            replica: cfg.replica,
            index: Mutex::new(index),
            index_snapshots: Mutex::new(snapshots),
            observer: std::sync::OnceLock::new(),
            foreign: std::sync::OnceLock::new(),
        });
        let (queue, requests) = std::sync::mpsc::channel();
        let queue = Arc::new(Mutex::new(Some(queue)));
        let writer_core = Arc::clone(&core);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer::run(&writer_core, requests))?;
        if core.engine.is_shared() {
            // Other nodes' commits reach this one through the writer, the
            // one place that extends the head.
            let queue = Arc::clone(&queue);
            core.engine.follow(Box::new(move || {
                if let Some(queue) = lock(&queue).as_ref() {
                    let _ = queue.send(writer::Request::CatchUp { reply: None });
                }
            }));
        }
        let ledger = Ledger { inner: Arc::new(Inner { core, queue, writer: Mutex::new(Some(handle)) }) };
        if never_signed {
            // A new ledger gets its first checkpoint now, so that reading
            // the latest one never has to write.
            ledger.sign_checkpoint_now()?;
        }
        Ok(ledger)
    }

    /// Appends `batch`, answering one result per input in order, once the
    /// new entries are durable. Duplicates (by idempotency key and
    /// fingerprint, also within the batch) answer the original receipt
    /// with `duplicate = true` and append nothing.
    pub async fn append(&self, batch: Vec<NewEntry>) -> Result<Vec<AppendResult>> {
        self.submit(batch, None).await
    }

    /// [`Ledger::append`] with explicit `recorded_at` values, for test
    /// vectors and imports; they must not decrease along the ledger.
    #[doc(hidden)]
    pub async fn append_at(&self, batch: Vec<(NewEntry, i64)>) -> Result<Vec<AppendResult>> {
        let (entries, times) = batch.into_iter().unzip();
        self.submit(entries, Some(times)).await
    }

    async fn submit(
        &self,
        entries: Vec<NewEntry>,
        recorded_at: Option<Vec<i64>>,
    ) -> Result<Vec<AppendResult>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let queue = lock(&self.inner.queue);
            let queue = queue.as_ref().ok_or(Error::ShuttingDown)?;
            queue
                .send(writer::Request::Append { entries, recorded_at, reply })
                .map_err(|_| Error::ShuttingDown)?;
        }
        answer.await.map_err(|_| Error::ShuttingDown)?
    }

    /// Calls `observer(seq, subject)` on the writer thread for each new
    /// entry once its group commit is durable and before the head that
    /// holds it is published: whoever reads a head has been preceded by the
    /// observer calls of every entry in it. Derived views use this to know
    /// what they may have missed. One observer per ledger; a second call
    /// is refused. The observer must be quick and must not append.
    pub fn observe_commits(&self, observer: Observer) -> Result<()> {
        self.inner
            .core
            .observer
            .set(observer)
            .map_err(|_| Error::InvalidArgument("the ledger already has a commit observer".into()))
    }

    /// Calls `observer(entry)` on the writer thread for each entry another
    /// node appended to a shared (PostgreSQL) store, once this node has
    /// checked its chain and published a head that holds it. Entries
    /// appended through this handle are never passed here. One such
    /// observer per ledger; it must be quick and must not append.
    pub fn observe_foreign_entries(&self, observer: ForeignObserver) -> Result<()> {
        self.inner
            .core
            .foreign
            .set(observer)
            .map_err(|_| Error::InvalidArgument("the ledger already has a foreign-entry observer".into()))
    }

    /// On a shared store, reads what other nodes appended up to the stored
    /// head now and publishes it (observers told) before returning, so
    /// that a client who wrote through another node reads its write here.
    /// Blocks for one database round trip; on the embedded engine, returns at once.
    pub fn catch_up(&self) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        {
            let queue = lock(&self.inner.queue);
            let queue = queue.as_ref().ok_or(Error::ShuttingDown)?;
            queue.send(writer::Request::CatchUp { reply: Some(reply) }).map_err(|_| Error::ShuttingDown)?;
        }
        answer.recv().map_err(|_| Error::ShuttingDown)?
    }

    /// Whether other nodes append to the same store.
    pub fn is_shared(&self) -> bool {
        self.inner.core.engine.is_shared()
    }

    /// The current head (in memory, no I/O).
    pub fn head(&self) -> Head {
        self.inner.core.head()
    }

    /// Entry `seq`, its hash checked against the stored leaf. On a shared
    /// store, a seq beyond this node's head first catches up (another node
    /// may just have appended it).
    pub fn entry(&self, seq: u64) -> Result<Entry> {
        let core = &self.inner.core;
        if seq >= core.head().size && self.is_shared() {
            self.catch_up()?;
        }
        core.entry(seq)
    }

    /// Every entry indexed under `subject`, ascending by seq.
    pub fn entries_for_subject(&self, subject: &[u8]) -> Result<Vec<Entry>> {
        let core = &self.inner.core;
        let size = core.head().size;
        let mut out = Vec::new();
        // Index keys beyond the head belong to a commit still in flight.
        for (seq, stored, leaf) in core.engine.subject_entries(subject, size)? {
            let entry = check_entry(seq, stored, leaf)?;
            if entry.subject != subject {
                return Err(Error::corruption(seq, "subject index points at an entry of another subject"));
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Entries `[from, to)` (clamped to the current size), for re-scoring.
    pub fn scan(&self, from: u64, to: u64) -> impl Iterator<Item = Result<Entry>> + '_ {
        let to = to.min(self.head().size);
        (from..to).map(move |seq| self.inner.core.entry(seq))
    }

    /// What the index entry ending the tree of `tree_size` entries says
    /// about `subject`: its seqs, the index root and the proof. The entry
    /// at `tree_size - 1` must be an index entry (else
    /// [`Error::InvalidArgument`]); every signed checkpoint's size is one.
    ///
    /// The index is taken from memory when it is one the writer still
    /// holds (the recent index entries), else rebuilt from the entries
    /// below `tree_size - 1`: one read of each, O(tree_size). Either way it
    /// is checked against the index entry's root, and the subject's stored
    /// entries against the index's value, so a damaged store answers
    /// [`Error::Corruption`] rather than a wrong proof.
    pub fn subject_index(&self, subject: &[u8], tree_size: u64) -> Result<SubjectIndex> {
        let core = &self.inner.core;
        core.check_size(tree_size)?;
        let not_index = || {
            Error::InvalidArgument(format!(
                "tree_size {tree_size} does not end with an index entry; use the size of a signed checkpoint"
            ))
        };
        let last = tree_size.checked_sub(1).ok_or_else(not_index)?;
        let index_entry = core.entry(last)?;
        if !tlog::index::is_index_payload(&index_entry.payload) {
            return Err(not_index());
        }
        let commitment = tlog::index::Commitment::parse(&index_entry.payload)
            .map_err(|e| Error::corruption(last, e.to_string()))?;
        if commitment.size != last {
            return Err(Error::corruption(last, format!("index entry says size {}", commitment.size)));
        }
        let tree = match core.index_snapshot(last) {
            Some(tree) => tree,
            None => {
                let mut builder = tlog::index::Builder::default();
                for seq in 0..last {
                    let entry = core.entry(seq)?;
                    builder
                        .push(seq, &entry.subject, &entry.entry_hash)
                        .map_err(|e| Error::corruption(seq, e.to_string()))?;
                }
                builder.commit().clone()
            }
        };
        if tree.root() != commitment.root || tree.subjects() != commitment.subjects {
            return Err(Error::corruption(
                last,
                "the index entry does not match the index of the entries below it",
            ));
        }
        let (value, proof) = tree.prove(subject);
        let mut seqs = Vec::new();
        let mut stored = tlog::index::Value::default();
        for (seq, entry, leaf) in core.engine.subject_entries(subject, last)? {
            let entry = check_entry(seq, entry, leaf)?;
            if entry.subject != subject {
                return Err(Error::corruption(seq, "subject index points at an entry of another subject"));
            }
            stored.push(seq, &entry.entry_hash);
            seqs.push(seq);
        }
        if value.unwrap_or_default() != stored {
            return Err(Error::corruption(
                last,
                format!(
                    "the subject's {} stored entries differ from what the index entry commits to",
                    seqs.len()
                ),
            ));
        }
        Ok(SubjectIndex { tree_size, index_entry, index_root: commitment.root, seqs, proof })
    }

    /// The receipt of the entry appended under idempotency `key`, if any.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Receipt>> {
        let core = &self.inner.core;
        match core.engine.idempotency(key)? {
            Some((seq, _)) if seq < core.head().size => Ok(Some(core.receipt(seq, false)?)),
            _ => Ok(None),
        }
    }

    /// `MTH(D[0:size])`.
    pub fn root_at(&self, size: u64) -> Result<Hash> {
        self.inner.core.root_at(size)
    }

    /// `chain_hash(size - 1)`, zeros for size 0.
    pub fn chain_at(&self, size: u64) -> Result<Hash> {
        self.inner.core.chain_at(size)
    }

    /// RFC 9162 §2.1.3 inclusion proof of entry `seq` in the tree of `tree_size`.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<Vec<Hash>> {
        let core = &self.inner.core;
        core.check_size(tree_size)?;
        if seq >= tree_size {
            return Err(Error::OutOfRange(format!("seq {seq} is not in a tree of size {tree_size}")));
        }
        tree::inclusion_path(&*core.engine, seq, tree_size)
    }

    /// RFC 9162 §2.1.4 consistency proof from size `from` to size `to`.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        let core = &self.inner.core;
        if from > to {
            return Err(Error::InvalidArgument(format!(
                "consistency proof from size {from} to the smaller size {to}"
            )));
        }
        core.check_size(to)?;
        tree::consistency_proof(&*core.engine, from, to)
    }

    /// The hashes of C2SP tlog-tiles tile `index` at tile `level` (level 0:
    /// entry hashes; level `L`: roots of complete subtrees of `256^L`
    /// entries), all 256 or the first `width`, read from the stored nodes.
    /// [`Error::OutOfRange`] when the current tree does not hold them all.
    pub fn tile(&self, level: u8, index: u64, width: Option<u8>) -> Result<Vec<Hash>> {
        let tile = tlog::tiles::Tile { kind: tlog::tiles::TileKind::Hashes(level), index, width };
        self.check_tile(&tile)?;
        tree::tile_hashes(&*self.inner.core.engine, level, index, tile.count())
    }

    /// Entry bundle `index` (the entries of level-0 tile `index`, all 256
    /// or the first `width`) in the encoding of [`tlog::tiles`], each
    /// entry checked against its stored leaf on the way out.
    /// [`Error::OutOfRange`] when the current tree does not hold them all.
    pub fn entry_bundle(&self, index: u64, width: Option<u8>) -> Result<Vec<u8>> {
        let tile = tlog::tiles::Tile { kind: tlog::tiles::TileKind::Entries, index, width };
        self.check_tile(&tile)?;
        let first = index * tlog::tiles::TILE_WIDTH;
        let mut bundle = Vec::new();
        for seq in first..first + tile.count() {
            let entry = self.inner.core.entry(seq)?;
            tlog::tiles::push_bundle_entry(&mut bundle, entry.recorded_at_ns, &entry.payload);
        }
        Ok(bundle)
    }

    /// The stored hash of the complete subtree `(level, index)`: leaves
    /// `[index << level, (index + 1) << level)`, which the current tree
    /// must hold. A mirror seeds its frontier with these.
    pub fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash> {
        let size = self.head().size;
        let end = (level < 64).then(|| index.checked_add(1)?.checked_mul(1u64 << level)).flatten();
        if end.is_none_or(|end| end > size) {
            return Err(Error::OutOfRange(format!(
                "subtree (level {level}, index {index}) is not in the tree of {size} entries"
            )));
        }
        tree::NodeSource::node(&*self.inner.core.engine, level, index)
    }

    fn check_tile(&self, tile: &tlog::tiles::Tile) -> Result<()> {
        let size = self.head().size;
        if !tile.within(size) {
            return Err(Error::OutOfRange(format!("{} is not in the tree of {size} entries", tile.path())));
        }
        Ok(())
    }

    /// The latest signed checkpoint, from memory: reading never writes
    /// (a full disk must not break reads). New heads are signed by
    /// [`Ledger::sign_checkpoint_if_due`], [`Ledger::checkpoint_covering`]
    /// and [`Ledger::close`].
    pub fn checkpoint(&self) -> Result<Checkpoint> {
        self.inner.core.latest_checkpoint()
    }

    /// Signs the current head if it moved since the last checkpoint and the
    /// checkpoint interval has passed; answers the latest checkpoint. The
    /// service calls this on a timer, so a checkpoint is signed at most once
    /// per interval and only for a new head.
    pub fn sign_checkpoint_if_due(&self) -> Result<Checkpoint> {
        self.inner.core.checkpoint(Sign::IfDue, &|| self.seal())
    }

    /// A checkpoint whose tree holds at least the first `size` entries:
    /// the latest if it does, else a fresh one of the current head. Writers
    /// use it so that the checkpoint they hand back covers every entry they
    /// acknowledged.
    pub fn checkpoint_covering(&self, size: u64) -> Result<Checkpoint> {
        self.inner.core.check_size(size)?;
        self.inner.core.checkpoint(Sign::Covering(size), &|| self.seal())
    }

    /// Signs a checkpoint of the current head now.
    pub fn sign_checkpoint_now(&self) -> Result<Checkpoint> {
        self.inner.core.checkpoint(Sign::Now, &|| self.seal())
    }

    /// Has the writer end the head with an index entry (unless it already
    /// does) and answers the head ending with it.
    fn seal(&self) -> Result<Head> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        {
            let queue = lock(&self.inner.queue);
            let queue = queue.as_ref().ok_or(Error::ShuttingDown)?;
            queue.send(writer::Request::Seal { reply }).map_err(|_| Error::ShuttingDown)?;
        }
        answer.recv().map_err(|_| Error::ShuttingDown)?
    }

    /// A C2SP signed note over `body` with the service key (used for score
    /// attestations). A missing final newline is added; an empty body is an
    /// [`Error::InvalidArgument`].
    pub fn sign_note(&self, body: &str) -> Result<String> {
        let key = &self.inner.core.key;
        let body = if body.ends_with('\n') { body.to_string() } else { format!("{body}\n") };
        Ok(note::sign(&body, &key.name, &key.seed)?)
    }

    /// How often a new head is signed at most.
    pub fn checkpoint_interval(&self) -> Duration {
        self.inner.core.interval
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.inner.core.key.public
    }

    pub fn key_name(&self) -> &str {
        &self.inner.core.key.name
    }

    /// The verifier key text (`<name>+<key id hex>+<base64>`) clients need
    /// to check notes.
    pub fn verifier_key(&self) -> String {
        note::encode_verifier_key(self.key_name(), &self.public_key())
    }

    /// Stops accepting appends, finishes the queued ones and signs a final
    /// checkpoint. Later appends answer [`Error::ShuttingDown`]; reads keep
    /// working until the last handle is dropped.
    pub async fn close(&self) -> Result<()> {
        let queue = lock(&self.inner.queue).take();
        if let Some(queue) = queue {
            let (reply, done) = tokio::sync::oneshot::channel();
            if queue.send(writer::Request::Close { reply }).is_ok() {
                let _ = done.await;
            }
        }
        let handle = lock(&self.inner.writer).take();
        if let Some(handle) = handle {
            // The writer answered Close and is returning; this join is short.
            let _ = handle.join();
        }
        let core = &self.inner.core;
        if let Some(failure) = lock(&core.failed).clone() {
            return Err(Error::Storage(failure));
        }
        let head = core.head();
        let current = lock(&core.checkpoint)
            .latest
            .as_ref()
            .is_some_and(|cp| cp.tree_size == head.size && cp.root == head.root);
        if !current {
            // The writer ended the head with an index entry before it
            // stopped, so no seal is asked for here.
            core.checkpoint(Sign::Now, &|| Err(Error::ShuttingDown))?;
        }
        // Nothing writes after this: the directory is free for the next
        // open even while handles that still read this ledger live on.
        core.engine.release_writer();
        Ok(())
    }

    /// Whether an append can be committed now: `Err` says why not (a full
    /// disk, or an earlier failed commit that needs a restart). The service
    /// reports itself NOT_SERVING while this fails.
    pub fn writable(&self) -> Result<()> {
        let core = &self.inner.core;
        if let Some(failure) = lock(&core.failed).clone() {
            return Err(Error::Storage(failure));
        }
        core.check_space()
    }

    /// Changes [`LedgerConfig::min_free_bytes`] while running.
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.inner.core.min_free.store(bytes, Ordering::Relaxed);
    }

    /// How many group commits (each one flush) this handle's store made.
    #[doc(hidden)]
    pub fn flush_count(&self) -> u64 {
        self.inner.core.flushes.load(Ordering::Relaxed)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.core.dir
    }
}

/// Entry `seq` as read (`stored`, and its stored leaf), its hash checked.
fn check_entry(seq: u64, stored: Option<engine::StoredEntry>, leaf: Option<Hash>) -> Result<Entry> {
    let stored = stored.ok_or_else(|| Error::corruption(seq, "entry is missing from the store"))?;
    let entry_hash = hash::entry_hash(seq, stored.recorded_at_ns, &stored.payload);
    let leaf = leaf.ok_or_else(|| Error::corruption(seq, "stored leaf is missing"))?;
    if leaf != entry_hash {
        return Err(Error::corruption(seq, "entry hash does not match the stored leaf"));
    }
    Ok(Entry {
        seq,
        recorded_at_ns: stored.recorded_at_ns,
        payload: stored.payload,
        subject: stored.subject,
        entry_hash,
        chain_hash: stored.chain_hash,
        details: stored.details,
    })
}

impl Core {
    fn head(&self) -> Head {
        self.state.read().unwrap_or_else(|e| e.into_inner()).head()
    }

    fn ends_with_index(&self) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).ends_with_index()
    }

    /// [`Error::NoSpace`] when the disk is below the reserve.
    pub(crate) fn check_space(&self) -> Result<()> {
        let reserve = self.min_free.load(Ordering::Relaxed);
        if reserve == 0 {
            return Ok(());
        }
        let available = fs2::available_space(&self.dir)?;
        if available < reserve {
            return Err(Error::NoSpace { available, reserve });
        }
        Ok(())
    }

    fn latest_checkpoint(&self) -> Result<Checkpoint> {
        lock(&self.checkpoint)
            .latest
            .clone()
            .ok_or_else(|| Error::Storage("no checkpoint has been signed yet".into()))
    }

    fn check_size(&self, size: u64) -> Result<()> {
        let current = self.head().size;
        if size > current {
            return Err(Error::OutOfRange(format!("tree size {size} exceeds the ledger size {current}")));
        }
        Ok(())
    }

    fn entry(&self, seq: u64) -> Result<Entry> {
        if seq >= self.head().size {
            return Err(Error::NotFound { seq });
        }
        check_entry(seq, self.engine.entry(seq)?, self.engine.node_opt(0, seq)?)
    }

    fn receipt(&self, seq: u64, duplicate: bool) -> Result<Receipt> {
        let entry = self.entry(seq)?;
        Ok(Receipt {
            seq,
            entry_hash: entry.entry_hash,
            chain_hash: entry.chain_hash,
            recorded_at_ns: entry.recorded_at_ns,
            duplicate,
        })
    }

    /// The index as of index entry `seq`, if the writer still holds it.
    fn index_snapshot(&self, seq: u64) -> Option<tlog::index::Tree> {
        lock(&self.index_snapshots).iter().find(|(at, _)| *at == seq).map(|(_, tree)| tree.clone())
    }

    fn root_at(&self, size: u64) -> Result<Hash> {
        let head = self.head();
        if size == head.size {
            return Ok(head.root);
        }
        self.check_size(size)?;
        tree::range_hash(&*self.engine, 0, size)
    }

    fn chain_at(&self, size: u64) -> Result<Hash> {
        self.check_size(size)?;
        match size {
            0 => Ok(hash::ZERO),
            n => Ok(self.entry(n - 1)?.chain_hash),
        }
    }

    /// Returns the latest checkpoint or signs a new one (`force`, none yet,
    /// or head moved and interval passed). A new one is signed at a size
    /// that ends with an index entry: `seal` has the writer append one
    /// unless the head already ends with one (or is empty).
    fn checkpoint(&self, policy: Sign, seal: &dyn Fn() -> Result<Head>) -> Result<Checkpoint> {
        let mut slot = lock(&self.checkpoint);
        let mut head = self.head();
        if let Some(latest) = &slot.latest {
            let moved = latest.tree_size != head.size || latest.root != head.root;
            let due = slot.signed_at.is_none_or(|at| at.elapsed() >= self.interval);
            // Decided under the lock, so concurrent writers asking for the
            // same coverage share one signature.
            let sign = match policy {
                Sign::Now => true,
                Sign::IfDue => moved && due,
                Sign::Covering(size) => latest.tree_size < size,
            };
            if !sign {
                return Ok(latest.clone());
            }
        }
        if head.size > 0 && !self.ends_with_index() {
            head = seal()?;
        }
        if let Some(latest) = &slot.latest {
            // Never sign a head that does not extend what was signed before.
            self.check_extends(latest, &head)?;
        }
        let body = note::checkpoint_body(&self.origin, head.size, &head.root, &head.chain);
        let note = note::sign(&body, &self.key.name, &self.key.seed)?;
        let timestamp_ns = now_ns();
        self.engine.write_checkpoint(head.size, &note, timestamp_ns)?;
        let checkpoint = Checkpoint {
            tree_size: head.size,
            root: head.root,
            chain: head.chain,
            timestamp_ns,
            note,
            public_key: self.key.public,
        };
        slot.latest = Some(checkpoint.clone());
        slot.signed_at = Some(Instant::now());
        Ok(checkpoint)
    }

    fn check_extends(&self, previous: &Checkpoint, head: &Head) -> Result<()> {
        let anchor = Anchor { size: previous.tree_size, root: previous.root, chain: previous.chain };
        if head.size < anchor.size {
            return Err(Error::tampered(
                head.size,
                format!("head {} is behind the last signed checkpoint {}", head.size, anchor.size),
            ));
        }
        let proof = tree::consistency_proof(&*self.engine, anchor.size, head.size)?;
        if !proof::verify_consistency(anchor.size, head.size, &anchor.root, &head.root, &proof) {
            return Err(Error::tampered(None, "the head is not consistent with the last signed checkpoint"));
        }
        if self.chain_at(anchor.size)? != anchor.chain {
            return Err(Error::tampered(None, "the chain differs from the last signed checkpoint's"));
        }
        Ok(())
    }
}
