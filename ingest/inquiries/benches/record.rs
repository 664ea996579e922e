//! Records/s of `InquiryLog::record` with 1 and 128 concurrent callers
//! (tokio multi-thread runtime, 2 workers), next to a baseline measured in
//! the same run on the same disk: a raw `std::fs::File` append +
//! `sync_data` loop writing, per sync, as many inquiry-sized records as the
//! log's groups held on average (1 for 1 caller). The disk is shared and
//! noisy, so the baseline runs before and after the log and is averaged.
//!
//! The log answers once a record is durable and indexes it after, so a
//! run may end with records still queued for the index: "until listable"
//! counts each run until the listing that follows it (which waits for the
//! index) has answered.
//!
//! `cargo bench -p inquiries --bench record`; `RECORD_BENCH_SECS` sets each
//! measurement's length (default 3).
//!
//! Two runs on 2026-11-30 (2 cores, the disk shared with other builds; its
//! fdatasync rate swung between ~280/s and ~5 000/s within minutes, so
//! compare figures of one line only):
//!
//! ```text
//!   1 caller(s): InquiryLog::record    3112 records/s (2811, 3413; 1.0 records per fdatasync); raw append+sync_data, 1 record(s) per sync    4976 records/s (4305, 5648); ratio 0.63
//! 128 caller(s): InquiryLog::record   33815 records/s (40936, 26694; 12.1 records per fdatasync); raw append+sync_data, 12 record(s) per sync   41508 records/s (70624, 12391); ratio 0.81
//!   1 caller(s): InquiryLog::record    1300 records/s (1829, 771; 1.0 records per fdatasync); raw append+sync_data, 1 record(s) per sync     609 records/s (488, 730); ratio 2.14
//! 128 caller(s): InquiryLog::record   21710 records/s (20961, 22458; 33.2 records per fdatasync); raw append+sync_data, 33 record(s) per sync   78805 records/s (29050, 128560); ratio 0.28
//! ```

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use inquiries::{Inquiry, InquiryLog, Query, Scope};

fn inquiry(caller: usize, n: u64) -> Inquiry {
    Inquiry {
        uscc: format!("91330206MA2{caller:07}"),
        region_code: "330206".into(),
        principal: format!("bank-{:04}", caller % 16),
        role: "lender".into(),
        method: "GetScore".into(),
        purpose: format!("loan-2026-{n:06}"),
        at_ns: 1_790_000_000_000_000_000 + n as i64,
        grant_seq: None,
    }
}

/// The WAL record size of one inquiry: 4 length + 8 id + JSON + 8 checksum.
fn record_size() -> usize {
    4 + 8 + serde_json::to_vec(&inquiry(0, 0)).map_or(0, |v| v.len()) + 8
}

struct LogRun {
    rate: f64,
    /// Records/s counted until the last one is listed: the log indexes
    /// after acknowledging, so a run can end with a queue to index.
    listable_rate: f64,
    records: u64,
    syncs: u64,
}

/// Records/s through the inquiry log with `callers` concurrent callers.
fn log_rate(runtime: &tokio::runtime::Runtime, callers: usize, secs: Duration) -> LogRun {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let log = Arc::new(InquiryLog::open(dir.path()).expect("open"));
    let recorded = Arc::new(AtomicU64::new(0));
    let elapsed = runtime.block_on(async {
        let start = Instant::now();
        let deadline = start + secs;
        let mut tasks = tokio::task::JoinSet::new();
        for caller in 0..callers {
            let (log, recorded) = (log.clone(), recorded.clone());
            tasks.spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    log.record(&[inquiry(caller, n)]).await.expect("record");
                    recorded.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("caller");
        }
        start.elapsed()
    });
    let records = recorded.load(Ordering::Relaxed);
    let syncs = log.wal_syncs();
    // Sanity: what was acknowledged is listed (up to one listing's bound);
    // the listing first waits for the index to take in every record.
    let listing = Instant::now();
    let all = Query { scope: Scope::All, from_ns: None, to_ns: None, page_size: usize::MAX, after: None };
    let listed = log.list(&all).map_or(0, |page| page.inquiries.len() as u64);
    assert_eq!(listed, records.min(inquiries::MAX_EXAMINED as u64));
    let listable = elapsed + listing.elapsed();
    LogRun {
        rate: records as f64 / elapsed.as_secs_f64(),
        listable_rate: records as f64 / listable.as_secs_f64(),
        records,
        syncs,
    }
}

/// Records/s of a raw append + `sync_data` loop, `group` records per sync.
fn raw_rate(group: usize, secs: Duration) -> f64 {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut file =
        std::fs::OpenOptions::new().append(true).create(true).open(dir.path().join("raw")).expect("raw file");
    let bytes = vec![0x5a; record_size() * group];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < secs {
        file.write_all(&bytes).expect("write");
        file.sync_data().expect("sync");
        syncs += 1;
    }
    syncs as f64 * group as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let secs = std::env::var("RECORD_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let secs = Duration::from_secs(secs);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!(
        "inquiry record bench: {} s per measurement, {} bytes per WAL record",
        secs.as_secs(),
        record_size()
    );
    for callers in [1, 128] {
        let run = log_rate(&runtime, callers, secs);
        let group = (run.records as f64 / run.syncs.max(1) as f64).round().max(1.0) as usize;
        let before = raw_rate(group, secs);
        let again = log_rate(&runtime, callers, secs);
        let after = raw_rate(group, secs);
        let log = (run.rate + again.rate) / 2.0;
        let raw = (before + after) / 2.0;
        let listable = (run.listable_rate + again.listable_rate) / 2.0;
        println!(
            "{callers:>3} caller(s): InquiryLog::record {log:>7.0} records/s ({:.0}, {:.0}; {:.1} records per fdatasync; \
             {listable:.0} until listable); \
             raw append+sync_data, {group} record(s) per sync {raw:>7.0} records/s ({before:.0}, {after:.0}); ratio {:.2}",
            run.rate,
            again.rate,
            run.records as f64 / run.syncs.max(1) as f64,
            log / raw
        );
    }
}
