//! The PostgreSQL engine: tampering found through the database, several
//! nodes extending one chain, following each other, a database restart,
//! and migration from sled. (The model-based test runs on both engines in
//! `model.rs`.)

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use super::super::{Error, Ledger, LedgerConfig, NewEntry, migrate_to_postgres, verify, verify_postgres};
use super::{entry, filled, keyed};

/// A node's configuration: its own directory, the shared database and key.
fn node(dir: &Path, url: &str, key: &Path) -> LedgerConfig {
    LedgerConfig { store: Some(url.to_string()), key_file: Some(key.to_path_buf()), ..LedgerConfig::new(dir) }
}

/// A key file every node of a test shares, written by opening (and
/// closing) a sled ledger in `dir`.
fn shared_key(dir: &Path) -> std::path::PathBuf {
    let ledger = Ledger::open(LedgerConfig::new(dir)).unwrap();
    drop(ledger);
    dir.join("ledger.key")
}

/// A closed PostgreSQL ledger of 10 keyed entries: its database URL and key.
async fn closed_ledger(dir: &Path) -> (String, std::path::PathBuf) {
    let url = pgtest::database();
    let key = shared_key(&dir.join("key"));
    let ledger = Ledger::open(node(dir, &url, &key)).unwrap();
    let batch =
        (0..10).map(|i| keyed(&format!("record {i}"), "91330200MA2AXXXX1X", &format!("src/{i}"))).collect();
    ledger.append(batch).await.unwrap();
    ledger.close().await.unwrap();
    (url, key)
}

/// Runs SQL against the database at `url` as an operator with access to
/// it could.
fn sql(url: &str, statement: &str) {
    let store = super::super::pg::PgStore::open(url, false).unwrap();
    store.execute_raw(statement).unwrap();
}

/// Both `open` and offline `verify_postgres` must fail with `Tampered` at `seq`.
fn assert_tampered(dir: &Path, url: &str, key: &Path, seq: Option<u64>, what: &str) {
    match Ledger::open(node(dir, url, key)) {
        Err(Error::Tampered { seq: got, what: message }) => {
            assert_eq!(got, seq, "open: {message}");
            assert!(message.contains(what), "open: {message:?} should mention {what:?}");
        }
        other => panic!("open should fail as tampered, got {other:?}"),
    }
    match verify_postgres(url, Some(key), &mut |_, _| {}) {
        Err(Error::Tampered { seq: got, what: message }) => {
            assert_eq!(got, seq, "verify: {message}");
            assert!(message.contains(what), "verify: {message:?} should mention {what:?}");
        }
        other => panic!("verify should fail as tampered, got {other:?}"),
    }
}

#[tokio::test]
async fn a_changed_payload_is_named_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    sql(&url, "UPDATE ledger_entries SET payload = convert_to('record X', 'UTF8') WHERE seq = 4");
    assert_tampered(dir.path(), &url, &key, Some(4), "entry hash");
}

#[tokio::test]
async fn a_deleted_entry_is_named_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    sql(&url, "DELETE FROM ledger_entries WHERE seq = 6");
    assert_tampered(dir.path(), &url, &key, Some(6), "missing");
}

#[tokio::test]
async fn a_changed_recorded_at_is_named_by_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    sql(&url, "UPDATE ledger_entries SET recorded_at_ns = recorded_at_ns + 1 WHERE seq = 9");
    assert_tampered(dir.path(), &url, &key, Some(9), "");
}

#[tokio::test]
async fn a_rolled_back_tail_contradicts_the_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    // The head at 8, as the ledger itself computes it.
    let root = {
        let ledger = Ledger::open(node(dir.path(), &url, &key)).unwrap();
        let root = ledger.root_at(8).unwrap();
        ledger.close().await.unwrap();
        root
    };
    let root: String = root.iter().map(|b| format!("{b:02x}")).collect();
    sql(
        &url,
        &format!(
            "DELETE FROM ledger_entries WHERE seq >= 8;
             DELETE FROM ledger_nodes WHERE ((index + 1) << level::integer) > 8;
             UPDATE ledger_head SET size = 8, root = '\\x{root}',
               chain = (SELECT chain_hash FROM ledger_entries WHERE seq = 7),
               last_recorded_at_ns = (SELECT recorded_at_ns FROM ledger_entries WHERE seq = 7)"
        ),
    );
    assert_tampered(dir.path(), &url, &key, Some(8), "rolled back");
}

/// The subject index is the entries' own column: a subject changed in a
/// row moves the entry to another enterprise's file, which the next index
/// entry (committed by the tree) contradicts.
#[tokio::test]
async fn a_changed_subject_is_named_at_the_next_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    sql(&url, "UPDATE ledger_entries SET subject = '\\x3931' WHERE seq = 3");
    assert_tampered(dir.path(), &url, &key, Some(10), "index entry differs");
}

