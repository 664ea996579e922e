//! The subject index: every signed checkpoint ends with an index entry
//! that commits to the entries below it; start-up checks every one.

use std::path::Path;

use super::super::engine::StoredEntry;
use super::super::{Error, Ledger, LedgerConfig, verify};
use super::{entry, keyed};

pub(super) const A: &str = "91330200MA2AXXXX1X";
pub(super) const B: &str = "91330421739237858X";

/// Checks that `cp_size` ends with an index entry committing to the index
/// rebuilt from the entries below it, and that every subject's seqs are
/// those the entries say.
pub(super) fn assert_index_at(ledger: &Ledger, cp_size: u64) {
    let last = ledger.entry(cp_size - 1).unwrap();
    assert!(tlog::index::is_index_payload(&last.payload), "entry {} is no index entry", cp_size - 1);
    let commitment = tlog::index::Commitment::parse(&last.payload).unwrap();
    assert_eq!(commitment.size, cp_size - 1);
    let mut builder = tlog::index::Builder::default();
    let mut expected: std::collections::HashMap<Vec<u8>, Vec<u64>> = Default::default();
    for seq in 0..cp_size - 1 {
        let e = ledger.entry(seq).unwrap();
        builder.push(seq, &e.subject, &e.entry_hash).unwrap();
        if !e.subject.is_empty() {
            expected.entry(e.subject.clone()).or_default().push(seq);
        }
    }
    assert_eq!(commitment, tlog::index::Commitment::of(cp_size - 1, builder.commit()));
    for subject in [A.as_bytes(), B.as_bytes(), b"nobody"] {
        let index = ledger.subject_index(subject, cp_size).unwrap();
        let seqs = expected.get(subject).cloned().unwrap_or_default();
        assert_eq!(index.seqs, seqs);
        assert_eq!(index.index_root, commitment.root);
        let hashes: Vec<_> = seqs.iter().map(|s| (*s, ledger.entry(*s).unwrap().entry_hash)).collect();
        let value = tlog::index::Value::of(hashes.iter().map(|(s, h)| (*s, h))).unwrap();
        let value = (!seqs.is_empty()).then_some(value);
        index.proof.verify(&index.index_root, subject, value.as_ref()).unwrap();
    }
}

#[tokio::test]
async fn every_signed_checkpoint_ends_with_an_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    // The empty ledger's checkpoint is the one without an index entry.
    assert_eq!(ledger.checkpoint().unwrap().tree_size, 0);
    ledger.append(vec![keyed("a0", A, "k0"), keyed("b0", B, "k1"), entry("x")]).await.unwrap();
    let first = ledger.sign_checkpoint_now().unwrap();
    assert_eq!(first.tree_size, 4);
    assert_index_at(&ledger, 4);
    // A head already ending with an index entry gets no second one.
    assert_eq!(ledger.sign_checkpoint_now().unwrap().tree_size, 4);
    ledger.append(vec![keyed("a1", A, "k2")]).await.unwrap();
    let covering = ledger.checkpoint_covering(5).unwrap();
    assert_eq!(covering.tree_size, 6);
    assert_index_at(&ledger, 6);
    // Sizes not ending with an index entry are refused, naming the size.
    match ledger.subject_index(A.as_bytes(), 5) {
        Err(Error::InvalidArgument(what)) => assert!(what.contains("tree_size 5"), "{what}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(matches!(ledger.subject_index(A.as_bytes(), 0), Err(Error::InvalidArgument(_))));
    // An older checkpoint's index is rebuilt and still answers.
    assert_index_at(&ledger, 4);
    ledger.append(vec![keyed("b1", B, "k3")]).await.unwrap();
    ledger.close().await.unwrap();
    drop(ledger);
    let reopened = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let last = reopened.checkpoint().unwrap();
    assert_eq!(last.tree_size, 8);
    assert_index_at(&reopened, 8);
}

#[tokio::test]
async fn appending_an_index_payload_is_refused() {
    // Only the writer writes index entries; a caller's would confuse readers.
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let forged = tlog::index::Commitment { size: 0, subjects: 0, root: [0; 32] }.payload();
    match ledger.append(vec![entry(forged)]).await {
        Err(Error::InvalidArgument(what)) => assert!(what.contains("reserved for index entries"), "{what}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(ledger.head().size, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_signed_during_concurrent_appends_end_with_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    let subject = if i % 2 == 0 { A } else { B };
                    let batch = vec![keyed(&format!("t{t} i{i}"), subject, &format!("t{t}/{i}"))];
                    let seq = ledger.append(batch).await.unwrap()[0].as_ref().unwrap().seq;
                    let cp = ledger.checkpoint_covering(seq + 1).unwrap();
                    assert!(cp.tree_size > seq + 1);
                }
            })
        })
        .collect();
    let mut sizes = Vec::new();
    for _ in 0..20 {
        sizes.push(ledger.sign_checkpoint_now().unwrap().tree_size);
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    sizes.push(ledger.sign_checkpoint_now().unwrap().tree_size);
    sizes.dedup();
    for size in sizes.into_iter().filter(|s| *s > 0) {
        assert_index_at(&ledger, size);
    }
    ledger.close().await.unwrap();
    let report = verify(dir.path(), &mut |_, _| {}).unwrap();
    assert!(report.index_entries >= 2, "{report:?}");
}

