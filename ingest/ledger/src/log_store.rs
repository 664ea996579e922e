//! The embedded engine: the ledger's default, an [`Engine`] over plain
//! append-only files in `DATA/log/`, with the signed checkpoint in
//! `DATA/checkpoint` beside it.
//!
//! Everything file-specific lives in this file and its submodules
//! (`frame.rs`: the entries file's format and its sequential read;
//! `lock.rs`: the writer's lock; `damage.rs`, tests only: what an attacker
//! can do to the files). Layout (`docs/ledger.md`, "Storage of the
//! embedded engine"):
//!
//! * `entries`: one **group frame** per group commit, appended with one
//!   write and made durable with one `fdatasync` before anyone is
//!   answered; each entry's bytes are written once:
//!
//!   ```text
//!   magic "ecg1" | base u64_be | count u32_be | body_len u32_be
//!   | body: count x (u32_be len | entry record)   (StoredEntry::encode)
//!   | head record (81 bytes, StoredHead::encode)
//!   | check: BLAKE3(everything before)[..16]
//!   ```
//! * `tile-L`: the Merkle tree as tlog-tiles keeps it, tile level `L`
//!   holding the hashes of binary level `8 L` in index order (32 bytes
//!   each), so full tile `N` is bytes `[8192 N, 8192 (N + 1))` and the
//!   partial tile at the end is what follows. Levels in between are
//!   hashed from the tile below when asked for. Tiles are derived from the
//!   entries: a group commit writes its new hashes after the entries are
//!   durable and syncs them only before a checkpoint is signed. Below the
//!   last signed checkpoint they must be there and agree (else tampering,
//!   named by seq); above it a crash may have lost some, which start-up
//!   rebuilds from the entries it hashes anyway.
//! * `LOCK`: held by the one process that writes.
//!
//! The subject and idempotency indexes live in memory, rebuilt from the
//! entries by the first pass over them after the open (verification's,
//! so start-up reads the entries once; on first use otherwise): nothing on
//! disk can disagree with them, and no index insert is written per entry.
//!
//! A frame that fails its check at the end of the file is a write torn by a
//! crash (never acknowledged: its `fdatasync` did not return); a writable
//! open moves its bytes to `entries.torn-OFFSET` and truncates it. A frame
//! that fails its check with more frames after it is damage: its entries
//! are still read, so verification names the first changed one by seq,
//! and the frame itself is named if no entry is.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use super::engine::{Commit, Committed, Engine, NodeIter, StoredEntry, StoredHead};
use super::error::{Error, Result};
use super::hash::{Hash, node};
use super::tree::NodeSource;

#[cfg(test)]
pub(crate) mod damage;
mod frame;
mod lock;

use frame::{
    At, CHECK, Frames, HEAD_RECORD, HEADER, Indexes, MAGIC, encode_frame, key_digest, parse_frame, records,
    zeros_to_end,
};
use lock::WriterLock;

/// The directory of the embedded engine inside the data directory.
pub(crate) const LOG_DIR: &str = "log";
const ENTRIES: &str = "entries";
/// Binary levels per tile level (tlog-tiles: tiles of 256 hashes).
const TILE_HEIGHT: u8 = 8;
/// Read buffer of the sequential passes.
const READ_BUFFER: usize = 1 << 20;

fn tile_path(dir: &Path, tile_level: u8) -> PathBuf {
    dir.join(format!("tile-{tile_level}"))
}

/// What the store holds, as of the last durable group commit.
#[derive(Default)]
struct State {
    size: u64,
    /// Offset in `entries` where the next frame goes.
    end: u64,
    head: Option<StoredHead>,
    /// Spans and indexes, once a pass over every entry rebuilt them
    /// ([`LogStore::indexed`]).
    indexes: Indexes,
    indexed: bool,
    /// Per tile level: how many hashes its file holds (or, read-only, are
    /// held in `rebuilt`).
    tiles: Vec<u64>,
    /// Tile level 0 (the leaves) held in memory as well, 32 bytes per
    /// entry: every read of an entry checks its hash against its leaf, and
    /// a read of an enterprise's file should cost one `pread` per entry.
    leaves: Vec<Hash>,
}