#[tokio::test]
async fn a_changed_or_missing_leaf_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    sql(&url, "UPDATE ledger_entries SET leaf = sha256(leaf) WHERE seq = 5");
    assert_tampered(dir.path(), &url, &key, Some(5), "does not match the stored leaf");

    let dir = tempfile::tempdir().unwrap();
    let (url, key) = closed_ledger(dir.path()).await;
    sql(&url, "UPDATE ledger_entries SET leaf = NULL WHERE seq = 4");
    assert_tampered(dir.path(), &url, &key, Some(4), "stored leaf is missing");
}

/// Three nodes on one database append concurrently: one chain, every
/// receipt found at its seq on every node, and the whole store verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_extend_one_chain() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let url = pgtest::database();
    let key = shared_key(&dirs[0].path().join("key"));
    let nodes: Vec<Ledger> = dirs.iter().map(|d| Ledger::open(node(d.path(), &url, &key)).unwrap()).collect();

    let mut writers = Vec::new();
    for (n, ledger) in nodes.iter().enumerate() {
        for w in 0..4 {
            let ledger = ledger.clone();
            writers.push(tokio::spawn(async move {
                let mut receipts = Vec::new();
                for i in 0..25 {
                    let payload = format!("node {n} writer {w} record {i}");
                    let subject = if i % 2 == 0 { super::index::A } else { super::index::B };
                    let new = NewEntry { subject: subject.as_bytes().to_vec(), ..entry(payload.clone()) };
                    let answers = ledger.append(vec![new]).await.unwrap();
                    receipts.push((payload, answers.into_iter().next().unwrap().unwrap()));
                }
                receipts
            }));
        }
    }
    // Every node signs checkpoints while all of them append: each one's
    // index entry is staged on top of what the others appended.
    let mut sizes = Vec::new();
    for _ in 0..10 {
        for ledger in &nodes {
            sizes.push(ledger.sign_checkpoint_now().unwrap().tree_size);
        }
        tokio::task::yield_now().await;
    }
    let mut receipts = Vec::new();
    for writer in writers {
        receipts.extend(writer.await.unwrap());
    }
    for ledger in &nodes {
        sizes.push(ledger.sign_checkpoint_now().unwrap().tree_size);
    }
    let mut seqs: Vec<u64> = receipts.iter().map(|(_, r)| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 300, "every seq taken exactly once");

    // Each node catches up (a commit of its own reads the others' first).
    for ledger in &nodes {
        ledger.append(vec![entry(format!("marker {:?}", ledger.head().size))]).await.unwrap();
    }
    sizes.retain(|s| *s > 0);
    sizes.sort_unstable();
    sizes.dedup();
    for ledger in &nodes {
        for size in &sizes {
            super::index::assert_index_at(ledger, *size);
        }
    }
    for ledger in &nodes {
        for (payload, receipt) in &receipts {
            let stored = ledger.entry(receipt.seq).unwrap();
            assert_eq!(stored.payload, payload.as_bytes());
            assert_eq!(stored.chain_hash, receipt.chain_hash);
        }
    }
    for ledger in &nodes {
        ledger.close().await.unwrap();
    }
    // The first to close ended the head with an index entry; the others
    // found it there.
    let last = nodes.iter().map(Ledger::head).max_by_key(|h| h.size).unwrap();
    let report = verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap();
    assert_eq!((report.entries, report.root), (last.size, last.root));
    assert_eq!(report.index_entries, sizes.len() as u64 + 1);
    assert!(report.checkpoint_signature_checked);
}

/// A node learns of another node's commit without appending itself: its
/// observer is told and its head moves (LISTEN/NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_follows_appends_made_through_another() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = pgtest::database();
    let key = shared_key(&a_dir.path().join("key"));
    let a = Ledger::open(node(a_dir.path(), &url, &key)).unwrap();
    let b = Ledger::open(node(b_dir.path(), &url, &key)).unwrap();
    let (seen, observed) = mpsc::channel();
    b.observe_commits(Box::new(move |seq, subject| {
        let _ = seen.send((seq, subject.to_vec()));
    }))
    .unwrap();
    let (published, foreign) = mpsc::channel();
    b.observe_foreign_entries(Box::new(move |entry| {
        let _ = published.send((entry.seq, entry.payload.clone()));
    }))
    .unwrap();

    let receipt =
        a.append(vec![keyed("on a", "91330200MA2AXXXX1X", "a/1")]).await.unwrap().remove(0).unwrap();
    // Bounds on a hang, not pauses: the notification usually arrives in
    // milliseconds.
    let (seq, subject) =
        observed.recv_timeout(Duration::from_secs(30)).expect("node b is told of a's commit");
    assert_eq!(seq, receipt.seq);
    assert_eq!(subject, b"91330200MA2AXXXX1X");
    // The foreign-entry observer is told once the head holding it is out.
    assert_eq!(foreign.recv_timeout(Duration::from_secs(30)).unwrap(), (receipt.seq, b"on a".to_vec()));
    assert_eq!(b.head().size, 1);
    assert_eq!(b.entries_for_subject(b"91330200MA2AXXXX1X").unwrap()[0].payload, b"on a");

    // The same idempotency key through b answers a's receipt.
    let again = b.append(vec![keyed("on a", "91330200MA2AXXXX1X", "a/1")]).await.unwrap().remove(0).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, receipt.seq);
    let conflict = b.append(vec![keyed("other", "91330200MA2AXXXX1X", "a/1")]).await.unwrap().remove(0);
    assert_eq!(conflict.unwrap_err().existing.seq, receipt.seq);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// The same idempotency key sent to two nodes at the same moment: one
