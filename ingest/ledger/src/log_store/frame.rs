//! The entries file's format: group frames, their check, the records in
//! them, and the sequential read of every frame for verification (layout
//! in `log_store.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;

use crate::engine::StoredEntry;
use crate::error::{Error, Result};

pub(super) const MAGIC: &[u8; 4] = b"ecg1";
pub(super) const HEADER: usize = 4 + 8 + 4 + 4;
pub(super) const HEAD_RECORD: usize = 81;
pub(super) const CHECK: usize = 16;

pub(super) fn check_of(bytes: &[u8]) -> [u8; CHECK] {
    let mut check = [0; CHECK];
    check.copy_from_slice(&blake3::hash(bytes).as_bytes()[..CHECK]);
    check
}

/// One frame as parsed from `entries`.
pub(super) struct Frame<'a> {
    pub base: u64,
    pub count: u32,
    pub body: &'a [u8],
    pub head: &'a [u8],
    pub intact: bool,
}

/// Appends to `out` the frame of `entries` (the first at seq `base`) and
/// `head` (an encoded head record), answering where in `out` each entry's
/// record lies: `(offset, len)`.
pub(super) fn encode_frame(
    out: &mut Vec<u8>,
    base: u64,
    entries: &[StoredEntry],
    head: &[u8],
) -> Result<Vec<(usize, u32)>> {
    let start = out.len();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&base.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut spans = Vec::with_capacity(entries.len());
    for entry in entries {
        let record = entry.encode();
        out.extend_from_slice(&(record.len() as u32).to_be_bytes());
        spans.push((out.len(), record.len() as u32));
        out.extend_from_slice(&record);
    }
    let body_len = u32::try_from(out.len() - start - HEADER)
        .map_err(|_| Error::InvalidArgument("a group commit of over 4 GiB".into()))?;
    out[start + 16..start + 20].copy_from_slice(&body_len.to_be_bytes());
    out.extend_from_slice(head);
    let check = check_of(&out[start..]);
    out.extend_from_slice(&check);
    Ok(spans)
}

/// Parses the frame at the start of `bytes`, checking it if `check` (else
/// `intact` is true): `Err(true)` if it runs past the end of `bytes`,
/// `Err(false)` if its header is not a frame's.
pub(super) fn parse_frame(bytes: &[u8], check: bool) -> std::result::Result<(Frame<'_>, usize), bool> {
    if bytes.len() < HEADER {
        return Err(true);
    }
    if &bytes[..4] != MAGIC {
        return Err(false);
    }
    let base = u64::from_be_bytes(bytes[4..12].try_into().expect("8 bytes"));
    let count = u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let body_len = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
    let len = HEADER + body_len + HEAD_RECORD + CHECK;
    if bytes.len() < len {
        return Err(true);
    }
    let body = &bytes[HEADER..HEADER + body_len];
    let head = &bytes[HEADER + body_len..HEADER + body_len + HEAD_RECORD];
    let intact = !check || check_of(&bytes[..len - CHECK]) == bytes[len - CHECK..len];
    Ok((Frame { base, count, body, head, intact }, len))
}

/// Whether `read` (after `header`) holds nothing but zeros to its end.
pub(super) fn zeros_to_end(read: &mut impl std::io::Read, header: &[u8]) -> Result<bool> {
    if header.iter().any(|b| *b != 0) {
        return Ok(false);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = read.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
    }
}

/// The entry records of a frame's body, exactly `count` of them.
pub(super) fn records(body: &[u8], count: u32) -> Option<Vec<&[u8]>> {
    // Each record takes at least its 4-byte length: a damaged count cannot
    // reserve more than the body could hold.
    let mut out = Vec::with_capacity((count as usize).min(body.len() / 4));
    let mut rest = body;
    for _ in 0..count {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        out.push(rest.get(4..4 + len)?);
        rest = &rest[4 + len..];
    }
    rest.is_empty().then_some(out)
}

/// The subject and idempotency key of an entry record, without copying
/// its payload (layout in [`StoredEntry::encode`]).
pub(super) fn record_keys(record: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let subject_len = u32::from_be_bytes(record.get(41..45)?.try_into().ok()?) as usize;
    let subject = record.get(45..45 + subject_len)?;
    let at = 45 + subject_len;
    match record.get(at)? {
        0 => Some((subject, None)),
        1 => {
            let key_len = u32::from_be_bytes(record.get(at + 1..at + 5)?.try_into().ok()?) as usize;
            Some((subject, Some(record.get(at + 5..at + 5 + key_len)?)))
        }
        _ => None,
    }
}

/// A reader of `file` from `pos` to `end` by positional reads, which leave
/// the file's shared cursor alone.
pub(super) struct At<F> {
    pub file: F,
    pub pos: u64,
    pub end: u64,
}