/// The embedded file engine.
pub(crate) struct LogStore {
    dir: PathBuf,
    /// The data directory (`DATA`): the signed checkpoint is `DATA/checkpoint`.
    data_dir: PathBuf,
    writable: bool,
    entries: File,
    tile_files: RwLock<Vec<File>>,
    state: RwLock<State>,
    /// Per tile level, the hashes that must be on disk: those below the
    /// last signed checkpoint (when the store was opened).
    durable: Vec<u64>,
    /// Tile hashes rebuilt by a read-only open, which never writes.
    rebuilt: Mutex<HashMap<(u8, u64), Hash>>,
    /// The writer's frame buffer, reused.
    frame: Mutex<Vec<u8>>,
    /// Taken by [`Engine::release_writer`].
    lock: Mutex<Option<WriterLock>>,
}

/// The head record of the frame whose first entry is `base`.
fn head_record(bytes: &[u8], base: u64) -> Result<StoredHead> {
    StoredHead::decode(bytes).ok_or_else(|| Error::tampered(base, "a group frame's head record is malformed"))
}

impl LogStore {
    /// Whether `data_dir` holds a store of this engine.
    pub(crate) fn exists(data_dir: &Path) -> bool {
        data_dir.join(LOG_DIR).join(ENTRIES).is_file()
    }

