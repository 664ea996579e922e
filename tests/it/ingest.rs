//! Ingest: single records and streams, idempotency, every error class and
//! role, and receipts that match the ledger.

use ecocode_proto::v1 as pb;
use ledger::hash;
use server::principals::Role;
use tonic::Code;

use crate::support::*;

async fn registered() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    (server, admin)
}

#[tokio::test]
async fn append_returns_a_durable_receipt_that_matches_the_entry() {
    let (server, mut admin) = registered().await;
    let receipt = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    // After the model entry (seq 0) and the registration.
    assert_eq!(receipt.seq, 2);
    assert!(!receipt.duplicate);

    let entry = admin.ledger.get_entry(pb::GetEntryRequest { seq: 2 }).await.unwrap().into_inner();
    let recorded_at = entry.recorded_at.unwrap();
    let ns = recorded_at.seconds * 1_000_000_000 + i64::from(recorded_at.nanos);
    assert_eq!(hash::entry_hash(2, ns, &entry.payload).to_vec(), receipt.entry_hash);
    assert_eq!(entry.chain_hash, receipt.chain_hash);

    // The payload is a LedgerEvent a client can decode.
    let event = <pb::LedgerEvent as prost::Message>::decode(entry.payload.as_slice()).unwrap();
    let Some(pb::ledger_event::Event::CommittedRecord(c)) = &event.event else {
        panic!("not a committed record: {event:?}")
    };
    assert_eq!((c.kind.as_str(), c.amount_yuan), ("penalty.fine", 80_000));
    let r = record_in(entry.seq, &entry.payload, &entry.details).expect("the details open it");
    assert_eq!((r.kind.as_str(), r.amount_yuan), ("penalty.fine", 80_000));
    assert!(event.submitted_by.starts_with("admin-"));
    server.stop().await;
}

#[tokio::test]
async fn resend_is_a_duplicate_and_changed_content_is_already_exists() {
    let (server, mut admin) = registered().await;
    let first = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    let again = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.seq, &again.entry_hash), (first.seq, &first.entry_hash));

    let mut changed = record(ACME, "P-1", "penalty.fine", -10);
    changed.amount_yuan = 90_000;
    let err = admin.append(changed).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("P-1"), "{}", err.message());
    assert_eq!(server.ledger.head().size, 3, "nothing was appended twice (model entry, registration, P-1)");
    server.stop().await;
}

