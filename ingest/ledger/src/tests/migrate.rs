//! The one-time move of an older release's sled store into the file
//! engine: verified before and after, the sled store kept aside, an
//! interrupted move started over, a damaged store never moved.

use std::path::Path;

use super::super::engine::Engine;
use super::super::log_store::LogStore;
use super::super::store::SledStore;
use super::super::{Error, Head, Ledger, LedgerConfig, migrate, verify};
use super::keyed;

/// A data directory as a release before the file engine left it: the same
/// entries and checkpoint as a closed ledger of 12 entries, in sled.
async fn sled_data_dir(dir: &Path) -> Head {
    let ledger = Ledger::open(LedgerConfig::new(dir)).unwrap();
    let batch =
        (0..12).map(|i| keyed(&format!("record {i}"), "91330200MA2AXXXX1X", &format!("src/{i}"))).collect();
    ledger.append(batch).await.unwrap();
    ledger.close().await.unwrap();
    let head = ledger.head();
    drop(ledger);
    {
        let from = LogStore::open(dir, false).unwrap();
        let to = SledStore::open(&dir.join("ledger"), 1 << 20).unwrap();
        migrate::copy_entries(&from, &to, from.head().unwrap().unwrap().size, &mut |_, _, _| {}).unwrap();
    }
    std::fs::remove_dir_all(dir.join("log")).unwrap();
    head
}

#[tokio::test]
async fn a_sled_store_moves_into_the_file_engine_with_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let head = sled_data_dir(dir.path()).await;
    assert_eq!(
        verify(dir.path(), &mut |_, _| {}).unwrap().root,
        head.root,
        "the sled store verifies as it is"
    );

    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(ledger.head(), head);
    assert!(dir.path().join("log/entries").is_file());
    assert!(dir.path().join("ledger.before-log").is_dir() && !dir.path().join("ledger").exists());
    assert_eq!(ledger.lookup(b"src/3").unwrap().unwrap().seq, 3);
    ledger.append(vec![keyed("after", "91330200MA2AXXXX1X", "src/after")]).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);
    assert_eq!(verify(dir.path(), &mut |_, _| {}).unwrap().entries, head.size + 2);
}

#[tokio::test]
async fn an_interrupted_move_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let head = sled_data_dir(dir.path()).await;
    // What a crash half-way through the copy leaves.
    std::fs::create_dir_all(dir.path().join("log.migrating/log")).unwrap();
    std::fs::write(dir.path().join("log.migrating/log/entries"), b"ecg1 half a frame").unwrap();

    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_eq!(ledger.head(), head);
    assert!(!dir.path().join("log.migrating").exists());
}

#[tokio::test]
async fn a_damaged_sled_store_is_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    sled_data_dir(dir.path()).await;
    // Entries 10 to 12 (the last record and the index entry close
    // appended) overwritten with nothing.
    {
        let store = SledStore::open(&dir.path().join("ledger"), 1 << 20).unwrap();
        for seq in 10..13u64 {
            store.put_raw(&super::super::store::keys::entry(seq), b"").unwrap();
        }
    }
    match Ledger::open(LedgerConfig::new(dir.path())) {
        Err(Error::Tampered { .. }) => {}
        other => panic!("a damaged sled store must not open, got {other:?}"),
    }
    assert!(dir.path().join("ledger").is_dir(), "the sled store is left as it was");
    assert!(!dir.path().join("log").exists() && !dir.path().join("ledger.before-log").exists());
}