    /// Opens (a writable open creates) the store in `data_dir/log`,
    /// scanning the frame headers to find its end and checking its last
    /// frame; the in-memory indexes are rebuilt by the first pass over
    /// every entry (verification's, which follows every open, or on first
    /// use). Tiles below the size of the last signed checkpoint
    /// (`DATA/checkpoint`, read unsigned here; verification checks its
    /// signature) must be on disk. A read-only open writes nothing and
    /// takes no lock, so it can check a store a server is appending to (as
    /// of the open).
    pub(crate) fn open(data_dir: &Path, writable: bool) -> Result<LogStore> {
        let checkpoint_size = crate::files::checkpoint_size(data_dir)?;
        let dir = data_dir.join(LOG_DIR);
        let lock = match writable {
            true => {
                std::fs::create_dir_all(&dir)?;
                Some(WriterLock::take(&dir)?)
            }
            false => None,
        };
        let path = dir.join(ENTRIES);
        let entries = if writable {
            OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?
        } else {
            File::open(&path)
                .map_err(|e| Error::InvalidArgument(format!("no ledger at {}: {e}", path.display())))?
        };
        let file_len = entries.metadata()?.len();
        if writable && file_len == 0 {
            // A new store: its files' names are durable before any entry.
            crate::files::sync_dir(&dir)?;
            crate::files::sync_dir(data_dir)?;
        }
        // Frame headers only, skipping the bodies; the last frame is read
        // whole and checked, to tell a torn write (verification checks
        // every other one as it reads it).
        let mut reader = BufReader::with_capacity(READ_BUFFER, At { file: &entries, pos: 0, end: file_len });
        let mut state = State::default();
        let mut at = 0u64;
        // Where the head record of the last whole frame lies.
        let mut head_at = None;
        // The frame before: `(offset, length, base, count)`.
        let mut previous = None;
        let torn = loop {
            if at == file_len {
                break None;
            }
            if file_len - at < HEADER as u64 {
                break Some("the last group frame is incomplete");
            }
            let mut header = [0u8; HEADER];
            reader.read_exact(&mut header)?;
            if &header[..4] != MAGIC {
                if zeros_to_end(&mut reader, &header)? {
                    break Some("the file ends in zeros where a group frame was being written");
                }
                return Err(Error::tampered(
                    state.size,
                    format!("the group frame at offset {at} of {} has no frame header", path.display()),
                ));
            }
            let base = u64::from_be_bytes(header[4..12].try_into().expect("8 bytes"));
            let count = u32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
            let body_len = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes")) as u64;
            let len = HEADER as u64 + body_len + (HEAD_RECORD + CHECK) as u64;
            if at + len > file_len {
                break Some("the last group frame is incomplete");
            }
            if base != state.size {
                // A changed count in the frame before shows here: name its
                // entries if they do not parse as that many.
                if let Some((offset, len, base, count)) = previous {
                    let mut buf = vec![0u8; len as usize];
                    entries.read_exact_at(&mut buf, offset)?;
                    if let Ok((frame, _)) = parse_frame(&buf, false)
                        && records(frame.body, count).is_none()
                    {
                        return Err(Error::tampered(base, "a group frame's entries do not parse"));
                    }
                }
                return Err(Error::tampered(
                    state.size,
                    format!("the group frame at offset {at} starts at seq {base} instead"),
                ));
            }
            if at + len == file_len {
                let mut buf = header.to_vec();
                buf.resize(len as usize, 0);
                reader.read_exact(&mut buf[HEADER..])?;
                let (frame, _) = parse_frame(&buf, true)
                    .map_err(|_| Error::Storage("a frame read whole is short".into()))?;
                if !frame.intact {
                    break Some("the last group frame fails its check");
                }
                state.head = Some(head_record(frame.head, base)?);
            } else {
                reader.seek_relative((len - HEADER as u64) as i64)?;
                head_at = Some((at + HEADER as u64 + body_len, base));
            }
            previous = Some((at, len, base, count));
            state.size += u64::from(count);
            at += len;
        };
        if state.head.is_none()
            && let Some((head_at, base)) = head_at
        {
            // The last frame was torn: the head is the one before it.
            let mut record = [0u8; HEAD_RECORD];
            entries.read_exact_at(&mut record, head_at)?;
            state.head = Some(head_record(&record, base)?);
        }
        drop(reader);
        if let Some(what) = torn {
            tracing::warn!(
                offset = at,
                size = state.size,
                "{what}: a group commit torn by a crash, never acknowledged"
            );
            // Below the checkpoint it is not a crash but a rollback, which
            // verification refuses: the store is then left as it is.
            if writable && state.size >= checkpoint_size {
                let mut tail = vec![0; (file_len - at) as usize];
                entries.read_exact_at(&mut tail, at)?;
                let aside = dir.join(format!("{ENTRIES}.torn-{at}"));
                std::fs::write(&aside, &tail)?;
                entries.set_len(at)?;
                entries.sync_all()?;
                tracing::warn!(path = %aside.display(), "kept the torn bytes aside and cut them off");
            }
        }
        state.end = at;
        // Nothing to rebuild in an empty store.
        state.indexed = state.size == 0;

        let mut tile_files = Vec::new();
        let mut durable = Vec::new();
        for level in 0..64 / TILE_HEIGHT {
            let path = tile_path(&dir, level);
            let expected = state.size >> (level * TILE_HEIGHT);
            let file = if writable {
                OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?
            } else {
                match File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) => return Err(e.into()),
                }
            };
            let len = file.metadata()?.len();
            if writable && len % 32 != 0 && len / 32 >= checkpoint_size >> (level * TILE_HEIGHT) {
                // A hash torn by a crash, above what any checkpoint covers.
                file.set_len(len / 32 * 32)?;
            }
            if level == 0 {
                let mut bytes = vec![0u8; (len / 32 * 32) as usize];
                file.read_exact_at(&mut bytes, 0)?;
                state.leaves = bytes.chunks_exact(32).map(|c| c.try_into().expect("32 bytes")).collect();
            }
            state.tiles.push(len / 32);
            durable.push(checkpoint_size >> (level * TILE_HEIGHT));
            tile_files.push(file);
            if expected == 0 && len == 0 {
                break;
            }
        }
        Ok(LogStore {
            data_dir: data_dir.to_path_buf(),
            dir,
            writable,
            entries,
            tile_files: RwLock::new(tile_files),
            state: RwLock::new(state),
            durable,
            rebuilt: Mutex::new(HashMap::new()),
            frame: Mutex::new(Vec::new()),
            lock: Mutex::new(lock),
        })
    }

    /// Writes only while this store holds the writer's lock: opened
    /// writable, and not released by a close.
    fn check_writer(&self) -> Result<()> {
        match self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some() {
            true => Ok(()),
            false if self.writable => Err(Error::ShuttingDown),
            false => Err(Error::Storage("this store was opened read-only".into())),
        }
    }

    /// Entry `seq`, its record at `(offset, len)` in `entries`.
    fn read_entry(&self, seq: u64, (offset, len): (u64, u32)) -> Result<StoredEntry> {
        let mut bytes = vec![0; len as usize];
        self.entries.read_exact_at(&mut bytes, offset)?;
        StoredEntry::decode(seq, &bytes).ok_or_else(|| Error::corruption(seq, "entry record is malformed"))
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state with its spans and indexes, rebuilding them first if no
    /// pass over every entry has yet (a store used without verification:
    /// tests, a copy being written).
    fn indexed(&self) -> Result<std::sync::RwLockReadGuard<'_, State>> {
        {
            let state = self.read_state();
            if state.indexed {
                return Ok(state);
            }
        }
        let end = self.read_state().end;
        let mut frames = self.frames(end, true);
        for item in &mut frames {
            if let (seq, None) = item? {
                return Err(Error::corruption(seq, "entry record is malformed"));
            }
        }
        let indexes =
            frames.finish().ok_or_else(|| Error::tampered(None, "the entries file could not be indexed"))?;
        self.install(indexes, end);
        Ok(self.read_state())
    }

    /// Every frame up to `end`, in order, rebuilding the indexes if `index`.
    fn frames(&self, end: u64, index: bool) -> Frames<BufReader<At<&File>>> {
        Frames::new(BufReader::with_capacity(READ_BUFFER, At { file: &self.entries, pos: 0, end }), index)
    }

    /// Keeps `indexes`, rebuilt by a pass over the entries up to `end`,
    /// unless the store has them already. Nothing is appended before the
    /// store is indexed (`commit` asks for the indexes first), so `end`
    /// is still the end.
    fn install(&self, indexes: Indexes, end: u64) {
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !state.indexed && state.end == end {
            state.indexes = indexes;
            state.indexed = true;
        }
    }

    /// The stored hash `index` of tile level `level`, if there is one.
    fn tile_hash(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        if !self.writable
            && let Some(hash) =
                self.rebuilt.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&(level, index))
        {
            return Ok(Some(*hash));
        }
        if level == 0 {
            return Ok(self.read_state().leaves.get(index as usize).copied());
        }
        let stored = self.read_state().tiles.get(usize::from(level)).copied().unwrap_or(0);
        if index >= stored {
            return Ok(None);
        }
        let files = self.tile_files.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut hash = [0u8; 32];
        files[usize::from(level)].read_exact_at(&mut hash, index * 32)?;
        Ok(Some(hash))
    }

    /// Appends `hashes` (consecutive, from `first`) to tile level `level`.
    fn write_tile(&self, level: u8, first: u64, hashes: &[u8]) -> Result<()> {
        let mut files = self.tile_files.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        while files.len() <= usize::from(level) {
            let path = tile_path(&self.dir, files.len() as u8);
            files.push(OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?);
        }
        files[usize::from(level)].write_all_at(hashes, first * 32)?;
        Ok(())
    }

    fn sync_tiles(&self) -> Result<()> {
        for file in self.tile_files.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            file.sync_data()?;
        }
        // Tile files created since the last checkpoint, by name.
        crate::files::sync_dir(&self.dir)
    }
}

