//! Scores: single, point-in-time, batch, regional lists, history, live code
//! changes and the workflow (dispute, rectification, repair) end to end.

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::support::*;

fn reasons_add_up(s: &pb::Score) {
    let sum: i32 = s.reasons.iter().map(|r| r.points).sum();
    assert_eq!(100 + sum, s.points, "reasons must add up: {s:?}");
}

#[tokio::test]
async fn a_new_enterprise_is_green_and_records_move_the_score() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let score = admin.score(ACME).await;
    assert_eq!(
        (score.points, score.grade(), score.code()),
        (100, pb::CreditGrade::Integrity, pb::EcoCode::Green)
    );
    assert_eq!(score.model_version, "ecocode-2026.2");
    assert_eq!(score.name, "Acme");

    let fine = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap(); // 80 000 yuan: -10
    admin.append(record(ACME, "P-2", "enforcement.suspend", -5)).await.unwrap(); // -24
    let score = admin.score(ACME).await;
    assert_eq!(score.points, 66);
    assert_eq!((score.grade(), score.code()), (pb::CreditGrade::Warning, pb::EcoCode::Yellow));
    reasons_add_up(&score);
    assert_eq!(score.reasons[0].kind, "enforcement.suspend");
    assert_eq!(score.reasons[1].seq, fine.seq);
    let head = server.ledger.head();
    assert_eq!((score.tree_size, score.root_hash.as_slice()), (head.size, head.root.as_slice()));

    admin.append(record(ACME, "V-1", "veto.data_fraud", -1)).await.unwrap();
    let score = admin.score(ACME).await;
    assert!(score.veto);
    assert_eq!((score.points, score.code()), (26, pb::EcoCode::Red));
    reasons_add_up(&score);
    server.stop().await;
}