#[tokio::test]
async fn each_error_class_has_its_status_and_names_the_field() {
    let (server, mut admin) = registered().await;
    let cases: Vec<(pb::Record, Code, &str)> = vec![
        (record(BETA, "X-1", "penalty.warning", -1), Code::FailedPrecondition, "not registered"),
        (record("91330421739237858Y", "X-2", "penalty.warning", -1), Code::InvalidArgument, "uscc:"),
        (record(ACME, "X-3", "penalty.parking", -1), Code::InvalidArgument, "kind:"),
        (
            pb::Record { amount_yuan: 0, ..record(ACME, "X-4", "penalty.fine", -1) },
            Code::InvalidArgument,
            "amount_yuan:",
        ),
        (
            pb::Record { amount_yuan: -5, ..record(ACME, "X-5", "penalty.fine", -1) },
            Code::InvalidArgument,
            "amount_yuan:",
        ),
        (record(ACME, "X-6", "penalty.warning", 1), Code::InvalidArgument, "occurred_at:"),
        (
            pb::Record { occurred_at: None, ..record(ACME, "X-7", "penalty.warning", -1) },
            Code::InvalidArgument,
            "occurred_at:",
        ),
        (
            pb::Record { source: String::new(), ..record(ACME, "X-8", "penalty.warning", -1) },
            Code::InvalidArgument,
            "source:",
        ),
        (
            pb::Record { source_record_id: String::new(), ..record(ACME, "", "penalty.warning", -1) },
            Code::InvalidArgument,
            "source_record_id:",
        ),
        (
            pb::Record { description: "x".repeat(5000), ..record(ACME, "X-9", "penalty.warning", -1) },
            Code::InvalidArgument,
            "description:",
        ),
        (step(ACME, "X-10", "record.voided", -1, 0), Code::InvalidArgument, "refers_to_seq"),
        (step(ACME, "X-11", "record.voided", -1, 99), Code::InvalidArgument, "attributes.reason"),
    ];
    for (record, code, fragment) in cases {
        let err = admin.append(record.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{record:?}: {err:?}");
        assert!(err.message().contains(fragment), "{:?} lacks {fragment:?}", err.message());
    }
    server.stop().await;
}

#[tokio::test]
async fn roles_for_appending() {
    let (server, mut admin) = registered().await;
    admin.register(BETA, "Beta", "110105").await;

    let feed = server.token("feed", Role::Source { source: "beilun-epb".into() });
    let mut feed = server.client(&feed).await;
    feed.append(record(ACME, "F-1", "inspection.finding", -3)).await.unwrap();
    let other_source =
        pb::Record { source: "someone-else".into(), ..record(ACME, "F-2", "inspection.finding", -3) };
    assert_eq!(feed.append(other_source).await.unwrap_err().code(), Code::PermissionDenied);

    let regulator = server.token("zj", Role::Regulator { region_prefix: "33".into() });
    let mut regulator = server.client(&regulator).await;
    let as_zj = |r: pb::Record| pb::Record { source: "zj".into(), ..r };
    regulator.append(as_zj(record(ACME, "R-1", "inspection.finding", -3))).await.unwrap();
    let err = regulator.append(as_zj(record(BETA, "R-2", "inspection.finding", -3))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "Beta is in region 110105");

    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let err =
        acme.append(pb::Record { source: "acme".into(), ..record(ACME, "E-1", "award.environmental", -3) });
    let err = err.await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "an enterprise cannot award itself");

    let bank = server.token("bank", Role::Lender);
    let err = server.client(&bank).await.append(record(ACME, "B-1", "inspection.finding", -3)).await;
    assert_eq!(err.unwrap_err().code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_keeps_valid_records_and_lists_rejected_ones_by_index() {
    let (server, mut admin) = registered().await;
    admin.append(record(ACME, "S-0", "penalty.warning", -20)).await.unwrap();
    let records = vec![
        record(ACME, "S-1", "inspection.finding", -5),
        record(ACME, "S-2", "no.such.kind", -5),
        record(ACME, "S-0", "penalty.warning", -20), // duplicate of an earlier append
        record(BETA, "S-3", "inspection.finding", -5), // unregistered
        record(ACME, "S-4", "complaint.verified", -4),
        record(ACME, "S-1", "inspection.finding", -5), // duplicate within the stream
    ];
    let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(response.accepted, 2);
    assert_eq!(response.duplicates, 2);
    let rejected: Vec<(u64, &str)> = response.rejected.iter().map(|r| (r.index, r.code.as_str())).collect();
    assert_eq!(rejected, vec![(1, "InvalidArgument"), (3, "FailedPrecondition")]);
    assert!(response.rejected[0].message.starts_with("kind:"));
    assert_eq!(
        response.checkpoint.unwrap().tree_size,
        6,
        "the model entry, registration + S-0 + S-1 + S-4 + the index entry"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_workflow_step_may_follow_its_record_in_the_same_stream() {
    let (server, mut admin) = registered().await;
    // seq 2 will be the penalty (after the model entry and the
    // registration); the step refers to it within one stream.
    let records = vec![
        record(ACME, "W-1", "penalty.warning", -30),
        pb::Record {
            attributes: [("reason".to_owned(), "annulled on review".to_owned())].into(),
            ..step(ACME, "W-2", "record.voided", -10, 2)
        },
    ];
    let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!((response.accepted, response.rejected.len()), (2, 0), "{:?}", response.rejected);
    let score = admin.score(ACME).await;
    assert_eq!(score.points, 100, "the voided warning no longer counts: {score:?}");
    server.stop().await;
}
