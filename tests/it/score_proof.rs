//! Score proofs (issue 21): the model's file in the log, `GetScoreProof`
//! bundles from a real server, and the offline verifier (`evidence`)
//! recomputing them and naming every way a bundle can be wrong.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ecocode_proto::v1 as pb;
use evidence::score::{BundleEntry, ScoreBundle};
use server::principals::Role;

use crate::support::*;

async fn fetch(client: &mut Client, uscc: &str, tree_size: u64) -> Result<ScoreBundle, tonic::Status> {
    score_proof(client, uscc, tree_size).await
}

fn check(server: &TestServer, bundle: &ScoreBundle) -> Result<evidence::score::Verified, String> {
    verify_score_proof(server, bundle)
}

fn rejected(server: &TestServer, bundle: &ScoreBundle, expect: &str) {
    let err = check(server, bundle).expect_err("the altered bundle must not verify");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
}

/// Two enterprises with records, a signed checkpoint; a lender's client.
async fn ledger_with_two_enterprises() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.register(BETA, "Beta", "330206").await;
    admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    admin.append(record(BETA, "P-2", "penalty.fine", -8)).await.unwrap();
    admin.append(record(ACME, "P-3", "enforcement.suspend", -5)).await.unwrap();
    // The bank reads details under the enterprises' grants (entries too).
    grant(&mut admin, ACME, "bank").await;
    grant(&mut admin, BETA, "bank").await;
    server.publish();
    let bank = server.token("bank", Role::Lender);
    let client = server.client(&bank).await;
    (server, client)
}

#[tokio::test]
async fn bundles_from_a_real_server_verify_and_recompute_the_online_score() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    for uscc in [ACME, BETA] {
        let bundle = fetch(&mut bank, uscc, 0).await.unwrap();
        let verified = check(&server, &bundle).unwrap();
        let online = bank
            .scores
            .get_score(pb::GetScoreRequest { uscc: uscc.into(), as_of: None, tree_size: verified.tree_size })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(verified.points, i64::from(online.points), "{uscc}");
        // A registration and its records: every entry about it.
        // Registration, records and the bank's grant.
        assert_eq!(verified.entries, if uscc == ACME { 4 } else { 3 });
        // The online score names the model entry and the index commitment.
        let attestation = tlog::attestation::Attestation::parse(
            &tlog::note::verify(&bundle.attestation, &verified_key_name(&server), &verified_key(&server))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(online.model_entry_hash, attestation.model_entry.unwrap().to_vec());
        assert_eq!(online.index_tree_size, verified.tree_size);
        assert_eq!(online.index_root.len(), 32);
    }
}

fn verified_key_name(server: &TestServer) -> String {
    tlog::note::decode_verifier_key(&server.ledger.verifier_key()).unwrap().0
}

fn verified_key(server: &TestServer) -> [u8; 32] {
    tlog::note::decode_verifier_key(&server.ledger.verifier_key()).unwrap().1
}

#[tokio::test]
async fn a_bundle_missing_one_entry_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    bundle.entries.remove(1);
    rejected(&server, &bundle, "not the index's list for 91330421739237858X");
}

#[tokio::test]
async fn a_bundle_with_an_entry_twice_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let again = bundle.entries[1].clone();
    bundle.entries.insert(1, again.clone());
    rejected(&server, &bundle, &format!("entry {} is given twice", again.seq));
}

#[tokio::test]
async fn a_bundle_with_another_enterprises_entry_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let beta = fetch(&mut bank, BETA, 0).await.unwrap();
    let theirs = beta.entries[1].clone();
    bundle.entries[1] = theirs.clone();
    bundle.entries.sort_by_key(|e| e.seq);
    rejected(&server, &bundle, &format!("entry {} is about {BETA}, not {ACME}", theirs.seq));
}

#[tokio::test]
async fn a_bundle_with_an_entry_from_after_the_checkpoint_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let mut admin = server.admin().await;
    let late = admin.append(record(ACME, "P-9", "penalty.fine", -1)).await.unwrap();
    let entry = server.ledger.entry(late.seq).unwrap();
    bundle.entries.push(BundleEntry {
        seq: entry.seq,
        recorded_at_ns: entry.recorded_at_ns,
        payload: B64.encode(&entry.payload),
    });
    rejected(&server, &bundle, &format!("entry {} is at or after the index entry", late.seq));
}

