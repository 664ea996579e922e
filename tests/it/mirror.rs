//! The log served as C2SP tlog-tiles on the web listener, and `ecocode
//! mirror` following it: against a live server while it appends, after a
//! stop and resume, against a forked log, and against tampered tiles.

use std::net::SocketAddr;
use std::path::Path;

use cli::mirror::{Mirror, Options};
use ecocode_proto::v1 as pb;
use server::principals::Role;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

/// One GET; `(status, headers, body)` with the body as bytes.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = parse_response(&raw[..split + 4]);
    (head.status, head.headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Appends `n` records about ACME (registered first if `register`).
async fn fill(admin: &mut Client, from: usize, n: usize) {
    let records: Vec<pb::Record> =
        (from..from + n).map(|i| record(ACME, &format!("T-{i}"), "penalty.warning", -1)).collect();
    let response = admin.ingest.append_records(tokio_stream::iter(records)).await.unwrap().into_inner();
    assert_eq!(response.rejected_count, 0, "{:?}", response.rejected.first());
}

async fn filled_server(records: usize) -> (TestServer, Client) {
    let server = TestServer::start_web().await;
    let mut admin = server.admin().await;
    admin.register(ACME, "Acme", "330206").await;
    fill(&mut admin, 0, records).await;
    server.publish();
    (server, admin)
}

fn options(server: &TestServer, data: &Path, token: &str) -> Options {
    Options {
        from: format!("http://{}", server.http.unwrap()),
        data: data.to_path_buf(),
        token: Some(token.to_owned()),
        public_key: Some(server.service.verifier_key()),
        report: false,
    }
}

#[tokio::test]
async fn tiles_answer_the_spec_paths_full_partial_beyond_the_tree_and_malformed() {
    let (server, _admin) = filled_server(299).await;
    let web = server.http.unwrap();
    let size = server.ledger.checkpoint().unwrap().tree_size;
    // The model entry, a registration, 299 records and the index entries
    // that end the checkpoints signed meanwhile: one partial level-0 tile.
    let indexed =
        (0..size).filter(|&s| tlog::index::is_index_payload(&server.ledger.entry(s).unwrap().payload));
    assert_eq!(size - indexed.count() as u64, 301, "the model entry, a registration and 299 records");
    assert!(size > 266 && size < 512, "{size}");
    let width = size - 256;
    let leaves: Vec<ledger::Hash> = (0..size).map(|s| server.ledger.entry(s).unwrap().entry_hash).collect();

    let (status, headers, note) = get(web, "/checkpoint", None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(String::from_utf8(note).unwrap(), server.ledger.checkpoint().unwrap().note);

    let (status, headers, full) = get(web, "/tile/0/000", None).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(header(&headers, "content-type"), Some("application/octet-stream"));
    assert_eq!(full, leaves[..256].concat());

    let (status, headers, partial) = get(web, &format!("/tile/0/001.p/{width}"), None).await;
    assert_eq!(status, 200);
    assert_ne!(header(&headers, "cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(partial, leaves[256..size as usize].concat());
    // A narrower partial tile, as an older checkpoint of size 266 needs.
    assert_eq!(get(web, "/tile/0/001.p/10", None).await.2, leaves[256..266].concat());
    let (status, _, level1) = get(web, "/tile/1/000.p/1", None).await;
    assert_eq!(status, 200);
    assert_eq!(level1, tlog::proof::root(&leaves[..256]));

    let wider = format!("/tile/0/001.p/{}", width + 1);
    for beyond in ["/tile/0/001", &wider, "/tile/1/000", "/tile/1/000.p/2", "/tile/2/000.p/1"] {
        assert_eq!(get(web, beyond, None).await.0, 404, "{beyond} is beyond a tree of {size}");
    }
    for malformed in [
        "/tile/0/1",
        "/tile/00/000",
        "/tile/64/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/x000/001",
        "/tile/entries",
    ] {
        let (status, _, body) = get(web, malformed, None).await;
        assert_eq!(status, 400, "{malformed}: {}", String::from_utf8_lossy(&body));
    }
    server.stop().await;
}

#[tokio::test]
async fn entry_bundles_need_a_bearer_token_of_a_role_that_reads_every_entry() {
    let (server, _admin) = filled_server(10).await;
    let web = server.http.unwrap();
    let size = server.ledger.checkpoint().unwrap().tree_size;
    let path = &format!("/tile/entries/000.p/{size}");
    let (status, headers, _) = get(web, path, None).await;
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    assert_eq!(get(web, path, Some("not-a-token")).await.0, 401);
    for (name, role) in [
        ("bank", Role::Lender),
        ("ningbo", Role::Regulator { region_prefix: "3302".into() }),
        ("acme", Role::Enterprise { uscc: ACME.into() }),
    ] {
        let token = server.token(name, role);
        let (status, _, body) = get(web, path, Some(&token)).await;
        assert_eq!(status, 403, "{name}: {}", String::from_utf8_lossy(&body));
    }
    for (name, role) in
        [("root", Role::Admin), ("province", Role::Regulator { region_prefix: String::new() })]
    {
        let token = server.token(name, role);
        let (status, headers, bundle) = get(web, path, Some(&token)).await;
        assert_eq!(status, 200, "{name}");
        assert_ne!(header(&headers, "cache-control"), Some("public, max-age=31536000, immutable"));
        let entries = tlog::tiles::decode_bundle(&bundle, size).unwrap();
        for (seq, entry) in entries.iter().enumerate() {
            let stored = server.ledger.entry(seq as u64).unwrap();
            assert_eq!((entry.recorded_at_ns, &entry.payload), (stored.recorded_at_ns, &stored.payload));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_mirror_follows_a_live_server_while_it_appends_and_resumes_after_a_stop() {
    let (server, mut admin) = filled_server(300).await;
    let token = server.token("mirror", Role::Admin);
    let data = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(options(&server, data.path(), &token)).unwrap();
    let first = mirror.catch_up().await.unwrap();
    let published = server.ledger.checkpoint().unwrap();
    assert_eq!((first.tree_size, first.root), (published.tree_size, published.root));

    // Rounds while another task appends and checkpoints are signed.
    let writer = {
        let mut writer = server.admin().await;
        tokio::spawn(async move {
            for round in 0..5 {
                fill(&mut writer, 1_000 + round * 100, 100).await;
            }
        })
    };
    let mut rounds = Vec::new();
    while !writer.is_finished() {
        server.publish();
        rounds.push(mirror.catch_up().await.unwrap());
    }
    writer.await.unwrap();
    let published = server.publish();
    let caught = mirror.catch_up().await.unwrap();
    assert_eq!((caught.tree_size, caught.root), (published.tree_size, published.root));
    // Every entry the server holds: the model entry, the registration, 800
    // records, and the index entries that end each signed checkpoint.
    let indexed = (0..published.tree_size)
        .filter(|&s| tlog::index::is_index_payload(&server.ledger.entry(s).unwrap().payload))
        .count() as u64;
    assert_eq!(published.tree_size - indexed, 802);
    assert!(rounds.windows(2).all(|w| w[0].tree_size <= w[1].tree_size));
    mirror.ledger().close().await.unwrap();
    drop(mirror);

    // A stop, more entries, a resume: only the new ones are fetched.
    fill(&mut admin, 5_000, 40).await;
    let published = server.publish();
    let mirror = Mirror::open(options(&server, data.path(), &token)).unwrap();
    let resumed = mirror.catch_up().await.unwrap();
    // The 40 records and the index entry that ends the new checkpoint.
    assert_eq!(
        (resumed.tree_size, resumed.root, resumed.appended),
        (published.tree_size, published.root, published.tree_size - caught.tree_size)
    );
    assert_eq!(resumed.appended, 41);
    // The copy is indexed by enterprise as the server's store is.
    assert_eq!(mirror.ledger().entries_for_subject(ACME.as_bytes()).unwrap().len(), 841);
    mirror.ledger().close().await.unwrap();
    drop(mirror);
    let report = ledger::verify(data.path(), &mut |_, _| {}).unwrap();
    assert_eq!((report.entries, report.root), (published.tree_size, published.root));
    server.stop().await;
}

#[tokio::test]
async fn a_forked_log_under_the_same_key_is_refused_naming_the_sizes() {
    let (honest, _admin) = filled_server(20).await;
    let token = honest.token("mirror", Role::Admin);
    let data = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(options(&honest, data.path(), &token)).unwrap();
    let held = honest.ledger.checkpoint().unwrap().tree_size;
    assert_eq!(mirror.catch_up().await.unwrap().tree_size, held);
    mirror.ledger().close().await.unwrap();
    drop(mirror);

    // Another history signed with the same key: a server started on a
    // directory holding a copy of the honest one's key.
    let fork_dir = tempfile::tempdir().unwrap();
    std::fs::copy(honest.data_dir().join("ledger.key"), fork_dir.path().join("ledger.key")).unwrap();
    let fork =
        TestServer::start_with_in(fork_dir, |c| c.http_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    assert_eq!(fork.service.verifier_key(), honest.service.verifier_key());
    let mut admin = fork.admin().await;
    admin.register(ACME, "Acme (forked)", "330206").await;
    fill(&mut admin, 0, 40).await;
    fork.publish();
    let fork_token = fork.token("mirror", Role::Admin);
    let mirror = Mirror::open(options(&fork, data.path(), &fork_token)).unwrap();
    let refused = format!("{:#}", mirror.catch_up().await.unwrap_err());
    // The model entries differ in their times already.
    assert!(refused.contains("inconsistent with this mirror at seq 0"), "{refused}");
    assert!(refused.contains(&format!("holding {held} entries")), "{refused}");
    // Nothing of the fork was taken in.
    assert_eq!(mirror.ledger().head().size, held);

    // Shrunk below what the mirror holds: the sizes are named too.
    let data_big = tempfile::tempdir().unwrap();
    let big = Mirror::open(options(&fork, data_big.path(), &fork_token)).unwrap();
    let forked = fork.ledger.checkpoint().unwrap().tree_size;
    assert_eq!(big.catch_up().await.unwrap().tree_size, forked);
    big.ledger().close().await.unwrap();
    drop(big);
    let big = Mirror::open(options(&honest, data_big.path(), &token)).unwrap();
    let refused = format!("{:#}", big.catch_up().await.unwrap_err());
    assert!(refused.contains(&format!("checkpoint of size {held}")), "{refused}");
    assert!(refused.contains(&format!("of {forked} held")), "{refused}");
    honest.stop().await;
    fork.stop().await;
}

/// A proxy in front of `upstream` that flips the last byte of every answer
/// to a path starting with `tampered` (the last byte is the body's).
async fn tampering_proxy(upstream: SocketAddr, tampered: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = client.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                let path = String::from_utf8_lossy(&request).split(' ').nth(1).unwrap_or_default().to_owned();
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                server.write_all(&request).await.unwrap();
                let mut answer = Vec::new();
                server.read_to_end(&mut answer).await.unwrap();
                if path.starts_with(tampered) && answer.starts_with(b"HTTP/1.1 200") {
                    *answer.last_mut().unwrap() ^= 1;
                }
                client.write_all(&answer).await.unwrap();
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_tampered_tile_or_bundle_is_refused_and_nothing_of_it_is_kept() {
    let (server, _admin) = filled_server(30).await;
    let token = server.token("mirror", Role::Admin);
    let size = server.ledger.checkpoint().unwrap().tree_size;
    for tampered in ["/tile/0/", "/tile/entries/"] {
        let proxy = tampering_proxy(server.http.unwrap(), tampered).await;
        let data = tempfile::tempdir().unwrap();
        let options = Options { from: format!("http://{proxy}"), ..options(&server, data.path(), &token) };
        let mirror = Mirror::open(options).unwrap();
        let refused = format!("{:#}", mirror.catch_up().await.unwrap_err());
        assert!(
            refused.contains(&format!(
                "entry {} of the log's tile/entries/000.p/{size} does not hash",
                size - 1
            )),
            "{tampered}: {refused}"
        );
        assert_eq!(mirror.ledger().head().size, 0, "{tampered}");
        mirror.ledger().close().await.unwrap();
    }
    server.stop().await;
}
