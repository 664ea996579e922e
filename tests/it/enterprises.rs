//! Enterprises that change: renamed, moved to another region or industry,
//! closed or merged, each a ledger entry of its own with the history kept,
//! and scores and lists following the new values from that entry on.

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tonic::Code;

use crate::support::*;

fn update(uscc: &str, reason: &str) -> pb::EnterpriseUpdate {
    pb::EnterpriseUpdate { uscc: uscc.into(), reason: reason.into(), ..Default::default() }
}

async fn listed(client: &mut Client, region_prefix: &str, include_closed: bool) -> Vec<String> {
    let request =
        pb::ListScoresRequest { region_prefix: region_prefix.into(), include_closed, ..Default::default() };
    let page = client.scores.list_scores(request).await.unwrap().into_inner();
    page.scores.into_iter().map(|s| format!("{} {}", s.uscc, s.name)).collect()
}

#[tokio::test]
async fn renamed_moved_and_closed_enterprises_keep_their_history_and_leave_the_lists() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    admin.register(BETA, "Beta Chemicals", "330206").await;
    let before = server.ledger.head().size;

    // Renamed and moved to another district.
    let moved = pb::EnterpriseUpdate {
        name: "Ningbo Acme Textiles Co.".into(),
        region_code: "330212".into(),
        ..update(ACME, "renamed and moved, SAMR notice 2026-17")
    };
    let first = admin.registry.update_enterprise(moved.clone()).await.unwrap().into_inner();
    assert!(!first.duplicate);
    let again = admin.registry.update_enterprise(moved).await.unwrap().into_inner();
    assert_eq!((again.seq, again.duplicate), (first.seq, true), "the same change again is a duplicate");
    // Re-registering with the original details stays idempotent.
    let original = admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    assert!(original.duplicate);

    // Scores follow the new name from the update on; earlier prefixes keep the old one.
    assert_eq!(admin.score(ACME).await.name, "Ningbo Acme Textiles Co.");
    let then = pb::GetScoreRequest { uscc: ACME.into(), as_of: None, tree_size: before };
    assert_eq!(admin.scores.get_score(then).await.unwrap().into_inner().name, "Ningbo Acme Dyeing Co.");
    assert_eq!(listed(&mut admin, "330212", false).await, vec![format!("{ACME} Ningbo Acme Textiles Co.")]);
    assert_eq!(listed(&mut admin, "330206", false).await, vec![format!("{BETA} Beta Chemicals")]);

    // A regulator of the old district may not move it into its own.
    let beilun = server.token("beilun-epb", Role::Regulator { region_prefix: "330206".into() });
    let status = server
        .client(&beilun)
        .await
        .registry
        .update_enterprise(pb::EnterpriseUpdate { region_code: "330206".into(), ..update(ACME, "back") })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{}", status.message());

    // Bad changes name the field.
    let status = admin.registry.update_enterprise(update(ACME, " ")).await.unwrap_err();
    assert_eq!((status.code(), status.message().starts_with("reason:")), (Code::InvalidArgument, true));
    let unknown = pb::EnterpriseUpdate {
        status: pb::EnterpriseStatus::Merged as i32,
        merged_into: "91110000100000000X".into(),
        ..update(ACME, "merged")
    };
    let status = admin.registry.update_enterprise(unknown).await.unwrap_err();
    assert!(matches!(status.code(), Code::FailedPrecondition | Code::InvalidArgument), "{status:?}");

    // Closed: out of the lists unless asked for, its score still readable.
    let closed =
        pb::EnterpriseUpdate { status: pb::EnterpriseStatus::Closed as i32, ..update(ACME, "deregistered") };
    admin.registry.update_enterprise(closed).await.unwrap();
    assert!(listed(&mut admin, "330212", false).await.is_empty());
    assert_eq!(listed(&mut admin, "330212", true).await.len(), 1);
    assert_eq!(admin.score(ACME).await.name, "Ningbo Acme Textiles Co.");

    // Merged into BETA.
    let merged = pb::EnterpriseUpdate {
        status: pb::EnterpriseStatus::Merged as i32,
        merged_into: BETA.into(),
        ..update(ACME, "absorbed by Beta")
    };
    admin.registry.update_enterprise(merged).await.unwrap();

    let history = admin
        .registry
        .get_enterprise_history(pb::GetEnterpriseRequest { uscc: ACME.into() })
        .await
        .unwrap()
        .into_inner();
    let states: Vec<String> = history
        .versions
        .iter()
        .map(|v| {
            let s = v.state.as_ref().unwrap();
            format!(
                "{} {} {} {} {}",
                s.status().as_str_name(),
                s.name,
                s.region_code,
                s.merged_into,
                s.reason
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            "ACTIVE Ningbo Acme Dyeing Co. 330206  registered".to_owned(),
            "ACTIVE Ningbo Acme Textiles Co. 330212  renamed and moved, SAMR notice 2026-17".to_owned(),
            "CLOSED Ningbo Acme Textiles Co. 330212  deregistered".to_owned(),
            format!("MERGED Ningbo Acme Textiles Co. 330212 {BETA} absorbed by Beta"),
        ]
    );

    // The directory is rebuilt from the ledger after a restart.
    let dir = server.stop().await;
    let server = TestServer::start_in(dir).await;
    let mut admin = server.admin().await;
    assert!(listed(&mut admin, "3302", false).await == vec![format!("{BETA} Beta Chemicals")]);
    server.stop().await;
}