#[tokio::test]
async fn point_in_time_by_evaluation_time_and_ledger_prefix() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.warning", -100)).await.unwrap(); // seq 2: -3 for 180 days
    admin.append(record(ACME, "P-2", "incident.general", -50)).await.unwrap(); // seq 3: -15

    let at =
        |day: i64, tree_size: u64| pb::GetScoreRequest { uscc: ACME.into(), as_of: ts(days(day)), tree_size };
    let points = |s: pb::Score| s.points;
    assert_eq!(points(admin.scores.get_score(at(-101, 0)).await.unwrap().into_inner()), 100, "before both");
    assert_eq!(
        points(admin.scores.get_score(at(-60, 0)).await.unwrap().into_inner()),
        97,
        "only the warning"
    );
    assert_eq!(points(admin.scores.get_score(at(0, 0)).await.unwrap().into_inner()), 82);
    assert_eq!(
        points(admin.scores.get_score(at(0, 3)).await.unwrap().into_inner()),
        97,
        "prefix of 3 entries (the model entry, the registration, the warning)"
    );
    assert_eq!(points(admin.scores.get_score(at(81, 0)).await.unwrap().into_inner()), 85, "warning expired");

    let s = admin.scores.get_score(at(0, 3)).await.unwrap().into_inner();
    assert_eq!(s.tree_size, 3);
    let proof_root = admin
        .ledger
        .get_consistency_proof(pb::GetConsistencyProofRequest { from_size: 3, to_size: 4 })
        .await
        .unwrap()
        .into_inner();
    assert!(!proof_root.hashes.is_empty());

    let err = admin.scores.get_score(at(0, 2)).await.unwrap();
    assert_eq!(err.into_inner().points, 100, "the model entry and the registration only");
    let err = admin.scores.get_score(pb::GetScoreRequest { tree_size: 99, ..at(0, 0) }).await.unwrap_err();
    assert!(matches!(err.code(), Code::OutOfRange | Code::InvalidArgument), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn batch_scores_list_unknown_enterprises() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.register(BETA, "Beta", "330206").await;
    let unknown = uscc("91330206MA2GXXXX0");
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    grant(&mut admin, BETA, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let response = bank
        .scores
        .batch_get_scores(pb::BatchGetScoresRequest {
            uscc: vec![ACME.into(), unknown.clone(), BETA.into()],
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<&str> = response.scores.iter().map(|s| s.uscc.as_str()).collect();
    assert_eq!(got, vec![ACME, BETA]);
    assert_eq!(response.not_found, vec![unknown]);

    let too_many = vec![ACME.to_owned(); 10_001];
    let err = bank.scores.batch_get_scores(pb::BatchGetScoresRequest { uscc: too_many, as_of: None }).await;
    assert_eq!(err.unwrap_err().code(), Code::InvalidArgument);
    let err = bank
        .scores
        .batch_get_scores(pb::BatchGetScoresRequest { uscc: vec![ACME.into(), "bad".into()], as_of: None })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("uscc[1]:"), "{}", err.message());
    server.stop().await;
}

#[tokio::test]
async fn who_may_read_which_score() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.register(BETA, "Beta", "110105").await;
    let get = |uscc: &str| pb::GetScoreRequest { uscc: uscc.into(), ..Default::default() };

    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    acme.scores.get_score(get(ACME)).await.unwrap();
    assert_eq!(acme.scores.get_score(get(BETA)).await.unwrap_err().code(), Code::PermissionDenied);

    let zj = server.token("zj", Role::Regulator { region_prefix: "33".into() });
    let mut zj = server.client(&zj).await;
    zj.scores.get_score(get(ACME)).await.unwrap();
    assert_eq!(zj.scores.get_score(get(BETA)).await.unwrap_err().code(), Code::PermissionDenied);

    let feed = server.token("feed", Role::Source { source: "x".into() });
    let err = server.client(&feed).await.scores.get_score(get(ACME)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn list_scores_filters_pages_and_respects_scope() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let mut usccs = Vec::new();
    for i in 0..7 {
        let u = uscc(&format!("9133020{i}MA2GXXXX{i}"));
        let region = if i < 5 { "330206" } else { "330212" };
        admin.register(&u, &format!("E{i}"), region).await;
        usccs.push(u);
    }
    // Two of the Beilun enterprises go red.
    for u in &usccs[..2] {
        admin.append(record(u, &format!("V-{u}"), "veto.bypass", -1)).await.unwrap();
    }
    let regulator = server.token("beilun", Role::Regulator { region_prefix: "330206".into() });
    let mut regulator = server.client(&regulator).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = regulator
            .scores
            .list_scores(pb::ListScoresRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.scores.len() <= 2);
        seen.extend(page.scores.into_iter().map(|s| s.uscc));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = usccs[..5].to_vec();
    expected.sort();
    assert_eq!(seen, expected, "the regulator's scope, every enterprise once, in USCC order");

    let red = regulator
        .scores
        .list_scores(pb::ListScoresRequest { codes: vec![pb::EcoCode::Red.into()], ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut red_usccs: Vec<String> = red.scores.iter().map(|s| s.uscc.clone()).collect();
    red_usccs.sort();
    let mut expected_red = usccs[..2].to_vec();
    expected_red.sort();
    assert_eq!(red_usccs, expected_red);

    let err = regulator
        .scores
        .list_scores(pb::ListScoresRequest { region_prefix: "330212".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let bank = server.token("bank", Role::Lender);
    let err =
        server.client(&bank).await.scores.list_scores(pb::ListScoresRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = admin
        .scores
        .list_scores(pb::ListScoresRequest { page_token: "garbage".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

/// Issue 24: each grade carries its MEE 2013 four-level colour in
/// GetScore, BatchGetScores and ListScores, and ListScores filters on it.
#[tokio::test]
async fn each_grade_has_its_mee_colour_through_grpc() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let [integrity, good, warning, poor] = [0, 1, 2, 3].map(|i| uscc(&format!("9133020{i}MA2GMEE0{i}")));
    for u in [&integrity, &good, &warning, &poor] {
        admin.register(u, "E", "330206").await;
    }
    admin.append(record(&good, "G-1", "penalty.fine", -10)).await.unwrap(); // -10
    admin.append(record(&good, "G-2", "penalty.warning", -5)).await.unwrap(); // -3: 87
    admin.append(record(&warning, "W-1", "penalty.fine", -10)).await.unwrap();
    admin.append(record(&warning, "W-2", "enforcement.suspend", -5)).await.unwrap(); // 66
    admin.append(record(&poor, "P-1", "veto.bypass", -1)).await.unwrap();
    let expected = [
        (&integrity, pb::CreditGrade::Integrity, pb::MeeLevel::Green),
        (&good, pb::CreditGrade::Good, pb::MeeLevel::Blue),
        (&warning, pb::CreditGrade::Warning, pb::MeeLevel::Yellow),
        (&poor, pb::CreditGrade::Poor, pb::MeeLevel::Red),
    ];
    for (u, grade, level) in expected {
        let score = admin.score(u).await;
        assert_eq!((score.grade(), score.mee_level()), (grade, level), "GetScore of {u}");
    }
    let batch = admin
        .scores
        .batch_get_scores(pb::BatchGetScoresRequest {
            uscc: expected.iter().map(|(u, ..)| u.to_string()).collect(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner();
    let levels: Vec<pb::MeeLevel> = batch.scores.iter().map(|s| s.mee_level()).collect();
    assert_eq!(levels, expected.map(|(.., l)| l));

    let list = |levels: Vec<pb::MeeLevel>, codes: Vec<pb::EcoCode>| pb::ListScoresRequest {
        mee_levels: levels.into_iter().map(Into::into).collect(),
        codes: codes.into_iter().map(Into::into).collect(),
        ..Default::default()
    };
    let listed = |page: pb::ListScoresResponse| -> Vec<(String, pb::MeeLevel)> {
        page.scores.iter().map(|s| (s.uscc.clone(), s.mee_level())).collect()
    };
    let all = admin.scores.list_scores(list(vec![], vec![])).await.unwrap().into_inner();
    assert_eq!(all.scores.len(), 4);
    // Blue alone picks the GOOD enterprise out of the two green codes.
    let blue = admin.scores.list_scores(list(vec![pb::MeeLevel::Blue], vec![])).await.unwrap().into_inner();
    assert_eq!(listed(blue), vec![(good.clone(), pb::MeeLevel::Blue)]);
    let two = list(vec![pb::MeeLevel::Green, pb::MeeLevel::Red], vec![]);
    let mut got = listed(admin.scores.list_scores(two).await.unwrap().into_inner());
    got.sort();
    let mut want = vec![(integrity.clone(), pb::MeeLevel::Green), (poor.clone(), pb::MeeLevel::Red)];
    want.sort();
    assert_eq!(got, want);
    // With codes, both filters apply.
    let none = list(vec![pb::MeeLevel::Blue], vec![pb::EcoCode::Yellow]);
    assert!(admin.scores.list_scores(none).await.unwrap().into_inner().scores.is_empty());
    let bad = pb::ListScoresRequest { mee_levels: vec![9], ..Default::default() };
    let err = admin.scores.list_scores(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("mee_levels"), "{}", err.message());
    server.stop().await;
}

#[tokio::test]
async fn history_has_a_point_per_change() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.warning", -200)).await.unwrap(); // -3, expires at day -20
    admin.append(record(ACME, "P-2", "inspection.finding", -100)).await.unwrap(); // -2, expires day 80
    let history = admin
        .scores
        .get_score_history(pb::GetScoreHistoryRequest {
            uscc: ACME.into(),
            from: ts(days(-300)),
            to: ts(days(100)),
        })
        .await
        .unwrap()
        .into_inner();
    let points: Vec<i32> = history.points.iter().map(|s| s.points).collect();
    assert_eq!(points, vec![100, 97, 95, 98, 100]);
    let as_of: Vec<_> = history.points.iter().map(|s| s.as_of.unwrap().seconds).collect();
    let day = |d: i64| days(d).to_unix().0;
    assert_eq!(as_of, vec![day(-300), day(-200), day(-100), day(-20), day(80)]);
    server.stop().await;
}

/// What broke: a year of a device's daily records has more instants
/// where the score could change (about 10 500) than `GetScoreHistory` examined
/// (10 000), and was refused although the score changed a few times; the
/// limit is on changes answered now, not on instants examined.
#[tokio::test]
async fn a_history_with_many_change_points_and_few_changes_is_answered() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let who = server::principals::Principal { name: "ops".into(), role: Role::Admin };
    let records: Vec<scoring::Record> = (0..6_000i64)
        .map(|i| {
            let at = days(-360 + i / 17).plus_nanos((i % 17) * 3_600_000_000_000);
            let id = format!("md-{i}");
            scoring::Record::new(scoring::RecordFields {
                source: "device-log",
                source_record_id: &id,
                uscc: ACME,
                kind: "monitoring.missing_day",
                occurred_at: Some(at),
                amount_yuan: 0,
                refers_to: None,
                description: "",
                attributes: Default::default(),
            })
            .unwrap()
        })
        .collect();
    for result in server.service.append_records(&who, records).await {
        result.unwrap();
    }
    let history = admin
        .scores
        .get_score_history(pb::GetScoreHistoryRequest { uscc: ACME.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    // 100 at the start, one point less per record until the cap of -5.
    let points: Vec<i32> = history.points.iter().map(|s| s.points).collect();
    assert_eq!(points, vec![100, 99, 98, 97, 96, 95]);
    history.points.iter().for_each(reasons_add_up);
    server.stop().await;
}

#[tokio::test]
async fn watchers_see_changes_from_new_entries_and_from_expiry() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.register(BETA, "Beta", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted),
    // live past the seal's window (a watch ends with its grant).
    grant_until(&mut admin, ACME, "bank", 1000).await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let (first, mut stream) = bank.watch(ACME).await;
    assert_eq!((first.previous(), first.current()), (pb::EcoCode::Unspecified, pb::EcoCode::Green));

    // An unwatched enterprise changing sends nothing; the watched one does.
    admin.append(record(BETA, "B-1", "veto.crime", -1)).await.unwrap();
    admin.append(record(ACME, "A-1", "enforcement.seal", -1)).await.unwrap(); // -24 → 76 yellow
    let change = stream.next().await.unwrap().unwrap();
    assert_eq!(change.uscc, ACME);
    assert_eq!((change.previous(), change.current()), (pb::EcoCode::Green, pb::EcoCode::Yellow));
    assert_eq!(change.score.unwrap().points, 76);

    // No new entry: the seal's 730-day window ends, and the code turns green.
    server.clock.set(days(730));
    let change = stream.next().await.unwrap().unwrap();
    assert_eq!((change.previous(), change.current()), (pb::EcoCode::Yellow, pb::EcoCode::Green));

    // Shutting down ends the watch with UNAVAILABLE instead of hanging.
    let stopped = tokio::spawn(server.stop());
    let end = stream.next().await.unwrap().unwrap_err();
    assert_eq!(end.code(), Code::Unavailable);
    stopped.await.unwrap();
}

#[tokio::test]
async fn dispute_rectification_and_repair_end_to_end() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // Each writes under its own source: the regulator as beilun-epb (what
    // `record` uses), the enterprise as acme.
    let regulator = server.token("beilun-epb", Role::Regulator { region_prefix: "3302".into() });
    let mut regulator = server.client(&regulator).await;
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let by_acme = |r: pb::Record| pb::Record { source: "acme".into(), ..r };
    let by_epb = |r: pb::Record| pb::Record { source: "beilun-epb".into(), ..r };

    let suspend = regulator.append(record(ACME, "S-1", "enforcement.suspend", -400)).await.unwrap().seq;
    let finding = regulator.append(record(ACME, "S-2", "inspection.finding", -30)).await.unwrap().seq;
    assert_eq!(acme.score(ACME).await.points, 74);

    // The enterprise disputes the finding; the score is flagged, not changed.
    acme.append(by_acme(step(ACME, "D-1", "dispute.opened", -20, finding))).await.unwrap();
    let s = acme.score(ACME).await;
    assert!(s.disputed);
    assert_eq!(s.points, 74);
    // Only the regulator resolves; upheld voids the record.
    let resolve = pb::Record {
        attributes: [("outcome".to_owned(), "upheld".to_owned())].into(),
        ..by_epb(step(ACME, "D-2", "dispute.resolved", -10, finding))
    };
    assert_eq!(acme.append(resolve.clone()).await.unwrap_err().code(), Code::PermissionDenied);
    regulator.append(resolve).await.unwrap();
    let s = acme.score(ACME).await;
    assert!(!s.disputed);
    assert_eq!(s.points, 76);

    // Rectification: submitted (pending), verified (halved), then repair.
    acme.append(by_acme(step(ACME, "R-1", "rectification.submitted", -300, suspend))).await.unwrap();
    assert_eq!(acme.score(ACME).await.rectification_pending, vec![suspend]);
    regulator.append(by_epb(step(ACME, "R-2", "rectification.verified", -290, suspend))).await.unwrap();
    let s = acme.score(ACME).await;
    assert_eq!(s.points, 88);
    assert!(s.rectification_pending.is_empty());

    // Repair needs 365 days of publicity after a 730-day record.
    let early =
        regulator.append(by_epb(step(ACME, "G-1", "repair.granted", -300, suspend))).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert!(early.message().contains("eligible from 2026-04-27"), "says from when: {}", early.message());
    regulator.append(by_epb(step(ACME, "G-2", "repair.granted", -35, suspend))).await.unwrap();
    let s = acme.score(ACME).await;
    assert_eq!((s.points, s.code()), (100, pb::EcoCode::Green));

    // A step on a record of another enterprise, or on a missing one, is refused.
    admin.register(BETA, "Beta", "330206").await;
    let err =
        regulator.append(by_epb(step(BETA, "X-1", "rectification.verified", -1, suspend))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.stop().await;
}

#[tokio::test]
async fn a_watcher_that_stops_reading_never_blocks_ingest_and_still_sees_the_last_change() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let (_, mut stream) = bank.watch(ACME).await;

    // More changes than the change broadcast holds, while nobody reads the
    // watch: every append completes, the watcher falls behind.
    let mut records: Vec<pb::Record> =
        (0..5_000).map(|i| record(ACME, &format!("X-{i}"), "exceedance.daily", -1 - (i % 80))).collect();
    records.push(record(ACME, "S-1", "enforcement.suspend", -1));
    let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(response.accepted, 5_001);

    // Having lagged, it re-evaluates and still reports the colour change.
    let change = stream.next().await.unwrap().unwrap();
    assert_eq!((change.previous(), change.current()), (pb::EcoCode::Green, pb::EcoCode::Yellow));
    assert_eq!(change.score.unwrap().points, 66, "exceedances capped at -10, suspension -24");
    drop(stream);
    server.stop().await;
}