impl<F: std::borrow::Borrow<File>> std::io::Read for At<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = buf.len().min(self.end.saturating_sub(self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.borrow().read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Skipping over frames (the open's scan of frame headers); past `end`
/// nothing more is read.
impl<F> std::io::Seek for At<F> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            std::io::SeekFrom::Start(n) => Some(n),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            std::io::SeekFrom::End(d) => self.end.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// What the pass over every entry rebuilds in memory: where each entry's
/// record lies in `entries`, and the subject and idempotency indexes.
#[derive(Default)]
pub(super) struct Indexes {
    /// Per seq: offset of its entry record and its length.
    pub spans: Vec<(u64, u32)>,
    pub subjects: HashMap<Vec<u8>, Vec<u64>>,
    /// BLAKE3(idempotency key)[..16] -> seq; the entry holds the key
    /// itself, compared on every lookup.
    pub idempotency: HashMap<[u8; 16], u64>,
}

impl Indexes {
    /// Entry `seq`, its record at `span`.
    pub(super) fn add(&mut self, seq: u64, span: (u64, u32), subject: &[u8], key: Option<&[u8]>) {
        self.spans.push(span);
        if !subject.is_empty() {
            match self.subjects.get_mut(subject) {
                Some(seqs) => seqs.push(seq),
                None => drop(self.subjects.insert(subject.to_vec(), vec![seq])),
            }
        }
        if let Some(key) = key {
            self.idempotency.insert(key_digest(key), seq);
        }
    }
}

pub(super) fn key_digest(key: &[u8]) -> [u8; 16] {
    let mut digest = [0; 16];
    digest.copy_from_slice(&blake3::hash(key).as_bytes()[..16]);
    digest
}

/// The sequential read of every frame, for verification; the first such
/// pass after the open also rebuilds the [`Indexes`] as it goes, so the
/// entries are read once.
pub(super) struct Frames<R> {
    reader: R,
    pending: std::collections::VecDeque<Result<(u64, Option<StoredEntry>)>>,
    failed: bool,
    /// Offset in `entries` of the next frame.
    at: u64,
    /// Being rebuilt; `None` once a record failed to parse (the pass
    /// reports it, and nothing half-built is kept) or when not asked for.
    indexes: Option<Indexes>,
    done: bool,
}

impl<R> Frames<R> {
    /// Reads from the start of `entries`, rebuilding the indexes if `index`.
    pub(super) fn new(reader: R, index: bool) -> Frames<R> {
        Frames {
            reader,
            pending: std::collections::VecDeque::new(),
            failed: false,
            at: 0,
            indexes: index.then(Indexes::default),
            done: false,
        }
    }

    /// The indexes rebuilt, once every frame was read without a fault.
    pub(super) fn finish(&mut self) -> Option<Indexes> {
        if !self.done || self.failed {
            return None;
        }
        self.indexes.take()
    }
}

impl<R: std::io::Read> Frames<R> {
    fn read_frame(&mut self) -> Result<bool> {
        let mut header = [0u8; HEADER];
        match self.reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let body_len = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes")) as usize;
        let mut bytes = header.to_vec();
        bytes.resize(HEADER + body_len + HEAD_RECORD + CHECK, 0);
        self.reader.read_exact(&mut bytes[HEADER..])?;
        // The open scanned every frame up to `end`; this one reads the same.
        let (frame, _) =
            parse_frame(&bytes, true).map_err(|_| Error::Storage("entries changed while read".into()))?;
        let records = records(frame.body, frame.count)
            .ok_or_else(|| Error::tampered(frame.base, "a group frame's entries do not parse"))?;
        let frame_at = self.at;
        self.at += (HEADER + body_len + HEAD_RECORD + CHECK) as u64;
        for (i, record) in records.into_iter().enumerate() {
            let seq = frame.base + i as u64;
            if let Some(indexes) = &mut self.indexes {
                // Where the record lies: its offset inside the frame read.
                let offset = frame_at + (record.as_ptr() as usize - bytes.as_ptr() as usize) as u64;
                match record_keys(record) {
                    Some((subject, key)) => indexes.add(seq, (offset, record.len() as u32), subject, key),
                    None => self.indexes = None,
                }
            }
            self.pending.push_back(Ok((seq, StoredEntry::decode(seq, record))));
        }
        if !frame.intact {
            self.indexes = None;
            // After its entries, so a changed entry is named by its seq
            // first; otherwise the frame (its head record or check) is.
            let (base, end) = (frame.base, frame.base + u64::from(frame.count));
            self.pending.push_back(Err(Error::tampered(
                base,
                format!("the group frame of entries {base}..{end} fails its check (its head record or check was changed)"),
            )));
        }
        Ok(true)
    }
}

impl<R: std::io::Read> Iterator for Frames<R> {
    type Item = Result<(u64, Option<StoredEntry>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.failed {
                return None;
            }
            match self.read_frame() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
