//! Each test is named after an attack a hostile participant tried on the
//! first landing, and checks that it now fails (or costs nothing).

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tonic::Code;

use crate::support::*;

// Attack: another system (or an enterprise) claimed a source's next
// `source_record_id`, so the real record came back ALREADY_EXISTS.
#[tokio::test]
async fn a_source_cannot_be_claimed_by_another_writer() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let feed = server.token("penalties-feed", Role::Source { source: "beilun-epb".into() });
    let mut feed = server.client(&feed).await;
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let regulator = server.token("zj", Role::Regulator { region_prefix: "33".into() });
    let mut regulator = server.client(&regulator).await;

    // The feed's next id, pre-claimed by others under the feed's source.
    let next = record(ACME, "P-2026-0118", "inspection.finding", -3);
    let err = regulator.append(next.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("it writes as \"zj\""), "{}", err.message());
    let claimed = pb::Record { kind: "dispute.opened".into(), refers_to_seq: 1, ..next.clone() };
    assert_eq!(acme.append(claimed).await.unwrap_err().code(), Code::PermissionDenied);
    // So the feed's own record is new, not a conflict.
    let receipt = feed.append(next).await.unwrap();
    assert!(!receipt.duplicate);

    // Nobody but the service writes as the HJ 212 gateway, not even an admin.
    let forged = pb::Record {
        source: "hj212".into(),
        kind: "exceedance.daily".into(),
        ..record(ACME, "LD130133000015/w01018/2026-05-30", "inspection.finding", -3)
    };
    assert_eq!(admin.append(forged).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(server.principal_store().add("gw", Role::Source { source: "hj212".into() }).is_err());
    server.stop().await;
}

// Attack: a leaked token lived until someone deleted its file by hand.
#[tokio::test]
async fn a_revoked_token_stops_working_on_a_running_server() {
    let server = TestServer::start().await;
    let token = server.token("bank-a", Role::Lender);
    let mut bank = server.client(&token).await;
    let checkpoint = || pb::GetCheckpointRequest {};
    bank.ledger.get_checkpoint(checkpoint()).await.unwrap();

    // `ecocode principal revoke` is a store of its own on the directory;
    // the server notices on its own, through its background reload.
    let mut reloads = server.principals.reloads();
    reloads.borrow_and_update();
    server.principal_store().revoke("bank-a").unwrap();
    let reloaded = async {
        loop {
            reloads.changed().await.unwrap();
            if server.principals.authenticate(&token).is_none() {
                return;
            }
        }
    };
    // Two seconds is the promise; the reload runs every half second.
    tokio::time::timeout(std::time::Duration::from_secs(2), reloaded)
        .await
        .expect("revoked within two seconds");
    let err = bank.ledger.get_checkpoint(checkpoint()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    server.stop().await;
}

// Attack: a flood of invalid tokens made every call touch the file system.
#[tokio::test]
async fn a_flood_of_invalid_tokens_costs_no_reloads_and_a_valid_call_still_succeeds() {
    let server = TestServer::start().await;
    let valid = server.token("bank-a", Role::Lender);
    let reloads_before = *server.principals.reloads().borrow();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..500 {
        let channel = server.channel().await;
        calls.spawn(async move {
            let mut stranger = Client::new(channel, &format!("eco_invalid-{i}"));
            stranger.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap_err().code()
        });
    }
    while let Some(code) = calls.join_next().await {
        assert_eq!(code.unwrap(), Code::Unauthenticated);
    }
    // Authentication is a lookup in memory: only the background reload
    // (every half second) reads the directory, never a call.
    let reloads = *server.principals.reloads().borrow() - reloads_before;
    assert!(reloads < 50, "{reloads} reloads for 500 calls");
    server.client(&valid).await.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap();
    server.stop().await;
}

// Attack: 10 000 copies of one USCC in BatchGetScores cost minutes of CPU.
#[tokio::test]
async fn a_batch_of_one_uscc_repeated_is_answered_once() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let request = pb::BatchGetScoresRequest { uscc: vec![ACME.to_owned(); 10_000], as_of: None };
    let answer = bank.scores.batch_get_scores(request).await.unwrap().into_inner();
    assert_eq!(answer.scores.len(), 1);
    let too_many = pb::BatchGetScoresRequest { uscc: vec![ACME.to_owned(); 10_001], as_of: None };
    assert_eq!(bank.scores.batch_get_scores(too_many).await.unwrap_err().code(), Code::InvalidArgument);
    server.stop().await;
}

// Attack: an enterprise filed disputes without end, each re-reading its
// whole history.
#[tokio::test]
async fn an_enterprise_cannot_file_workflow_steps_without_end() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let finding = admin.append(record(ACME, "F-1", "inspection.finding", -3)).await.unwrap().seq;
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let limit = server::service::MAX_FILINGS_PER_DAY;
    let dispute = |i: usize| pb::Record {
        source: "acme".into(),
        ..step(ACME, &format!("D-{i}"), "dispute.opened", -1, finding)
    };
    for i in 0..limit {
        acme.append(dispute(i)).await.unwrap();
    }
    let err = acme.append(dispute(limit)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("file again after"), "{}", err.message());
    // A day later the enterprise may file again.
    server.clock.set(days(1));
    acme.append(dispute(limit + 1)).await.unwrap();
    server.stop().await;
}

