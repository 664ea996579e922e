//! Durable appends on PostgreSQL, side by side in one run on one
//! throwaway cluster at PostgreSQL's default durability (`fsync = on`,
//! `synchronous_commit = on`):
//!
//! 1. the obvious alternative: a table whose BEFORE INSERT trigger chains
//!    each row's SHA-256 to the previous row's (serialized by an advisory
//!    lock), one row per transaction, with 1 and 8 clients;
//! 2. ecocode's ledger on the same cluster, one node with 64 concurrent
//!    appenders (group commit), then three nodes (three ledgers, each with
//!    its own connections, as three `ecocode serve` processes would have)
//!    sharing the 64 appenders, all extending one chain;
//!
//! and the ratios. Where the time goes is printed too: group commits
//! (transactions) per second and entries per commit.
//!
//! `cargo bench -p ledger --bench postgres [-- SECONDS]` (needs Debian's
//! postgresql package, like the tests).

use std::time::{Duration, Instant};

use ledger::{Ledger, LedgerConfig, NewEntry};
use tokio_postgres::NoTls;

const APPENDERS: usize = 64;

fn entry(fill: u8) -> NewEntry {
    NewEntry {
        payload: vec![fill; 200],
        subject: b"91330421739237858X".to_vec(),
        idempotency: None,
        details: Vec::new(),
    }
}

/// Rows/s into the trigger table with `clients` connections for `run`.
async fn trigger_table(url: &str, clients: usize, run: Duration) -> f64 {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..clients {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
            tokio::spawn(connection);
            let insert = client.prepare("INSERT INTO chain (payload) VALUES ($1)").await.unwrap();
            let payload = vec![b'x'; 200];
            let mut n = 0u64;
            while start.elapsed() < run {
                client.execute(&insert, &[&payload]).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Appends/s through `nodes`, [`APPENDERS`] appenders spread over them;
/// also the group commits made.
async fn ledger_appends(nodes: &[Ledger], run: Duration) -> (f64, u64) {
    let flushes_before: u64 = nodes.iter().map(Ledger::flush_count).sum();
    let start = Instant::now();
    let tasks: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let ledger = nodes[t % nodes.len()].clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < run {
                    ledger.append(vec![entry((t as u64 + n) as u8)]).await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let flushes = nodes.iter().map(Ledger::flush_count).sum::<u64>() - flushes_before;
    (total as f64 / start.elapsed().as_secs_f64(), flushes)
}

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let run = Duration::from_secs(seconds);
    let cluster = pgtest::Cluster::start_durable();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        println!("PostgreSQL at fsync = on, synchronous_commit = on; {seconds} s per figure; 200-byte payloads");

        let baseline_url = cluster.create_database();
        cluster.execute(
            &baseline_url,
            "CREATE TABLE chain (seq bigserial PRIMARY KEY, payload bytea NOT NULL, hash bytea NOT NULL);
             CREATE FUNCTION chain_hash() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE prev bytea;
             BEGIN
               PERFORM pg_advisory_xact_lock(42);
               SELECT hash INTO prev FROM chain ORDER BY seq DESC LIMIT 1;
               NEW.hash := sha256(coalesce(prev, '\\x'::bytea) || NEW.payload);
               RETURN NEW;
             END $$;
             CREATE TRIGGER chain_hash BEFORE INSERT ON chain FOR EACH ROW EXECUTE FUNCTION chain_hash();",
        );
        let one = trigger_table(&baseline_url, 1, run).await;
        println!("trigger table, 1 client:          {one:>9.0} appends/s");
        let eight = trigger_table(&baseline_url, 8, run).await;
        println!("trigger table, 8 clients:         {eight:>9.0} appends/s");
        let baseline = one.max(eight);

        let keys = tempfile::tempdir().unwrap();
        drop(Ledger::open(LedgerConfig::new(keys.path())).unwrap());
        let key = keys.path().join("ledger.key");
        let url = cluster.create_database();
        let node = |dir: &std::path::Path| {
            Ledger::open(LedgerConfig {
                store: Some(url.clone()),
                key_file: Some(key.clone()),
                ..LedgerConfig::new(dir)
            })
            .unwrap()
        };
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let single = [node(dirs[0].path())];
        let (rate, commits) = ledger_appends(&single, run).await;
        println!(
            "ecocode, 1 node, {APPENDERS} appenders:  {rate:>9.0} appends/s ({:.0} commits/s, {:.1} entries each)",
            commits as f64 / seconds as f64,
            rate * seconds as f64 / commits.max(1) as f64
        );
        let one_node = rate;
        let three = [single[0].clone(), node(dirs[1].path()), node(dirs[2].path())];
        let (rate, commits) = ledger_appends(&three, run).await;
        println!(
            "ecocode, 3 nodes, {APPENDERS} appenders: {rate:>9.0} appends/s ({:.0} commits/s, {:.1} entries each)",
            commits as f64 / seconds as f64,
            rate * seconds as f64 / commits.max(1) as f64
        );
        println!(
            "ratios against the better trigger-table figure ({baseline:.0}/s): 1 node {:.1}x, 3 nodes {:.1}x (goal >= 10x)",
            one_node / baseline,
            rate / baseline
        );
        for ledger in three {
            ledger.close().await.unwrap();
        }
        let start = Instant::now();
        let report = ledger::verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap();
        let elapsed = start.elapsed();
        println!(
            "verify_postgres: {} entries in {:.2} s ({:.0} entries/s), one chain",
            report.entries,
            elapsed.as_secs_f64(),
            report.entries as f64 / elapsed.as_secs_f64()
        );
    });
}
