//! The inquiry log's write-ahead log: group commit in front of sled, and
//! the indexer that writes sled behind it.
//!
//! Durability: `record` appends the inquiries to a WAL file and returns
//! once an `fdatasync` covers them; nothing else is on the request path.
//! One flusher thread writes everything pending with one `write` and one
//! `fdatasync`, so concurrent callers share a sync, then acknowledges them
//! and hands the group to the indexer thread, which writes each inquiry's
//! keys into sled (`local::index`: the inquiry under its primary key, empty
//! pointers under the others) as plain inserts, not a `sled::Batch`: sled
//! 0.34 makes a batch atomic by writing out its IO buffer before and after
//! it, each a synchronous `pwrite` + `sync_file_range` under a global lock.
//! The WAL record is what makes an inquiry's keys durable together. After
//! a failed write or sync the log refuses every further record
//! (fail-stop): the file's state is unknown, and nothing that may not be
//! durable is acknowledged. A failed sled write in the indexer stops the
//! log the same way (what it acknowledged is in the WAL, replayed at the
//! next open).
//!
//! Read-your-writes: the flusher numbers its groups; `durable` is the last
//! group synced (and so acknowledged), `indexed` the last the indexer
//! wrote. A listing first waits until `indexed` reaches the `durable` it
//! saw when it started, so it shows every inquiry acknowledged before it;
//! the wait is bounded (10 s, then [`Error::Unavailable`]). The queue to
//! the indexer holds at most 1 024 groups: when it is full the flusher
//! waits, and so do new records (back-pressure), so memory stays bounded
//! however far sled falls behind.
//!
//! WAL files are `DIR/wal.<generation>` (20 digits). Each record is
//! `u32 len (LE) ‖ payload ‖ first 8 bytes of BLAKE3(payload)`, with
//! `payload = u64 id (BE) ‖ the inquiry's JSON`; the index keys are a
//! function of `(id, inquiry)`, so replaying a record is idempotent.
//!
//! Checkpoints: when the current file exceeds 16 MiB, or every 30 s if it
//! holds anything, the flusher starts the next generation (the directory is
//! fsynced) and queues the old file behind its last group. The indexer
//! reaches it only once every record in it is in sled, and passes it to a
//! checkpointer thread, which flushes sled and deletes it: a file goes only
//! once its records are indexed and flushed. Records written meanwhile go
//! to the new file and are acknowledged only once it is synced.
//!
//! Open replays every WAL file, oldest generation first, into sled (records
//! acknowledged but never indexed, or indexed but not flushed), then
//! flushes sled, deletes them and starts a new generation. Replay of a file
//! stops at its first record that is short (a torn tail: a crash during a
//! write that was never acknowledged), implausibly long, or fails its
//! checksum. A bad checksum in the middle of a file also ends that file's
//! replay: the length prefixes after it cannot be trusted, and guessing
//! where the next record starts could apply garbage. Later generations are
//! still replayed. sled's id generator is unique across crashes (it
//! persists ahead of what it hands out), so new ids never repeat a replayed
//! one. A clean close indexes and checkpoints the last file, leaving
//! nothing to replay.

use std::path::Path;

use kv::lock;

use crate::local::index;
use crate::{Error, Result, io_error};

/// A WAL file grows to about this size before the log checkpoints it.
const ROTATE_BYTES: u64 = 16 << 20;
/// A WAL file holding anything is checkpointed at least this often, so a
/// quiet service leaves little to replay.
const ROTATE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Groups queued for the indexer before the flusher (and so `record`)
/// waits for it.
const INDEX_QUEUE: usize = 1024;
/// How long a listing waits for the indexer before it gives up.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// No inquiry comes near this; a larger length prefix is a torn or corrupt
/// record, not a reason to allocate.
pub(crate) const MAX_RECORD: usize = 1 << 20;
/// `u32` length prefix before, 8 checksum bytes after each payload.
pub(crate) const LEN_BYTES: usize = 4;
pub(crate) const SUM_BYTES: usize = 8;
/// `u64` id before the inquiry's JSON in each payload.
pub(crate) const ID_BYTES: usize = 8;

