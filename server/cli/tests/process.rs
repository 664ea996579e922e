//! Tests that need the `ecocode` binary as a separate process: the CLI's
//! contract (tokens on the last line, exit codes) and crash safety under
//! SIGKILL. Everything else is tested in-process in `tests/it`.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use ecocode_proto::v1 as pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ECOCODE: &str = env!("CARGO_BIN_EXE_ecocode");
const ACME: &str = "91330421739237858X";

/// Runs a CLI command to completion.
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(ECOCODE).args(args).output().expect("ecocode runs")
}

fn add_principal(dir: &Path, name: &str, role: &str) -> String {
    let out = cli(&["principal", "add", "--data", dir.to_str().unwrap(), "--name", name, "--role", role]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.lines().last().expect("token on the last line").to_owned()
}

/// Starts `ecocode serve` on a free port and returns it once it listens.
async fn spawn_server(dir: &Path) -> (Child, String) {
    spawn_server_with(dir, &[]).await
}

/// [`spawn_server`] with more arguments (e.g. `--store`).
async fn spawn_server_with(dir: &Path, more: &[&str]) -> (Child, String) {
    let (child, grpc, _) = spawn_server_full(dir, more).await;
    (child, grpc)
}

/// [`spawn_server_with`], also answering the web page's `HOST:PORT`.
async fn spawn_server_full(dir: &Path, more: &[&str]) -> (Child, String, String) {
    let mut child = Command::new(ECOCODE)
        .args([
            "serve",
            "--data",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(more)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("server spawns");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut web = String::new();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("server printed its address before exiting");
        if let Some(rest) = line.strip_prefix("web page on http://") {
            web = rest.split('/').next().unwrap().to_owned();
        }
        if let Some(rest) = line.strip_prefix("ecocode listening on ") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{addr}"), web)
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Yesterday, fixed once per test run so a re-sent record is identical.
fn yesterday() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        now.as_secs() as i64 - 86_400
    })
}

fn acme() -> pb::Enterprise {
    pb::Enterprise {
        uscc: ACME.into(),
        name: "Acme".into(),
        region_code: "330206".into(),
        industry_code: String::new(),
    }
}

/// SIGTERM: the graceful stop, which signs a final checkpoint; exit 0.
async fn terminate(mut server: Child) {
    let pid = server.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.wait().await.unwrap();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
}

/// The id of the record an entry holds, from the details that open its
/// commitment (checked: `evidence::stored::open`).
fn source_record_id(entry: &pb::Entry) -> String {
    use prost::Message as _;
    let event = pb::LedgerEvent::decode(entry.payload.as_slice()).unwrap();
    let Some(pb::ledger_event::Event::CommittedRecord(committed)) = event.event else {
        panic!("seq {} is not a record", entry.seq)
    };
    evidence::stored::open(entry.seq, &committed, &entry.details).unwrap().source_record_id
}

fn record(id: &str) -> pb::Record {
    pb::Record {
        source: "crash-test".into(),
        source_record_id: id.into(),
        uscc: ACME.into(),
        kind: "exceedance.daily".into(),
        occurred_at: Some(prost_types::Timestamp { seconds: yesterday(), nanos: 0 }),
        ..Default::default()
    }
}

#[test]
fn principal_add_prints_the_token_alone_on_the_last_line_and_stores_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_principal(dir.path(), "bank-a", "lender");
    assert!(token.starts_with("eco_") && !token.contains(' '), "{token:?}");
    let stored = std::fs::read_to_string(dir.path().join("principals/bank-a.toml")).unwrap();
    assert!(!stored.contains(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("principals/bank-a.toml")), 0o600);
        assert_eq!(mode(&dir.path().join("principals")), 0o700);
    }

    let out = cli(&[
        "principal",
        "add",
        "--data",
        dir.path().to_str().unwrap(),
        "--name",
        "x",
        "--role",
        "enterprise",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --scope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_principal(dir.path(), "ops", "admin");
    let (mut server, url) = spawn_server(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut registry = pb::registry_client::RegistryClient::new(channel.clone());
    let enterprise = acme();
    registry.register_enterprise(authed(&token, enterprise)).await.unwrap();

    // Eight writers append until the server dies; every acknowledged
    // (source_record_id, seq) is remembered.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (enough_tx, mut enough_rx) = tokio::sync::watch::channel(0usize);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (channel, token, acked, enough_tx) =
            (channel.clone(), token.clone(), acked.clone(), enough_tx.clone());
        writers.push(tokio::spawn(async move {
            let mut ingest = pb::ingest_client::IngestClient::new(channel);
            for i in 0.. {
                let id = format!("w{w}-{i}");
                match ingest.append_record(authed(&token, record(&id))).await {
                    Ok(receipt) => {
                        let mut acked = acked.lock().unwrap();
                        acked.push((id, receipt.into_inner().seq));
                        enough_tx.send_replace(acked.len());
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    enough_rx.wait_for(|n| *n >= 300).await.unwrap();
    server.start_kill().expect("SIGKILL"); // kill(2) with SIGKILL: no shutdown path runs
    server.wait().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    // Offline verification passes on what the killed server left.
    let out = cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok, "), "{stdout}");

    // After a restart every acknowledged record is there, at its seq.
    let (_server, url) = spawn_server(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut ledger = pb::ledger_client::LedgerClient::new(channel.clone());
    let mut ingest = pb::ingest_client::IngestClient::new(channel);
    for (id, seq) in &acked {
        let entry =
            ledger.get_entry(authed(&token, pb::GetEntryRequest { seq: *seq })).await.unwrap().into_inner();
        assert_eq!(&source_record_id(&entry), id, "seq {seq}");
    }
    // New appends continue after the last stored entry.
    let checkpoint =
        ledger.get_checkpoint(authed(&token, pb::GetCheckpointRequest {})).await.unwrap().into_inner();
    let receipt = ingest.append_record(authed(&token, record("after-restart"))).await.unwrap().into_inner();
    assert_eq!(receipt.seq, checkpoint.tree_size);
    let (id, seq) = &acked[0];
    let again = ingest.append_record(authed(&token, record(id))).await.unwrap().into_inner();
    assert!(again.duplicate, "the idempotency index survived the kill");
    assert_eq!(again.seq, *seq);
}

/// Two nodes on one PostgreSQL store, writers on both; one node is killed
/// with SIGKILL mid-stream. The other goes on, every acknowledged record
/// (through either node) is at its seq, and the whole chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_one_postgres_node_loses_nothing_and_the_other_goes_on() {
    let url = pgtest::database();
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    // The shared key: the one a first node creates in its directory.
    let key = one.join("ledger.key");
    let out = cli(&[
        "principal",
        "add",
        "--store",
        &url,
        "--data",
        one.to_str().unwrap(),
        "--name",
        "ops",
        "--role",
        "admin",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_owned();
    let (mut first, first_url) = spawn_server_with(&one, &["--store", &url]).await;
    let (_second, second_url) =
        spawn_server_with(&two, &["--store", &url, "--key-file", key.to_str().unwrap()]).await;
    let channels = [
        tonic::transport::Endpoint::from_shared(first_url).unwrap().connect().await.unwrap(),
        tonic::transport::Endpoint::from_shared(second_url).unwrap().connect().await.unwrap(),
    ];
    let enterprise = acme();
    pb::registry_client::RegistryClient::new(channels[0].clone())
        .register_enterprise(authed(&token, enterprise))
        .await
        .unwrap();

    // Four writers per node; those on the first stop when it dies, those
    // on the second stop once they saw it dead and appended 50 more.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (enough_tx, mut enough_rx) = tokio::sync::watch::channel(0usize);
    let (dead_tx, dead_rx) = tokio::sync::watch::channel(false);
    let mut writers = Vec::new();
    for w in 0..8 {
        let channel = channels[w % 2].clone();
        let (token, acked, enough_tx, dead_rx) =
            (token.clone(), acked.clone(), enough_tx.clone(), dead_rx.clone());
        writers.push(tokio::spawn(async move {
            let mut ingest = pb::ingest_client::IngestClient::new(channel);
            let mut after_death = 0;
            for i in 0.. {
                let id = format!("pg-w{w}-{i}");
                match ingest.append_record(authed(&token, record(&id))).await {
                    Ok(receipt) => {
                        let mut acked = acked.lock().unwrap();
                        acked.push((id, receipt.into_inner().seq));
                        enough_tx.send_replace(acked.len());
                    }
                    Err(status) => {
                        assert_eq!(w % 2, 0, "the surviving node refused an append: {status:?}");
                        return 0;
                    }
                }
                if *dead_rx.borrow() {
                    after_death += 1;
                    if after_death == 50 {
                        return after_death;
                    }
                }
            }
            unreachable!()
        }));
    }
    enough_rx.wait_for(|n| *n >= 300).await.unwrap();
    first.start_kill().expect("SIGKILL");
    first.wait().await.unwrap();
    dead_tx.send_replace(true);
    let mut survivors = 0;
    for w in writers {
        survivors += w.await.unwrap();
    }
    assert_eq!(survivors, 4 * 50, "the second node's writers went on after the kill");
    let acked = acked.lock().unwrap().clone();

    // Every acknowledged record, through either node, is at its seq.
    let mut ledger = pb::ledger_client::LedgerClient::new(channels[1].clone());
    for (id, seq) in &acked {
        let entry =
            ledger.get_entry(authed(&token, pb::GetEntryRequest { seq: *seq })).await.unwrap().into_inner();
        assert_eq!(&source_record_id(&entry), id, "seq {seq}");
    }
    // And the whole chain verifies, with the second node still serving.
    let out = cli(&["verify", "--store", &url, "--key-file", key.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok, ") && stdout.contains("signature checked"), "{stdout}");
}

#[tokio::test]
async fn verify_and_serve_refuse_a_rolled_back_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_principal(dir.path(), "ops", "admin");
    let (server, url) = spawn_server(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let enterprise = acme();
    pb::registry_client::RegistryClient::new(channel)
        .register_enterprise(authed(&token, enterprise))
        .await
        .unwrap();
    terminate(server).await;

    let out = cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let path = dir.path().join("checkpoint");
    let note = std::fs::read_to_string(&path).unwrap();
    // The model entry (published at start), the registration and the
    // index entry ending the final checkpoint.
    std::fs::write(&path, note.replacen("\n3\n", "\n4\n", 1)).unwrap();
    let out = cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    assert!(!out.status.success(), "a store shorter than its checkpoint must fail verification");
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILED"));
    let out = cli(&[
        "serve",
        "--data",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success(), "the server refuses to start");
}

/// A sled ledger moved to PostgreSQL with `ecocode migrate`: the command
/// proves the copy, a node serves it with the same head, `verify --store`
/// passes, a second migration is refused, and a malformed `--store` is a
/// usage error naming the flag.
#[tokio::test]
async fn migrate_moves_a_sled_ledger_to_postgres_with_the_same_head() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_principal(dir.path(), "ops", "admin");
    let (server, url) = spawn_server(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let enterprise = acme();
    pb::registry_client::RegistryClient::new(channel.clone())
        .register_enterprise(authed(&token, enterprise))
        .await
        .unwrap();
    let mut ingest = pb::ingest_client::IngestClient::new(channel.clone());
    for i in 0..20 {
        ingest.append_record(authed(&token, record(&format!("m-{i}")))).await.unwrap();
    }
    terminate(server).await;
    let before = cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    let before = String::from_utf8(before.stdout).unwrap();

    let db = pgtest::database();
    let out = cli(&["migrate", "--from", dir.path().to_str().unwrap(), "--to", &db]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // 21 entries and the index entry ending the final checkpoint.
    let entries = before.strip_prefix("ok, ").and_then(|b| b.split(' ').next()).unwrap();
    assert!(entries.parse::<u64>().unwrap() > 21, "{before}");
    assert!(
        stdout.starts_with(&format!("ok, {entries} entries copied")) && stdout.contains("identical"),
        "{stdout}"
    );
    // The same root as the source's own verification printed.
    let root = before.split("root ").nth(1).unwrap().trim();
    assert!(stdout.contains(root), "{stdout} should name root {root}");

    let key = dir.path().join("ledger.key");
    let out = cli(&["verify", "--store", &db, "--key-file", key.to_str().unwrap()]);
    let verified = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && verified.starts_with(&format!("ok, {entries} entries")), "{verified}");

    // Principals stay where they were (files): one is added to the store,
    // before the node starts, which loads them at start.
    let out = cli(&["principal", "add", "--store", &db, "--name", "ops2", "--role", "admin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_owned();
    let node = tempfile::tempdir().unwrap();
    let (_node, url) =
        spawn_server_with(node.path(), &["--store", &db, "--key-file", key.to_str().unwrap()]).await;
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    let mut ledger = pb::ledger_client::LedgerClient::new(channel);
    let checkpoint =
        ledger.get_checkpoint(authed(&token, pb::GetCheckpointRequest {})).await.unwrap().into_inner();
    assert_eq!(checkpoint.tree_size.to_string(), entries);

    let again = cli(&["migrate", "--from", dir.path().to_str().unwrap(), "--to", &db]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty database"));
    let bad = cli(&["verify", "--store", "mysql://x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--store"));
}

/// `ecocode serve` on `listen` logging at `level`, with its stderr as lines.
fn serve_logging(
    dir: &Path,
    listen: &str,
    level: &str,
) -> (Child, tokio::io::Lines<BufReader<tokio::process::ChildStderr>>) {
    let mut child = Command::new(ECOCODE)
        .args(["serve", "--data", dir.to_str().unwrap(), "--listen", listen, "--http-listen", "127.0.0.1:0"])
        .env("RUST_LOG", level)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("server spawns");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, lines)
}

/// Plaintext on an address others can reach is allowed, but said loudly.
#[tokio::test]
async fn serve_warns_when_plaintext_listens_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut lines) = serve_logging(dir.path(), "0.0.0.0:0", "info");
    let mut seen = Vec::new();
    // The warning comes before the line that says gRPC is served.
    loop {
        let line = lines.next_line().await.unwrap().expect("server logs until it serves");
        let serving = line.contains("serving gRPC");
        seen.push(line);
        if serving {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("plaintext on a non-loopback address")), "{seen:#?}");
    child.kill().await.unwrap();
}

/// Logs, even at the most verbose level, never show a token or what a
/// record says: only ids and counts.
#[tokio::test]
async fn logs_carry_no_tokens_or_record_contents_even_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let token = add_principal(dir.path(), "ops", "admin");
    let (mut child, mut lines) = serve_logging(dir.path(), "127.0.0.1:0", "trace");
    let mut log = Vec::new();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("server printed its address");
        let addr =
            line.strip_prefix("ecocode listening on ").map(|rest| rest.split(' ').next().unwrap().to_owned());
        log.push(line);
        if let Some(addr) = addr {
            break addr;
        }
    };
    let collect = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let enterprise = pb::Enterprise {
        uscc: ACME.into(),
        name: "Confidential Dyeing Works".into(),
        region_code: "330206".into(),
        industry_code: String::new(),
    };
    let mut registry = pb::registry_client::RegistryClient::new(channel.clone());
    registry.register_enterprise(authed(&token, enterprise)).await.unwrap();
    let mut ingest = pb::ingest_client::IngestClient::new(channel);
    let secret = pb::Record { description: "inspector notes: confidential".into(), ..record("L-1") };
    ingest.append_record(authed(&token, secret)).await.unwrap();
    // A wrong token is refused without being written down either.
    let wrong = "eco_not-a-real-token-but-still-a-secret";
    assert!(ingest.append_record(authed(wrong, record("L-2"))).await.is_err());
    drop(ingest);
    drop(registry);
    child.start_kill().unwrap();
    let log = collect.await.unwrap().join("\n");
    assert!(log.contains("serving gRPC"), "the log was captured");
    for secret in [token.as_str(), wrong, "Confidential Dyeing", "inspector notes"] {
        assert!(!log.contains(secret), "the log shows {secret:?}");
    }
}

/// `ecocode serve` under `ulimit -n nofile` (soft and hard), on free ports.
fn serve_with_nofile(dir: &Path, nofile: u32, more: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(ECOCODE)
        .args(["serve", "--data", dir.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(more)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

// Failure: nothing checked the listeners' caps against RLIMIT_NOFILE; under
// a limit of 256, half-sent web bodies took every descriptor and gRPC calls
// and an HJ 212 device starved.
#[tokio::test]
async fn serve_refuses_to_start_when_nofile_is_too_low() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve_with_nofile(dir.path(), 300, &[]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "RLIMIT_NOFILE",
        "--max-connections 1024",
        "--http-max-connections 1024",
        "for the stores and files",
        "ulimit -n 2304",
        "LimitNOFILE=2304",
    ] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
    assert!(dir.path().read_dir().unwrap().next().is_none(), "nothing was opened before the check");

    // Caps that fit start, and hold: 400 connections to the web port (more
    // than the whole limit) leave gRPC answering.
    let token = add_principal(dir.path(), "ops", "admin");
    let caps = ["--max-connections", "16", "--http-max-connections", "16"];
    let mut child = serve_with_nofile(dir.path(), 300, &caps).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut web, mut grpc) = (None, None);
    while grpc.is_none() {
        let line = lines.next_line().await.unwrap().expect("server printed its addresses before exiting");
        if let Some(rest) = line.strip_prefix("web page on http://") {
            web = Some(rest.split('/').next().unwrap().to_owned());
        }
        if let Some(rest) = line.strip_prefix("ecocode listening on ") {
            grpc = Some(format!("http://{}", rest.split(' ').next().unwrap()));
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let web = web.expect("the web page is on");
    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(tokio::net::TcpStream::connect(&web).await.expect("the web port keeps accepting"));
    }
    let channel = tonic::transport::Endpoint::from_shared(grpc.unwrap()).unwrap().connect().await.unwrap();
    let mut ledger = pb::ledger_client::LedgerClient::new(channel);
    ledger.get_checkpoint(authed(&token, pb::GetCheckpointRequest {})).await.expect("gRPC still answers");
    drop(flood);
    terminate(child).await;
}

/// One HTTP/1.1 exchange with the web listener (`Connection: close`):
/// the status, the `Set-Cookie` values (`name=value`) and the body.
async fn http(web: &str, method: &str, path: &str, cookie: &str, form: &str) -> (u16, Vec<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(web).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(form);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let cookies = head
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .collect();
    (status, cookies, body.to_owned())
}

/// The value of the form field `name` in an HTML page.
fn input(body: &str, name: &str) -> String {
    let at = body.find(&format!("name=\"{name}\"")).expect("the form has the field");
    let value = &body[at..];
    let value = &value[value.find("value=\"").unwrap() + 7..];
    value[..value.find('"').unwrap()].to_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// What broke: a lender's purpose typed into the web portfolio kept its
/// control characters, and `ecocode inquiries` printed the ESC sequences
/// and a forged extra line on the enterprise's terminal.
#[tokio::test]
async fn control_characters_in_a_purpose_never_reach_the_enterprises_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let admin = add_principal(dir.path(), "ops", "admin");
    let bank = add_principal(dir.path(), "bank-a", "lender");
    let out = cli(&[
        "principal",
        "add",
        "--data",
        dir.path().to_str().unwrap(),
        "--name",
        "acme",
        "--role",
        "enterprise",
        "--scope",
        ACME,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acme_token = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_owned();
    let (server, url, web) = spawn_server_full(dir.path(), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let mut registry = pb::registry_client::RegistryClient::new(channel);
    registry.register_enterprise(authed(&admin, acme())).await.unwrap();
    // The bank reads under the enterprise's grant, as a real bank does.
    let out = cli(&[
        "grant",
        "add",
        "--server",
        &url,
        "--token",
        &acme_token,
        "--uscc",
        ACME,
        "--lender",
        "bank-a",
        "--purpose",
        "loan_application",
        "--expires-at",
        "2099-01-01T00:00:00Z",
    ]);
    assert!(!out.status.success(), "at most five years");
    let expires =
        scoring::Timestamp::from_system_time(std::time::SystemTime::now()).plus_days(365).to_string();
    let out = cli(&[
        "grant",
        "add",
        "--server",
        &url,
        "--token",
        &acme_token,
        "--uscc",
        ACME,
        "--lender",
        "bank-a",
        "--purpose",
        "loan_application",
        "--expires-at",
        &expires,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Pages show the latest published checkpoint's tree: `proof inclusion`
    // returns once the timer has signed one covering the registration.
    let proof = dir.path().join("registration-proof.json");
    let out = cli(&[
        "proof",
        "inclusion",
        "--server",
        &url,
        "--token",
        &admin,
        "--seq",
        "0",
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The lender signs in to the page and asks with a hostile purpose: a
    // screen clear, a colour, a carriage return and a forged line, a
    // right-to-left override.
    let hostile = "LA-7\u{1b}[2J\u{1b}[31m\r\n2026-01-01T00:00:00Z 91330421739237858X regulator admin GetScore audit\u{202e}";
    let (status, cookies, body) = http(&web, "GET", "/signin", "", "").await;
    assert_eq!(status, 200);
    let csrf = input(&body, "csrf");
    let (status, cookies, _) =
        http(&web, "POST", "/signin", &cookies.join("; "), &format!("csrf={csrf}&token={bank}")).await;
    assert_eq!(status, 303, "signed in");
    let session = cookies.iter().find(|c| c.starts_with("ecocode_session=")).unwrap().clone();
    let (_, _, form) = http(&web, "GET", "/portfolio", &session, "").await;
    let csrf = input(&form, "csrf");
    let fields = format!("csrf={csrf}&usccs={ACME}&purpose={}", percent_encode(hostile));
    let (status, _, _) = http(&web, "POST", "/portfolio", &session, &fields).await;
    assert_eq!(status, 200, "the portfolio is answered");
    // The signed-in lender's page read, with the same purpose.
    let page = format!("/e/{ACME}?purpose={}", percent_encode(hostile));
    assert_eq!(http(&web, "GET", &page, &session, "").await.0, 200);

    let out = cli(&["inquiries", "--server", &url, "--token", &acme_token]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let controls: Vec<char> = printed.chars().filter(|&c| c != '\n' && scoring::is_control(c)).collect();
    assert!(controls.is_empty(), "control characters reached the terminal: {controls:?} in {printed:?}");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "a header and the two inquiries, no forged line: {printed:?}");
    assert!(lines[1..].iter().all(|l| l.contains("bank-a") && l.contains("LA-7")), "{printed:?}");
    // Each names the grant it was made under (the grant is entry 2, after
    // the model entry and the registration).
    assert!(lines[1..].iter().all(|l| l.contains(" 2 ")), "{printed:?}");
    assert!(
        lines.iter().any(|l| l.contains("BatchGetScores")) && lines.iter().any(|l| l.contains("GetScore "))
    );
    terminate(server).await;
}

// `proof score` writes a bundle `proof verify` recomputes offline; a bundle
// with an entry left out exits non-zero naming what is wrong.
#[tokio::test]
async fn proof_score_writes_a_bundle_that_verifies_and_a_trimmed_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let admin = add_principal(dir.path(), "ops", "admin");
    let (server, url) = spawn_server(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
    pb::registry_client::RegistryClient::new(channel)
        .register_enterprise(authed(&admin, acme()))
        .await
        .unwrap();
    // Stopping signs a final checkpoint (ending with an index entry) that
    // holds the registration: the restarted server publishes it.
    terminate(server).await;
    let (server, url) = spawn_server(dir.path()).await;
    let proof = dir.path().join("score.proof");
    let out = cli(&[
        "proof",
        "score",
        "--server",
        &url,
        "--token",
        &admin,
        "--uscc",
        ACME,
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    terminate(server).await;
    let key = cli(&["key", "show", "--data", dir.path().to_str().unwrap()]);
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let out = cli(&["proof", "verify", proof.to_str().unwrap(), "--public-key", &key]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("complete: the score counts all 1 entries about this enterprise"), "{stdout}");

    let mut bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    bundle["entries"].as_array_mut().unwrap().clear();
    std::fs::write(&proof, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let out = cli(&["proof", "verify", proof.to_str().unwrap(), "--public-key", &key]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does NOT verify") && stderr.contains("none registers"), "{stderr}");
}

#[tokio::test]
async fn mirror_once_prints_the_verified_tree_and_verify_checks_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let admin = add_principal(dir.path(), "ops", "admin");
    let (server, url, web) = spawn_server_full(dir.path(), &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    pb::registry_client::RegistryClient::new(channel)
        .register_enterprise(authed(&admin, acme()))
        .await
        .unwrap();
    // Returns once a published checkpoint covers the registration.
    let proof = dir.path().join("proof.json");
    let out = cli(&[
        "proof",
        "inclusion",
        "--server",
        &url,
        "--token",
        &admin,
        "--seq",
        "1",
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = cli(&["key", "show", "--data", dir.path().to_str().unwrap()]);
    let key = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    let copy = tempfile::tempdir().unwrap();
    let copy_dir = copy.path().join("mirror");
    let from = format!("http://{web}");
    let mirror = |public_key: &str| {
        cli(&[
            "mirror",
            "--from",
            &from,
            "--data",
            copy_dir.to_str().unwrap(),
            "--token",
            &admin,
            "--public-key",
            public_key,
            "--once",
        ])
    };
    let out = mirror(&key);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.starts_with("verified tree size 3 root "), "{printed}");
    terminate(server).await;

    let out = cli(&["verify", "--data", copy_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("ok, 3 entries"), "{printed}");
    assert!(printed.contains("the log's signed checkpoint of size 3 names this tree"), "{printed}");

    // Another key than the one pinned on the first run is refused.
    let other_key = tlog::note::encode_verifier_key("ecocode.local", &[7; 32]);
    let out = mirror(&other_key);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("differs from the key this mirror pinned"));
}

/// Copies a fixture directory as an operator's data directory would be:
/// directories 0700, files 0600.
fn copy_private(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_private(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

/// `ecocode verify` passes: the entries and root it names.
fn verified(data: &str) -> (u64, String) {
    let out = cli(&["verify", "--data", data]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let first = stdout.lines().next().unwrap_or_default();
    let entries = first.strip_prefix("ok, ").and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok());
    let root = first.rsplit(" root ").next().map(str::to_owned);
    (entries.expect("ok, N entries"), root.expect("root"))
}

/// Upgrades (issue 20): a data directory written by the release before
/// committed records (`fixtures/upgrade`, made by its `make.sh` with that
/// release's binary: records as `LedgerEvent.record` entries, sled entry
/// records of version 1, the inquiry log's older layout) opens with this
/// one. Verification passes with the same tree size and root, every score
/// is what that release answered, the bank's inquiry is still listed, a new
/// record is written as a committed record beside the old ones, and a
/// restart verifies both.
#[tokio::test]
async fn a_data_directory_of_the_previous_release_opens_with_the_same_root_and_scores() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/upgrade");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("expected.json")).unwrap()).unwrap();
    let (size, root) = (expected["tree_size"].as_u64().unwrap(), expected["root"].as_str().unwrap());
    let as_of = expected["as_of"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_private(&fixture.join("data"), dir.path());
    let data = dir.path().to_str().unwrap();
    assert_eq!(verified(data), (size, root.to_owned()), "the same tree as the release that wrote it");

    let token = add_principal(dir.path(), "ops", "admin");
    let (server, url) = spawn_server_with(dir.path(), &["--checkpoint-interval-ms", "3600000"]).await;
    // The release's sled store was moved into the file engine, verified,
    // and kept aside for the operator.
    assert!(dir.path().join("log/entries").is_file());
    assert!(dir.path().join("ledger.before-log").is_dir() && !dir.path().join("ledger").exists());
    let scores = |url: String, token: String| {
        let expected = expected["scores"].as_object().unwrap().clone();
        let as_of = as_of.to_owned();
        move || {
            for (uscc, old) in &expected {
                let out =
                    cli(&["score", uscc, "--as-of", &as_of, "--json", "--server", &url, "--token", &token]);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let now: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                for field in [
                    "name",
                    "model_version",
                    "points",
                    "grade",
                    "code",
                    "mee_level",
                    "veto",
                    "disputed",
                    "reasons",
                ] {
                    assert_eq!(now[field], old[field], "{uscc}: {field}");
                }
            }
        }
    };
    scores(url.clone(), token.clone())();
    let out = cli(&["inquiries", "--uscc", "91330206739237858W", "--server", &url, "--token", &token]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("bank-a") && listed.contains("LA-2026-001"), "{listed}");

    // A new record: a committed record, beside the old `record` entries.
    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let new = pb::Record {
        uscc: "91330206739237858W".into(),
        source_record_id: "after-upgrade".into(),
        ..record("after-upgrade")
    };
    let receipt = pb::ingest_client::IngestClient::new(channel.clone())
        .append_record(authed(&token, new))
        .await
        .unwrap()
        .into_inner();
    let mut ledger = pb::ledger_client::LedgerClient::new(channel);
    let entry = ledger.get_entry(authed(&token, pb::GetEntryRequest { seq: receipt.seq })).await.unwrap();
    assert_eq!(source_record_id(&entry.into_inner()), "after-upgrade");
    let old = ledger.get_entry(authed(&token, pb::GetEntryRequest { seq: 4 })).await.unwrap().into_inner();
    let event = <pb::LedgerEvent as prost::Message>::decode(old.payload.as_slice()).unwrap();
    assert!(matches!(event.event, Some(pb::ledger_event::Event::Record(_))) && old.details.is_empty());
    terminate(server).await;

    // The new release's own final checkpoint ends with its index entry.
    let (entries, _) = verified(data);
    assert!(entries > receipt.seq + 1, "{entries} entries after seq {}", receipt.seq);
    let (server, url) = spawn_server(dir.path()).await;
    scores(url, token)();
    terminate(server).await;
}
