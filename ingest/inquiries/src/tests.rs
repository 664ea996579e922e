//! The local log and its write-ahead log on real files: listings, paging,
//! key layout (and the older one), crash replay, torn tails, fail-stop,
//! read-your-writes while the indexer lags.

use super::*;
use crate::local::LocalLog;
use crate::wal::{
    ID_BYTES, LEN_BYTES, Options, SUM_BYTES, decode_records, encode_record, wal_files, wal_path,
};

fn inquiry(uscc: &str, region: &str, principal: &str, at_ns: i64) -> Inquiry {
    Inquiry {
        uscc: uscc.into(),
        region_code: region.into(),
        principal: principal.into(),
        role: "lender".into(),
        method: "GetScore".into(),
        purpose: format!("loan {at_ns}"),
        at_ns,
        grant_seq: None,
    }
}

fn query(scope: Scope, page_size: usize) -> Query {
    Query { scope, from_ns: None, to_ns: None, page_size, after: None }
}

fn ats(page: &Page) -> Vec<i64> {
    page.inquiries.iter().map(|i| i.at_ns).collect()
}

/// Every page of `q`, following the cursor: the instants, in order.
fn every_page(log: &LocalLog, mut q: Query) -> Vec<i64> {
    let mut seen = Vec::new();
    loop {
        let page = log.list(&q).unwrap();
        seen.extend(ats(&page));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn listings_are_newest_first_per_scope_and_page_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path()).unwrap();
    log.record(&[inquiry("A", "330206", "bank-a", 10), inquiry("B", "110105", "bank-a", 20)]).await.unwrap();
    log.record(&[inquiry("A", "330206", "bank-b", 30), inquiry("A", "330206", "bank-ab", 40)]).await.unwrap();

    assert_eq!(ats(&log.list(&query(Scope::All, 10)).unwrap()), vec![40, 30, 20, 10]);
    assert_eq!(ats(&log.list(&query(Scope::Enterprise("A".into()), 10)).unwrap()), vec![40, 30, 10]);
    let own = Scope::Inquirer { principal: "bank-a".into(), uscc: None };
    assert_eq!(ats(&log.list(&query(own.clone(), 10)).unwrap()), vec![20, 10], "bank-ab is not bank-a");
    let own_on_a = Scope::Inquirer { principal: "bank-a".into(), uscc: Some("A".into()) };
    assert_eq!(ats(&log.list(&query(own_on_a, 10)).unwrap()), vec![10]);
    assert_eq!(ats(&log.list(&query(Scope::Region("3302".into()), 10)).unwrap()), vec![40, 30, 10]);

    // Pages of one, following the cursor, see everything once.
    assert_eq!(every_page(&log, query(Scope::All, 1)), vec![40, 30, 20, 10]);

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
    let options =
        Options { rotate_bytes: 1, rotate_every: std::time::Duration::from_secs(3600), ..Options::default() };
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

/// The keys of an inquiry with id `id`, spelled out byte by byte: the
/// layout `local.rs` documents.
fn layout_keys(uscc: &str, principal: &str, at_ns: i64, id: u64) -> [Vec<u8>; 3] {
    let suffix = [(u64::MAX - at_ns as u64).to_be_bytes(), (u64::MAX - id).to_be_bytes()].concat();
    [
        [b"a".as_slice(), &suffix].concat(),
        [b"u".as_slice(), uscc.as_bytes(), &suffix].concat(),
        [b"p".as_slice(), &[principal.len() as u8], principal.as_bytes(), &suffix].concat(),
    ]
}

#[tokio::test]
async fn an_inquiry_is_stored_once_under_its_primary_key_with_empty_pointers() {
    let dir = tempfile::tempdir().unwrap();
    let id = 1 << 40;
    let value = serde_json::to_vec(&inquiry("A", "330206", "bank-a", 7)).unwrap();
    let mut wal = Vec::new();
    encode_record(&mut wal, id, &value);
    std::fs::write(wal_path(dir.path(), 1), wal).unwrap();
    drop(LocalLog::open(dir.path()).unwrap());

    let db = kv::open(sled::Config::new(), dir.path()).unwrap();
    let tree = db.open_tree("inquiries").unwrap();
    let stored: Vec<(Vec<u8>, Vec<u8>)> =
        tree.iter().map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
    let [primary, by_uscc, by_principal] = layout_keys("A", "bank-a", 7, id);
    let mut expected = vec![(primary, value), (by_uscc, Vec::new()), (by_principal, Vec::new())];
    expected.sort();
    assert_eq!(stored, expected);
}

/// Logs written before pointers hold the whole inquiry under every index
/// key; they list as they did, beside inquiries recorded since.
#[tokio::test]
async fn inquiries_stored_under_every_key_by_older_versions_still_list() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = kv::open(sled::Config::new(), dir.path()).unwrap();
        let tree = db.open_tree("inquiries").unwrap();
        for (n, (uscc, principal, at)) in
            [("A", "bank-a", 10), ("B", "bank-a", 20), ("A", "bank-b", 30)].into_iter().enumerate()
        {
            let value = serde_json::to_vec(&inquiry(uscc, "330206", principal, at)).unwrap();
            for key in layout_keys(uscc, principal, at, n as u64) {
                tree.insert(key, value.as_slice()).unwrap();
            }
        }
        tree.flush().unwrap();
    }
    let log = LocalLog::open(dir.path()).unwrap();
    log.record(&[inquiry("A", "330206", "bank-a", 40), inquiry("B", "330206", "bank-b", 25)]).await.unwrap();

    assert_eq!(all(&log), vec![40, 30, 25, 20, 10]);
    assert_eq!(ats(&log.list(&query(Scope::Enterprise("A".into()), 10)).unwrap()), vec![40, 30, 10]);
    let bank_a = Scope::Inquirer { principal: "bank-a".into(), uscc: None };
    assert_eq!(ats(&log.list(&query(bank_a, 10)).unwrap()), vec![40, 20, 10]);
    let bank_b_on_b = Scope::Inquirer { principal: "bank-b".into(), uscc: Some("B".into()) };
    assert_eq!(ats(&log.list(&query(bank_b_on_b, 10)).unwrap()), vec![25]);
    // Pages of one across both layouts.
    assert_eq!(every_page(&log, query(Scope::Enterprise("A".into()), 1)), vec![40, 30, 10]);
}

