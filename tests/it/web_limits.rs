//! The web listener against a hostile public (issue 18): connection caps in
//! total and per address, one deadline for a whole request, sessions bounded
//! per principal, the page's origin from configuration, metrics labels only
//! for known routes and methods, and a full disk answered `503`.

use std::net::SocketAddr;
use std::time::Duration;

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::metrics::scrape;
use crate::support::*;

/// A hang guard, never an assertion on time: what it wraps ends long
/// before unless the server is broken.
const HANG: Duration = Duration::from_secs(60);

/// A connection to `to` from the loopback address `127.0.0.{from}`, so one
/// test can be many client addresses.
async fn connect_from(from: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, from], 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// A POST whose head is complete and whose body stops after a few bytes
/// of the 100 000 announced.
async fn half_sent_body(from: u8, to: SocketAddr) -> TcpStream {
    let mut stream = connect_from(from, to).await;
    let head = "POST /signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 100000\r\n\r\ncsrf=abc&token=";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server never closed the connection");
    answer
}

/// A connection turned away at once: a `503` and the end of the connection.
async fn assert_refused(mut stream: TcpStream) {
    let answer = until_closed(&mut stream).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
}

fn count(metrics: &str, line_prefix: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(line_prefix)).map_or(0, |n| n.trim().parse().unwrap())
}

