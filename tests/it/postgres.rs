//! Several nodes on one PostgreSQL store: each a whole `App` on its own
//! sockets and data directory, sharing the database and the signing key.

use std::path::PathBuf;

use ecocode_proto::v1 as pb;
use server::principals::{PrincipalStore, Role};
use tokio_stream::StreamExt as _;

use crate::support::{ACME, BETA, TestServer, grant, record};

/// A node on `url`, signing with `key`.
async fn node(url: &str, key: &std::path::Path) -> TestServer {
    let (url, key) = (url.to_string(), key.to_path_buf());
    TestServer::start_with(move |c| {
        c.ledger.store = Some(url);
        c.ledger.key_file = Some(key);
    })
    .await
}

/// A signing key for every node of a test: the key a sled ledger creates.
fn shared_key(dir: &std::path::Path) -> PathBuf {
    drop(ledger::Ledger::open(ledger::LedgerConfig::new(dir)).unwrap());
    dir.join("ledger.key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_chain_principals_and_watches() {
    let url = pgtest::database();
    let keys = tempfile::tempdir().unwrap();
    let key = shared_key(keys.path());
    let (a, b, c) = (node(&url, &key).await, node(&url, &key).await, node(&url, &key).await);

    // A principal added through one node's store works on the others once
    // they reload (within half a second in the background; here at once).
    let admin_token = a.token("admin", Role::Admin);
    for n in [&b, &c] {
        n.principals.reload_if_changed().unwrap();
    }
    let (mut on_a, mut on_b, on_c) =
        (a.client(&admin_token).await, b.client(&admin_token).await, c.client(&admin_token).await);
    on_a.register(ACME, "Acme", "330206").await;
    on_b.register(BETA, "Beta", "330206").await;
    // The bank watches through node c under ACME's grant, recorded through
    // node a a moment before: node c catches up before it refuses.
    grant(&mut on_a, ACME, "bank").await;

    // A watch on node c sees a change appended through node a.
    let bank = c.token("bank", Role::Lender);
    c.principals.reload_if_changed().unwrap();
    let mut watcher = c.client(&bank).await;
    let (first, mut changes) = watcher.watch(ACME).await;
    assert_eq!(first.current(), pb::EcoCode::Green);
    on_a.append(record(ACME, "seal-1", "enforcement.seal", -1)).await.unwrap();
    let change = changes.next().await.expect("a change").expect("the watch goes on");
    assert_eq!((change.previous(), change.current()), (pb::EcoCode::Green, pb::EcoCode::Yellow));

    // Concurrent appends through all three nodes.
    let mut writers = Vec::new();
    for (n, client) in [on_a, on_b, on_c].into_iter().enumerate() {
        writers.push(tokio::spawn(async move {
            let mut client = client;
            let mut receipts = Vec::new();
            for i in 0..30 {
                let uscc = if i % 2 == 0 { ACME } else { BETA };
                let id = format!("node{n}-{i}");
                let receipt = client.append(record(uscc, &id, "exceedance.daily", -1 - i)).await.unwrap();
                receipts.push((id, receipt));
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for writer in writers {
        receipts.extend(writer.await.unwrap());
    }
    let mut seqs: Vec<u64> = receipts.iter().map(|(_, r)| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 90, "every append took its own seq");

    // Every node has every receipt at its seq once it has caught up (its
    // next commit reads what the others appended first).
    let mut admins = Vec::new();
    for n in [&a, &b, &c] {
        let mut admin = n.client(&admin_token).await;
        admin.append(record(BETA, &format!("marker-{}", n.addr), "exceedance.daily", -200)).await.unwrap();
        admins.push(admin);
    }
    for n in [&a, &b, &c] {
        for (id, receipt) in &receipts {
            let entry = n.ledger.entry(receipt.seq).unwrap();
            assert_eq!(entry.entry_hash[..], receipt.entry_hash[..], "{id} on node {}", n.addr);
            assert_eq!(entry.chain_hash[..], receipt.chain_hash[..], "{id} on node {}", n.addr);
        }
    }
    // The same answer from every node.
    let scores: Vec<pb::Score> = {
        let mut out = Vec::new();
        for admin in &mut admins {
            out.push(admin.score(BETA).await);
        }
        out
    };
    assert!(scores.windows(2).all(|w| w[0].points == w[1].points && w[0].code == w[1].code), "{scores:?}");

    for n in [a, b, c] {
        n.stop().await;
    }
    let report = ledger::verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap();
    // The model entry (the three nodes publish one), 2 registrations, the
    // bank's grant, the seal, 90 records, 3 markers, and the index entries
    // that end each checkpoint the nodes signed meanwhile.
    assert_eq!(report.entries, 98 + report.index_entries);
    assert!(report.checkpoint_signature_checked);
}

#[tokio::test]
async fn a_revocation_through_the_shared_store_reaches_every_node() {
    let url = pgtest::database();
    let keys = tempfile::tempdir().unwrap();
    let key = shared_key(keys.path());
    let (a, b) = (node(&url, &key).await, node(&url, &key).await);
    let token = a.token("reader", Role::Admin);
    b.principals.reload_if_changed().unwrap();
    let mut reader = b.client(&token).await;
    reader.register(ACME, "Acme", "330206").await;

    // As `ecocode principal revoke --store URL` does, from anywhere.
    PrincipalStore::open_in(keys.path(), Some(&url)).unwrap().revoke("reader").unwrap();
    assert!(b.principals.reload_if_changed().unwrap());
    let refused =
        reader.registry.register_enterprise(crate::support::enterprise(BETA, "Beta", "330206")).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    a.stop().await;
    b.stop().await;
}

/// The inquiry log is shared: a bank's read through one node is listed
/// to the enterprise through another, and survives the first node.
#[tokio::test]
async fn an_inquiry_on_one_node_is_listed_on_another() {
    let url = pgtest::database();
    let keys = tempfile::tempdir().unwrap();
    let key = shared_key(keys.path());
    let (a, b) = (node(&url, &key).await, node(&url, &key).await);
    let admin = a.token("admin", Role::Admin);
    a.client(&admin).await.register(ACME, "Acme", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut a.client(&admin).await, ACME, "bank").await;
    let bank = a.token("bank", Role::Lender);
    let acme = a.token("acme", Role::Enterprise { uscc: ACME.into() });
    b.principals.reload_if_changed().unwrap();

    a.client(&bank).await.score(ACME).await;
    a.stop().await;
    let mut enterprise = b.client(&acme).await;
    let listed = enterprise
        .scores
        .list_inquiries(pb::ListInquiriesRequest { uscc: ACME.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .inquiries;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].principal.as_str(), listed[0].method.as_str()), ("bank", "GetScore"));
    b.stop().await;
}

/// The HJ 212 gateway's open days are shared: a device that sends the
/// morning to one node and the afternoon to another has one whole day,
/// judged once by whichever node claims the close (an exceedance on 24
/// valid hours, not two insufficient halves, nor a second judgement of a
/// day the other node already closed), though both nodes' clocks pass it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_device_may_report_half_a_day_to_each_node() {
    use tokio::io::AsyncWriteExt as _;

    use crate::hj212::{MN, hourly, point, read_acks};

    let url = pgtest::database();
    let keys = tempfile::tempdir().unwrap();
    let key = shared_key(keys.path());
    let with_gateway = |url: String, key: std::path::PathBuf| {
        move |c: &mut server::Config| {
            c.ledger.store = Some(url);
            c.ledger.key_file = Some(key);
            c.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
            c.gateway.close_interval = std::time::Duration::from_millis(5);
        }
    };
    let a = TestServer::start_with(with_gateway(url.clone(), key.clone())).await;
    let b = TestServer::start_with(with_gateway(url.clone(), key.clone())).await;
    let may_31 = scoring::Timestamp::parse_rfc3339("2026-05-31T00:00:00Z").unwrap();
    a.clock.set(may_31);
    b.clock.set(may_31);
    let admin = a.token("admin", Role::Admin);
    let mut on_a = a.client(&admin).await;
    on_a.register(ACME, "Acme", "330206").await;
    on_a.registry.register_monitoring_point(point()).await.unwrap();
    // Node b knows the point once it has taken in a's entries.
    b.ledger.catch_up().unwrap();
    assert!(b.ledger.head().size >= 2);

    // COD at 80 mg/L against a limit of 50 all day: 00-11 h to a, 12-23 h to b.
    for (server, hours) in [(&a, 0..12), (&b, 12..24)] {
        let packets: Vec<Vec<u8>> = hours.map(|h| hourly(30, h, (80.0, "N"), Some(1.0))).collect();
        let mut socket = tokio::net::TcpStream::connect(server.gateway.unwrap()).await.unwrap();
        socket.write_all(&packets.concat()).await.unwrap();
        assert_eq!(read_acks(&mut socket, packets.len()).await.len(), 12, "acknowledged by {}", server.addr);
    }
    assert_eq!(MN, point().mn);

    // Both clocks reach 2 June: 30 and 31 May are due on both nodes.
    let mut changes = b.service.subscribe_changes();
    let june_2 = scoring::Timestamp::parse_rfc3339("2026-06-02T00:00:00Z").unwrap();
    a.clock.set(june_2);
    b.clock.set(june_2);
    b.principals.reload_if_changed().unwrap();
    let mut on_b = b.client(&admin).await;
    let kinds = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let kinds: Vec<String> = on_b.score(ACME).await.reasons.into_iter().map(|r| r.kind).collect();
            if kinds.iter().any(|k| k == "exceedance.daily") {
                return kinds;
            }
            changes.recv().await.unwrap();
        }
    })
    .await
    .expect("the day is judged");
    // 31 May, with no data at all, is a missing day of each pollutant; 30
    // May is one exceedance, and nothing else.
    let mut kinds = kinds;
    kinds.sort();
    assert_eq!(kinds, ["exceedance.daily", "monitoring.missing_day", "monitoring.missing_day"]);
    a.stop().await;
    b.stop().await;
}

/// The database going away mid-service: appends answer `UNAVAILABLE`
/// saying why, nothing half-written stays, and once it is back the same
/// node takes appends again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rides_out_a_database_restart() {
    let cluster = pgtest::Cluster::start();
    let url = cluster.create_database();
    let keys = tempfile::tempdir().unwrap();
    let key = shared_key(keys.path());
    let n = node(&url, &key).await;
    let admin = n.token("admin", Role::Admin);
    let mut client = n.client(&admin).await;
    client.register(ACME, "Acme", "330206").await;
    let before = client.append(record(ACME, "before", "exceedance.daily", -1)).await.unwrap();

    cluster.stop();
    let refused = client.append(record(ACME, "while-down", "exceedance.daily", -1)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("PostgreSQL"), "{}", refused.message());
    cluster.restart();

    let after = client.append(record(ACME, "after", "exceedance.daily", -1)).await.unwrap();
    assert_eq!(after.seq, before.seq + 1, "nothing of the refused append was written");
    // The refused record can be sent again and is a new entry, not a duplicate.
    let again = client.append(record(ACME, "while-down", "exceedance.daily", -1)).await.unwrap();
    assert!(!again.duplicate);
    n.stop().await;
    let report = ledger::verify_postgres(&url, Some(&key), &mut |_, _| {}).unwrap();
    // The second append of "while-down" and the index entry of the
    // final checkpoint follow "after".
    assert_eq!(report.entries, after.seq + 3);
}
