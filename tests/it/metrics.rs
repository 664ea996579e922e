//! `GET /metrics`: calls by method and status, rejections, the ledger's
//! size and the HJ 212 gateway's counters, in the Prometheus text format.

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The answer to `GET path` from a metrics endpoint, status line included.
pub async fn scrape(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_status_without_tokens() {
    let server = TestServer::start_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        config.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let token = server.token("ops", Role::Admin);
    let mut admin = server.client(&token).await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    let unknown =
        admin.scores.get_score(pb::GetScoreRequest { uscc: BETA.into(), ..Default::default() }).await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);

    let text = scrape(server.metrics.unwrap(), "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains(
            r#"ecocode_grpc_calls_total{method="/ecocode.v1.Registry/RegisterEnterprise",code="Ok"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"ecocode_grpc_calls_total{method="/ecocode.v1.Scores/GetScore",code="NotFound"} 1"#)
    );
    assert!(text.contains("ecocode_grpc_call_seconds_count{method=\"/ecocode.v1.Scores/GetScore\""));
    // The model entry (published at start) and the registration.
    assert!(text.contains("ecocode_ledger_entries 2"), "{text}");
    assert!(text.contains("ecocode_grpc_calls_in_progress 0"), "{text}");
    assert!(text.contains(r#"ecocode_hj212_total{counter="packets_ok"} 0"#));
    assert!(!text.contains(&token) && !text.contains(ACME), "metrics must not carry tokens or ids");

    let other = scrape(server.metrics.unwrap(), "/secret").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    server.stop().await;
}