/// When the flusher starts a new WAL file, how many groups wait for the
/// indexer and how long a listing does (tests make them small).
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) rotate_bytes: u64,
    pub(crate) rotate_every: std::time::Duration,
    pub(crate) index_queue: usize,
    pub(crate) index_wait: std::time::Duration,
    /// Makes the next syncs fail, as a disk would.
    #[cfg(test)]
    pub(crate) fail_syncs: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Makes the indexer drop what it is sent, as a crash right after the
    /// acknowledgments would: nothing reaches sled, no file is deleted.
    #[cfg(test)]
    pub(crate) index_nothing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rotate_bytes: ROTATE_BYTES,
            rotate_every: ROTATE_EVERY,
            index_queue: INDEX_QUEUE,
            index_wait: INDEX_WAIT,
            #[cfg(test)]
            fail_syncs: Default::default(),
            #[cfg(test)]
            index_nothing: Default::default(),
        }
    }
}

impl Options {
    /// Whether the indexer writes what it is sent: always, outside tests.
    fn indexing(&self) -> bool {
        #[cfg(test)]
        return !self.index_nothing.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        true
    }
}

/// Group commit through the write-ahead log. Callers put their encoded
/// records in `pending` and wait; one thread (the flusher) appends all that
/// is pending with one `write` and one `fdatasync`, then wakes every caller
/// that sync covered and queues the group for a second thread (the
/// indexer), which writes it into sled. A third (the checkpointer) flushes
/// sled and deletes WAL files the indexer is done with, so neither sled's
/// inserts nor its flush (several fsyncs) holds up an acknowledgment.
pub(crate) struct Wal {
    pub(crate) shared: std::sync::Arc<WalShared>,
    index_wait: std::time::Duration,
    flusher: Option<std::thread::JoinHandle<()>>,
    indexer: Option<std::thread::JoinHandle<()>>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

pub(crate) struct WalShared {
    pending: std::sync::Mutex<Pending>,
    wake: std::sync::Condvar,
    /// How far the WAL is durable and how far sled is indexed.
    watermarks: std::sync::Mutex<Watermarks>,
    indexed: std::sync::Condvar,
    /// WAL files rotated away from, and those the checkpointer has dealt
    /// with (flushed sled, then deleted or, on error, kept for replay).
    checkpoints: std::sync::Mutex<(u64, u64)>,
    checkpointed: std::sync::Condvar,
    /// `fdatasync`s of the WAL so far, for the benchmark's group size.
    pub(crate) syncs: std::sync::atomic::AtomicU64,
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

/// WAL positions, in groups the flusher has synced (numbered from 1).
#[derive(Default)]
struct Watermarks {
    /// The last group synced: everything acknowledged is at or below it.
    durable: u64,
    /// The last group whose inquiries are all in sled.
    indexed: u64,
    /// Set when the indexer failed: it will not catch up.
    failed: Option<String>,
}

/// What the flusher queues for the indexer, in WAL order.
enum ToIndex {
    /// A synced (and acknowledged) group of encoded records.
    Group { position: u64, records: Vec<u8> },
    /// A WAL file the flusher has left: every group in it came before.
    Done(std::path::PathBuf),
}

/// The WAL file the flusher appends to.
pub(crate) struct WalFile {
    path: std::path::PathBuf,
    generation: u64,
    file: std::fs::File,
    len: u64,
}

pub(crate) fn wal_path(dir: &Path, generation: u64) -> std::path::PathBuf {
    dir.join(format!("wal.{generation:020}"))
}

/// Every WAL file in `dir`, oldest generation first.
pub(crate) fn wal_files(dir: &Path) -> std::io::Result<Vec<(u64, std::path::PathBuf)>> {
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

pub(crate) fn create_wal(dir: &Path, generation: u64) -> std::io::Result<WalFile> {
    let path = wal_path(dir, generation);
    let file = std::fs::OpenOptions::new().append(true).create_new(true).open(&path)?;
    sync_dir(dir)?;
    Ok(WalFile { path, generation, file, len: 0 })
}

/// Appends one WAL record: `u32 len (LE) ‖ payload ‖ BLAKE3(payload)[..8]`
/// with `payload = u64 id (BE) ‖ the inquiry's JSON` (the very bytes the
/// indexes store).
pub(crate) fn encode_record(out: &mut Vec<u8>, id: u64, value: &[u8]) {
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
pub(crate) fn decode_records(bytes: &[u8]) -> Vec<(u64, &[u8])> {
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

/// Applies every WAL file in `dir` to `tree`, oldest first; returns the
/// files (to delete once sled is flushed) and the highest generation seen.
pub(crate) fn replay(dir: &Path, tree: &sled::Tree) -> Result<(Vec<std::path::PathBuf>, u64)> {
    let files = wal_files(dir).map_err(|e| io_error("listing the inquiry WAL", e))?;
    let last = files.last().map_or(0, |(generation, _)| *generation);
    let mut replayed = Vec::with_capacity(files.len());
    for (_, path) in files {
        let bytes = std::fs::read(&path).map_err(|e| io_error("reading the inquiry WAL", e))?;
        for (id, value) in decode_records(&bytes) {
            index(tree, id, value).map_err(|e| match e {
                Error::Corruption { key, what } => {
                    Error::Corruption { key: format!("{} {key}", path.display()), what }
                }
                other => other,
            })?;
        }
        replayed.push(path);
    }
    Ok((replayed, last))
}

impl Wal {
    pub(crate) fn start(
        dir: &Path,
        current: WalFile,
        tree: sled::Tree,
        options: Options,
    ) -> std::io::Result<Wal> {
        let shared = std::sync::Arc::new(WalShared {
            pending: std::sync::Mutex::new(Pending::default()),
            wake: std::sync::Condvar::new(),
            watermarks: std::sync::Mutex::new(Watermarks::default()),
            indexed: std::sync::Condvar::new(),
            checkpoints: std::sync::Mutex::new((0, 0)),
            checkpointed: std::sync::Condvar::new(),
            syncs: std::sync::atomic::AtomicU64::new(0),
        });
        let index_wait = options.index_wait;
        // Each thread ends when the one before it in the chain (flusher ->
        // indexer -> checkpointer) drops its sender, so a thread that fails
        // to start ends the ones already started.
        let (to_checkpoint, checkpoints) = std::sync::mpsc::channel();
        let checkpointer = {
            let (dir, shared, tree) = (dir.to_owned(), shared.clone(), tree.clone());
            std::thread::Builder::new()
                .name("inquiry-checkpoint".into())
                .spawn(move || run_checkpointer(&dir, &tree, &checkpoints, &shared))?
        };
        let (to_index, groups) = std::sync::mpsc::sync_channel(options.index_queue);
        let indexer = {
            let (options, shared) = (options.clone(), shared.clone());
            std::thread::Builder::new()
                .name("inquiry-index".into())
                .spawn(move || run_indexer(&tree, &groups, &to_checkpoint, &options, &shared))
        };
        let indexer = match indexer {
            Ok(thread) => thread,
            Err(e) => {
                let _ = checkpointer.join();
                return Err(e);
            }
        };
        let flusher = {
            let (dir, shared) = (dir.to_owned(), shared.clone());
            std::thread::Builder::new()
                .name("inquiry-flush".into())
                .spawn(move || run_flusher(&dir, current, &options, &to_index, &shared))
        };
        let flusher = match flusher {
            Ok(thread) => thread,
            Err(e) => {
                let _ = indexer.join();
                let _ = checkpointer.join();
                return Err(e);
            }
        };
        Ok(Wal {
            shared,
            index_wait,
            flusher: Some(flusher),
            indexer: Some(indexer),
            checkpointer: Some(checkpointer),
        })
    }

    /// Hands `records` to the flusher and waits until a sync covers them.
    pub(crate) async fn append(&self, records: Vec<u8>) -> Result<()> {
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
    pub(crate) fn check(&self) -> Result<()> {
        match &lock(&self.shared.pending).failed {
            Some(e) => Err(Error::Storage(e.clone())),
            None => Ok(()),
        }
    }

    /// Waits until every group acknowledged before this call is in sled,
    /// for at most the `index_wait` of [`Options`]: read-your-writes for
    /// listings. [`Error::Unavailable`] when the indexer is still behind
    /// then, [`Error::Storage`] when it failed.
    pub(crate) fn wait_indexed(&self) -> Result<()> {
        let mut marks = lock(&self.shared.watermarks);
        let durable = marks.durable;
        let deadline = std::time::Instant::now() + self.index_wait;
        while marks.indexed < durable {
            if let Some(e) = &marks.failed {
                return Err(Error::Storage(e.clone()));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!(
                    "the inquiry index is {} write groups behind the log after {:?}; list again later",
                    durable - marks.indexed,
                    self.index_wait
                )));
            }
            marks = self.shared.indexed.wait_timeout(marks, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        Ok(())
    }

    /// Waits until the checkpointer has dealt with every rotated file.
    #[cfg(test)]
    pub(crate) fn wait_for_checkpoints(&self) {
        let mut counts = lock(&self.shared.checkpoints);
        while counts.0 != counts.1 {
            counts = self.shared.checkpointed.wait(counts).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The flusher: one `write` and one `fdatasync` per group of appends,
/// then the acknowledgments, then the group goes to the indexer (waiting
/// while its queue is full). Before writing a group it rotates a file that
/// is due (large enough, or old enough and not empty): records written
/// while the old file is indexed and checkpointed thus go to the new file,
/// and are acknowledged only once that file is synced.
fn run_flusher(
    dir: &Path,
    mut current: WalFile,
    options: &Options,
    to_index: &std::sync::mpsc::SyncSender<ToIndex>,
    shared: &WalShared,
) {
    use std::io::Write as _;
    let mut group = Vec::new();
    let mut waiters = Vec::new();
    let mut rotated_at = std::time::Instant::now();
    let mut position = 0;
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
                // Behind the file's last group. The indexer outlives the
                // flusher; if it is gone the file stays and is replayed at
                // the next open.
                let _ = to_index.send(ToIndex::Done(old.path));
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
        if !waiters.is_empty() {
            // Durable before acknowledged: a listing that starts after an
            // acknowledgment waits for this group.
            position += 1;
            lock(&shared.watermarks).durable = position;
            for waiter in waiters.drain(..) {
                // A caller that gave up waiting has nothing to be told.
                let _ = waiter.send(Ok(()));
            }
            // Blocks while the indexer's queue is full (back-pressure).
            let _ = to_index.send(ToIndex::Group { position, records: std::mem::take(&mut group) });
        }
        if stop && lock(&shared.pending).waiters.is_empty() {
            // A clean close: the last file is indexed and checkpointed
            // too, so a restart has nothing to replay.
            lock(&shared.checkpoints).0 += 1;
            let _ = to_index.send(ToIndex::Done(current.path));
            return;
        }
    }
}

/// The indexer: writes each acknowledged group into sled, in WAL order,
/// and raises the `indexed` watermark; passes each file the flusher has
/// left on to the checkpointer once every group in it is written. After a
/// failed write it stops the log (fail-stop, as for a failed sync) and
/// drains its queue without writing, so the flusher never waits forever;
/// the WAL files stay for replay.
fn run_indexer(
    tree: &sled::Tree,
    groups: &std::sync::mpsc::Receiver<ToIndex>,
    to_checkpoint: &std::sync::mpsc::Sender<std::path::PathBuf>,
    options: &Options,
    shared: &WalShared,
) {
    let mut stopped = false;
    for message in groups {
        stopped |= !options.indexing();
        match message {
            ToIndex::Group { .. } if stopped => {}
            ToIndex::Group { position, records } => {
                let written =
                    decode_records(&records).into_iter().try_for_each(|(id, value)| index(tree, id, value));
                match written {
                    Ok(()) => {
                        lock(&shared.watermarks).indexed = position;
                        shared.indexed.notify_all();
                    }
                    Err(e) => {
                        stopped = true;
                        let message = format!("indexing the inquiry log: {e}");
                        tracing::error!(error = %message, "inquiry log indexing failed; the log stops, its WAL is kept for replay");
                        lock(&shared.pending).failed = Some(message.clone());
                        lock(&shared.watermarks).failed = Some(message);
                        shared.indexed.notify_all();
                    }
                }
            }
            ToIndex::Done(path) if stopped => {
                // Kept for replay: the checkpointer has nothing to do.
                drop(path);
                lock(&shared.checkpoints).1 += 1;
                shared.checkpointed.notify_all();
            }
            ToIndex::Done(path) => {
                // The checkpointer outlives the indexer.
                let _ = to_checkpoint.send(path);
            }
        }
    }
}

/// The checkpointer: for each WAL file the indexer is done with, flush
/// sled (every record in the file was inserted into sled before the file
/// was sent) and then delete the file. Files that arrive together share
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
        // The flusher's exit closed the indexer's queue: the indexer
        // writes what it was sent, passes the last file on and ends,
        // closing the checkpointer's channel; the checkpointer finishes
        // the files it was sent, then ends.
        if let Some(thread) = self.indexer.take() {
            let _ = thread.join();
        }
        if let Some(thread) = self.checkpointer.take() {
            let _ = thread.join();
        }
    }
}