#[tokio::test]
async fn a_bundle_with_a_payload_byte_changed_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let mut payload = B64.decode(&bundle.entries[1].payload).unwrap();
    // The amount's last byte: still a valid record, another fine.
    let at = payload.len() - 20;
    payload[at] ^= 1;
    bundle.entries[1].payload = B64.encode(&payload);
    let err = check(&server, &bundle).expect_err("a changed payload must not verify");
    assert!(
        err.contains("not the index's list") || err.contains(&format!("entry {}", bundle.entries[1].seq)),
        "{err}"
    );
}

#[tokio::test]
async fn an_attestation_with_other_points_is_rejected_even_when_signed() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let body =
        tlog::note::verify(&bundle.attestation, &verified_key_name(&server), &verified_key(&server)).unwrap();
    let mut statement = tlog::attestation::Attestation::parse(&body).unwrap();
    // An operator with the key signs a kinder score than the entries give.
    statement.points += 10;
    bundle.attestation = server.ledger.sign_note(&statement.body()).unwrap();
    rejected(&server, &bundle, "attestation field points: says");
}

// An operator hiding a record: a later checkpoint's bundle that leaves out
// the penalty appended after the earlier checkpoint.
#[tokio::test]
async fn a_later_bundle_that_omits_a_newer_penalty_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let earlier = fetch(&mut bank, ACME, 0).await.unwrap();
    check(&server, &earlier).unwrap();
    let mut admin = server.admin().await;
    let penalty = admin.append(record(ACME, "P-4", "penalty.fine", -2)).await.unwrap();
    server.publish();
    let mut later = fetch(&mut bank, ACME, 0).await.unwrap();
    let verified = check(&server, &later).unwrap();
    assert_eq!(verified.entries, 5, "the later proof counts the new penalty");
    // The later checkpoint with the earlier list of entries.
    later.entries.retain(|e| e.seq != penalty.seq);
    rejected(&server, &later, "entries given are not the index's list");
}

#[tokio::test]
async fn a_model_entry_other_than_the_named_one_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    // Another entry of the tree, with a valid inclusion proof.
    bundle.model_entry = bundle.index_entry.clone();
    rejected(&server, &bundle, "but the attestation names model entry");
}

#[tokio::test]
async fn an_index_proof_for_another_uscc_is_rejected() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    let mut bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let beta = fetch(&mut bank, BETA, 0).await.unwrap();
    assert_ne!(beta.index_proof, bundle.index_proof);
    bundle.index_proof = beta.index_proof;
    rejected(&server, &bundle, "not the index's list for 91330421739237858X");
}