/// A closed ledger: 10 entries about A, then the index entry at seq 10.
async fn closed_ledger(dir: &Path) {
    let ledger = Ledger::open(LedgerConfig::new(dir)).unwrap();
    let batch = (0..10).map(|i| keyed(&format!("record {i}"), A, &format!("src/{i}"))).collect();
    ledger.append(batch).await.unwrap();
    ledger.close().await.unwrap();
}

fn with_entry(dir: &Path, seq: u64, change: impl FnOnce(&mut StoredEntry)) {
    super::super::log_store::damage::edit_entry(dir, seq, change);
}

fn assert_tampered_at(dir: &Path, seq: u64, what: &str) {
    for (how, result) in [
        ("open", Ledger::open(LedgerConfig::new(dir)).map(|_| ())),
        ("verify", verify(dir, &mut |_, _| {}).map(|_| ())),
    ] {
        match result {
            Err(Error::Tampered { seq: got, what: message }) => {
                assert_eq!(got, Some(seq), "{how}: {message}");
                assert!(message.contains(what), "{how}: {message:?} should mention {what:?}");
            }
            other => panic!("{how} should fail as tampered, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_restart_verifies_the_index() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    let report = verify(dir.path(), &mut |_, _| {}).unwrap();
    assert_eq!((report.entries, report.index_entries), (11, 1));
    let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    assert_index_at(&ledger, 11);
}

#[tokio::test]
async fn a_changed_stored_subject_is_named_at_the_next_index_entry() {
    // The subject is not hashed into the entry; the index entry covers it.
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    with_entry(dir.path(), 3, |e| e.subject = B.as_bytes().to_vec());
    assert_tampered_at(dir.path(), 10, "index entry differs");
}

#[tokio::test]
async fn a_changed_index_entry_is_named_by_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    closed_ledger(dir.path()).await;
    with_entry(dir.path(), 10, |e| {
        e.payload = tlog::index::Commitment { size: 10, subjects: 1, root: [7; 32] }.payload();
    });
    assert_tampered_at(dir.path(), 10, "entry hash");
}

/// A replica (a mirror's copy) of `log`'s first `size` entries, taken
/// verbatim with their times.
fn replicate(log: &Ledger, size: u64) -> Vec<(super::super::NewEntry, i64)> {
    (0..size)
        .map(|seq| {
            let e = log.entry(seq).unwrap();
            (
                super::super::NewEntry {
                    payload: e.payload,
                    subject: e.subject,
                    idempotency: None,
                    details: Vec::new(),
                },
                e.recorded_at_ns,
            )
        })
        .collect()
}

// A mirror's copy takes the log's index entries verbatim when they are the
// index of the entries before them, refuses one that is not (named by
// seq), and never seals a checkpoint with an index entry of its own.
#[tokio::test]
async fn a_replica_takes_the_logs_index_entries_checked_and_writes_none() {
    let (log_dir, other_dir, copy_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = Ledger::open(LedgerConfig::new(log_dir.path())).unwrap();
    log.append(vec![keyed("a0", A, "k0"), keyed("b0", B, "k1")]).await.unwrap();
    assert_eq!(log.sign_checkpoint_now().unwrap().tree_size, 3);
    // Another log with the same first entry and another second one: its
    // index entry is a true index, but not of the log's entries.
    let other = Ledger::open(LedgerConfig::new(other_dir.path())).unwrap();
    other.append(vec![keyed("a0", A, "k0"), keyed("b1", B, "k1")]).await.unwrap();
    assert_eq!(other.sign_checkpoint_now().unwrap().tree_size, 3);

    let copy = Ledger::open(LedgerConfig { replica: true, ..LedgerConfig::new(copy_dir.path()) }).unwrap();
    let mut forged = replicate(&log, 3);
    forged[2] = replicate(&other, 3).remove(2);
    let answers = copy.append_at(forged).await;
    match answers {
        Err(Error::Tampered { seq: Some(2), .. }) => {}
        other => panic!("a wrong index entry must be refused at seq 2, got {other:?}"),
    }
    assert_eq!(copy.head().size, 0, "nothing of the refused group is kept");

    for answer in copy.append_at(replicate(&log, 3)).await.unwrap() {
        answer.unwrap();
    }
    assert_eq!(copy.head().root, log.head().root);
    // Signing and closing add no index entry: the copy's tree is the log's.
    assert_eq!(copy.sign_checkpoint_now().unwrap().tree_size, 3);
    copy.close().await.unwrap();
    assert_eq!(copy.head().size, 3);
}