// Failure: the web accept loop had no connection cap and no body timeout;
// 3 000 half-sent POST bodies stayed open and gRPC calls and an HJ 212
// device starved for file descriptors.
#[tokio::test]
async fn half_sent_bodies_cannot_starve_grpc_or_hj212() {
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
        c.gateway.close_interval = Duration::from_millis(5);
        c.web.max_connections = 8;
        c.web.max_connections_per_peer = 4;
        // Long enough that no held body is cut while the test runs.
        c.web.request_timeout = Duration::from_secs(600);
    })
    .await;
    let web = server.http.unwrap();
    // Four addresses open six connections each. They are accepted in the
    // order they were made: the first address gets four (the per-address
    // cap), the second four more (the total cap), the rest are refused.
    // The held ones send a head and the start of a body, then stall; the
    // refused ones send nothing, so their `503` is never lost to a reset.
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for from in 2..=5u8 {
        for i in 0..6 {
            if from <= 3 && i < 4 {
                held.push(half_sent_body(from, web).await);
            } else {
                refused.push(connect_from(from, web).await);
            }
        }
    }
    for stream in refused {
        assert_refused(stream).await;
    }
    let text = scrape(server.metrics.unwrap(), "/metrics").await;
    assert_eq!(count(&text, r#"ecocode_rejected_total{reason="http_connections_per_peer"} "#), 2, "{text}");
    assert_eq!(count(&text, r#"ecocode_rejected_total{reason="http_connections_total"} "#), 14, "{text}");

    // While the web's share is taken, gRPC and an HJ 212 device are answered.
    server.clock.set(scoring::Timestamp::parse_rfc3339("2026-05-31T00:00:00Z").unwrap());
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    admin.registry.register_monitoring_point(crate::hj212::point()).await.unwrap();
    let mut device = TcpStream::connect(server.gateway.unwrap()).await.unwrap();
    device.write_all(&crate::hj212::hourly(31, 0, (20.0, "N"), None)).await.unwrap();
    let acks = tokio::time::timeout(HANG, crate::hj212::read_acks(&mut device, 1)).await.unwrap();
    assert_eq!(acks.len(), 1);
    assert!(admin.score(ACME).await.points > 0);
    // A new web visitor is turned away, not queued behind the held bodies.
    assert_refused(connect_from(6, web).await).await;

    // Once the held connections go, the web serves again.
    drop(held);
    let mut served = false;
    for _ in 0..10_000 {
        let mut stream = connect_from(7, web).await;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = until_closed(&mut stream).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(served, "the slots of closed connections are freed");
    server.stop().await;
}

// Failure: once a request's head was in, nothing bounded its body, so a
// half-sent POST held its connection forever.
#[tokio::test]
async fn a_half_sent_body_is_cut_at_the_request_deadline() {
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.web.request_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stuck = half_sent_body(1, server.http.unwrap()).await;
    let answer = until_closed(&mut stuck).await;
    let response = parse_response(&answer);
    assert_eq!(response.status, 408, "{}", response.body);
    assert_eq!(response.header("connection"), Some("close"));
    let text = scrape(server.metrics.unwrap(), "/metrics").await;
    assert_eq!(count(&text, r#"ecocode_rejected_total{reason="http_request_timeout"} "#), 1, "{text}");
    // An idle keep-alive connection is closed by the same deadline.
    let mut idle = connect_from(1, server.http.unwrap()).await;
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut idle).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    // Complete requests are served as before.
    assert_eq!(server.web().get("/").await.status, 200);
    server.stop().await;
}

// Failure: one address could open as many web connections as it liked.
#[tokio::test]
async fn one_address_cannot_take_every_web_connection() {
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.web.max_connections = 100;
        c.web.max_connections_per_peer = 2;
    })
    .await;
    let web = server.http.unwrap();
    let _first = connect_from(2, web).await;
    let _second = connect_from(2, web).await;
    assert_refused(connect_from(2, web).await).await;
    // Another address is served meanwhile.
    let mut other = connect_from(3, web).await;
    other.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut other).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    server.stop().await;
}

/// Signs `client` in with `token` through the sign-in form.
async fn sign_in(client: &mut WebClient, token: &str) -> HttpResponse {
    let form = client.get("/signin").await;
    let csrf = form.input("csrf").expect("the sign-in form carries a CSRF token");
    client.post("/signin", &[("csrf", &csrf), ("token", token)]).await
}

// Failure: 10 070 sign-ins from one principal signed every other user out
// (one global table, oldest evicted first, whoever it belonged to).
#[tokio::test]
async fn one_principal_signing_in_again_and_again_never_signs_out_another() {
    let server = TestServer::start_web().await;
    let (eve, bank) = (server.token("eve", Role::Lender), server.token("bank-b", Role::Lender));
    let mut victim = server.web();
    assert_eq!(sign_in(&mut victim, &bank).await.status, 303);
    let mut first = server.web();
    assert_eq!(sign_in(&mut first, &eve).await.status, 303);
    let mut last = server.web();
    for _ in 0..server::web::session::MAX_SESSIONS_PER_PRINCIPAL + 20 {
        last = server.web();
        assert_eq!(sign_in(&mut last, &eve).await.status, 303);
    }
    // The victim is still signed in; eve's oldest session ended, her newest works.
    assert_eq!(victim.get("/portfolio").await.status, 200);
    assert_eq!(first.get("/portfolio").await.status, 401);
    assert_eq!(last.get("/portfolio").await.status, 200);
    server.stop().await;
}

/// `GET path` with a `Host` header of the client's choosing.
async fn get_with_host(to: SocketAddr, path: &str, host: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(to).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    parse_response(&until_closed(&mut stream).await)
}

// Failure: `Host: evil.example` became the origin of the QR code's text and
// the feed's links.
#[tokio::test]
async fn host_header_never_becomes_the_origin() {
    let public = "https://ecocode.example.gov.cn";
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.web.public_url = Some(public.into());
    })
    .await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    server.publish();
    let web = server.http.unwrap();
    let json = get_with_host(web, &format!("/e/{ACME}?format=json"), "evil.example").await;
    assert_eq!(json.status, 200, "{}", json.body);
    let data: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let qr = data["attestation"]["qr_text"].as_str().unwrap();
    // The compact QR text is upper case (QR alphanumeric mode).
    assert!(qr.starts_with(&format!("{public}/Q/").to_ascii_uppercase()), "{qr}");
    for path in [format!("/e/{ACME}"), format!("/e/{ACME}/feed.atom")] {
        let r = get_with_host(web, &path, "evil.example").await;
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains("evil.example"), "{path}: {}", r.body);
    }
    let feed = get_with_host(web, &format!("/e/{ACME}/feed.atom"), "evil.example").await;
    assert!(feed.body.contains(public), "{}", feed.body);
    server.stop().await;

    // Without --public-url: the listener's own address, whatever Host says.
    let server = TestServer::start_web().await;
    server.admin().await.register(ACME, "Acme", "330206").await;
    server.publish();
    let web = server.http.unwrap();
    let json = get_with_host(web, &format!("/e/{ACME}?format=json"), "evil.example").await;
    let data: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let qr = data["attestation"]["qr_text"].as_str().unwrap();
    assert!(qr.starts_with(&format!("HTTP://{web}/Q/")), "{qr}");
    server.stop().await;
}

