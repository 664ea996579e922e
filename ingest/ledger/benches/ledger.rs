//! Load generator for the ledger's group commit: appends/s with one
//! appender, then with 64 concurrent ones, on a real sled store in a temp
//! dir, and the ratio between the two measured in the same run.
//!
//! `cargo bench -p ledger --bench ledger`

use std::time::Instant;

use ledger::{Ledger, LedgerConfig, NewEntry};

fn entry(fill: u8) -> NewEntry {
    NewEntry {
        payload: vec![fill; 200],
        subject: b"91330421739237858X".to_vec(),
        idempotency: None,
        details: Vec::new(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        let n = 2_000usize;

        let start = Instant::now();
        for i in 0..n {
            ledger.append(vec![entry(i as u8)]).await.unwrap();
        }
        let single = n as f64 / start.elapsed().as_secs_f64();
        println!("1 appender:   {n} appends, {single:>9.0}/s, {} flushes", ledger.flush_count());

        let before = ledger.flush_count();
        let start = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    for i in 0..n / 16 {
                        ledger.append(vec![entry((t + i) as u8)]).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let total = 64 * (n / 16);
        let many = total as f64 / start.elapsed().as_secs_f64();
        println!("64 appenders: {total} appends, {many:>9.0}/s, {} flushes", ledger.flush_count() - before);
        println!("group commit speed-up: {:.1}x", many / single);

        ledger.close().await.unwrap();
        drop(ledger);
        let start = Instant::now();
        let reopened = Ledger::open(LedgerConfig::new(dir.path())).unwrap();
        println!("reopen + full verification of {} entries: {:?}", reopened.head().size, start.elapsed());
    });
}
