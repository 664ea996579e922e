//! Group commit: concurrent appends get dense distinct seqs and share flushes.

use super::super::{Error, Ledger, LedgerConfig};
use super::{entry, keyed};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.append(vec![entry(format!("task {i}"))]).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let answers = task.await.unwrap().unwrap();
        seqs.push(answers[0].as_ref().unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..64).collect::<Vec<_>>());
    let flushes = ledger.flush_count();
    assert!(flushes < 64, "64 concurrent appends took {flushes} flushes");
    assert_eq!(ledger.head().size, 64);
    // Every receipt's entry is readable with the payload its task sent.
    for seq in 0..64 {
        let stored = ledger.entry(seq).unwrap();
        assert!(stored.payload.starts_with(b"task "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_append_once() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.append(vec![keyed("same record", "", "src/1")]).await })
        })
        .collect();
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.unwrap().unwrap().remove(0).unwrap());
    }
    assert_eq!(ledger.head().size, 1);
    assert_eq!(receipts.iter().filter(|r| !r.duplicate).count(), 1);
    assert!(receipts.iter().all(|r| r.seq == 0 && r.entry_hash == receipts[0].entry_hash));
}

#[tokio::test]
async fn duplicate_within_one_batch_and_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let answers =
        ledger.append(vec![keyed("a", "", "k"), keyed("a", "", "k"), keyed("b", "", "k")]).await.unwrap();
    let original = answers[0].clone().unwrap();
    assert_eq!(answers[1], Ok(super::super::Receipt { duplicate: true, ..original.clone() }));
    assert_eq!(answers[2].clone().unwrap_err().existing, original);
    assert_eq!(ledger.head().size, 1);
    assert_eq!(ledger.lookup(b"k").unwrap(), Some(original));
}

#[tokio::test]
async fn appends_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    ledger.append(vec![entry("one")]).await.unwrap();
    ledger.close().await.unwrap();
    assert!(matches!(ledger.append(vec![entry("two")]).await, Err(Error::ShuttingDown)));
    // Reads still work until the handle is dropped; close is idempotent.
    assert_eq!(ledger.entry(0).unwrap().payload, b"one");
    ledger.close().await.unwrap();
}

#[tokio::test]
async fn recorded_at_never_decreases() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    // A timestamp far in the future, as after a clock step back.
    let future = i64::MAX / 2;
    ledger.append_at(vec![(entry("future"), future)]).await.unwrap();
    let answers = ledger.append(vec![entry("now")]).await.unwrap();
    assert_eq!(answers[0].as_ref().unwrap().recorded_at_ns, future);
    let refused = ledger.append_at(vec![(entry("past"), future - 1)]).await;
    assert!(matches!(refused, Err(Error::InvalidArgument(_))));
    assert_eq!(ledger.head().size, 2);
}

// Attack/failure: a full disk failed a commit half-way, kept appends failed
// until a restart, and surfaced as a generic internal error.
#[tokio::test]
async fn a_full_disk_refuses_appends_cleanly_and_they_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    ledger.append(vec![entry("before")]).await.unwrap();
    // As if the disk filled up: the reserve is more than there is.
    let available = fs2::available_space(dir.path()).unwrap();
    ledger.set_min_free_bytes(available.saturating_mul(2).max(1));
    let refused = ledger.append(vec![entry("while full")]).await.unwrap_err();
    assert!(matches!(refused, Error::NoSpace { .. }), "{refused}");
    assert!(refused.to_string().contains("resume by themselves"), "{refused}");
    assert!(ledger.writable().is_err());
    // Reads keep working and nothing was half-written.
    assert_eq!(ledger.head().size, 1);
    ledger.checkpoint().unwrap();
    // Space returns: appends resume without a restart.
    ledger.set_min_free_bytes(1);
    ledger.writable().unwrap();
    let receipt = ledger.append(vec![entry("after")]).await.unwrap().pop().unwrap().unwrap();
    assert_eq!(receipt.seq, 1);
    ledger.close().await.unwrap();
    drop(ledger);
    let report = super::super::verify(dir.path(), &mut |_, _| {}).unwrap();
    // The two entries and the index entry close appended.
    assert_eq!((report.entries, report.index_entries), (3, 1));
}
