//! Ingest and start-up of the ledger next to their raw baselines, measured
//! in the same run on the same machine:
//!
//! * **ingest**: durable appends/s in batches of `BATCH` entries, against a
//!   raw sled loop that inserts the same payloads in batches of the same
//!   size and flushes after each (no hashing, no indexes);
//! * **start-up**: entries/s of `Ledger::open` (full verification: chain,
//!   tree, indexes, head) against BLAKE3 over the same entries in memory
//!   (the hashes verification cannot avoid), and against a bare scan of
//!   the same store's entries through sled (reading, no checking): the
//!   floor any verification on this engine has.
//!
//! `cargo bench -p ledger --bench throughput [-- ENTRIES]` (default 300 000
//! entries of 250 payload bytes over 10 000 subjects, as the load
//! generator's data set).

use std::time::Instant;

use ledger::{Idempotency, Ledger, LedgerConfig, NewEntry};

const BATCH: usize = 1_000;
const PAYLOAD: usize = 250;
const SUBJECTS: u64 = 10_000;

fn entry(i: u64) -> NewEntry {
    let mut payload = vec![0u8; PAYLOAD];
    payload[..8].copy_from_slice(&i.to_be_bytes());
    let subject = format!("9133020673923{:05}", i % SUBJECTS).into_bytes();
    let key = format!("record\0bench\0{i}").into_bytes();
    let fingerprint = *blake3::hash(&payload).as_bytes();
    NewEntry { payload, subject, idempotency: Some(Idempotency { key, fingerprint }), details: Vec::new() }
}

fn main() {
    let entries: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(300_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Raw sled: the same bytes, the same batches, one flush per batch.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = kv::open(sled::Config::new(), raw_dir.path()).unwrap();
    let start = Instant::now();
    for batch in 0..entries.div_ceil(BATCH as u64) {
        let mut writes = sled::Batch::default();
        for i in batch * BATCH as u64..((batch + 1) * BATCH as u64).min(entries) {
            writes.insert(&i.to_be_bytes(), entry(i).payload);
        }
        raw.apply_batch(writes).unwrap();
        raw.flush().unwrap();
    }
    let raw_rate = entries as f64 / start.elapsed().as_secs_f64();
    drop(raw);

    let dir = tempfile::tempdir().unwrap();
    let appended = runtime.block_on(async {
        let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        let start = Instant::now();
        for batch in 0..entries.div_ceil(BATCH as u64) {
            let group =
                (batch * BATCH as u64..((batch + 1) * BATCH as u64).min(entries)).map(entry).collect();
            ledger.append(group).await.unwrap();
        }
        let rate = entries as f64 / start.elapsed().as_secs_f64();
        ledger.close().await.unwrap();
        rate
    });
    println!(
        "ingest, batches of {BATCH}: ledger {appended:>10.0} entries/s | raw sled insert+flush {raw_rate:>10.0}/s | ratio {:.2}",
        appended / raw_rate
    );

    // What verification must hash at least: every entry hash and the chain.
    let payloads: Vec<NewEntry> = (0..entries).map(entry).collect();
    let start = Instant::now();
    let mut chain = [0u8; 32];
    for (seq, e) in payloads.iter().enumerate() {
        let leaf = tlog::hash::entry_hash(seq as u64, 0, &e.payload);
        chain = tlog::hash::chain_hash(&chain, &leaf);
    }
    let hash_rate = entries as f64 / start.elapsed().as_secs_f64();
    std::hint::black_box(chain);
    drop(payloads);

    // The bare scan: sled's own iteration over the entry records (layout of
    // `src/store.rs`: tree `ledger.v1`, keys `e ‖ seq`), nothing checked.
    let start = Instant::now();
    let scanned = {
        let db = kv::open(sled::Config::new(), &dir.path().join("ledger")).unwrap();
        let tree = db.open_tree("ledger.v1").unwrap();
        let mut bytes = 0usize;
        for item in tree.scan_prefix(b"e") {
            bytes += item.unwrap().1.len();
        }
        std::hint::black_box(bytes);
        drop(tree);
        entries as f64 / start.elapsed().as_secs_f64()
    };

    let start = Instant::now();
    let mut last = Instant::now();
    let reopened = Ledger::open_with_progress(LedgerConfig::new(dir.path()), &mut |done, total| {
        if last.elapsed().as_secs() >= 2 {
            eprintln!("  verifying {done}/{total}");
            last = Instant::now();
        }
    })
    .unwrap();
    let open_rate = reopened.head().size as f64 / start.elapsed().as_secs_f64();
    println!(
        "start-up, {entries} entries: open+verify {open_rate:>10.0} entries/s | BLAKE3 entry+chain in memory {hash_rate:>10.0}/s | ratio {:.3} | sled open+scan alone {scanned:>10.0}/s | ratio {:.3}",
        open_rate / hash_rate,
        open_rate / scanned
    );
}
