//! What the subject index costs, measured in the same run on the same data:
//!
//! * **ingest**: durable appends in batches of `BATCH` with a checkpoint
//!   signed every `CHECKPOINT_EVERY` batches (each one ends with an index
//!   entry), next to the index's own work on the same entries at the same
//!   cadence (`Builder::push` per entry, `commit` and the payload per
//!   checkpoint), which is what the writer thread adds to a group commit;
//!   "without" is the ledger's time minus that work;
//! * **start-up**: `Ledger::open` (full verification, which rebuilds the
//!   index and checks every index entry) next to the same index rebuild
//!   alone, in memory.
//!
//! `cargo bench --workspace --bench index [-- ENTRIES]` (default 100 000
//! entries of 250 payload bytes over 10 000 subjects, as the throughput
//! bench).

use std::time::{Duration, Instant};

use ledger::{Idempotency, Ledger, LedgerConfig, NewEntry};
use tlog::index::{Builder, Commitment};

/// The allocator of the `ecocode` binary, so the ledger runs here as it
/// runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 1_000;
const CHECKPOINT_EVERY: u64 = 10;
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

/// The index work over `stored` ((subject, entry hash) by seq) with a
/// commit and a payload at every index entry (empty subject).
fn index_work(stored: &[(Vec<u8>, [u8; 32])]) -> Duration {
    let start = Instant::now();
    let mut builder = Builder::default();
    for (seq, (subject, entry_hash)) in stored.iter().enumerate() {
        if subject.is_empty() {
            std::hint::black_box(Commitment::of(seq as u64, builder.commit()).payload());
        }
        builder.push(seq as u64, subject, entry_hash).unwrap();
    }
    start.elapsed()
}

fn main() {
    let entries: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ingest = runtime.block_on(async {
        let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        let start = Instant::now();
        for batch in 0..entries.div_ceil(BATCH as u64) {
            let group =
                (batch * BATCH as u64..((batch + 1) * BATCH as u64).min(entries)).map(entry).collect();
            ledger.append(group).await.unwrap();
            if (batch + 1) % CHECKPOINT_EVERY == 0 {
                ledger.sign_checkpoint_now().unwrap();
            }
        }
        ledger.sign_checkpoint_now().unwrap();
        let took = start.elapsed();
        ledger.close().await.unwrap();
        took
    });
    // The entries as stored (index entries included), read back.
    let reopened = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let size = reopened.head().size;
    let stored: Vec<(Vec<u8>, [u8; 32])> =
        reopened.scan(0, size).map(|e| e.map(|e| (e.subject, e.entry_hash)).unwrap()).collect();
    drop(reopened);
    let index_entries = stored.iter().filter(|(s, _)| s.is_empty()).count();
    let index = index_work(&stored);
    let without = ingest.saturating_sub(index);
    println!(
        "ingest, {entries} entries in batches of {BATCH}, {index_entries} checkpoints: ledger {:.0} entries/s | index work {:.3} s of {:.3} s ({:.1} %) | with/without {:.3}",
        entries as f64 / ingest.as_secs_f64(),
        index.as_secs_f64(),
        ingest.as_secs_f64(),
        100.0 * index.as_secs_f64() / ingest.as_secs_f64(),
        ingest.as_secs_f64() / without.as_secs_f64(),
    );

    let start = Instant::now();
    let reopened = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
    let open = start.elapsed();
    drop(reopened);
    let rebuild = index_work(&stored);
    println!(
        "start-up, {size} entries: open+verify {:.3} s | index rebuild and checks {:.3} s ({:.1} %) | with/without {:.3}",
        open.as_secs_f64(),
        rebuild.as_secs_f64(),
        100.0 * rebuild.as_secs_f64() / open.as_secs_f64(),
        open.as_secs_f64() / open.saturating_sub(rebuild).as_secs_f64(),
    );
}
