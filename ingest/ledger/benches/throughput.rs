//! Ingest and start-up of the ledger next to their raw baselines, measured
//! in the same run on the same machine:
//!
//! * **ingest**: durable appends/s in batches of `BATCH` entries, against
//!   a raw loop that appends the same bytes the ledger writes (the group's
//!   encoded entries) to a file and `fdatasync`s after each group (the
//!   floor of any durable append), and against the old baseline, a raw
//!   sled loop inserting the same payloads and flushing after each batch;
//! * **start-up**: entries/s of `Ledger::open` (full verification: chain,
//!   tree, index entries, head, tiles) against BLAKE3 over the same
//!   entries in memory (the hashes verification cannot avoid), and against
//!   a bare sequential read of the same store's entries file (reading, no
//!   checking): the floor any verification on this engine has;
//! * **disk**: the store's bytes per entry, against the payload and the
//!   entry and chain hashes (`payload + 64`).
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

/// The allocator of the `ecocode` binary, so the ledger runs here as it
/// runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // RUST_LOG=info shows how start-up splits between opening the store
    // and verifying it.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
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

    // Raw append + fdatasync: the same encoded bytes per group, one write
    // and one fdatasync each.
    let file_dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(file_dir.path().join("raw")).unwrap();
    let start = Instant::now();
    for batch in 0..entries.div_ceil(BATCH as u64) {
        let mut bytes = Vec::new();
        for i in batch * BATCH as u64..((batch + 1) * BATCH as u64).min(entries) {
            let e = entry(i);
            bytes.extend_from_slice(&(e.payload.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&[0u8; 45]);
            bytes.extend_from_slice(&e.subject);
            bytes.extend_from_slice(&e.idempotency.as_ref().unwrap().key);
            bytes.extend_from_slice(&e.idempotency.as_ref().unwrap().fingerprint);
            bytes.extend_from_slice(&e.payload);
        }
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        file.sync_data().unwrap();
    }
    let file_rate = entries as f64 / start.elapsed().as_secs_f64();
    drop(file);

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
        "ingest, batches of {BATCH}: ledger {appended:>10.0} entries/s | raw append+fdatasync {file_rate:>10.0}/s | ratio {:.2} | raw sled insert+flush {raw_rate:>10.0}/s | ratio {:.2}",
        appended / file_rate,
        appended / raw_rate
    );
    let disk: u64 = std::fs::read_dir(dir.path().join("log"))
        .unwrap()
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "disk: {:.0} bytes per entry | payload + entry and chain hash {} | ratio {:.2}",
        disk as f64 / entries as f64,
        PAYLOAD + 64,
        disk as f64 / entries as f64 / (PAYLOAD + 64) as f64
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

    // The bare read: the entries file front to back, nothing checked.
    let start = Instant::now();
    let scanned = {
        let mut file = std::fs::File::open(dir.path().join("log").join("entries")).unwrap();
        let mut buffer = vec![0u8; 1 << 20];
        let mut bytes = 0usize;
        loop {
            let n = std::io::Read::read(&mut file, &mut buffer).unwrap();
            if n == 0 {
                break;
            }
            bytes += n;
        }
        std::hint::black_box(bytes);
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
        "start-up, {entries} entries: open+verify {open_rate:>10.0} entries/s | BLAKE3 entry+chain in memory {hash_rate:>10.0}/s | ratio {:.3} | read of the entries file alone {scanned:>10.0}/s | ratio {:.3}",
        open_rate / hash_rate,
        open_rate / scanned
    );
}
