//! Tamper evidence: damage a closed store's files directly (the entries'
//! group frames, the tiles, the checkpoint) and check that both `open` and
//! offline `verify` refuse it, naming the first bad seq; and that what a
//! crash leaves (a torn last frame, tiles lost above the last checkpoint)
//! is recovered, never served as other data.

use std::path::Path;

use super::super::engine::StoredEntry;
use super::super::log_store::damage;
use super::super::{Error, Ledger, LedgerConfig, verify};
use super::{filled, keyed};

/// A closed ledger of 10 entries (subjects and idempotency keys included),
/// and the index entry close appends at seq 10.
async fn closed_ledger(dir: &Path) {
    let ledger = Ledger::open(LedgerConfig::new(dir)).unwrap();
    let batch =
        (0..10).map(|i| keyed(&format!("record {i}"), "91330200MA2AXXXX1X", &format!("src/{i}"))).collect();
    ledger.append(batch).await.unwrap();
    ledger.close().await.unwrap();
}

/// Both `open` and `verify` must fail with `Tampered` at `seq`.
fn assert_tampered(dir: &Path, seq: Option<u64>, what: &str) {
    let opened = Ledger::open(LedgerConfig::new(dir));
    match opened {
        Err(Error::Tampered { seq: got, what: message }) => {
            assert_eq!(got, seq, "open: {message}");
            assert!(message.contains(what), "open: {message:?} should mention {what:?}");
        }
        other => panic!("open should fail as tampered, got {other:?}"),
    }
    match verify(dir, &mut |_, _| {}) {
        Err(Error::Tampered { seq: got, what: message }) => {
            assert_eq!(got, seq, "verify: {message}");
            assert!(message.contains(what), "verify: {message:?} should mention {what:?}");
        }
        other => panic!("verify should fail as tampered, got {other:?}"),
    }
}

#[tokio::test]
async fn flipped_payload_byte_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    // Raw, the frame's check not made good again: the entry is still named.
    let (offset, len) = damage::span(dir.path(), 4);
    damage::flip(&damage::entries_path(dir.path()), offset + u64::from(len) - 1, 0x01);
    assert_tampered(dir.path(), Some(4), "entry hash");
}

#[tokio::test]
async fn a_flipped_byte_in_a_frames_head_record_names_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    // The first frame holds entries 0..10; its head record lies just
    // before its 16-byte check, after entry 9's record.
    let (offset, len) = damage::span(dir.path(), 9);
    damage::flip(&damage::entries_path(dir.path()), offset + u64::from(len) + 40, 0x01);
    assert_tampered(dir.path(), Some(0), "group frame of entries 0..10 fails its check");
}

#[tokio::test]
async fn swapped_entries_are_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    damage::rewrite(dir.path(), |frames| {
        let entries = &mut frames[0].0;
        let (two, six) = (entries[2].clone(), entries[6].clone());
        entries[2] = StoredEntry { seq: 2, ..six };
        entries[6] = StoredEntry { seq: 6, ..two };
    });
    assert_tampered(dir.path(), Some(2), "entry hash");
}

#[tokio::test]
async fn removed_tail_entries_are_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    damage::rewrite(dir.path(), |frames| {
        frames[0].0.truncate(8);
        // and the index entry close appended, with the head record saying 11
        let last_head = frames.pop().unwrap().1;
        frames[0].1 = last_head;
    });
    assert_tampered(dir.path(), Some(8), "head says 11");
}

#[tokio::test]
async fn a_truncated_entries_file_is_tampering_below_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    // Cut inside entry 6: the frame of 0..10 looks torn, and dropping it
    // would roll back what the checkpoint signed.
    let (offset, _) = damage::span(dir.path(), 6);
    let file = std::fs::OpenOptions::new().write(true).open(damage::entries_path(dir.path())).unwrap();
    file.set_len(offset).unwrap();
    drop(file);
    assert_tampered(dir.path(), Some(0), "rolled back");
}

/// A crash in the middle of a group commit leaves a torn last frame that
/// was never acknowledged: it is set aside and the store opens as it was.
#[tokio::test]
async fn a_torn_last_frame_is_set_aside_and_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    let head = {
        let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        ledger.head()
    };
    let path = damage::entries_path(dir.path());
    let intact = std::fs::metadata(&path).unwrap().len();
    let mut bytes = std::fs::read(&path).unwrap();
    // A frame of the next group, half written: header and part of a record.
    let mut torn = b"ecg1".to_vec();
    torn.extend_from_slice(&11u64.to_be_bytes());
    torn.extend_from_slice(&1u32.to_be_bytes());
    torn.extend_from_slice(&500u32.to_be_bytes());
    torn.extend_from_slice(&[9; 77]);
    bytes.extend_from_slice(&torn);
    std::fs::write(&path, bytes).unwrap();
    // A read-only verification ignores it and writes nothing.
    assert_eq!(verify(dir.path(), &mut |_, _| {}).unwrap().entries, 11);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact + torn.len() as u64);

    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(ledger.head(), head);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact);
    let aside = dir.path().join("log").join(format!("entries.torn-{intact}"));
    assert_eq!(std::fs::read(aside).unwrap(), torn);
    ledger.append(vec![super::entry("after the crash")]).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);
    assert_eq!(verify(dir.path(), &mut |_, _| {}).unwrap().entries, 13);
}