#[tokio::test]
async fn unknown_fields_in_a_score_bundle_are_refused() {
    let (_server, mut bank) = ledger_with_two_enterprises().await;
    let bundle = fetch(&mut bank, ACME, 0).await.unwrap();
    let mut json = serde_json::to_value(&bundle).unwrap();
    json["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<ScoreBundle>(json).is_err());
}

#[tokio::test]
async fn a_score_proof_is_a_lenders_read_recorded_as_an_inquiry() {
    let (server, mut bank) = ledger_with_two_enterprises().await;
    fetch(&mut bank, ACME, 0).await.unwrap();
    let mut admin = server.admin().await;
    let inquiries = admin
        .scores
        .list_inquiries(pb::ListInquiriesRequest { uscc: ACME.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(inquiries.inquiries.iter().any(|i| i.method == "GetScoreProof" && i.principal == "bank"));
    // An enterprise may not fetch another's proof.
    let other = server.token("beta", Role::Enterprise { uscc: BETA.into() });
    let mut beta = server.client(&other).await;
    let status = fetch(&mut beta, ACME, 0).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn a_restart_publishes_no_second_model_entry_and_a_changed_file_is_refused() {
    let server = TestServer::start().await;
    let first = server.service.model_entry().expect("the model is published at start");
    let dir = server.stop().await;
    let server = TestServer::start_in(dir).await;
    assert_eq!(server.service.model_entry(), Some(first), "a restart appends nothing new");
    let dir = server.stop().await;
    // The same version with another rule: refused at start.
    let changed = format!("{}\n# changed after publication\n", scoring::Model::builtin().source());
    let model = scoring::Model::from_toml(&changed).expect("still a valid model");
    let Err((err, _)) = TestServer::try_start_with_in(dir, |c| c.model = model).await else {
        panic!("a changed model file under a published version must be refused")
    };
    assert!(err.to_string().contains("differs from the one published as version ecocode-2026.2"), "{err}");
}

/// A small deterministic generator (xorshift64*): the cases are fixed by
/// their seeds, so a failure names a seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

// Property: for random ledgers (enterprises, records of random kinds and
// ages, checkpoints in between), every subject's bundle at the latest
// checkpoint and at an earlier one verifies, and its recomputed score
// equals the online score at that tree size.
#[tokio::test]
async fn every_subjects_bundle_verifies_and_equals_the_online_score_on_random_ledgers() {
    const KINDS: [&str; 8] = [
        "penalty.fine",
        "penalty.warning",
        "enforcement.suspend",
        "incident.general",
        "complaint.verified",
        "veto.crime",
        "inspection.finding",
        "award.environmental",
    ];
    for seed in [1u64, 7, 42, 2026] {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let server = TestServer::start().await;
        let mut admin = server.admin().await;
        let usccs: Vec<String> =
            (0..2 + rng.below(3)).map(|i| uscc(&format!("9133020673923{i:04}"))).collect();
        for (i, u) in usccs.iter().enumerate() {
            admin.register(u, &format!("E{i}"), "330206").await;
        }
        let mut sizes = Vec::new();
        for n in 0..rng.below(12) + 4 {
            let u = &usccs[rng.below(usccs.len() as u64) as usize];
            let kind = KINDS[rng.below(KINDS.len() as u64) as usize];
            let day = -(rng.below(700) as i64);
            admin.append(record(u, &format!("R-{seed}-{n}"), kind, day)).await.unwrap();
            if rng.below(4) == 0 {
                sizes.push(server.publish().tree_size);
            }
        }
        sizes.push(server.publish().tree_size);
        // A regulator in scope: it receives every record whole, also those
        // whose publicity ended, which a lender gets no proof of.
        let regulator = server.token("beilun-epb", Role::Regulator { region_prefix: "3302".into() });
        let mut bank = server.client(&regulator).await;
        for size in [sizes[0], *sizes.last().unwrap()] {
            for u in &usccs {
                let bundle = fetch(&mut bank, u, size).await.unwrap();
                let verified =
                    check(&server, &bundle).unwrap_or_else(|e| panic!("seed {seed}, {u} at {size}: {e}"));
                assert_eq!(verified.tree_size, size);
                let online = bank
                    .scores
                    .get_score(pb::GetScoreRequest { uscc: u.clone(), as_of: None, tree_size: size })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(verified.points, i64::from(online.points), "seed {seed}, {u} at {size}");
            }
        }
    }
}

// The page's verification panel says how many entries the score counts and
// links the score proof; a record the public may not see (a dispute) turns
// the public's link into "sign in", and a lender signed in gets the bundle.
#[tokio::test]
async fn the_page_says_the_score_is_complete_and_serves_the_proof_by_policy() {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let fine = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    let size = server.publish().tree_size;
    let mut web = server.web();
    let page = web.get(&format!("/e/{ACME}")).await;
    assert_eq!(page.status, 200);
    let line =
        format!("complete: this score counts all 2 entries about this enterprise up to tree size {size}");
    assert!(page.body.contains(&line), "{}", page.body);
    assert!(page.body.contains(&format!("/e/{ACME}/score-proof.json")));
    let file = web.get(&format!("/e/{ACME}/score-proof.json")).await;
    assert_eq!(file.status, 200);
    let bundle: ScoreBundle = serde_json::from_str(&file.body).unwrap();
    assert_eq!(check(&server, &bundle).unwrap().entries, 2);

    // A dispute: a workflow filing the public may not see.
    admin.append(step(ACME, "D-1", "dispute.opened", -1, fine.seq)).await.unwrap();
    server.publish();
    let page = web.get(&format!("/e/{ACME}")).await;
    assert!(
        page.body.contains("a full proof needs a lender&#x27;s or the enterprise&#x27;s sign-in")
            || page.body.contains("a full proof needs a lender's or the enterprise's sign-in"),
        "{}",
        page.body
    );
    let refused = web.get(&format!("/e/{ACME}/score-proof.json")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // Granted after the published checkpoint: the bundle is as before.
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let full = fetch(&mut bank, ACME, 0).await.unwrap();
    assert_eq!(check(&server, &full).unwrap().entries, 3, "the lender's bundle is full");
}