impl NodeSource for LogStore {
    fn node(&self, level: u8, index: u64) -> Result<Hash> {
        self.node_opt(level, index)?.ok_or_else(|| {
            Error::corruption(
                index << level,
                format!("merkle node (level {level}, index {index}) is missing"),
            )
        })
    }
}

impl Engine for LogStore {
    fn entry(&self, seq: u64) -> Result<Option<StoredEntry>> {
        let Some(span) = self.indexed()?.indexes.spans.get(seq as usize).copied() else { return Ok(None) };
        self.read_entry(seq, span).map(Some)
    }

    fn entries(&self) -> Box<dyn Iterator<Item = Result<(u64, Option<StoredEntry>)>> + '_> {
        let (end, indexed) = {
            let state = self.read_state();
            (state.end, state.indexed)
        };
        // The first pass after the open rebuilds the indexes on its way.
        let mut frames = self.frames(end, !indexed);
        let mut installed = indexed;
        Box::new(std::iter::from_fn(move || {
            let next = frames.next();
            if next.is_none() && !installed {
                installed = true;
                if let Some(indexes) = frames.finish() {
                    self.install(indexes, end);
                }
            }
            next
        }))
    }

    fn node_opt(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        let below = level % TILE_HEIGHT;
        let tile_level = level / TILE_HEIGHT;
        if below == 0 {
            return self.tile_hash(tile_level, index);
        }
        // A level between tiles: hashed up from the stored level below.
        let width = 1u64 << below;
        let mut hashes = Vec::with_capacity(width as usize);
        for i in index << below..(index + 1) << below {
            match self.tile_hash(tile_level, i)? {
                Some(hash) => hashes.push(hash),
                None => return Ok(None),
            }
        }
        while hashes.len() > 1 {
            hashes = hashes.chunks(2).map(|pair| node(&pair[0], &pair[1])).collect();
        }
        Ok(hashes.pop())
    }

    fn stores_level(&self, level: u8) -> bool {
        level.is_multiple_of(TILE_HEIGHT)
    }

    fn nodes(&self, level: u8) -> NodeIter<'_> {
        if !level.is_multiple_of(TILE_HEIGHT) {
            return Box::new(std::iter::empty());
        }
        let tile_level = usize::from(level / TILE_HEIGHT);
        if tile_level == 0 {
            let count = self.read_state().leaves.len();
            return Box::new(
                (0..count).map(move |index| Ok((index as u64, Some(self.read_state().leaves[index])))),
            );
        }
        let files = self.tile_files.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(file) = files.get(tile_level).and_then(|f| f.try_clone().ok()) else {
            return Box::new(std::iter::empty());
        };
        let count = self.read_state().tiles.get(tile_level).copied().unwrap_or(0);
        let mut reader = BufReader::with_capacity(READ_BUFFER, At { file, pos: 0, end: count * 32 });
        Box::new((0..count).map(move |index| {
            let mut hash = [0u8; 32];
            reader.read_exact(&mut hash)?;
            Ok((index, Some(hash)))
        }))
    }

    fn rebuilds_node(&self, level: u8, index: u64) -> bool {
        let tile_level = usize::from(level / TILE_HEIGHT);
        level.is_multiple_of(TILE_HEIGHT) && index >= self.durable.get(tile_level).copied().unwrap_or(0)
    }

    fn rebuild_node(&self, level: u8, index: u64, hash: Hash) -> Result<()> {
        let tile_level = level / TILE_HEIGHT;
        if !self.writable {
            self.rebuilt
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((tile_level, index), hash);
            return Ok(());
        }
        self.write_tile(tile_level, index, &hash)?;
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        while state.tiles.len() <= usize::from(tile_level) {
            state.tiles.push(0);
        }
        let stored = &mut state.tiles[usize::from(tile_level)];
        *stored = (*stored).max(index + 1);
        if tile_level == 0 {
            match state.leaves.get_mut(index as usize) {
                Some(leaf) => *leaf = hash,
                None => state.leaves.push(hash),
            }
        }
        Ok(())
    }

    fn indexes_are_derived(&self) -> bool {
        true
    }

    fn subject_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, u64)>> + '_> {
        let state = match self.indexed() {
            Ok(state) => state,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        let mut all: Vec<(Vec<u8>, u64)> = state
            .indexes
            .subjects
            .iter()
            .flat_map(|(subject, seqs)| seqs.iter().map(move |seq| (subject.clone(), *seq)))
            .collect();
        all.sort();
        Box::new(all.into_iter().map(Ok))
    }

    fn idempotency_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, Option<(u64, Hash)>)>> + '_> {
        let seqs: Vec<u64> = match self.indexed() {
            Ok(state) => state.indexes.idempotency.values().copied().collect(),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(seqs.into_iter().filter_map(move |seq| match self.entry(seq) {
            Err(e) => Some(Err(e)),
            Ok(entry) => {
                let (key, fingerprint) = entry?.idempotency?;
                Some(Ok((key, Some((seq, fingerprint)))))
            }
        }))
    }

    fn head(&self) -> Result<Option<StoredHead>> {
        Ok(self.read_state().head)
    }

    fn subject_seqs(&self, subject: &[u8]) -> Result<Vec<u64>> {
        Ok(self.indexed()?.indexes.subjects.get(subject).cloned().unwrap_or_default())
    }

    #[allow(clippy::type_complexity)]
    fn subject_entries(
        &self,
        subject: &[u8],
        below: u64,
    ) -> Result<Vec<(u64, Option<StoredEntry>, Option<Hash>)>> {
        // Spans and leaves under one lock, then one `pread` per entry.
        let wanted: Vec<(u64, Option<(u64, u32)>, Option<Hash>)> = {
            let state = self.indexed()?;
            let Some(seqs) = state.indexes.subjects.get(subject) else { return Ok(Vec::new()) };
            seqs.iter()
                .take_while(|seq| **seq < below)
                .map(|&seq| {
                    let i = seq as usize;
                    (seq, state.indexes.spans.get(i).copied(), state.leaves.get(i).copied())
                })
                .collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        for (seq, span, leaf) in wanted {
            out.push((seq, span.map(|span| self.read_entry(seq, span)).transpose()?, leaf));
        }
        Ok(out)
    }

    fn has_subject(&self, subject: &[u8], seq: u64) -> Result<bool> {
        Ok(self.indexed()?.indexes.subjects.get(subject).is_some_and(|seqs| seqs.binary_search(&seq).is_ok()))
    }

    fn idempotency(&self, key: &[u8]) -> Result<Option<(u64, Hash)>> {
        let Some(seq) = self.indexed()?.indexes.idempotency.get(&key_digest(key)).copied() else {
            return Ok(None);
        };
        let entry = self.entry(seq)?.ok_or_else(|| Error::corruption(seq, "indexed entry is missing"))?;
        Ok(entry.idempotency.filter(|(stored, _)| stored == key).map(|(_, fingerprint)| (seq, fingerprint)))
    }

    fn commit(&self, commit: &Commit) -> Result<Committed> {
        self.check_writer()?;
        let (size, end) = {
            let state = self.indexed()?;
            (state.size, state.end)
        };
        if commit.base != size {
            return Err(Error::Storage(format!(
                "a group staged on size {} but the store holds {size}",
                commit.base
            )));
        }
        let head = commit.head.ok_or_else(|| Error::Storage("a group commit without a head".into()))?;
        let mut frame = self.frame.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        frame.clear();
        let spans = encode_frame(&mut frame, commit.base, &commit.entries, &head.encode())?;
        let spans: Vec<(u64, u32)> = spans.into_iter().map(|(at, len)| (end + at as u64, len)).collect();
        self.entries.write_all_at(&frame, end)?;
        // Durable before anyone is answered; the tiles below are derived
        // and synced before the next checkpoint.
        self.entries.sync_data()?;
        let new_end = end + frame.len() as u64;
        drop(frame);

        let mut tiles: Vec<(u8, u64, Vec<u8>)> = Vec::new();
        for (level, index, hash) in &commit.nodes {
            if !level.is_multiple_of(TILE_HEIGHT) {
                continue;
            }
            let tile_level = level / TILE_HEIGHT;
            match tiles
                .iter_mut()
                .find(|(l, first, bytes)| *l == tile_level && first + bytes.len() as u64 / 32 == *index)
            {
                Some((_, _, bytes)) => bytes.extend_from_slice(hash),
                None => tiles.push((tile_level, *index, hash.to_vec())),
            }
        }
        for (tile_level, first, bytes) in &tiles {
            self.write_tile(*tile_level, *first, bytes)?;
        }
        let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (entry, span) in commit.entries.iter().zip(spans) {
            let key = entry.idempotency.as_ref().map(|(key, _)| key.as_slice());
            state.indexes.add(entry.seq, span, &entry.subject, key);
        }
        for (tile_level, first, bytes) in tiles {
            if tile_level == 0 {
                state.leaves.truncate(first as usize);
                state.leaves.extend(bytes.chunks_exact(32).map(|c| <Hash>::try_from(c).expect("32 bytes")));
            }
            let level = usize::from(tile_level);
            while state.tiles.len() <= level {
                state.tiles.push(0);
            }
            state.tiles[level] = state.tiles[level].max(first + bytes.len() as u64 / 32);
        }
        state.size = head.size;
        state.end = new_end;
        state.head = Some(head);
        Ok(Committed::Done)
    }

    fn release_writer(&self) {
        drop(self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
    }

    fn read_checkpoint(&self) -> Result<Option<(String, i64)>> {
        crate::files::read_checkpoint(&self.data_dir)
    }

    fn write_checkpoint(&self, _tree_size: u64, note: &str, _signed_at_ns: i64) -> Result<()> {
        self.check_writer()?;
        // The tiles a checkpoint covers are on disk before it is.
        self.sync_tiles()?;
        crate::files::write_checkpoint(&self.data_dir, note)
    }

    #[cfg(test)]
    fn put_raw(&self, key: &[u8], value: &[u8]) -> Result<()> {
        // `key` is a file offset in `entries`, big-endian.
        let offset =
            u64::from_be_bytes(key.try_into().map_err(|_| Error::Storage("key: 8-byte offset".into()))?);
        self.entries.write_all_at(value, offset)?;
        Ok(())
    }
}

impl LogStore {
    /// Where entry `seq`'s record lies in `entries` (tests damage it).
    #[cfg(test)]
    pub(crate) fn span(&self, seq: u64) -> Option<(u64, u32)> {
        self.indexed().ok()?.indexes.spans.get(seq as usize).copied()
    }
}
