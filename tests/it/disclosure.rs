//! Disclosure (issue 23): publicity windows under 令第36号 and credit repair
//! that stops sharing. The public and lenders receive a record whole only
//! while it is published; afterwards only as withheld (seq, class, why,
//! entry hash), while the enterprise itself and its regulators still see
//! everything, and withheld entries still prove their inclusion.

use ecocode_proto::v1 as pb;
use ledger::{Hash, hash, proof};
use prost::Message as _;
use server::principals::Role;

use crate::support::*;

fn hash32(bytes: &[u8]) -> Hash {
    bytes.try_into().expect("32-byte hash")
}

async fn page_json(server: &TestServer) -> serde_json::Value {
    let r = server.web().get(&format!("/e/{ACME}?format=json")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn reason(json: &serde_json::Value, seq: u64) -> &serde_json::Value {
    json["reasons"].as_array().unwrap().iter().find(|r| r["seq"] == seq).expect("a reason line for seq")
}

async fn entry(client: &mut Client, seq: u64) -> pb::Entry {
    client.ledger.get_entry(pb::GetEntryRequest { seq }).await.unwrap().into_inner()
}

/// The hashed bytes of a record entry: its clear scoring fields and the
/// commitment to the rest (docs/ledger.md, "Committed records").
fn committed(e: &pb::Entry) -> pb::CommittedRecord {
    match pb::LedgerEvent::decode(e.payload.as_slice()).expect("a LedgerEvent").event {
        Some(pb::ledger_event::Event::CommittedRecord(c)) => c,
        other => panic!("seq {} is no committed record: {other:?}", e.seq),
    }
}

/// The whole record, opened from the details the reader received and
/// checked against the entry's commitment.
fn opened(e: &pb::Entry) -> scoring::Record {
    evidence::stored::open(e.seq, &committed(e), &e.details).expect("the details open the commitment")
}

/// The entry's leaf verifies in the tree of the latest checkpoint,
/// whether or not the reader received its payload.
async fn assert_included(client: &mut Client, e: &pb::Entry) {
    let checkpoint = client.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap().into_inner();
    let p = client
        .ledger
        .get_inclusion_proof(pb::GetInclusionProofRequest { seq: e.seq, tree_size: checkpoint.tree_size })
        .await
        .unwrap()
        .into_inner();
    let hashes: Vec<Hash> = p.hashes.iter().map(|h| hash32(h)).collect();
    assert!(proof::verify_inclusion(
        &hash32(&e.entry_hash),
        e.seq,
        checkpoint.tree_size,
        &hashes,
        &hash32(&checkpoint.root_hash)
    ));
}

#[tokio::test]
async fn a_record_leaves_the_public_view_when_its_publicity_window_ends() {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // A warning is minor (published 90 days) and counts 180 days.
    let mut warning = record(ACME, "W-1", "penalty.warning", 0);
    warning.description = "warned: inspector Wang 138-0000-0000".into();
    let seq = admin.append(warning).await.unwrap().seq;
    grant(&mut admin, ACME, "bank").await;
    server.publish();
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let regulator = server.token("beilun-epb", Role::Regulator { region_prefix: "3302".into() });
    let mut regulator = server.client(&regulator).await;
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;

    // Inside the window: everyone sees it whole.
    server.clock.set(days(89));
    let json = page_json(&server).await;
    assert_eq!(reason(&json, seq)["description"], "warned: inspector Wang 138-0000-0000");
    assert_eq!(json["unpublished"], 0);
    let line = bank.score(ACME).await.reasons.into_iter().find(|r| r.seq == seq).unwrap();
    assert_eq!((line.kind.as_str(), line.withheld), ("penalty.warning", None));
    assert_eq!(opened(&entry(&mut bank, seq).await).description, "warned: inspector Wang 138-0000-0000");

    // After it: the record still counts (-3), but the public and lenders
    // receive only that it is withheld, and why. The score did not change,
    // so the view of current scores keeps it; its disclosure ended, so the
    // refresher decides that again (read from memory below).
    server.clock.set(days(90));
    server.service.refresh_view(1_000).unwrap();
    let json = page_json(&server).await;
    assert_eq!(json["points"], 97, "the score still counts it");
    let line = reason(&json, seq);
    assert_eq!(line["kind"], "withheld");
    assert_eq!(line["description"], "");
    assert_eq!(line["withheld"]["why"], "window_ended");
    assert_eq!(line["withheld"]["publicity_class"], "minor");
    assert!(line.get("proof").is_none() && line["occurred_on"].is_null(), "{line}");
    assert_eq!(json["unpublished"], 1);
    let html = server.web().get(&format!("/e/{ACME}")).await.body;
    assert!(html.contains("earlier records exist and are no longer published"), "{html}");
    for body in [html, server.web().get(&format!("/e/{ACME}/feed.atom")).await.body, json.to_string()] {
        assert!(!body.contains("Wang") && !body.contains("138-0000"), "no details: {body}");
    }
    let proof = server.web().get(&format!("/e/{ACME}/proof/{seq}")).await;
    assert_eq!(proof.status, 403, "{}", proof.body);
    assert!(proof.body.contains("not published since"), "{}", proof.body);

    let score = bank.score(ACME).await;
    assert_eq!(score.points, 97);
    let line = score.reasons.iter().find(|r| r.seq == seq).unwrap();
    assert_eq!((line.kind.as_str(), line.description.as_str(), line.points), ("withheld", "", -3));
    let withheld = line.withheld.clone().expect("says why");
    assert_eq!((withheld.publicity_class.as_str(), withheld.why.as_str()), ("minor", "window_ended"));
    // GetEntry: the lender receives the hashed bytes (what the score
    // counts, and the commitment) without the details that open them.
    let e = entry(&mut bank, seq).await;
    assert_eq!(withheld.entry_hash, e.entry_hash, "the withheld line carries the record's leaf");
    assert!(e.details.is_empty(), "no details for a lender");
    let clear = committed(&e);
    assert_eq!((clear.kind.as_str(), clear.details_commitment.len()), ("penalty.warning", 32));
    assert!(!String::from_utf8_lossy(&e.payload).contains("Wang"), "the description is only committed to");
    assert_eq!(e.withheld.as_ref().map(|w| w.entry_hash.clone()), Some(e.entry_hash.clone()));
    assert_included(&mut bank, &e).await;

    // The regulator and the enterprise itself still see it whole.
    for client in [&mut regulator, &mut acme] {
        let line = client.score(ACME).await.reasons.into_iter().find(|r| r.seq == seq).unwrap();
        assert_eq!((line.kind.as_str(), line.withheld), ("penalty.warning", None));
        let e = entry(client, seq).await;
        let t = e.recorded_at.unwrap();
        let leaf = hash::entry_hash(seq, t.seconds * 1_000_000_000 + i64::from(t.nanos), &e.payload);
        assert_eq!(leaf.to_vec(), e.entry_hash, "the entry hashes to the leaf lenders receive");
        assert_eq!(opened(&e).description, "warned: inspector Wang 138-0000-0000");
        assert!(e.withheld.is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn repair_granted_stops_sharing_with_lenders_but_not_with_the_regulator_or_the_enterprise() {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let regulator = server.token("beilun-epb", Role::Regulator { region_prefix: "3302".into() });
    let mut regulator = server.client(&regulator).await;
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let by_epb = |r: pb::Record| pb::Record { source: "beilun-epb".into(), ..r };
    // A suspension is serious (published three years); repair ends that.
    let mut suspend = record(ACME, "S-1", "enforcement.suspend", -400);
    suspend.description = "suspended: outlet 3 bypass, contact Li".into();
    let suspend = regulator.append(suspend).await.unwrap().seq;
    regulator.append(by_epb(step(ACME, "R-2", "rectification.verified", -290, suspend))).await.unwrap();
    let repair =
        regulator.append(by_epb(step(ACME, "G-2", "repair.granted", -35, suspend))).await.unwrap().seq;
    grant(&mut admin, ACME, "bank").await;
    server.publish();

    // History: a year ago the suspension was a reason; a lender receives
    // that line only as withheld (repaired), the others whole.
    let history = |client: &mut Client| {
        let request = pb::GetScoreHistoryRequest { uscc: ACME.into(), from: ts(days(-399)), to: ts(days(0)) };
        let mut scores = client.scores.clone();
        async move { scores.get_score_history(request).await.unwrap().into_inner() }
    };
    let lines = |h: &pb::GetScoreHistoryResponse| -> Vec<pb::Reason> {
        h.points.iter().flat_map(|p| p.reasons.clone()).filter(|r| r.seq == suspend).collect()
    };
    let lender = history(&mut bank).await;
    let seen = lines(&lender);
    assert!(!seen.is_empty(), "the suspension was a reason in the period");
    for line in &seen {
        assert_eq!((line.kind.as_str(), line.description.as_str()), ("withheld", ""));
        let w = line.withheld.as_ref().unwrap();
        assert_eq!((w.why.as_str(), w.publicity_class.as_str()), ("repaired", "serious"));
        assert_eq!(w.since, ts(days(-35)));
    }
    for client in [&mut regulator, &mut acme] {
        let whole = lines(&history(client).await);
        assert!(
            !whole.is_empty()
                && whole.iter().all(|l| l.kind == "enforcement.suspend" && l.withheld.is_none())
        );
    }

    // GetEntry and ListEntries: the lender gets the hashed bytes (the
    // scoring fields and the commitment), never the details.
    let e = entry(&mut bank, suspend).await;
    assert!(e.details.is_empty() && !String::from_utf8_lossy(&e.payload).contains("contact Li"));
    assert_eq!(committed(&e).kind, "enforcement.suspend");
    assert_eq!(e.withheld.as_ref().unwrap().why, "repaired");
    assert_included(&mut bank, &e).await;
    let mut listed = bank
        .ledger
        .list_entries(pb::ListEntriesRequest { from_seq: 0, to_seq: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut found = false;
    while let Some(item) = listed.message().await.unwrap() {
        assert_ne!(item.seq, repair, "workflow steps are not shared with lenders");
        if item.seq == suspend {
            found = true;
            assert!(item.details.is_empty() && item.withheld.is_some());
        }
    }
    assert!(found, "the withheld entry is listed, without its details");
    for client in [&mut regulator, &mut acme] {
        let e = entry(client, suspend).await;
        assert!(e.withheld.is_none());
        assert_eq!(opened(&e).description, "suspended: outlet 3 bypass, contact Li");
    }

    // BatchGetScores and the page: nothing of it, for the lender or the public.
    let batch = bank
        .scores
        .batch_get_scores(pb::BatchGetScoresRequest { uscc: vec![ACME.into()], as_of: ts(days(-100)) })
        .await
        .unwrap()
        .into_inner();
    let lines: Vec<&pb::Reason> =
        batch.scores.iter().flat_map(|s| &s.reasons).filter(|r| r.seq == suspend).collect();
    assert!(lines.iter().all(|l| l.kind == "withheld" && l.description.is_empty()), "{lines:?}");
    let json = page_json(&server).await;
    assert!(!json.to_string().contains("contact Li"));
    assert_eq!(json["unpublished"], 1);

    // GetScoreProof: the lender's bundle holds the withheld suspension's
    // hashed bytes only, and still recomputes its score offline; the
    // regulator's and the enterprise's hold the same entries.
    server.ledger.sign_checkpoint_now().unwrap();
    let lenders = score_proof_bytes(&mut bank, ACME, 0).await.unwrap();
    assert!(!String::from_utf8_lossy(&lenders).contains("contact Li"));
    let bundle: evidence::score::ScoreBundle = serde_json::from_slice(&lenders).unwrap();
    let verified = verify_score_proof(&server, &bundle).expect("the lender's bundle verifies");
    assert_eq!(verified.points, i64::from(bank.score(ACME).await.points));
    assert!(bundle.entries.iter().any(|e| e.seq == suspend), "the withheld record is counted, not left out");
    for client in [&mut regulator, &mut acme] {
        let theirs = score_proof(client, ACME, 0).await.unwrap();
        assert_eq!(verify_score_proof(&server, &theirs).unwrap().points, verified.points);
    }
    server.stop().await;
}

/// A small deterministic generator (xorshift64*), so every run checks the
/// same ledgers and a failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Property over random ledgers: whatever the kinds, dates, voids and
/// the instant, the public JSON and the Atom feed never carry the details
/// of a record the model says is not published.
#[tokio::test]
async fn public_json_and_feed_never_carry_a_withheld_records_details() {
    const KINDS: [&str; 9] = [
        "penalty.warning",
        "penalty.fine",
        "inspection.finding",
        "complaint.verified",
        "enforcement.suspend",
        "exceedance.daily",
        "monitoring.excused_day",
        "award.environmental",
        "veto.bypass",
    ];
    let model = scoring::Model::builtin();
    for seed in [7_u64, 23, 1_009, 65_537] {
        let server = TestServer::start_web().await;
        let mut admin = server.admin().await;
        let mut rng = Rng(seed);
        let mut ledgers = Vec::new();
        for e in 0..3 {
            let uscc = uscc(&format!("91330206MA2H{e:05}"));
            admin.register(&uscc, "Acme", "330206").await;
            let mut records: Vec<(scoring::LedgerRecord, String)> = Vec::new();
            for i in 0..8 {
                let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
                let day = -(rng.below(1_200) as i64);
                let secret = format!("secret-{seed}-{e}-{i}");
                let mut r = record(&uscc, &format!("R-{e}-{i}"), kind, day);
                r.description = secret.clone();
                let seq = admin.append(r.clone()).await.unwrap().seq;
                let domain = server::convert::from_proto::record(&r).unwrap();
                records.push((scoring::LedgerRecord { seq: scoring::Seq(seq), record: domain }, secret));
                if rng.below(4) == 0 {
                    let mut void = step(&uscc, &format!("V-{e}-{i}"), "record.voided", day.max(-5), seq);
                    void.source = "beilun-epb".into();
                    void.attributes.insert("reason".into(), "annulled on review".into());
                    let vseq = admin.append(void.clone()).await.unwrap().seq;
                    let domain = server::convert::from_proto::record(&void).unwrap();
                    records.push((
                        scoring::LedgerRecord { seq: scoring::Seq(vseq), record: domain },
                        String::new(),
                    ));
                }
            }
            ledgers.push((uscc, records));
        }
        server.publish();
        let now = days(rng.below(400) as i64);
        server.clock.set(now);
        for (uscc, records) in &ledgers {
            let all: Vec<scoring::LedgerRecord> = records.iter().map(|(r, _)| r.clone()).collect();
            let json = server.web().get(&format!("/e/{uscc}?format=json")).await.body;
            let feed = server.web().get(&format!("/e/{uscc}/feed.atom")).await.body;
            for (r, secret) in records.iter().filter(|(_, s)| !s.is_empty()) {
                if !model.publicity(r, &all, now, u64::MAX).is_published() {
                    assert!(
                        !json.contains(secret.as_str()),
                        "seed {seed}: {} leaks in the JSON",
                        r.record.kind
                    );
                    assert!(
                        !feed.contains(secret.as_str()),
                        "seed {seed}: {} leaks in the feed",
                        r.record.kind
                    );
                }
            }
        }
        server.stop().await;
    }
}

async fn signed_in(server: &TestServer, token: &str) -> WebClient {
    let mut web = server.web();
    let csrf = web.get("/signin").await.input("csrf").unwrap();
    web.post("/signin", &[("csrf", &csrf), ("token", token)]).await;
    web
}

#[tokio::test]
async fn an_enterprise_downloads_everything_held_about_it_with_proofs() {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.register(BETA, "Beta", "330206").await;
    admin.append(record(ACME, "F-1", "penalty.fine", -10)).await.unwrap();
    admin.append(record(BETA, "F-2", "penalty.fine", -10)).await.unwrap();
    let granted = grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    server.client(&bank).await.score(ACME).await;
    server.publish();
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });

    let r = signed_in(&server, &acme).await.get(&format!("/e/{ACME}/export")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let lines: Vec<serde_json::Value> = r.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["header", "entry", "entry", "entry", "grant", "inquiry", "end"], "{lines:?}");
    let (name, key) = tlog::note::decode_verifier_key(&server.service.verifier_key()).unwrap();
    for line in lines.iter().filter(|l| l["type"] == "entry") {
        let bundle: tlog::bundle::Bundle = serde_json::from_value(line["bundle"].clone()).unwrap();
        tlog::bundle::verify(&bundle, &name, &key).expect("every exported entry proves its inclusion");
    }
    assert_eq!(lines[4]["seq"], granted.seq);
    assert_eq!(lines[5]["grant_seq"], granted.seq, "the inquiry names its grant");
    assert!(!r.body.contains(BETA), "nothing about another enterprise");

    // A regulator of its region may; a lender and another enterprise may not.
    let epb = server.token("nb-epb", Role::Regulator { region_prefix: "3302".into() });
    assert_eq!(signed_in(&server, &epb).await.get(&format!("/e/{ACME}/export")).await.status, 200);
    assert_eq!(signed_in(&server, &bank).await.get(&format!("/e/{ACME}/export")).await.status, 403);
    let beta = server.token("beta", Role::Enterprise { uscc: BETA.into() });
    assert_eq!(signed_in(&server, &beta).await.get(&format!("/e/{ACME}/export")).await.status, 403);
    server.stop().await;
}

/// Records written before committed records (`LedgerEvent.record`) keep
/// verifying and counting; only their payload is the whole record, so when
/// one is withheld from a lender the lender gets neither its payload nor a
/// score proof (which would disclose it), while the enterprise's proof of
/// the same ledger verifies.
#[tokio::test]
async fn a_withheld_record_written_before_committed_records_refuses_a_lenders_score_proof_naming_its_seq() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    grant(&mut admin, ACME, "bank").await;
    // What an older release wrote: the whole record as the payload.
    let mut warning = record(ACME, "W-OLD", "penalty.warning", 0);
    warning.description = "warned: inspector Wang 138-0000-0000".into();
    let legacy = pb::LedgerEvent {
        event: Some(pb::ledger_event::Event::Record(warning)),
        submitted_by: "beilun-epb".into(),
    };
    let new = ledger::NewEntry {
        payload: legacy.encode_to_vec(),
        subject: ACME.as_bytes().to_vec(),
        idempotency: None,
        details: Vec::new(),
    };
    let seq = server.ledger.append(vec![new]).await.unwrap().remove(0).expect("appended").seq;
    server.clock.set(days(90));
    server.ledger.sign_checkpoint_now().unwrap();

    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let score = bank.score(ACME).await;
    let line = score.reasons.iter().find(|r| r.seq == seq).expect("the old warning still counts");
    assert_eq!((line.kind.as_str(), line.points), ("withheld", -3));
    let e = entry(&mut bank, seq).await;
    assert!(e.payload.is_empty() && e.details.is_empty(), "an old record's payload is the whole record");
    assert_included(&mut bank, &e).await;
    let refused = score_proof_bytes(&mut bank, ACME, 0).await.expect_err("no proof for the lender");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains(&format!("seq {seq}")), "{}", refused.message());

    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let bundle = score_proof(&mut acme, ACME, 0).await.unwrap();
    let verified = verify_score_proof(&server, &bundle).expect("an old record verifies and scores");
    assert_eq!(verified.points, i64::from(score.points));
    server.stop().await;
}
