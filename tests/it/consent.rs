//! Lender access an enterprise grants (issue 23): `Consent.GrantAccess`,
//! `RevokeAccess`, `ListGrants`; under `--lender-access granted` (the
//! default) a lender reads an enterprise's details only under a live
//! grant, through gRPC and the page, and every inquiry names its grant.

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tonic::Code;

use crate::support::*;

struct Parties {
    server: TestServer,
    acme: Client,
    bank: Client,
    bank_token: String,
}

async fn parties() -> Parties {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.append(record(ACME, "F-1", "penalty.fine", -10)).await.unwrap();
    server.publish();
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let acme = server.client(&acme).await;
    let bank_token = server.token("ningbo-bank", Role::Lender);
    let bank = server.client(&bank_token).await;
    Parties { server, acme, bank, bank_token }
}

fn access(expires_day: i64, covers: &[&str]) -> pb::GrantAccessRequest {
    pb::GrantAccessRequest {
        grant: Some(pb::AccessGrant {
            uscc: ACME.into(),
            lender: "ningbo-bank".into(),
            purpose: "loan_application".into(),
            covers: covers.iter().map(|c| (*c).to_owned()).collect(),
            starts_at: None,
            expires_at: ts(days(expires_day)),
        }),
    }
}

async fn get_score(bank: &mut Client) -> Result<pb::Score, tonic::Status> {
    let request = pb::GetScoreRequest { uscc: ACME.into(), as_of: None, tree_size: 0 };
    bank.scores.get_score(request).await.map(|r| r.into_inner())
}

/// The page as the signed-in bank sees it: whether it reads as itself
/// (its read is an inquiry) or as the public.
async fn bank_page_inquiries(p: &Parties) -> usize {
    let mut web = p.server.web();
    let form = web.get("/signin").await;
    let csrf = form.input("csrf").unwrap();
    web.post("/signin", &[("csrf", &csrf), ("token", &p.bank_token)]).await;
    assert_eq!(web.get(&format!("/e/{ACME}")).await.status, 200, "the page answers either way");
    inquiries(p).await.iter().filter(|i| i.method == "GetScore").count()
}

async fn inquiries(p: &Parties) -> Vec<pb::Inquiry> {
    let mut acme = p.acme_clone().await;
    let request = pb::ListInquiriesRequest { uscc: ACME.into(), ..Default::default() };
    acme.scores.list_inquiries(request).await.unwrap().into_inner().inquiries
}

impl Parties {
    async fn acme_clone(&self) -> Client {
        let token =
            self.server.token(&format!("acme-{}", unique_name()), Role::Enterprise { uscc: ACME.into() });
        self.server.client(&token).await
    }
}

fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[tokio::test]
async fn a_lender_reads_details_only_under_a_live_grant() {
    let mut p = parties().await;

    // No grant: FAILED_PRECONDITION naming the enterprise and what to ask
    // for, over gRPC; the page shows the public view and records nothing.
    let refused = get_score(&mut p.bank).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    for word in [ACME, "ningbo-bank", "ecocode grant add", "details"] {
        assert!(refused.message().contains(word), "{word}: {}", refused.message());
    }
    let history = pb::GetScoreHistoryRequest { uscc: ACME.into(), from: None, to: None };
    assert_eq!(
        p.bank.scores.get_score_history(history.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(bank_page_inquiries(&p).await, 0, "a lender without a grant reads the page as the public");
    assert!(inquiries(&p).await.is_empty());

    // A live grant of details only: GetScore answers, history does not.
    let granted = p.acme.consent.grant_access(access(30, &["details"])).await.unwrap().into_inner();
    assert_eq!(granted.status, "live");
    let score = get_score(&mut p.bank).await.unwrap();
    assert_eq!(score.points, 90);
    let refused = p.bank.scores.get_score_history(history.clone()).await.unwrap_err();
    assert!(refused.message().contains("history"), "{}", refused.message());
    // The inquiry names the grant it was made under; the page's too.
    assert_eq!(bank_page_inquiries(&p).await, 2);
    let listed = inquiries(&p).await;
    assert!(listed.iter().all(|i| i.grant_seq == granted.seq), "{listed:?}");

    // The lender lists its grants and their expiry.
    let held = p.bank.consent.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner();
    assert_eq!(held.grants.len(), 1);
    assert_eq!(held.grants[0].grant.as_ref().unwrap().expires_at, ts(days(30)));

    // Expired: refused again.
    p.server.clock.set(days(30));
    assert_eq!(get_score(&mut p.bank).await.unwrap_err().code(), Code::FailedPrecondition);
    let held = p.bank.consent.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner();
    assert_eq!(held.grants[0].status, "expired");

    // A new grant, then revoked: refused from the revocation on.
    let second = p.acme.consent.grant_access(access(60, &["details", "history"])).await.unwrap().into_inner();
    assert!(get_score(&mut p.bank).await.is_ok());
    assert!(p.bank.scores.get_score_history(history.clone()).await.is_ok());
    let revoke = pb::RevokeAccessRequest { uscc: ACME.into(), grant_seq: second.seq };
    let revoked = p.acme.consent.revoke_access(revoke.clone()).await.unwrap().into_inner();
    assert_eq!(revoked.status, "revoked");
    assert_eq!(get_score(&mut p.bank).await.unwrap_err().code(), Code::FailedPrecondition);
    let before = bank_page_inquiries(&p).await;
    assert_eq!(bank_page_inquiries(&p).await, before, "after the revocation, the page reads as the public");
    assert_eq!(p.acme.consent.revoke_access(revoke).await.unwrap_err().code(), Code::FailedPrecondition);

    // Grants and revocations are ledger entries about the enterprise.
    let entry = p.acme.ledger.get_entry(pb::GetEntryRequest { seq: second.seq }).await.unwrap().into_inner();
    let event = <pb::LedgerEvent as prost::Message>::decode(entry.payload.as_slice()).unwrap();
    assert!(matches!(event.event, Some(pb::ledger_event::Event::AccessGrant(_))));
    p.server.stop().await;
}

#[tokio::test]
async fn only_the_enterprise_grants_and_a_bad_grant_names_its_field() {
    let mut p = parties().await;
    // The bank cannot grant itself access, nor another enterprise grant it.
    assert_eq!(
        p.bank.consent.grant_access(access(30, &["details"])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let beta = p.server.token("beta", Role::Enterprise { uscc: BETA.into() });
    let mut beta = p.server.client(&beta).await;
    assert_eq!(
        beta.consent.grant_access(access(30, &["details"])).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    for (request, field) in [
        (access(-1, &["details"]), "expires_at"),
        (access(30, &["everything"]), "covers"),
        (access(30, &[]), "covers"),
    ] {
        let e = p.acme.consent.grant_access(request).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    // Another lender's grant is not this one's.
    p.acme.consent.grant_access(access(30, &["details"])).await.unwrap();
    let other = p.server.token("other-bank", Role::Lender);
    let mut other = p.server.client(&other).await;
    assert_eq!(get_score(&mut other).await.unwrap_err().code(), Code::FailedPrecondition);
    assert!(
        other
            .consent
            .list_grants(pb::ListGrantsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .grants
            .is_empty()
    );
    p.server.stop().await;
}

#[tokio::test]
async fn open_lender_access_keeps_every_lender_reading_every_enterprise() {
    let server = TestServer::start_with(|c| c.lender_access = server::consent::LenderAccess::Open).await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    assert_eq!(get_score(&mut bank).await.unwrap().points, 100);
    server.stop().await;
}

#[tokio::test]
async fn the_enterprise_grants_and_revokes_on_its_signed_in_page() {
    let mut p = parties().await;
    let acme_token = p.server.token("acme-web", Role::Enterprise { uscc: ACME.into() });
    let mut web = p.server.web();
    let csrf = web.get("/signin").await.input("csrf").unwrap();
    web.post("/signin", &[("csrf", &csrf), ("token", &acme_token)]).await;
    let page = web.get(&format!("/e/{ACME}")).await;
    assert!(page.body.contains("action=\"/e/91330421739237858X/grant\""), "the grant form");
    let csrf = page.input("csrf").unwrap();
    let granted = web
        .post(
            &format!("/e/{ACME}/grant"),
            &[
                ("csrf", &csrf),
                ("lender", "ningbo-bank"),
                ("purpose", "loan_monitoring"),
                ("details", "on"),
                ("expires_on", "2026-09-01"),
            ],
        )
        .await;
    assert_eq!(granted.status, 303, "{}", granted.body);
    assert!(get_score(&mut p.bank).await.is_ok(), "the bank reads under the page's grant");
    let held = p.bank.consent.list_grants(pb::ListGrantsRequest::default()).await.unwrap().into_inner();
    let seq = held.grants[0].seq.to_string();
    assert_eq!(held.grants[0].grant.as_ref().unwrap().purpose, "loan_monitoring");
    let page = web.get(&format!("/e/{ACME}")).await;
    assert!(page.body.contains("ningbo-bank") && page.body.contains("live"), "listed on the page");
    // A bad date names the field; a forged form without the token is refused.
    let bad = web.post(&format!("/e/{ACME}/grant"), &[("csrf", &csrf), ("expires_on", "soon")]).await;
    assert!(bad.status == 400 && bad.body.contains("expires_on"), "{}", bad.body);
    assert_eq!(web.post(&format!("/e/{ACME}/revoke"), &[("csrf", "x"), ("seq", &seq)]).await.status, 403);
    let revoked = web.post(&format!("/e/{ACME}/revoke"), &[("csrf", &csrf), ("seq", &seq)]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(get_score(&mut p.bank).await.unwrap_err().code(), Code::FailedPrecondition);
    p.server.stop().await;
}

/// A watch does not outlive the grant it was opened under: once the
/// enterprise revokes it, the next change ends the lender's stream with
/// `FAILED_PRECONDITION` instead of sending the new score and its reasons.
#[tokio::test]
async fn a_revoked_grant_ends_the_lenders_watch_before_the_next_change_is_sent() {
    let mut p = parties().await;
    let granted = p.acme.consent.grant_access(access(60, &["details"])).await.unwrap().into_inner();
    let (first, mut changes) = p.bank.watch(ACME).await;
    assert_eq!(first.score.unwrap().points, 90);
    let mut admin = p.server.admin().await;
    // Under the grant, a change arrives whole.
    let mut seal = record(ACME, "S-1", "enforcement.seal", -5);
    seal.description = "outlet 2 sealed".into();
    admin.append(seal).await.unwrap();
    let change = changes.message().await.unwrap().expect("a change under the grant");
    assert!(change.score.unwrap().reasons.iter().any(|r| r.description == "outlet 2 sealed"));

    let revoke = pb::RevokeAccessRequest { uscc: ACME.into(), grant_seq: granted.seq };
    p.acme.consent.revoke_access(revoke).await.unwrap();
    let mut veto = record(ACME, "V-1", "veto.data_fraud", -1);
    veto.description = "falsified monitoring data, contact Zhao".into();
    admin.append(veto).await.unwrap();
    let ended = changes.message().await.expect_err("the watch ends instead of sending the change");
    assert_eq!(ended.code(), Code::FailedPrecondition, "{ended:?}");
    assert!(ended.message().contains("ecocode grant add"), "{}", ended.message());
    p.server.stop().await;
}
