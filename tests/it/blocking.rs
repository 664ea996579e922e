//! No request path blocks an async worker: with every PostgreSQL answer
//! held back by a proxy (a database far away), page loads that make
//! hundreds of round trips leave unrelated calls unaffected.

use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ecocode_proto::v1 as pb;
use tokio::sync::{mpsc, watch};

use crate::support::*;

/// A Unix-socket proxy in front of a test cluster: once `slow` is set, it
/// holds each read from PostgreSQL for `delay` before passing it on, and
/// counts the reads it held (`held`), so a test can tell when the server
/// is waiting for the database. Plain threads, so it works whatever the
/// runtime under test does.
struct SlowProxy {
    /// The database's URL through the proxy.
    url: String,
    slow: Arc<AtomicBool>,
    held: watch::Receiver<u64>,
    _dir: tempfile::TempDir,
}

impl SlowProxy {
    fn start(url: &str, delay: Duration) -> SlowProxy {
        // pgtest's URLs are `postgresql://USER@<socket dir, '/' as %2F>/DB`.
        let (user, rest) = url.split_once('@').expect("a pgtest URL");
        let (host, database) = rest.split_once('/').expect("a pgtest URL");
        let target = PathBuf::from(host.replace("%2F", "/")).join(".s.PGSQL.5432");
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join(".s.PGSQL.5432")).unwrap();
        let url = format!("{user}@{}/{database}", dir.path().display().to_string().replace('/', "%2F"));
        let slow = Arc::new(AtomicBool::new(false));
        let (count, held) = watch::channel(0u64);
        let (count, switch) = (Arc::new(count), slow.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = UnixStream::connect(&target) else { return };
                let (to_server, from_server) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, to_server, None));
                let held = Some((delay, switch.clone(), count.clone()));
                std::thread::spawn(move || pipe(server, from_server, held));
            }
        });
        SlowProxy { url, slow, held, _dir: dir }
    }
}

type Hold = (Duration, Arc<AtomicBool>, Arc<watch::Sender<u64>>);

fn pipe(mut from: UnixStream, mut to: UnixStream, hold: Option<Hold>) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((delay, slow, count)) = &hold
            && slow.load(Ordering::Relaxed)
        {
            // The far-away database this proxy plays, not a wait of the test.
            std::thread::sleep(*delay);
            count.send_modify(|c| *c += 1);
        }
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// Reasons on the page: each has an inclusion proof of several round trips.
const REASONS: usize = 30;
/// Page loads at once: more than the test runtime's two workers.
const PAGES: usize = 4;

#[derive(Debug)]
enum Done {
    Page(u16),
    Unrelated(&'static str, bool),
}

// The enterprise page made synchronous ledger calls (up to one inclusion
// proof per reason) on the async workers: on PostgreSQL, four page readers
// pushed an unrelated GetScore from 1 ms to 795 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_postgres_round_trips_do_not_delay_unrelated_calls() {
    let proxy = SlowProxy::start(&pgtest::database(), Duration::from_millis(10));
    let url = proxy.url.clone();
    let server = TestServer::start_with(move |c| {
        c.ledger.store = Some(url);
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    let findings: Vec<pb::Record> = (0..REASONS)
        .map(|i| record(ACME, &format!("finding-{i}"), "inspection.finding", -1 - i as i64))
        .collect();
    admin.ingest.append_records(tokio_stream::iter(findings)).await.unwrap();

    proxy.slow.store(true, Ordering::Relaxed);
    let (done, mut finished) = mpsc::unbounded_channel();
    for _ in 0..PAGES {
        let (mut web, done) = (server.web(), done.clone());
        tokio::spawn(async move {
            let page = web.get(&format!("/e/{ACME}")).await;
            let _ = done.send(Done::Page(page.status));
        });
    }
    // The pages are deep in their round trips (each makes about 200: an
    // inclusion proof per reason), so every one of them waits for one now.
    let mut held = proxy.held.clone();
    while *held.borrow_and_update() < 20 * PAGES as u64 {
        held.changed().await.unwrap();
    }
    // Two calls that need no database, while every page waits for it.
    let mut ledger = admin.ledger.clone();
    let answered = done.clone();
    tokio::spawn(async move {
        let checkpoint = ledger.get_checkpoint(pb::GetCheckpointRequest {}).await;
        let _ = answered.send(Done::Unrelated("GetCheckpoint", checkpoint.is_ok()));
    });
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let answered = done.clone();
    tokio::spawn(async move {
        let serving = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        let _ = answered.send(Done::Unrelated("Health", serving.is_ok()));
    });
    drop(done);
    let mut unrelated = Vec::new();
    for _ in 0..2 {
        match finished.recv().await.unwrap() {
            Done::Unrelated(call, answered) => unrelated.push((call, answered)),
            page => panic!("a page load ended before the unrelated calls {unrelated:?}: {page:?}"),
        }
    }
    unrelated.sort();
    assert_eq!(unrelated, [("GetCheckpoint", true), ("Health", true)]);
    // Every page still answers, slowly.
    for _ in 0..PAGES {
        let page = finished.recv().await.unwrap();
        assert!(matches!(page, Done::Page(200)), "{page:?}");
    }
    proxy.slow.store(false, Ordering::Relaxed);
    server.stop().await;
}
