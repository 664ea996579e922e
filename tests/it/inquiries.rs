//! The inquiry log: every score read by a lender or a regulator is recorded
//! before it is answered, and listed under the visibility rules of
//! `Scores.ListInquiries` (docs/api.md).

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::support::*;

fn with_purpose<T>(message: T, purpose: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-ecocode-purpose", MetadataValue::try_from(purpose).unwrap());
    request
}

async fn list(client: &mut Client, uscc: &str) -> Result<Vec<pb::Inquiry>, tonic::Status> {
    let request = pb::ListInquiriesRequest { uscc: uscc.into(), ..Default::default() };
    Ok(client.scores.list_inquiries(request).await?.into_inner().inquiries)
}

fn who(inquiries: &[pb::Inquiry]) -> Vec<(String, String, String, String)> {
    inquiries
        .iter()
        .map(|i| (i.principal.clone(), i.method.clone(), i.uscc.clone(), i.purpose.clone()))
        .collect()
}

fn row(principal: &str, method: &str, uscc: &str, purpose: &str) -> (String, String, String, String) {
    (principal.into(), method.into(), uscc.into(), purpose.into())
}

#[tokio::test]
async fn each_role_sees_the_inquiries_it_may_and_no_lender_sees_anothers() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.register(BETA, "Beta", "110105").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    for (uscc, bank) in [(ACME, "bank-a"), (BETA, "bank-a"), (ACME, "bank-b"), (BETA, "bank-b")] {
        grant(&mut admin, uscc, bank).await;
    }
    let bank_a = server.token("bank-a", Role::Lender);
    let mut bank_a = server.client(&bank_a).await;
    let bank_b = server.token("bank-b", Role::Lender);
    let mut bank_b = server.client(&bank_b).await;
    let epb = server.token("beilun-epb", Role::Regulator { region_prefix: "3302".into() });
    let mut epb = server.client(&epb).await;
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut acme = server.client(&acme).await;
    let get = |uscc: &str| pb::GetScoreRequest { uscc: uscc.into(), ..Default::default() };

    bank_a.scores.get_score(with_purpose(get(ACME), "loan LA-2026-001")).await.unwrap();
    let batch = pb::BatchGetScoresRequest { uscc: vec![ACME.into(), BETA.into()], as_of: None };
    bank_b.scores.batch_get_scores(with_purpose(batch, "portfolio review")).await.unwrap();
    epb.scores.get_score(get(ACME)).await.unwrap();
    // An enterprise reading itself is not an inquiry.
    acme.scores.get_score(get(ACME)).await.unwrap();

    // The enterprise sees every inquiry on itself, newest first.
    assert_eq!(
        who(&list(&mut acme, "").await.unwrap()),
        vec![
            row("beilun-epb", "GetScore", ACME, ""),
            row("bank-b", "BatchGetScores", ACME, "portfolio review"),
            row("bank-a", "GetScore", ACME, "loan LA-2026-001"),
        ]
    );
    assert_eq!(list(&mut acme, BETA).await.unwrap_err().code(), Code::PermissionDenied);
    // A lender sees only its own, even when it asks about the enterprise.
    assert_eq!(
        who(&list(&mut bank_a, "").await.unwrap()),
        vec![row("bank-a", "GetScore", ACME, "loan LA-2026-001")]
    );
    assert_eq!(list(&mut bank_a, ACME).await.unwrap().len(), 1);
    assert_eq!(list(&mut bank_b, "").await.unwrap().len(), 2, "one inquiry per USCC answered");
    // A regulator sees those in its scope, not Beta's in Beijing.
    let in_scope = list(&mut epb, "").await.unwrap();
    assert!(in_scope.iter().all(|i| i.uscc == ACME), "{in_scope:?}");
    assert_eq!(in_scope.len(), 3);
    assert_eq!(list(&mut epb, BETA).await.unwrap_err().code(), Code::PermissionDenied);
    // The admin sees all.
    assert_eq!(list(&mut admin, "").await.unwrap().len(), 4);
    server.stop().await;
}

#[tokio::test]
async fn every_score_read_is_recorded_and_pages_cover_them_all() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let uscc = || ACME.to_owned();
    bank.scores.get_score(pb::GetScoreRequest { uscc: uscc(), ..Default::default() }).await.unwrap();
    bank.scores
        .get_score_history(pb::GetScoreHistoryRequest { uscc: uscc(), ..Default::default() })
        .await
        .unwrap();
    bank.scores
        .get_attestation(pb::GetAttestationRequest { uscc: uscc(), ..Default::default() })
        .await
        .unwrap();
    let (_, stream) = bank.watch(ACME).await;
    drop(stream);

    let mut methods = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListInquiriesRequest { page_size: 1, page_token: token, ..Default::default() };
        let page = bank.scores.list_inquiries(request).await.unwrap().into_inner();
        methods.extend(page.inquiries.into_iter().map(|i| i.method));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    methods.sort();
    assert_eq!(methods, vec!["GetAttestation", "GetScore", "GetScoreHistory", "WatchCodes"]);

    // A purpose longer than 200 bytes is refused before anything is read.
    let long = "x".repeat(201);
    let request = with_purpose(pb::GetScoreRequest { uscc: uscc(), ..Default::default() }, &long);
    assert_eq!(bank.scores.get_score(request).await.unwrap_err().code(), Code::InvalidArgument);
    // Sources may not list inquiries at all.
    let feed = server.token("feed", Role::Source { source: "feed".into() });
    assert_eq!(list(&mut server.client(&feed).await, "").await.unwrap_err().code(), Code::PermissionDenied);
    server.stop().await;
}

#[tokio::test]
async fn inquiries_survive_a_restart() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    server.client(&bank).await.score(ACME).await;
    let dir = server.stop().await;
    let server = TestServer::start_in(dir).await;
    let mut bank = server.client(&bank).await;
    assert_eq!(list(&mut bank, "").await.unwrap().len(), 1);
    server.stop().await;
}

/// What broke: a purpose kept its control characters and reached the
/// enterprise's terminal; gRPC metadata can carry a tab, which now
/// becomes a space where it enters.
#[tokio::test]
async fn a_purpose_loses_its_control_characters_where_it_enters() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    // A bank reads under the enterprise's grant (--lender-access granted).
    grant(&mut admin, ACME, "bank").await;
    let bank = server.token("bank", Role::Lender);
    let mut bank = server.client(&bank).await;
    let get = pb::GetScoreRequest { uscc: ACME.into(), ..Default::default() };
    bank.scores.get_score(with_purpose(get, "\tLA-7\tre-check ")).await.unwrap();
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let seen = list(&mut server.client(&acme).await, "").await.unwrap();
    assert_eq!(who(&seen), vec![row("bank", "GetScore", ACME, "LA-7 re-check")]);
    server.stop().await;
}