// Attack: a stream of 100 000 bad records came back as a 4 MB list of
// rejections, more than a normal client accepts.
#[tokio::test]
async fn a_stream_of_bad_records_gets_a_bounded_rejection_list_and_a_full_count() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let records: Vec<pb::Record> = (0..2_500)
        .map(|i| pb::Record {
            kind: "no.such.kind".into(),
            ..record(ACME, &format!("X-{i}"), "penalty.warning", -1)
        })
        .collect();
    let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(response.rejected_count, 2_500);
    assert_eq!(response.rejected.len(), 1_000);
    assert_eq!(response.rejected[999].index, 999);
    server.stop().await;
}

// Attack: a score of an enterprise with tens of thousands of records was a
// multi-megabyte message; its reasons are now summarized and still add up.
#[tokio::test]
async fn a_score_with_very_many_reasons_is_summarized_and_still_adds_up() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let kinds = ["monitoring.missing_day", "inspection.finding", "complaint.verified"];
    let records: Vec<pb::Record> =
        (0..900).map(|i| record(ACME, &format!("W-{i}"), kinds[i % 3], -1 - (i as i64 % 200))).collect();
    let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(response.accepted, 900, "{:?}", response.rejected.first());
    let score = admin.score(ACME).await;
    assert_eq!(score.reasons.len(), server::convert::to_proto::MAX_REASONS);
    let summary = score.reasons.last().unwrap();
    assert_eq!(summary.kind, "summary");
    let total: i32 = score.reasons.iter().map(|r| r.points).sum();
    assert_eq!(100 + total, score.points.max(0), "the reasons add up to the points");
    server.stop().await;
}

// A client that appends a batch can prove every receipt at once: the
// response's checkpoint covers them all, even right after another.
#[tokio::test]
async fn the_checkpoint_of_an_append_covers_every_receipt() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    for round in 0..3 {
        let records: Vec<pb::Record> =
            (0..5).map(|i| record(ACME, &format!("R{round}-{i}"), "inspection.finding", -1)).collect();
        let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
        let checkpoint = response.checkpoint.unwrap();
        // The model entry (published at start), the registration, the
        // records so far, and the index entry that ends each round's checkpoint.
        assert_eq!(checkpoint.tree_size, 2 + 5 * (round + 1) + (round + 1), "round {round}");
    }
    server.stop().await;
}

// Failure: a full disk answered a generic INTERNAL, kept appends failing
// after space was freed until a restart, and health still said SERVING.
#[tokio::test]
async fn a_full_disk_is_resource_exhausted_not_serving_and_recovers_by_itself() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let mut health = HealthClient::new(server.channel().await);
    let mut statuses =
        health.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    let mut next_status =
        async || ServingStatus::try_from(statuses.message().await.unwrap().unwrap().status).unwrap();
    assert_eq!(next_status().await, ServingStatus::Serving);

    let ledger = &server.ledger;
    ledger.set_min_free_bytes(u64::MAX);
    let err = admin.append(record(ACME, "F-1", "inspection.finding", -1)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("once space is freed"), "{}", err.message());
    assert_eq!(next_status().await, ServingStatus::NotServing);
    // Reads still work while the disk is full, checkpoints included.
    admin.score(ACME).await;
    admin.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap();

    ledger.set_min_free_bytes(1);
    assert_eq!(next_status().await, ServingStatus::Serving);
    admin.append(record(ACME, "F-1", "inspection.finding", -1)).await.unwrap();
    // A health watch never ends by itself; graceful shutdown waits for it.
    drop(statuses);
    server.stop().await;
}

// Attack: a monitoring point with hundreds of thousands of limits pinned a
// core (a quadratic duplicate check) before the permission check ran.
#[tokio::test]
async fn a_monitoring_point_with_endless_limits_is_refused_before_any_work() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let limit = |i: usize| pb::PollutantLimit {
        pollutant: format!("w{:05}", i % 100_000),
        limit: 1.0,
        unit: "mg/L".into(),
        statistic: "Avg".into(),
    };
    let point = pb::MonitoringPoint {
        mn: "LD130133000015".into(),
        uscc: ACME.into(),
        outlet: "DW001".into(),
        limits: (0..100_000).map(limit).collect(),
        password: "a-long-random-device-password".into(),
        password_hash: String::new(),
        credential_id: String::new(),
    };
    let bank = server.token("bank", Role::Lender);
    let err = server.client(&bank).await.registry.register_monitoring_point(point.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let err = admin.registry.register_monitoring_point(point).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 64 pollutants"), "{}", err.message());
    server.stop().await;
}
