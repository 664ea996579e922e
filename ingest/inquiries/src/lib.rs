//! The inquiry log: every score read by a lender or a regulator, recorded
//! durably before the answer is sent, so an enterprise can see who looked
//! at its code and why (as credit bureaus tell a subject who queried its
//! file).
//!
//! The log lives beside the ledger (`DATA/inquiries`, its own sled database
//! opened through `kv`) and is not part of the hash chain: it records
//! reads, not facts about enterprises. Who may list which inquiries is the
//! service's decision; this crate answers a [`Scope`].
//!
//! Layout (one sled tree; every index holds the whole inquiry, so a page is
//! one range scan):
//! * `a ‖ rev(at) ‖ id`: every inquiry, newest first;
//! * `u ‖ USCC ‖ rev(at) ‖ id`: by enterprise;
//! * `p ‖ len(principal) ‖ principal ‖ rev(at) ‖ id`: by inquirer;
//!
//! where `rev(at) = u64::MAX - at_ns` (big-endian) sorts newest first and
//! `id` (sled's persistent id generator, also reversed) makes keys unique
//! and orders one instant's inquiries newest first too.
//!
//! Durability (a write-ahead log in front of sled): `record` inserts the
//! index keys into sled *without* flushing it, then appends the inquiries
//! to a WAL file and returns once an `fdatasync` covers them. The keys go
//! in as plain inserts, not a `sled::Batch`: sled 0.34 makes a batch
//! atomic by writing out its IO buffer before and after it, each a
//! synchronous `pwrite` + `sync_file_range` under a global lock, which
//! measured as the bottleneck of the old path (about two per inquiry).
//! The WAL record is what makes an inquiry's three keys durable together;
//! the one cost is that a crash *before* the acknowledgment may leave an
//! unacknowledged inquiry under some of its keys (sled flushes in the
//! background), which is allowed: the read was never answered. One flusher
//! thread writes everything pending with one `write` and one `fdatasync`,
//! so concurrent callers share a sync; a sled flush (several fsyncs) is
//! never on that path. After a failed write or sync the log refuses every
//! further record (fail-stop): the file's state is unknown, and nothing
//! that may not be durable is acknowledged.
//!
//! WAL files are `DIR/wal.<generation>` (20 digits). Each record is
//! `u32 len (LE) ‖ payload ‖ first 8 bytes of BLAKE3(payload)`, with
//! `payload = u64 id (BE) ‖ the inquiry's JSON`; the three index keys are
//! a function of `(id, inquiry)`, so replaying a record is idempotent.
//!
//! Checkpoints: when the current file exceeds 16 MiB, or every 30 s if it
//! holds anything, the flusher starts the next generation (the directory is
//! fsynced) and hands the old file to a checkpointer thread, which flushes
//! sled and deletes it. Every record in the old file was inserted into sled
//! before it was written, so after that flush the file is redundant;
//! records written meanwhile go to the new file and are acknowledged only
//! once it is synced.
//!
//! Open replays every WAL file, oldest generation first, into sled, then
//! flushes sled, deletes them and starts a new generation. Replay of a file
//! stops at its first record that is short (a torn tail: a crash during a
//! write that was never acknowledged), implausibly long, or fails its
//! checksum. A bad checksum in the middle of a file also ends that file's
//! replay: the length prefixes after it cannot be trusted, and guessing
//! where the next record starts could apply garbage. Later generations are
//! still replayed. sled's id generator is unique across crashes (it
//! persists ahead of what it hands out), so new ids never repeat a replayed
//! one. A clean close checkpoints the last file, leaving nothing to replay.

#![forbid(unsafe_code)]

mod shared;

/// sled's page cache for the log.
const CACHE_BYTES: u64 = 64 << 20;

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One read of one enterprise's score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inquiry {
    pub uscc: String,
    /// The enterprise's region when it was read, so a regulator's listing
    /// filters without a second lookup.
    pub region_code: String,
    pub principal: String,
    pub role: String,
    /// The short gRPC method name, e.g. `GetScore`.
    pub method: String,
    /// The caller's `x-ecocode-purpose`, e.g. a loan application number.
    pub purpose: String,
    /// Unix nanoseconds.
    pub at_ns: i64,
}

/// Which inquiries a listing may show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every inquiry on one enterprise.
    Enterprise(String),
    /// One inquirer's own inquiries, optionally on one enterprise only.
    Inquirer { principal: String, uscc: Option<String> },
    /// Inquiries on enterprises whose region starts with the prefix.
    Region(String),
    /// Everything.
    All,
}

/// A listing request.
#[derive(Clone, Debug)]
pub struct Query {
    pub scope: Scope,
    /// Only inquiries at or after this instant (unix ns).
    pub from_ns: Option<i64>,
    /// Only inquiries before this instant (unix ns).
    pub to_ns: Option<i64>,
    pub page_size: usize,
    /// Continue after this cursor, from a previous [`Page::next`].
    pub after: Option<Vec<u8>>,
}

/// One page, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub inquiries: Vec<Inquiry>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Vec<u8>>,
}

