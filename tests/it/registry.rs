//! Registry: registering and reading enterprises, with every error class
//! and role.

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn register_get_and_idempotent_resend() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    let first = admin.register(ACME, "Ningbo Acme Dyeing", "330206").await;
    assert_eq!(first.seq, 1, "after the model entry published at start");
    assert!(!first.duplicate);
    assert_eq!(first.entry_hash.len(), 32);

    let again = admin.register(ACME, "Ningbo Acme Dyeing", "330206").await;
    assert!(again.duplicate);
    assert_eq!((again.seq, again.chain_hash), (first.seq, first.chain_hash));

    let got = admin
        .registry
        .get_enterprise(pb::GetEnterpriseRequest { uscc: ACME.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, enterprise(ACME, "Ningbo Acme Dyeing", "330206"));

    let conflict =
        admin.registry.register_enterprise(enterprise(ACME, "Another Name", "330206")).await.unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists, "{conflict:?}");
    server.stop().await;
}

#[tokio::test]
async fn invalid_enterprises_name_the_field() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    for (e, field) in [
        (enterprise("91330421739237858Y", "n", "330206"), "uscc: check character"),
        (enterprise("91330421739237858x", "n", "330206"), "uscc:"),
        (enterprise(ACME, "", "330206"), "name: is required"),
        (enterprise(ACME, "n", "33020"), "region_code:"),
    ] {
        let err = admin.registry.register_enterprise(e).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(field), "{:?} vs {field:?}", err.message());
    }
    let err =
        admin.registry.get_enterprise(pb::GetEnterpriseRequest { uscc: BETA.into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn roles_and_scopes_for_registration() {
    let server = TestServer::start().await;
    let regulator = server.token("beilun", Role::Regulator { region_prefix: "3302".into() });
    let mut regulator = server.client(&regulator).await;
    // Beta's USCC was issued in Beilun (330206), in the regulator's scope.
    let out_of_scope =
        regulator.registry.register_enterprise(enterprise(BETA, "Beta", "110105")).await.unwrap_err();
    assert_eq!(out_of_scope.code(), Code::PermissionDenied);
    assert!(out_of_scope.message().contains("scope 3302"), "{}", out_of_scope.message());
    regulator.register(BETA, "Beta", "330206").await;

    for role in [Role::Lender, Role::Enterprise { uscc: ACME.into() }, Role::Source { source: "x".into() }] {
        let token = server.token(&format!("p-{}", role.name()), role);
        let err =
            server.client(&token).await.registry.register_enterprise(enterprise(BETA, "B", "330206")).await;
        assert_eq!(err.unwrap_err().code(), Code::PermissionDenied);
    }

    // The enterprise reads itself but not another.
    let own = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut own = server.client(&own).await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    own.registry.get_enterprise(pb::GetEnterpriseRequest { uscc: ACME.into() }).await.unwrap();
    let err = own.registry.get_enterprise(pb::GetEnterpriseRequest { uscc: BETA.into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    server.stop().await;
}

// Attack: a regulator registered another region's company first (a USCC is
// registered once), locking the rightful regulator out of it.
#[tokio::test]
async fn a_regulator_cannot_preclaim_another_regions_usccs() {
    let server = TestServer::start().await;
    let beilun = server.token("beilun", Role::Regulator { region_prefix: "3302".into() });
    let mut beilun = server.client(&beilun).await;
    // Acme's USCC was issued in Haiyan (330421); declaring a Beilun address
    // does not make it Beilun's to register.
    let err = beilun.registry.register_enterprise(enterprise(ACME, "Acme", "330206")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("issued in region 330421"), "{}", err.message());
    // The rightful regulator registers it; an admin may register one that moved.
    let jiaxing = server.token("jiaxing", Role::Regulator { region_prefix: "3304".into() });
    server.client(&jiaxing).await.register(ACME, "Acme", "330421").await;
    let mut admin = server.admin().await;
    let moved = uscc("91330421MA2B0000Q");
    admin.register(&moved, "Moved Co", "330206").await;
    server.stop().await;
}

// Attack: a regulator moved another region's monitoring point to an
// enterprise of its own, taking over that outlet's data.
#[tokio::test]
async fn a_regulator_cannot_move_another_regions_monitoring_point() {
    let server = TestServer::start().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330421").await;
    admin.register(BETA, "Beta", "330206").await;
    let point = |uscc: &str| pb::MonitoringPoint {
        mn: "LD130133000015".into(),
        uscc: uscc.into(),
        outlet: "DW001".into(),
        password: "a-long-random-device-password".into(),
        password_hash: String::new(),
        credential_id: String::new(),
        limits: vec![pb::PollutantLimit {
            pollutant: "w01018".into(),
            limit: 50.0,
            unit: "mg/L".into(),
            statistic: "Avg".into(),
        }],
    };
    admin.registry.register_monitoring_point(point(ACME)).await.unwrap();
    let beilun = server.token("beilun", Role::Regulator { region_prefix: "3302".into() });
    let mut beilun = server.client(&beilun).await;
    let err = beilun.registry.register_monitoring_point(point(BETA)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let still =
        admin.registry.get_monitoring_point(pb::GetMonitoringPointRequest { mn: "LD130133000015".into() });
    assert_eq!(still.await.unwrap().into_inner().uscc, ACME);
    server.stop().await;
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_unauthenticated_without_echo() {
    let server = TestServer::start().await;
    let mut anonymous = server.client("").await;
    let err =
        anonymous.registry.get_enterprise(pb::GetEnterpriseRequest { uscc: ACME.into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("missing"), "{}", err.message());

    let secret = "eco_not-a-real-token-1234567890";
    let mut stranger = server.client(secret).await;
    let err =
        stranger.scores.get_score(pb::GetScoreRequest { uscc: ACME.into(), ..Default::default() }).await;
    let err = err.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("unknown token"));
    assert!(!err.message().contains(secret), "the token must not be echoed");

    // A principal added while the server runs works at once.
    let token = server.token("late-bank", Role::Lender);
    let mut late = server.client(&token).await;
    let err = late.scores.get_score(pb::GetScoreRequest { uscc: ACME.into(), ..Default::default() }).await;
    assert_eq!(err.unwrap_err().code(), Code::NotFound, "authenticated, and ACME is not registered");
    server.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let server = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "ecocode.v1.Scores".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    server.stop().await;
}
