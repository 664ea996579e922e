//! Several nodes on one PostgreSQL store: each a whole `App` on its own
//! sockets and data directory, sharing the database and the signing key.

use std::path::PathBuf;

use ecocode_proto::v1 as pb;
use server::principals::{PrincipalStore, Role};
use tokio_stream::StreamExt as _;

use crate::support::{ACME, BETA, TestServer, record};

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
            let entry = n.service.ledger().entry(receipt.seq).unwrap();
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
    // 2 registrations, the seal, 90 records, 3 markers.
    assert_eq!(report.entries, 96);
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