/// Most entries one listing examines, so a sparse filter (a region among
/// many) costs a bounded amount per call; the caller continues with
/// [`Page::next`].
pub const MAX_EXAMINED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed; the message is the engine's.
    #[error("inquiry log storage: {0}")]
    Storage(String),
    /// The shared store cannot be reached now; retrying later may work.
    #[error("inquiry log unavailable: {0}")]
    Unavailable(String),
    /// A stored inquiry does not decode: only this crate writes the log.
    #[error("inquiry log corrupt at key {key}: {what}")]
    Corruption { key: String, what: String },
    /// A cursor that this log did not hand out for this scope.
    #[error("page_token: not a token returned by ListInquiries for this query")]
    BadCursor,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::Storage(e.to_string())
    }
}

/// The log on sled in a local directory (the default).
pub(crate) struct LocalLog {
    // Fields drop in order: the WAL's threads (and their tree handles) and
    // the tree go before the database, whose drop then releases the lock.
    wal: Wal,
    tree: sled::Tree,
    db: kv::Db,
}

/// A WAL file grows to about this size before the log checkpoints it.
const ROTATE_BYTES: u64 = 16 << 20;
/// A WAL file holding anything is checkpointed at least this often, so a
/// quiet service leaves little to replay.
const ROTATE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// No inquiry comes near this; a larger length prefix is a torn or corrupt
/// record, not a reason to allocate.
const MAX_RECORD: usize = 1 << 20;
/// `u32` length prefix before, 8 checksum bytes after each payload.
const LEN_BYTES: usize = 4;
const SUM_BYTES: usize = 8;
/// `u64` id before the inquiry's JSON in each payload.
const ID_BYTES: usize = 8;

/// When the flusher starts a new WAL file (tests make it small).
#[derive(Clone, Debug)]
struct Options {
    rotate_bytes: u64,
    rotate_every: std::time::Duration,
    /// Makes the next syncs fail, as a disk would.
    #[cfg(test)]
    fail_syncs: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rotate_bytes: ROTATE_BYTES,
            rotate_every: ROTATE_EVERY,
            #[cfg(test)]
            fail_syncs: Default::default(),
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::Storage(format!("{what}: {e}"))
}