/// entry, and the other node answers it as a duplicate (it stages under
/// the head lock, after taking in what the first node appended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_to_two_nodes_at_once_is_appended_once() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = pgtest::database();
    let key = shared_key(&a_dir.path().join("key"));
    let a = Ledger::open(node(a_dir.path(), &url, &key)).unwrap();
    let b = Ledger::open(node(b_dir.path(), &url, &key)).unwrap();
    for round in 0..20 {
        let id = format!("k/{round}");
        let (on_a, on_b) = tokio::join!(
            a.append(vec![keyed("same", "91330200MA2AXXXX1X", &id)]),
            b.append(vec![keyed("same", "91330200MA2AXXXX1X", &id)]),
        );
        let (on_a, on_b) = (on_a.unwrap().remove(0).unwrap(), on_b.unwrap().remove(0).unwrap());
        assert_eq!(on_a.seq, on_b.seq, "round {round}: one entry for one key");
        assert!(on_a.duplicate != on_b.duplicate, "round {round}: exactly one of them appended");
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
    let report = verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap();
    // The 20 entries and the index entry the first close appended.
    assert_eq!((report.entries, report.index_entries), (21, 1));
}

/// The database going away makes appends fail as unavailable, and the
/// node carries on once it is back, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_survived() {
    let cluster = pgtest::Cluster::start();
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let key = shared_key(&dir.path().join("key"));
    let ledger = Ledger::open(node(dir.path(), &url, &key)).unwrap();
    ledger.append(vec![entry("before")]).await.unwrap();

    cluster.stop();
    match ledger.append(vec![entry("while down")]).await {
        Err(Error::Unavailable(what)) => assert!(what.contains("PostgreSQL"), "{what}"),
        other => panic!("an append while the database is down is unavailable, got {other:?}"),
    }
    cluster.restart();
    let receipt = ledger.append(vec![entry("after")]).await.unwrap().remove(0).unwrap();
    assert_eq!(receipt.seq, 1, "nothing of the failed append is in the ledger");
    assert_eq!(ledger.entry(1).unwrap().payload, b"after");
    ledger.close().await.unwrap();
    let report = verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap();
    // The two entries and the index entry close appended.
    assert_eq!((report.entries, report.index_entries), (3, 1));
}

/// A sled ledger copied into PostgreSQL: the same root and chain, checked
/// by the migration itself and again by a node opening the copy.
#[tokio::test]
async fn migration_from_sled_keeps_root_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let source = filled(dir.path(), 1000).await;
    source.append(vec![keyed("keyed", "91330200MA2AXXXX1X", "src/1")]).await.unwrap();
    source.close().await.unwrap();
    let head = source.head();
    drop(source);
    let offline = verify(dir.path(), &mut |_, _| {}).unwrap();

    let url = pgtest::database();
    let mut phases = Vec::new();
    let report = migrate_to_postgres(dir.path(), &url, &mut |phase, done, total| {
        if phases.last() != Some(&phase.to_string()) {
            phases.push(phase.to_string());
        }
        assert!(done <= total.max(done));
    })
    .unwrap();
    assert_eq!(phases, ["verify", "copy", "check"]);
    assert_eq!((report.entries, report.root, report.chain), (offline.entries, offline.root, offline.chain));
    // 1001 entries and the index entry close appended.
    assert_eq!(report.checkpoint_size, Some(1002));

    let key = dir.path().join("ledger.key");
    let node_dir = tempfile::tempdir().unwrap();
    let copy = Ledger::open(node(node_dir.path(), &url, &key)).unwrap();
    assert_eq!(copy.head(), head);
    assert_eq!(copy.lookup(b"src/1").unwrap().unwrap().seq, 1000);
    assert_eq!(copy.inclusion_proof(3, 1001).unwrap(), {
        let reopened = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        reopened.inclusion_proof(3, 1001).unwrap()
    });
    copy.close().await.unwrap();

    // A second migration into the same database is refused.
    let again = migrate_to_postgres(dir.path(), &url, &mut |_, _, _| {}).unwrap_err();
    assert!(again.to_string().contains("empty database"), "{again}");
}

#[test]
fn a_newer_schema_is_refused() {
    let url = pgtest::database();
    drop(super::super::pg::PgStore::open(&url, true).unwrap());
    sql(&url, "UPDATE ecocode_schema SET version = version + 1");
    let err = super::super::pg::PgStore::open(&url, true).err().expect("refused");
    assert!(err.to_string().contains("newer than this ecocode"), "{err}");
}

#[test]
fn verifying_a_database_without_a_ledger_writes_nothing_and_says_so() {
    let url = pgtest::database();
    let err = verify_postgres(&url, None, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("no ecocode ledger"), "{err}");
}
