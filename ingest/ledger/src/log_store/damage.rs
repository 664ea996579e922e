//! What an attacker who knows the layout can do to a closed store.

use std::path::{Path, PathBuf};

use super::frame::{encode_frame, parse_frame, records};
use super::{ENTRIES, LOG_DIR, LogStore, tile_path};
use crate::engine::StoredEntry;

/// Paths of the store's files in the data directory `data_dir`.
pub(crate) fn entries_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_DIR).join(ENTRIES)
}

pub(crate) fn tile_file(data_dir: &Path, tile_level: u8) -> PathBuf {
    tile_path(&data_dir.join(LOG_DIR), tile_level)
}

/// Where entry `seq`'s record lies in the closed store's `entries`.
pub(crate) fn span(data_dir: &Path, seq: u64) -> (u64, u32) {
    let store = LogStore::open(data_dir, false).unwrap();
    store.span(seq).unwrap()
}

/// Rewrites every frame of the closed store in `data_dir` after `edit`
/// changed its entries (each frame: its entries and head record), with
/// bases, lengths and checks made consistent again.
pub(crate) fn rewrite(data_dir: &Path, edit: impl FnOnce(&mut Vec<(Vec<StoredEntry>, Vec<u8>)>)) {
    let bytes = std::fs::read(entries_path(data_dir)).unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (frame, len) = parse_frame(&bytes[at..], false).unwrap();
        let entries = records(frame.body, frame.count)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(i, r)| StoredEntry::decode(frame.base + i as u64, r).unwrap())
            .collect();
        frames.push((entries, frame.head.to_vec()));
        at += len;
    }
    edit(&mut frames);
    let mut out = Vec::new();
    let mut base = 0u64;
    for (entries, head) in frames {
        encode_frame(&mut out, base, &entries, &head).unwrap();
        base += entries.len() as u64;
    }
    std::fs::write(entries_path(data_dir), out).unwrap();
}

/// Changes entry `seq` in place, frames made consistent again.
pub(crate) fn edit_entry(data_dir: &Path, seq: u64, change: impl FnOnce(&mut StoredEntry)) {
    rewrite(data_dir, |frames| {
        let entry = frames.iter_mut().flat_map(|(entries, _)| entries.iter_mut()).find(|e| e.seq == seq);
        change(entry.expect("seq is stored"));
    });
}

/// XORs `mask` into byte `offset` of `path`.
pub(crate) fn flip(path: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= mask;
    std::fs::write(path, bytes).unwrap();
}
