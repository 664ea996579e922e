//! Revocation reaches open streams: a principal revoked with `ecocode
//! principal revoke` (the principal store) loses its open watches and
//! append streams (and entry listings, through the same guard) at the server's next reload, on either
//! engine, and nothing it sends after that is appended.

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tokio_stream::StreamExt as _;

use crate::support::*;

/// Waits until the running server has taken in the revocation of `token`:
/// its own background reload (every half second) is the event, then the
/// condition is read again. No sleep.
async fn until_the_server_refuses(server: &TestServer, token: &str) {
    let mut reloads = server.principals.reloads();
    while server.principals.authenticate(token).is_some() {
        reloads.changed().await.expect("the principal store reloads");
    }
    // The server says so on the wire too.
    let mut client = server.client(token).await;
    let request = pb::GetScoreRequest { uscc: ACME.into(), as_of: None, tree_size: 0 };
    let refused = client.scores.get_score(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

/// The `source_record_id` of every record in the ledger.
fn record_ids(server: &TestServer) -> Vec<String> {
    let ledger = &server.ledger;
    ledger
        .scan(0, ledger.head().size)
        .map(|e| e.unwrap())
        .filter_map(|e| record_in(e.seq, &e.payload, &e.details).map(|r| r.source_record_id))
        .collect()
}

// A revoked lender's WatchCodes kept delivering code changes.
#[tokio::test]
async fn a_revoked_lenders_watch_ends_unauthenticated() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank-a").await;
    let bank = server.token("bank-a", Role::Lender);
    let mut lender = server.client(&bank).await;
    let (first, mut changes) = lender.watch(ACME).await;
    assert_eq!(first.current(), pb::EcoCode::Green);

    server.principal_store().revoke("bank-a").unwrap();
    until_the_server_refuses(&server, &bank).await;
    // A change after the revocation is not delivered: the watch has ended,
    // woken by the reload, not by this change.
    admin.append(record(ACME, "seal-1", "enforcement.seal", -1)).await.unwrap();
    let ended = changes.next().await.expect("the watch ends with a status");
    assert_eq!(ended.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert!(changes.next().await.is_none(), "nothing after the end");
    server.stop().await;
}

// A revoked source's open AppendRecords stream had every record accepted,
// about 25 of 30 sent after the revocation.
#[tokio::test]
async fn a_revoked_sources_open_stream_appends_nothing_after_revocation() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    let feed = server.token("feed", Role::Source { source: "beilun-epb".into() });
    let (records, stream) = tokio::sync::mpsc::channel(64);
    let mut ingest = server.client(&feed).await.ingest;
    let call = tokio::spawn(async move {
        ingest.append_records(tokio_stream::wrappers::ReceiverStream::new(stream)).await
    });
    for i in 0..5 {
        records.send(record(ACME, &format!("before-{i}"), "inspection.finding", -1)).await.unwrap();
    }

    server.principal_store().revoke("feed").unwrap();
    until_the_server_refuses(&server, &feed).await;
    for i in 0..25 {
        // The server may have ended the call already: then these go nowhere.
        let _ = records.send(record(ACME, &format!("after-{i}"), "inspection.finding", -1)).await;
    }
    drop(records);
    let status = call.await.unwrap().expect_err("the stream ends UNAUTHENTICATED");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{}", status.message());
    let ids = record_ids(&server);
    assert!(!ids.iter().any(|id| id.starts_with("after-")), "appended after the revocation: {ids:?}");
    // A new stream with the token is refused outright.
    let mut again = server.client(&feed).await.ingest;
    let late = vec![record(ACME, "late", "inspection.finding", -1)];
    let refused = again.append_records(tokio_stream::iter(late)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    server.stop().await;
}