/// A store that comes up shorter but self-consistent (an old copy put
/// back): only the checkpoint file beside it can tell.
#[tokio::test]
async fn consistent_rollback_below_checkpoint_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = filled(dir.path(), 7).await;
    ledger.close().await.unwrap();
    drop(ledger);
    let snapshot = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("log"), snapshot.path());

    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    ledger.append(vec![super::entry("eighth"), super::entry("ninth")]).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);

    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    copy_dir(snapshot.path(), &dir.path().join("log"));
    // 7 entries and the index entry the first close appended.
    assert_tampered(dir.path(), Some(8), "rolled back");
}

#[tokio::test]
async fn rewritten_checkpoint_file_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    let path = dir.path().join("checkpoint");
    let note = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, note.replacen("\n11\n", "\n10\n", 1)).unwrap();
    assert_tampered(dir.path(), None, "does not verify");
}

/// A ledger of 300 entries closed: tile level 0 holds one full tile (the
/// leaves of 0..256) and a partial one (256..301, the index entry last).
async fn closed_with_a_full_tile(dir: &Path) {
    let ledger = filled(dir, 300).await;
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn a_flipped_byte_in_a_full_tile_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_with_a_full_tile(dir.path()).await;
    damage::flip(&damage::tile_file(dir.path(), 0), 5 * 32 + 7, 0x10);
    assert_tampered(dir.path(), Some(5), "does not match the stored leaf");
}

#[tokio::test]
async fn a_flipped_byte_in_a_partial_tile_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_with_a_full_tile(dir.path()).await;
    damage::flip(&damage::tile_file(dir.path(), 0), 270 * 32, 0x01);
    assert_tampered(dir.path(), Some(270), "does not match the stored leaf");
}

#[tokio::test]
async fn a_flipped_byte_in_a_higher_tile_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_with_a_full_tile(dir.path()).await;
    // Tile level 1 holds binary level 8: node 0 covers entries 0..256.
    damage::flip(&damage::tile_file(dir.path(), 1), 3, 0x01);
    assert_tampered(dir.path(), Some(255), "merkle node (level 8, index 0) differs");
}

#[tokio::test]
async fn a_missing_tile_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_with_a_full_tile(dir.path()).await;
    // The partial tile gone: the checkpoint covers it, so it must be there.
    let file = std::fs::OpenOptions::new().write(true).open(damage::tile_file(dir.path(), 0)).unwrap();
    file.set_len(256 * 32).unwrap();
    drop(file);
    assert_tampered(dir.path(), Some(256), "stored leaf is missing");

    let dir = tempfile::tempdir().unwrap();
    closed_with_a_full_tile(dir.path()).await;
    std::fs::remove_file(damage::tile_file(dir.path(), 0)).unwrap();
    assert_tampered(dir.path(), Some(0), "stored leaf is missing");
}

#[tokio::test]
async fn an_extra_tile_hash_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    let path = damage::tile_file(dir.path(), 0);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[7u8; 32]);
    std::fs::write(&path, bytes).unwrap();
    assert_tampered(dir.path(), None, "is stored but no entry makes it");
}

/// Tiles above the last signed checkpoint are synced only when the next
/// one is signed: a crash may lose them, and start-up rebuilds them from
/// the entries it hashes anyway.
#[tokio::test]
async fn tiles_lost_above_the_last_checkpoint_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    closed_with_a_full_tile(dir.path()).await;
    let checkpoint = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    ledger.append((0..30).map(|i| super::entry(format!("late {i}"))).collect()).await.unwrap();
    let head = ledger.head();
    assert_eq!(head.size, 331);
    // A crash now: no newer checkpoint, and of the tiles written since the
    // one at 301 only 10 leaves reached the disk.
    drop(ledger);
    std::fs::write(dir.path().join("checkpoint"), &checkpoint).unwrap();
    let tiles = std::fs::read(damage::tile_file(dir.path(), 0)).unwrap();
    std::fs::write(damage::tile_file(dir.path(), 0), &tiles[..311 * 32]).unwrap();
    // Read-only: verified, rebuilt in memory, nothing written.
    let report = verify(dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!(report.root, head.root);
    assert_eq!(std::fs::metadata(damage::tile_file(dir.path(), 0)).unwrap().len(), 311 * 32);

    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(ledger.head(), head);
    assert_eq!(std::fs::metadata(damage::tile_file(dir.path(), 0)).unwrap().len(), head.size * 32);
    let leaf = ledger.entry(310).unwrap().entry_hash;
    let path = ledger.inclusion_proof(310, head.size).unwrap();
    assert!(super::super::proof::verify_inclusion(&leaf, 310, head.size, &path, &head.root));
}