/// Group commit through the write-ahead log. Callers put their encoded
/// records in `pending` and wait; one thread (the flusher) appends all that
/// is pending with one `write` and one `fdatasync`, then wakes every caller
/// that sync covered. A second thread (the checkpointer) flushes sled and
/// deletes WAL files the flusher has rotated away from, so a sled flush
/// (several fsyncs) never holds up an acknowledgment.
struct Wal {
    shared: std::sync::Arc<WalShared>,
    flusher: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

struct WalShared {
    pending: std::sync::Mutex<Pending>,
    wake: std::sync::Condvar,
    /// WAL files rotated away from, and those the checkpointer has dealt
    /// with (flushed sled, then deleted or, on error, kept for replay).
    checkpoints: std::sync::Mutex<(u64, u64)>,
    checkpointed: std::sync::Condvar,
    /// `fdatasync`s of the WAL so far, for the benchmark's group size.
    syncs: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Pending {
    /// Encoded records not yet handed to the flusher.
    bytes: Vec<u8>,
    /// One per append in `bytes`: the flusher answers each once the sync
    /// that covers it is done, waking exactly those callers (a broadcast
    /// would wake all 128 callers for every group, on 2 cores).
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// Set when a write or sync failed: the file's state is unknown, so the
    /// log refuses to acknowledge anything more (fail-stop).
    failed: Option<String>,
    stop: bool,
}

/// The WAL file the flusher appends to.
struct WalFile {
    path: std::path::PathBuf,
    generation: u64,
    file: std::fs::File,
    len: u64,
}

fn wal_path(dir: &Path, generation: u64) -> std::path::PathBuf {
    dir.join(format!("wal.{generation:020}"))
}

/// Every WAL file in `dir`, oldest generation first.
fn wal_files(dir: &Path) -> std::io::Result<Vec<(u64, std::path::PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let generation =
            name.to_str().and_then(|n| n.strip_prefix("wal.")).and_then(|g| g.parse::<u64>().ok());
        if let Some(generation) = generation {
            files.push((generation, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Makes creations and deletions of files in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn create_wal(dir: &Path, generation: u64) -> std::io::Result<WalFile> {
    let path = wal_path(dir, generation);
    let file = std::fs::OpenOptions::new().append(true).create_new(true).open(&path)?;
    sync_dir(dir)?;
    Ok(WalFile { path, generation, file, len: 0 })
}

/// Appends one WAL record: `u32 len (LE) ‖ payload ‖ BLAKE3(payload)[..8]`
/// with `payload = u64 id (BE) ‖ the inquiry's JSON` (the very bytes the
/// indexes store).
fn encode_record(out: &mut Vec<u8>, id: u64, value: &[u8]) {
    let payload_len = ID_BYTES + value.len();
    out.reserve(LEN_BYTES + payload_len + SUM_BYTES);
    // An inquiry's JSON is far below 4 GiB; `record` refuses larger ones.
    out.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    let payload_start = out.len();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(value);
    let sum = blake3::hash(&out[payload_start..]);
    out.extend_from_slice(&sum.as_bytes()[..SUM_BYTES]);
}

/// The intact records at the start of `bytes` as `(id, value)`, stopping at
/// the first record that is short (a torn tail), implausibly long, or whose
/// checksum does not match.
fn decode_records(bytes: &[u8]) -> Vec<(u64, &[u8])> {
    let mut records = Vec::new();
    let mut rest = bytes;
    while let Some((len, after)) = rest.split_first_chunk::<LEN_BYTES>() {
        let len = u32::from_le_bytes(*len) as usize;
        if !(ID_BYTES..=MAX_RECORD).contains(&len) || after.len() < len + SUM_BYTES {
            break;
        }
        let (payload, after) = after.split_at(len);
        let (sum, after) = after.split_at(SUM_BYTES);
        if blake3::hash(payload).as_bytes()[..SUM_BYTES] != *sum {
            break;
        }
        let (id, value) = payload.split_at(ID_BYTES);
        let mut id_bytes = [0; ID_BYTES];
        id_bytes.copy_from_slice(id);
        records.push((u64::from_be_bytes(id_bytes), value));
        rest = after;
    }
    records
}

/// The three index entries of one inquiry: a function of `(id, inquiry)`,
/// so replaying a WAL record writes exactly what `record` wrote.
fn index_keys(id: u64, inquiry: &Inquiry) -> [Vec<u8>; 3] {
    let suffix = suffix(inquiry.at_ns, id);
    [
        key(&[b"a"], &suffix),
        key(&[b"u", inquiry.uscc.as_bytes()], &suffix),
        key(&[&principal_prefix(&inquiry.principal)], &suffix),
    ]
}

/// Applies every WAL file in `dir` to `tree`, oldest first; returns the
/// files (to delete once sled is flushed) and the highest generation seen.
fn replay(dir: &Path, tree: &sled::Tree) -> Result<(Vec<std::path::PathBuf>, u64)> {
    let files = wal_files(dir).map_err(|e| io_error("listing the inquiry WAL", e))?;
    let last = files.last().map_or(0, |(generation, _)| *generation);
    let mut replayed = Vec::with_capacity(files.len());
    for (_, path) in files {
        let bytes = std::fs::read(&path).map_err(|e| io_error("reading the inquiry WAL", e))?;
        let mut batch = sled::Batch::default();
        for (id, value) in decode_records(&bytes) {
            // The checksum matched, so only this crate wrote the value.
            let inquiry: Inquiry = serde_json::from_slice(value).map_err(|e| Error::Corruption {
                key: format!("{} record {id}", path.display()),
                what: e.to_string(),
            })?;
            for key in index_keys(id, &inquiry) {
                batch.insert(key, value);
            }
        }
        tree.apply_batch(batch)?;
        replayed.push(path);
    }
    Ok((replayed, last))
}

impl Wal {
    fn start(dir: &Path, current: WalFile, tree: sled::Tree, options: Options) -> std::io::Result<Wal> {
        let shared = std::sync::Arc::new(WalShared {
            pending: std::sync::Mutex::new(Pending::default()),
            wake: std::sync::Condvar::new(),
            checkpoints: std::sync::Mutex::new((0, 0)),
            checkpointed: std::sync::Condvar::new(),
            syncs: std::sync::atomic::AtomicU64::new(0),
        });
        let (to_checkpoint, checkpoints) = std::sync::mpsc::channel();
        let checkpointer = {
            let (dir, shared) = (dir.to_owned(), shared.clone());
            std::thread::Builder::new()
                .name("inquiry-checkpoint".into())
                .spawn(move || run_checkpointer(&dir, &tree, &checkpoints, &shared))?
        };
        let flusher = {
            let (dir, shared) = (dir.to_owned(), shared.clone());
            std::thread::Builder::new()
                .name("inquiry-flush".into())
                .spawn(move || run_flusher(&dir, current, &options, &to_checkpoint, &shared))
        };
        let flusher = match flusher {
            Ok(thread) => thread,
            Err(e) => {
                // The sender went with the closure: the checkpointer ends.
                let _ = checkpointer.join();
                return Err(e);
            }
        };
        Ok(Wal { shared, flusher: Some(flusher), checkpointer: Some(checkpointer) })
    }

    /// Hands `records` to the flusher and waits until a sync covers them.
    async fn append(&self, records: Vec<u8>) -> Result<()> {
        let (acked, ack) = tokio::sync::oneshot::channel();
        {
            let mut pending = lock(&self.shared.pending);
            if let Some(e) = &pending.failed {
                return Err(Error::Storage(e.clone()));
            }
            if pending.bytes.is_empty() {
                pending.bytes = records;
            } else {
                pending.bytes.extend_from_slice(&records);
            }
            pending.waiters.push(acked);
        }
        self.shared.wake.notify_one();
        match ack.await {
            Ok(result) => result.map_err(Error::Storage),
            Err(_) => Err(Error::Storage("the inquiry log's flusher stopped".into())),
        }
    }

    /// The flusher's error, once a write or sync has failed.
    fn check(&self) -> Result<()> {
        match &lock(&self.shared.pending).failed {
            Some(e) => Err(Error::Storage(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits until the checkpointer has dealt with every rotated file.
    #[cfg(test)]
    fn wait_for_checkpoints(&self) {
        let mut counts = lock(&self.shared.checkpoints);
        while counts.0 != counts.1 {
            counts = self.shared.checkpointed.wait(counts).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The flusher: one `write` and one `fdatasync` per group of appends.
/// Before writing a group it rotates a file that is due (large enough, or
/// old enough and not empty): records written while the checkpointer
/// flushes sled thus go to the new file, and are acknowledged only once
/// that file is synced.
fn run_flusher(
    dir: &Path,
    mut current: WalFile,
    options: &Options,
    to_checkpoint: &std::sync::mpsc::Sender<std::path::PathBuf>,
    shared: &WalShared,
) {
    use std::io::Write as _;
    let mut group = Vec::new();
    let mut waiters = Vec::new();
    let mut rotated_at = std::time::Instant::now();
    loop {
        let stop = {
            let mut pending = lock(&shared.pending);
            while pending.waiters.is_empty() && !pending.stop {
                let due = rotated_at + options.rotate_every;
                let now = std::time::Instant::now();
                if current.len > 0 && now >= due {
                    break;
                }
                let wait = if current.len > 0 { due - now } else { options.rotate_every };
                pending = shared.wake.wait_timeout(pending, wait).unwrap_or_else(|p| p.into_inner()).0;
            }
            std::mem::swap(&mut pending.bytes, &mut group);
            std::mem::swap(&mut pending.waiters, &mut waiters);
            pending.stop
        };
        let result = (|| -> Result<()> {
            let due = current.len >= options.rotate_bytes || rotated_at.elapsed() >= options.rotate_every;
            if current.len > 0 && due {
                let next = create_wal(dir, current.generation + 1)
                    .map_err(|e| io_error("starting a new inquiry WAL file", e))?;
                let old = std::mem::replace(&mut current, next);
                rotated_at = std::time::Instant::now();
                lock(&shared.checkpoints).0 += 1;
                // The checkpointer outlives the flusher; if it is gone the
                // file stays and is replayed at the next open.
                let _ = to_checkpoint.send(old.path);
            }
            if !waiters.is_empty() {
                current.file.write_all(&group).map_err(|e| io_error("writing the inquiry WAL", e))?;
                current.file.sync_data().map_err(|e| io_error("syncing the inquiry WAL", e))?;
                #[cfg(test)]
                if options.fail_syncs.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(io_error("syncing the inquiry WAL", std::io::Error::other("injected")));
                }
                shared.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                current.len += group.len() as u64;
            }
            Ok(())
        })();
        group.clear();
        if let Err(e) = result {
            // Fail-stop: what reached the file is unknown, so nothing more is
            // acknowledged; the file is kept and replayed at the next open.
            // Callers that queued meanwhile get the error too; later ones
            // see `failed`.
            let message = match e {
                Error::Storage(message) => message,
                other => other.to_string(),
            };
            let mut pending = lock(&shared.pending);
            pending.failed = Some(message.clone());
            for waiter in waiters.drain(..).chain(pending.waiters.drain(..)) {
                let _ = waiter.send(Err(message.clone()));
            }
            return;
        }
        for waiter in waiters.drain(..) {
            // A caller that gave up waiting has nothing to be told.
            let _ = waiter.send(Ok(()));
        }
        if stop && lock(&shared.pending).waiters.is_empty() {
            // A clean close: the checkpointer flushes sled and deletes the
            // last file too, so a restart has nothing to replay.
            lock(&shared.checkpoints).0 += 1;
            let _ = to_checkpoint.send(current.path);
            return;
        }
    }
}

/// The checkpointer: for each WAL file the flusher has left, flush sled
/// (every record in the file was inserted into sled before it was written
/// to the WAL) and then delete the file. Files that arrive together share
/// one flush. On error the files stay and are replayed at the next open.
fn run_checkpointer(
    dir: &Path,
    tree: &sled::Tree,
    files: &std::sync::mpsc::Receiver<std::path::PathBuf>,
    shared: &WalShared,
) {
    while let Ok(first) = files.recv() {
        let old: Vec<_> = std::iter::once(first).chain(files.try_iter()).collect();
        let result = tree.flush().map_err(Error::from).and_then(|_| {
            for path in &old {
                std::fs::remove_file(path).map_err(|e| io_error("deleting a checkpointed inquiry WAL", e))?;
            }
            sync_dir(dir).map_err(|e| io_error("syncing the inquiry log's directory", e))
        });
        if let Err(e) = result {
            tracing::error!(error = %e, files = old.len(), "inquiry log checkpoint failed; the WAL is kept for replay");
        }
        lock(&shared.checkpoints).1 += old.len() as u64;
        shared.checkpointed.notify_all();
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.flusher.take() {
            let _ = thread.join();
        }
        // The flusher's exit closed the channel: the checkpointer finishes
        // the files it was sent, then ends.
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for InquiryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InquiryLog").finish_non_exhaustive()
    }
}

/// Whether `c` acts on a terminal or reorders displayed text: the rule of
/// `scoring::is_control` (this crate uses only `kv` of ours).
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with line breaks and tabs as spaces and other controls dropped.
fn printable(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() && is_control(c) => Some(' '),
            c if is_control(c) => None,
            c => Some(c),
        })
        .collect()
}

/// The inquiry log, in a local directory or in the shared PostgreSQL
/// store (see the crate documentation).
pub struct InquiryLog {
    backend: Backend,
}

enum Backend {
    Local(LocalLog),
    Shared(Box<shared::SharedLog>),
}

impl InquiryLog {
    /// Opens (creating if new) the log in `dir`, first replaying any WAL
    /// files a crash left (see the crate doc).
    pub fn open(dir: &Path) -> Result<InquiryLog> {
        Ok(InquiryLog { backend: Backend::Local(LocalLog::open(dir)?) })
    }

    /// The log in the shared PostgreSQL store at `url` (its table is
    /// created by the ledger's migrations), so every node records and
    /// lists the same inquiries.
    pub fn open_shared(url: &str) -> Result<InquiryLog> {
        Ok(InquiryLog { backend: Backend::Shared(Box::new(shared::SharedLog::open(url)?)) })
    }

    /// Records `inquiries` durably: when this returns `Ok`, they survive a
    /// crash of this process (and, shared, of this node). A purpose is
    /// stored without control characters, whoever passes it in: it is
    /// shown to the enterprise read, on its terminal and its pages.
    pub async fn record(&self, inquiries: &[Inquiry]) -> Result<()> {
        let owned: Vec<Inquiry>;
        let inquiries = if inquiries.iter().any(|i| i.purpose.chars().any(is_control)) {
            owned =
                inquiries.iter().map(|i| Inquiry { purpose: printable(&i.purpose), ..i.clone() }).collect();
            &owned
        } else {
            inquiries
        };
        match &self.backend {
            Backend::Local(log) => log.record(inquiries).await,
            Backend::Shared(log) => log.record(inquiries).await,
        }
    }

    /// A page of the inquiries `query` asks for, newest first; purposes
    /// recorded before they were stripped of control characters come out
    /// stripped.
    pub fn list(&self, query: &Query) -> Result<Page> {
        let mut page = match &self.backend {
            Backend::Local(log) => log.list(query),
            Backend::Shared(log) => log.list(query),
        }?;
        for inquiry in &mut page.inquiries {
            if inquiry.purpose.chars().any(is_control) {
                inquiry.purpose = printable(&inquiry.purpose);
            }
        }
        Ok(page)
    }

    /// How many `fdatasync`s of the WAL this log has done (0 when shared):
    /// the benchmark divides records by it for the group size.
    #[doc(hidden)]
    pub fn wal_syncs(&self) -> u64 {
        match &self.backend {
            Backend::Local(log) => log.wal_syncs(),
            Backend::Shared(_) => 0,
        }
    }
}

impl LocalLog {
    /// Opens (creating if new) the log in `dir`, first replaying any WAL
    /// files a crash left (see the crate doc).
    fn open(dir: &Path) -> Result<LocalLog> {
        LocalLog::open_with(dir, Options::default())
    }

    fn open_with(dir: &Path, options: Options) -> Result<LocalLog> {
        // sled's lock on `dir` also keeps two processes from replaying.
        // Listings read recent pages; a small cache is enough.
        let db = kv::open(sled::Config::new().cache_capacity(CACHE_BYTES), dir)?;
        let tree = db.open_tree("inquiries")?;
        let (replayed, last) = replay(dir, &tree)?;
        if !replayed.is_empty() {
            tree.flush()?;
            for path in &replayed {
                std::fs::remove_file(path).map_err(|e| io_error("deleting a replayed inquiry WAL", e))?;
            }
        }
        // A fresh generation: a replayed file is never appended to, so a
        // torn tail is never followed by acknowledged records.
        let current = create_wal(dir, last + 1).map_err(|e| io_error("creating the inquiry WAL", e))?;
        let wal = Wal::start(dir, current, tree.clone(), options)
            .map_err(|e| Error::Storage(format!("inquiry log threads: {e}")))?;
        Ok(LocalLog { wal, tree, db })
    }

    /// Records `inquiries` durably: when this returns `Ok`, they survive a
    /// crash. They are inserted into sled without a flush (plain inserts:
    /// see the crate doc on why not a batch), then written to the WAL;
    /// concurrent callers share one `fdatasync` (group commit).
    async fn record(&self, inquiries: &[Inquiry]) -> Result<()> {
        if inquiries.is_empty() {
            return Ok(());
        }
        // Fail-stop: nothing new goes into sled either once the WAL failed.
        self.wal.check()?;
        let mut records = Vec::new();
        for inquiry in inquiries {
            // Unique across crashes (sled persists the generator ahead of
            // what it hands out), so replayed keys never collide with new
            // ones.
            let id = self.db.generate_id()?;
            let value = serde_json::to_vec(inquiry).map_err(|e| Error::Corruption {
                key: String::new(),
                what: format!("cannot encode an inquiry: {e}"),
            })?;
            if value.len() + ID_BYTES > MAX_RECORD {
                return Err(Error::Storage(format!(
                    "an inquiry of {} bytes exceeds the WAL's record limit",
                    value.len()
                )));
            }
            let value = sled::IVec::from(value);
            for key in index_keys(id, inquiry) {
                self.tree.insert(key, value.clone())?;
            }
            encode_record(&mut records, id, &value);
        }
        self.wal.append(records).await
    }

    /// How many `fdatasync`s of the WAL this log has done: the benchmark
    /// divides records by it for the group size. Not part of the API.
    fn wal_syncs(&self) -> u64 {
        self.wal.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn list(&self, query: &Query) -> Result<Page> {
        let (prefix, uscc_filter, region_filter): (Vec<u8>, Option<&str>, Option<&str>) = match &query.scope {
            Scope::Enterprise(uscc) => (key(&[b"u", uscc.as_bytes()], &[]), None, None),
            Scope::Inquirer { principal, uscc } => (principal_prefix(principal), uscc.as_deref(), None),
            Scope::Region(prefix) => (b"a".to_vec(), None, Some(prefix.as_str())),
            Scope::All => (b"a".to_vec(), None, None),
        };
        // Newest first: `to` bounds where the scan starts.
        let mut start = prefix.clone();
        if let Some(to) = query.to_ns {
            // Strictly before `to`: skip every key of instants >= to.
            start.extend_from_slice(&rev(to.saturating_sub(1)).to_be_bytes());
        }
        if let Some(after) = &query.after {
            if !after.starts_with(&prefix) {
                return Err(Error::BadCursor);
            }
            if *after >= start {
                start = after.clone();
                start.push(0); // strictly after the cursor
            }
        }
        let mut page = Page::default();
        let mut examined = 0;
        for item in self
            .tree
            .range(start..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        {
            let (k, v) = item?;
            let inquiry: Inquiry = serde_json::from_slice(&v)
                .map_err(|e| Error::Corruption { key: format!("{k:?}"), what: e.to_string() })?;
            if query.from_ns.is_some_and(|from| inquiry.at_ns < from) {
                return Ok(page); // older ones follow: the listing is complete
            }
            examined += 1;
            let wanted = uscc_filter.is_none_or(|u| inquiry.uscc == u)
                && region_filter.is_none_or(|r| inquiry.region_code.starts_with(r));
            if wanted {
                page.inquiries.push(inquiry);
            }
            if page.inquiries.len() == query.page_size || examined == MAX_EXAMINED {
                // There may be more: continue after this key.
                page.next = Some(k.to_vec());
                return Ok(page);
            }
        }
        Ok(page)
    }
}

fn rev(at_ns: i64) -> u64 {
    u64::MAX - u64::try_from(at_ns).unwrap_or(0)
}

/// Newest first: by time, then (for one instant) by the order recorded.
fn suffix(at_ns: i64, id: u64) -> Vec<u8> {
    [rev(at_ns).to_be_bytes(), (u64::MAX - id).to_be_bytes()].concat()
}

fn key(parts: &[&[u8]], suffix: &[u8]) -> Vec<u8> {
    let mut out = parts.concat();
    out.extend_from_slice(suffix);
    out
}

fn principal_prefix(principal: &str) -> Vec<u8> {
    // Names are at most 64 bytes (principals.rs); the length keeps one name
    // from being a prefix of another's keys.
    let len = u8::try_from(principal.len()).unwrap_or(u8::MAX);
    [b"p".as_slice(), &[len], principal.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inquiry(uscc: &str, region: &str, principal: &str, at_ns: i64) -> Inquiry {
        Inquiry {
            uscc: uscc.into(),
            region_code: region.into(),
            principal: principal.into(),
            role: "lender".into(),
            method: "GetScore".into(),
            purpose: format!("loan {at_ns}"),
            at_ns,
        }
    }

    fn query(scope: Scope, page_size: usize) -> Query {
        Query { scope, from_ns: None, to_ns: None, page_size, after: None }
    }

    fn ats(page: &Page) -> Vec<i64> {
        page.inquiries.iter().map(|i| i.at_ns).collect()
    }

    #[tokio::test]
    async fn listings_are_newest_first_per_scope_and_page_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path()).unwrap();
        log.record(&[inquiry("A", "330206", "bank-a", 10), inquiry("B", "110105", "bank-a", 20)])
            .await
            .unwrap();
        log.record(&[inquiry("A", "330206", "bank-b", 30), inquiry("A", "330206", "bank-ab", 40)])
            .await
            .unwrap();

        assert_eq!(ats(&log.list(&query(Scope::All, 10)).unwrap()), vec![40, 30, 20, 10]);
        assert_eq!(ats(&log.list(&query(Scope::Enterprise("A".into()), 10)).unwrap()), vec![40, 30, 10]);
        let own = Scope::Inquirer { principal: "bank-a".into(), uscc: None };
        assert_eq!(ats(&log.list(&query(own.clone(), 10)).unwrap()), vec![20, 10], "bank-ab is not bank-a");
        let own_on_a = Scope::Inquirer { principal: "bank-a".into(), uscc: Some("A".into()) };
        assert_eq!(ats(&log.list(&query(own_on_a, 10)).unwrap()), vec![10]);
        assert_eq!(ats(&log.list(&query(Scope::Region("3302".into()), 10)).unwrap()), vec![40, 30, 10]);

        // Pages of one, following the cursor, see everything once.
        let mut seen = Vec::new();
        let mut q = query(Scope::All, 1);
        loop {
            let page = log.list(&q).unwrap();
            seen.extend(ats(&page));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, vec![40, 30, 20, 10]);

        // A time window, and a cursor from another scope is refused.
        let window = Query { from_ns: Some(15), to_ns: Some(40), ..query(Scope::All, 10) };
        assert_eq!(ats(&log.list(&window).unwrap()), vec![30, 20]);
        let first = log.list(&query(Scope::All, 1)).unwrap().next.unwrap();
        let foreign = Query { after: Some(first), ..query(own, 10) };
        assert!(matches!(log.list(&foreign), Err(Error::BadCursor)));
    }

    // Regression: 32 concurrent reads, each awaiting sled's `flush_async`,
    // filled sled's thread pool with flushes waiting on each other and hung.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_records_share_flushes_and_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(LocalLog::open(dir.path()).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..256 {
            let log = log.clone();
            tasks.spawn(async move { log.record(&[inquiry("A", "330206", "bank-a", i)]).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(log.list(&query(Scope::All, 1_000)).unwrap().inquiries.len(), 256);
    }

    #[tokio::test]
    async fn inquiries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = LocalLog::open(dir.path()).unwrap();
        log.record(&[inquiry("A", "330206", "bank-a", 10)]).await.unwrap();
        drop(log);
        let log = LocalLog::open(dir.path()).unwrap();
        log.record(&[inquiry("A", "330206", "bank-a", 20)]).await.unwrap();
        assert_eq!(ats(&log.list(&query(Scope::All, 10)).unwrap()), vec![20, 10]);
    }

    fn all(log: &LocalLog) -> Vec<i64> {
        ats(&log.list(&query(Scope::All, 100_000)).unwrap())
    }

    /// A WAL file as `record` writes it, with ids far above any sled hands
    /// out in a fresh database; one byte vector per record.
    fn wal_records(first_at: i64, n: i64) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let at = first_at + i;
                let value = serde_json::to_vec(&inquiry("A", "330206", "bank-a", at)).unwrap();
                let mut out = Vec::new();
                encode_record(&mut out, (1 << 40) + at as u64, &value);
                out
            })
            .collect()
    }

    fn wal_names(dir: &Path) -> Vec<u64> {
        wal_files(dir).unwrap().into_iter().map(|(generation, _)| generation).collect()
    }

    #[tokio::test]
    async fn open_replays_records_sled_never_saw() {
        let dir = tempfile::tempdir().unwrap();
        // A crash after the WAL sync, before sled wrote anything: an empty
        // database and a WAL file.
        drop(kv::open(sled::Config::new(), dir.path()).unwrap());
        std::fs::write(wal_path(dir.path(), 7), wal_records(1, 5).concat()).unwrap();

        let log = LocalLog::open(dir.path()).unwrap();
        assert_eq!(all(&log), vec![5, 4, 3, 2, 1]);
        let own = Scope::Inquirer { principal: "bank-a".into(), uscc: None };
        assert_eq!(ats(&log.list(&query(own, 10)).unwrap()).len(), 5, "every index is rebuilt");
        assert_eq!(wal_names(dir.path()), vec![8], "replayed files go, a new generation starts");

        log.record(&[inquiry("B", "110105", "bank-b", 6)]).await.unwrap();
        drop(log);
        assert_eq!(wal_names(dir.path()), Vec::<u64>::new(), "a clean close leaves nothing to replay");
        let log = LocalLog::open(dir.path()).unwrap();
        assert_eq!(all(&log), vec![6, 5, 4, 3, 2, 1]);
    }

    #[tokio::test]
    async fn a_torn_tail_loses_only_that_record_and_the_log_goes_on() {
        let torn = |mut bytes: Vec<u8>| {
            bytes.truncate(bytes.len() - 3);
            bytes
        };
        let garbage = |mut bytes: Vec<u8>| {
            bytes.extend_from_slice(&[0xff, 0x00, 0x00, 0x00, 0x42, 0x42]);
            bytes
        };
        for (damage, expected) in [(torn as fn(Vec<u8>) -> Vec<u8>, vec![2, 1]), (garbage, vec![3, 2, 1])] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(wal_path(dir.path(), 1), damage(wal_records(1, 3).concat())).unwrap();

            let log = LocalLog::open(dir.path()).unwrap();
            assert_eq!(all(&log), expected);
            log.record(&[inquiry("A", "330206", "bank-a", 10)]).await.unwrap();
            drop(log);
            let log = LocalLog::open(dir.path()).unwrap();
            let mut after = expected.clone();
            after.insert(0, 10);
            assert_eq!(all(&log), after);
        }
    }

    /// A bad checksum mid-file ends that file's replay (the length prefixes
    /// after it cannot be trusted); later generations are still replayed.
    #[tokio::test]
    async fn a_bad_checksum_mid_file_ends_that_files_replay() {
        let dir = tempfile::tempdir().unwrap();
        let mut records = wal_records(1, 3);
        let middle = &mut records[1];
        let last = middle.len() - SUM_BYTES - 2; // in the payload's JSON
        middle[last] ^= 0x01;
        std::fs::write(wal_path(dir.path(), 1), records.concat()).unwrap();
        std::fs::write(wal_path(dir.path(), 2), wal_records(4, 1).concat()).unwrap();

        let log = LocalLog::open(dir.path()).unwrap();
        assert_eq!(all(&log), vec![4, 1]);
    }

    #[test]
    fn records_decode_as_encoded() {
        let mut bytes = Vec::new();
        encode_record(&mut bytes, 42, b"{}");
        encode_record(&mut bytes, 43, b"[1]");
        assert_eq!(bytes.len(), 2 * (LEN_BYTES + ID_BYTES + SUM_BYTES) + 5);
        assert_eq!(decode_records(&bytes), vec![(42, b"{}".as_slice()), (43, b"[1]".as_slice())]);
        for cut in 0..bytes.len() {
            let whole = if cut < LEN_BYTES + ID_BYTES + SUM_BYTES + 2 { 0 } else { 1 };
            assert_eq!(decode_records(&bytes[..cut]).len(), whole, "cut at {cut}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rotation_checkpoints_old_files_and_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        // Every file holding anything is due: each group starts a new one.
        let options = Options {
            rotate_bytes: 1,
            rotate_every: std::time::Duration::from_secs(3600),
            ..Options::default()
        };
        let log = LocalLog::open_with(dir.path(), options.clone()).unwrap();
        for at in 1..=20 {
            log.record(&[inquiry("A", "330206", "bank-a", at)]).await.unwrap();
        }
        log.wal.wait_for_checkpoints();
        assert_eq!(wal_names(dir.path()), vec![20], "19 rotations, the old files deleted");
        assert_eq!(all(&log).len(), 20);

        // Concurrent callers across rotations.
        let log = std::sync::Arc::new(log);
        let mut tasks = tokio::task::JoinSet::new();
        for at in 21..=120 {
            let log = log.clone();
            tasks.spawn(async move { log.record(&[inquiry("B", "110105", "bank-b", at)]).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        log.wal.wait_for_checkpoints();
        assert_eq!(wal_names(dir.path()).len(), 1);
        drop(std::sync::Arc::into_inner(log).unwrap());

        let log = LocalLog::open_with(dir.path(), options).unwrap();
        assert_eq!(all(&log), (1..=120).rev().collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_sync_fails_its_group_and_every_later_record() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default();
        let log = std::sync::Arc::new(LocalLog::open_with(dir.path(), options.clone()).unwrap());
        log.record(&[inquiry("A", "330206", "bank-a", 1)]).await.unwrap();

        options.fail_syncs.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut tasks = tokio::task::JoinSet::new();
        for at in 2..34 {
            let log = log.clone();
            tasks.spawn(async move { log.record(&[inquiry("A", "330206", "bank-a", at)]).await });
        }
        while let Some(done) = tasks.join_next().await {
            let error = done.unwrap().unwrap_err();
            assert_eq!(error.to_string(), "inquiry log storage: syncing the inquiry WAL: injected");
        }
        // Fail-stop: the disk "recovers", the log does not acknowledge.
        options.fail_syncs.store(false, std::sync::atomic::Ordering::Relaxed);
        assert!(log.record(&[inquiry("A", "330206", "bank-a", 40)]).await.is_err());
        drop(std::sync::Arc::into_inner(log).unwrap());

        let log = LocalLog::open(dir.path()).unwrap();
        assert!(all(&log).contains(&1), "what was acknowledged survives");
        log.record(&[inquiry("A", "330206", "bank-a", 50)]).await.unwrap();
        assert_eq!(all(&log)[0], 50, "a reopened log works again");
    }

    const CRASH_DIR: &str = "INQUIRIES_CRASH_TEST_DIR";

    /// Not a test on its own: the child `acknowledged_records_survive_sigkill`
    /// starts (it returns at once without the variable).
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os(CRASH_DIR) else { return };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        runtime.block_on(async move {
            let log = std::sync::Arc::new(LocalLog::open(Path::new(&dir)).unwrap());
            let mut tasks = tokio::task::JoinSet::new();
            for task in 0..16 {
                let log = log.clone();
                tasks.spawn(async move {
                    // Bounded, should the parent never kill this process.
                    for n in 0..10_000 {
                        let at = task * 1_000_000 + n;
                        log.record(&[inquiry("A", "330206", "bank-a", at)]).await.unwrap();
                        println!("acked {at}");
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
        });
    }

    #[test]
    fn acknowledged_records_survive_sigkill() {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::crash_child", "--nocapture", "--test-threads=1"])
            .env(CRASH_DIR, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acked = Vec::new();
        while acked.len() < 500 {
            let line = lines.next().expect("the child stopped before it was killed").unwrap();
            if let Some(at) = line.strip_prefix("acked ") {
                acked.push(at.parse::<i64>().unwrap());
            }
        }
        child.kill().unwrap(); // SIGKILL
        // Acknowledgments printed before the kill are still in the pipe.
        for line in lines {
            if let Some(at) = line.unwrap().strip_prefix("acked ") {
                acked.push(at.parse::<i64>().unwrap());
            }
        }
        child.wait().unwrap();

        let log = LocalLog::open(dir.path()).unwrap();
        let found: std::collections::HashSet<i64> = all(&log).into_iter().collect();
        let lost: Vec<_> = acked.iter().filter(|at| !found.contains(at)).collect();
        assert!(lost.is_empty(), "{} of {} acknowledged inquiries lost: {lost:?}", lost.len(), acked.len());
    }
}
