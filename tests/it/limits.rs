//! Connections and calls that would otherwise live forever: silent
//! connections are closed, client deadlines end calls.

use std::time::Duration;

use ecocode_proto::v1 as pb;
use server::principals::Role;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::*;

/// A peer that connects and never speaks (slowloris) does not keep its
/// file descriptor: the server closes the connection after the idle time.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let server = TestServer::start_with(|config| {
        config.transport.connection_idle_timeout = Duration::from_millis(200);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut sink = Vec::new();
    // Whatever the server wrote (its HTTP/2 settings), it ends with a close.
    let _ = silent.read_to_end(&mut sink).await;
    // The server still answers everyone else.
    let mut admin = server.admin().await;
    admin.ledger.get_checkpoint(pb::GetCheckpointRequest {}).await.unwrap();
    server.stop().await;
}

/// A client's `grpc-timeout` ends its call on the server, even a stream
/// the client keeps open.
#[tokio::test]
async fn a_client_deadline_ends_its_open_stream() {
    let server = TestServer::start().await;
    let mut admin = server.client(&server.token("epb", Role::Admin)).await;
    admin.register(ACME, "Ningbo Acme Dyeing Co.", "330206").await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(record(ACME, "slow", "inspection.finding", -1)).await.unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.set_timeout(Duration::from_millis(200));
    let status = admin.ingest.append_records(request).await.unwrap_err();
    assert!(matches!(status.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled), "{status:?}");
    drop(tx);
    server.stop().await;
}

/// A call whose client sends its headers and then never its message does
/// not hold a call slot forever: the server ends it after the stream idle
/// time. Spoken in raw HTTP/2, since a gRPC client always sends a message.
#[tokio::test]
async fn a_call_that_never_sends_its_message_is_ended() {
    let server = TestServer::start_with(|config| {
        config.transport.stream_idle_timeout = Duration::from_millis(200);
    })
    .await;
    let token = server.token("bank", Role::Lender);
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/ecocode.v1.Scores/GetScore", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    // `false`: the request stays open, and nothing is ever sent on it.
    let (response, _open) = h2.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    let status = tonic::Status::from_header_map(response.headers()).expect("a trailers-only answer");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    server.stop().await;
}

/// A peer that completes the HTTP/2 preface and then goes dead (answers no
/// PING) is dropped by keepalive, long before the idle timeout.
#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(|config| {
        config.transport.keepalive_interval = Duration::from_millis(100);
        config.transport.keepalive_timeout = Duration::from_millis(100);
        // Idle connections are not what closes this one.
        config.transport.connection_idle_timeout = Duration::from_secs(3600);
    })
    .await;
    let mut dead = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The client preface and an empty SETTINGS frame; then silence.
    dead.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    dead.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let mut frames = Vec::new();
    // Reading does not answer the server's PINGs; the read ends when the
    // server gives up on us.
    let _ = dead.read_to_end(&mut frames).await;
    server.stop().await;
}