// Failure: `/metrics` labelled the first 128 (path, code) pairs it saw, so
// invented paths sent first pushed the real methods into `other`.
#[tokio::test]
async fn invented_paths_do_not_push_known_methods_out_of_metrics() {
    let server = TestServer::start_with(|c| {
        c.http_listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.web.requests_per_minute = 10_000;
    })
    .await;
    let admin_token = server.token("ops", Role::Admin);
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    for i in 0..200 {
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::try_from(format!("/invented.v1.X/Method{i}")).unwrap();
        let codec = tonic_prost::ProstCodec::<pb::GetCheckpointRequest, pb::Checkpoint>::default();
        let status =
            grpc.unary(tonic::Request::new(pb::GetCheckpointRequest {}), path, codec).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }
    let mut web = server.web();
    for i in 0..200 {
        assert_eq!(web.get(&format!("/invented/{i}")).await.status, 404);
    }
    let mut admin = server.client(&admin_token).await;
    admin.register(ACME, "Acme", "330206").await;
    server.publish();
    assert_eq!(web.get(&format!("/e/{ACME}")).await.status, 200);

    let text = scrape(server.metrics.unwrap(), "/metrics").await;
    assert!(
        text.contains(
            r#"ecocode_grpc_calls_total{method="/ecocode.v1.Registry/RegisterEnterprise",code="Ok"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"ecocode_grpc_calls_total{method="other",code="Unimplemented"} 200"#), "{text}");
    assert!(text.contains(r#"ecocode_http_requests_total{route="/e/{uscc}",status="200"} 1"#), "{text}");
    assert!(text.contains(r#"ecocode_http_requests_total{route="other",status="404"} 200"#), "{text}");
    assert!(!text.contains("invented"), "{text}");
    server.stop().await;
}

// Failure: a full disk answered the enterprise's web filing `429 Too Many
// Requests`, as if the enterprise had filed too much.
#[tokio::test]
async fn a_full_disk_answers_a_web_filing_503() {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    let fine = admin.append(record(ACME, "P-1", "penalty.fine", -10)).await.unwrap();
    server.publish();
    let acme = server.token("acme", Role::Enterprise { uscc: ACME.into() });
    let mut web = server.web();
    assert_eq!(sign_in(&mut web, &acme).await.status, 303);
    let page = web.get(&format!("/e/{ACME}")).await;
    let csrf = page.input("csrf").expect("the enterprise's page carries its forms");
    server.ledger.set_min_free_bytes(u64::MAX);
    let seq = fine.seq.to_string();
    let r = web
        .post(&format!("/e/{ACME}/dispute"), &[("csrf", &csrf), ("seq", &seq), ("description", "not ours")])
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("space is freed"), "{}", r.body);
    server.ledger.set_min_free_bytes(1);
    let r = web
        .post(&format!("/e/{ACME}/dispute"), &[("csrf", &csrf), ("seq", &seq), ("description", "not ours")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    server.stop().await;
}