#[tokio::test]
async fn corrupt_entry_read_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = filled(dir.path(), 3).await;
    let core = &ledger.inner.core;
    // A payload byte changed under a running server: the read is refused.
    let (offset, len) = damage::span(dir.path(), 1);
    let mut byte = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(damage::entries_path(dir.path())).unwrap(),
        &mut byte,
        offset + u64::from(len) - 1,
    )
    .unwrap();
    core.engine.put_raw(&(offset + u64::from(len) - 1).to_be_bytes(), &[byte[0] ^ 1]).unwrap();
    assert!(matches!(ledger.entry(1), Err(Error::Corruption { seq: 1, .. })));
    assert!(ledger.entry(1).unwrap_err().is_fail_stop());
    assert_eq!(ledger.scan(0, 3).filter(Result::is_err).count(), 1);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), target).unwrap();
        }
    }
}

/// Flip one byte of the store's files at many offsets: the ledger must
/// either refuse or come up with exactly what was checkpointed, never with
/// less or other data.
#[tokio::test]
async fn flipped_byte_in_the_files_never_serves_other_data() {
    let original = tempfile::tempdir().unwrap();
    closed_ledger(original.path()).await;
    let head = {
        let ledger = Ledger::open(LedgerConfig::new(original.path())).unwrap();
        ledger.head()
    };
    let mut files = Vec::new();
    collect_files(&original.path().join("log"), &mut files);
    let (mut refused, mut intact) = (0, 0);
    for file in &files {
        let relative = file.strip_prefix(original.path()).unwrap();
        let len = std::fs::metadata(file).unwrap().len();
        for step in 0..12 {
            let offset = len * step / 12;
            let damaged = tempfile::tempdir().unwrap();
            copy_dir(original.path(), damaged.path());
            let target = damaged.path().join(relative);
            let mut bytes = std::fs::read(&target).unwrap();
            if bytes.is_empty() {
                continue;
            }
            bytes[offset as usize] ^= 0x5a;
            std::fs::write(&target, bytes).unwrap();
            match Ledger::open(LedgerConfig::new(damaged.path())) {
                Err(_) => refused += 1,
                Ok(ledger) => {
                    assert_eq!(ledger.head(), head, "{} at {offset}", relative.display());
                    intact += 1;
                }
            }
        }
    }
    // Every byte of the entries and the tiles is covered by a hash or the
    // frame's check: only the empty lock file has nothing to damage.
    assert_eq!(intact, 0, "{refused} refused, {intact} intact");
    assert!(refused >= 24, "{refused} refused");
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for item in std::fs::read_dir(dir).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_dir() {
            collect_files(&item.path(), out);
        } else {
            out.push(item.path());
        }
    }
}

/// A frame's count or length changed to the largest value: refused by seq,
/// without reserving memory for what the file cannot hold.
#[tokio::test]
async fn a_frame_claiming_billions_of_entries_is_tampering() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    let path = damage::entries_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    // The first frame's count (bytes 12..16 of its header).
    bytes[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    assert_tampered(dir.path(), Some(0), "entries do not parse");
}

/// A store used without verification (a copy being written, a tool)
/// rebuilds its spans and indexes on first use, from one pass; a record
/// that does not parse there is refused by seq, and nothing half-built is
/// used.
#[tokio::test]
async fn a_store_read_without_verification_indexes_on_first_use() {
    use super::super::engine::Engine as _;
    use super::super::log_store::LogStore;
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    let store = LogStore::open(dir.path(), false).unwrap();
    assert_eq!(store.subject_seqs(b"91330200MA2AXXXX1X").unwrap(), (0..10).collect::<Vec<u64>>());
    assert_eq!(store.idempotency(b"src/4").unwrap().map(|(seq, _)| seq), Some(4));
    assert_eq!(store.entry(7).unwrap().unwrap().payload, b"record 7");
    let (offset, _) = store.span(3).unwrap();
    drop(store);

    // Entry 3's subject length, past the end of its record.
    let path = damage::entries_path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize + 41..offset as usize + 45].copy_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let store = LogStore::open(dir.path(), false).unwrap();
    match store.subject_seqs(b"91330200MA2AXXXX1X") {
        Err(Error::Corruption { seq: 3, what }) => assert!(what.contains("malformed"), "{what}"),
        other => panic!("entry 3 should be refused, got {other:?}"),
    }
    assert!(store.entry(0).is_err(), "no half-built index is used");
}