/// Read-your-writes with the indexer behind the acknowledgments: every
/// recorder lists its own inquiry right after `record` returns, and a
/// listing running alongside always shows at least what was acknowledged
/// before it started. A queue of two groups makes the flusher wait for the
/// indexer (back-pressure) throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_shows_every_inquiry_acknowledged_before_it_while_others_record() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { index_queue: 2, ..Options::default() };
    let log = std::sync::Arc::new(LocalLog::open_with(dir.path(), options).unwrap());
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (recorders, per_recorder) = (32, 20);

    // A thread of its own, not the runtime's blocking pool: should a
    // recorder panic, the test fails instead of waiting for this loop.
    let lister = {
        let (log, acked) = (log.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut listings = 0;
            loop {
                let before = acked.load(std::sync::atomic::Ordering::SeqCst);
                let listed = all(&log).len();
                assert!(listed >= before, "listed {listed}, {before} acknowledged before the listing");
                listings += 1;
                if before == recorders * per_recorder {
                    return listings;
                }
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for recorder in 0..recorders {
        let (log, acked) = (log.clone(), acked.clone());
        tasks.spawn(async move {
            // Codes of one length, as USCCs are: the `u` index has no
            // length byte, so "U1" would also find "U10".
            let uscc = format!("U{recorder:02}");
            for n in 0..per_recorder {
                let at = (recorder * 1_000 + n) as i64;
                log.record(&[inquiry(&uscc, "330206", "bank-a", at)]).await.unwrap();
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let log = log.clone();
                let mine = Scope::Enterprise(uscc.clone());
                let listed =
                    tokio::task::spawn_blocking(move || log.list(&query(mine, 1)).unwrap()).await.unwrap();
                assert_eq!(ats(&listed), vec![at], "{uscc} lists its newest inquiry at once");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(lister.join().unwrap() > 0);
    assert_eq!(all(&log).len(), recorders * per_recorder);
}

/// A crash after the acknowledgments and before the indexer wrote sled:
/// a listing cannot show them and says so within its bound, no WAL file
/// is deleted, and the next open replays them into every index.
#[tokio::test]
async fn open_replays_what_was_acknowledged_but_never_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        rotate_bytes: 1,
        rotate_every: std::time::Duration::from_secs(3600),
        index_wait: std::time::Duration::from_millis(50),
        ..Options::default()
    };
    options.index_nothing.store(true, std::sync::atomic::Ordering::Relaxed);
    let log = LocalLog::open_with(dir.path(), options).unwrap();
    for at in 1..=10 {
        let bank = if at % 2 == 0 { "bank-a" } else { "bank-b" };
        log.record(&[inquiry("A", "330206", bank, at)]).await.unwrap();
    }
    let behind = log.list(&query(Scope::All, 100)).unwrap_err();
    assert!(matches!(behind, Error::Unavailable(_)), "{behind}");
    drop(log);
    // One file per group, all kept (the close started an empty eleventh).
    assert_eq!(wal_names(dir.path())[..10], (1..=10).collect::<Vec<u64>>());

    let log = LocalLog::open(dir.path()).unwrap();
    assert_eq!(all(&log), (1..=10).rev().collect::<Vec<_>>());
    let by_uscc = log.list(&query(Scope::Enterprise("A".into()), 100)).unwrap();
    assert_eq!(ats(&by_uscc), (1..=10).rev().collect::<Vec<_>>());
    let bank_a = Scope::Inquirer { principal: "bank-a".into(), uscc: None };
    assert_eq!(ats(&log.list(&query(bank_a, 100)).unwrap()), vec![10, 8, 6, 4, 2]);
    assert_eq!(wal_names(dir.path()).len(), 1, "replayed files go, a new generation starts");
}
