//! `ecocode-load`: starts the real service (the same `App` as `ecocode
//! serve`) on a temporary sled store, fills it deterministically from a
//! seed, then drives it over real gRPC connections and prints throughput
//! and latency percentiles of each call next to `grpc.health.v1.Health/Check`
//! measured against the same server in the same run, as a ratio.
//!
//! ```sh
//! cargo run --release -p load -- --enterprises 10000 --records 300000
//! ```
//!
//! Then one `BatchGetScores` of (up to) 10 000 USCCs next to encoding the
//! same response and as many hash lookups, every enterprise listed in pages
//! of 1 000, a restart (verification to SERVING) next to BLAKE3 over the
//! same number of entries, the data directory's size per entry and the
//! process's peak RSS.
//!
//! The server runs on its own runtime (`--server-threads`), the load on
//! another (`--client-threads`); both share the machine, as a bank's client
//! and the service would in the figures of BENCHMARKS.md.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ecocode_proto::v1 as pb;
use scoring::Timestamp;
use server::principals::{PrincipalStore, Role};
use server::{App, Config};
use tests::Rng;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(name = "ecocode-load", about = "Score reads against Health/Check on one server, in one run")]
struct Args {
    /// Registered enterprises.
    #[arg(long, default_value_t = 1_000)]
    enterprises: usize,
    /// Records, spread over the enterprises and the last 300 days.
    #[arg(long, default_value_t = 30_000)]
    records: usize,
    /// Seed of the data set (the same seed, the same ledger).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Client connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Concurrent calls per connection.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// How long each call is driven.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    server_threads: usize,
    /// Worker threads of the load's runtime.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Who reads scores: `lender` (each read is also written to the inquiry
    /// log) or `admin` (no inquiry: the cost of the score alone).
    #[arg(long, default_value = "lender", value_parser = ["lender", "admin"])]
    reader: String,
    /// Instead of the read load: for an enterprise with each of these
    /// numbers of entries (e.g. `10,1000,100000`), the size of its score
    /// proof, the time to fetch it and to verify it offline (recomputing the
    /// score), next to BLAKE3 over as many entries in the same run.
    #[arg(long, value_delimiter = ',')]
    score_proof_entries: Vec<usize>,
}

/// One measured call: completed calls, errors and sorted latencies.
struct Measured {
    name: &'static str,
    calls: u64,
    errors: u64,
    per_second: f64,
    latencies_us: Vec<u32>,
}

impl Measured {
    fn percentile(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i]
    }
}

/// A valid USCC (GB 32100-2015 check character) for enterprise `i`, issued
/// in Beilun (330206).
fn uscc(i: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let body = format!("91330206{i:09}");
    let mut weight = 1u32;
    let mut sum = 0u32;
    for c in body.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).map_or(0, |p| p as u32);
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    format!("{body}{}", ALPHABET[((31 - sum % 31) % 31) as usize] as char)
}

fn bearer(token: &str) -> anyhow::Result<MetadataValue<tonic::metadata::Ascii>> {
    format!("Bearer {token}").parse().context("token is not metadata")
}

/// The allocator of the `ecocode` binary, so the service runs here as it
/// runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads)
        .enable_all()
        .build()?;
    let config = || -> anyhow::Result<Config> {
        let mut config = Config::new(dir.path());
        config.listen = "127.0.0.1:0".parse()?;
        Ok(config)
    };
    let app = server_runtime.block_on(App::build(config()?, &mut |_, _| {}))?;
    let addr = app.grpc_addr();
    let service = app.service().clone();
    let app_ledger = app.ledger().clone();
    let store = PrincipalStore::open(dir.path())?;
    let admin = store.add("load-admin", Role::Admin)?;
    let lender = store.add("load-bank", Role::Lender)?;
    app.principals().reload_if_changed()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = server_runtime.spawn(app.run(async {
        let _ = stopped.await;
    }));

    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads)
        .enable_all()
        .build()?;
    if !args.score_proof_entries.is_empty() {
        let ledger = app_ledger.clone();
        client_runtime.block_on(score_proofs(addr, &admin, &lender, &args, ledger))?;
        let _ = stop.send(());
        server_runtime.block_on(served)??;
        return Ok(());
    }
    let (results, extras) = client_runtime.block_on(async {
        let ingest_rate = seed(connect(addr).await?, &admin, &args).await?;
        // Reads are measured on a current view of scores: the refresher
        // brings it up to date in the background after the appends; here
        // the same work is done at once instead of waited for.
        let warming = Instant::now();
        while service.stale_scores() > 0 {
            let service = service.clone();
            tokio::task::spawn_blocking(move || service.refresh_view(4096)).await??;
        }
        eprintln!(
            "view of current scores refreshed {:.1} s after the last append",
            warming.elapsed().as_secs_f64()
        );
        let mut channels = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            channels.push(connect(addr).await?);
        }
        let token = bearer(if args.reader == "admin" { &admin } else { &lender })?;
        let mut results = Vec::new();
        results.push(
            drive("Health/Check", &channels, &args, |ch, _| async move {
                let mut client = tonic_health::pb::health_client::HealthClient::new(ch);
                client
                    .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
                    .await
                    .map(|_| ())
            })
            .await,
        );
        results.push(
            drive("GetScore, no records", &channels, &args, {
                let token = token.clone();
                let empty = uscc(args.enterprises);
                move |ch, _| {
                    let (token, empty) = (token.clone(), empty.clone());
                    async move {
                        let mut client = pb::scores_client::ScoresClient::new(ch);
                        let mut request =
                            tonic::Request::new(pb::GetScoreRequest { uscc: empty, ..Default::default() });
                        request.metadata_mut().insert("authorization", token);
                        client.get_score(request).await.map(|_| ())
                    }
                }
            })
            .await,
        );
        let with_records = args.enterprises.max(1);
        results.push(
            drive("Scores/GetScore", &channels, &args, {
                let token = token.clone();
                move |ch, n| {
                    let token = token.clone();
                    async move {
                        let mut client = pb::scores_client::ScoresClient::new(ch);
                        let mut request = tonic::Request::new(pb::GetScoreRequest {
                            uscc: uscc(n as usize % with_records),
                            ..Default::default()
                        });
                        request.metadata_mut().insert("authorization", token);
                        client.get_score(request).await.map(|_| ())
                    }
                }
            })
            .await,
        );
        results.push(
            drive("Ledger/GetCheckpoint", &channels, &args, {
                let token = token.clone();
                move |ch, _| {
                    let token = token.clone();
                    async move {
                        let mut client = pb::ledger_client::LedgerClient::new(ch);
                        let mut request = tonic::Request::new(pb::GetCheckpointRequest {});
                        request.metadata_mut().insert("authorization", token);
                        client.get_checkpoint(request).await.map(|_| ())
                    }
                }
            })
            .await,
        );
        let mut extras = vec![format!(
            "ingest: {ingest_rate:.0} records/s (client streams of 50 000 records, each acknowledged durably)"
        )];
        // A portfolio answer is megabytes: a client expecting one opens
        // HTTP/2 windows to match (README, "Portfolio screening").
        let wide = Channel::from_shared(format!("http://{addr}"))?
            .initial_stream_window_size(Some(16 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .connect()
            .await?;
        extras.extend(batch_and_list(&wide, &token, &bearer(&admin)?, &args).await?);
        anyhow::Ok((results, extras))
    })?;
    let _ = stop.send(());
    server_runtime.block_on(served)??;
    // The last handle on the stopped service, so its stores close.
    drop(service);

    // Restart: verification of the whole store and the rebuild of what the
    // service keeps, until it would answer (SERVING).
    let restart = Instant::now();
    let app = server_runtime.block_on(App::build(config()?, &mut |_, _| {}))?;
    let restart = restart.elapsed().as_secs_f64();
    let entries = app.ledger().head().size;
    // What the restarted server holds before and once its view of current
    // scores is warm (the refresher's work, done here at once): the
    // server's own memory, apart from the load's peak below.
    let cold = rss_kb("VmRSS:");
    while app.service().stale_scores() > 0 {
        app.service().refresh_view(4096)?;
    }
    let resident = rss_kb("VmRSS:");
    let mut payload_bytes = 0u64;
    for entry in app.ledger().scan(0, entries) {
        payload_bytes += entry?.payload.len() as u64;
    }
    drop(app);
    let hashing = blake3_baseline(entries);
    let mut extras = extras;
    extras.push(format!(
        "restart to SERVING: {entries} entries in {restart:.2} s = {:.0} entries/s | BLAKE3 entry+chain over as many 250-byte entries {hashing:.0}/s | ratio {:.3}",
        entries as f64 / restart,
        entries as f64 / restart / hashing
    ));
    let bytes = dir_size(dir.path())?;
    let per_entry = |b: u64| b as f64 / entries.max(1) as f64;
    extras.push(format!(
        "data directory: {:.1} MB = {:.0} bytes per entry | payload {:.0} + entry and chain hash 64 = {:.0} bytes per entry | ratio {:.1}",
        bytes as f64 / 1e6,
        per_entry(bytes),
        per_entry(payload_bytes),
        per_entry(payload_bytes) + 64.0,
        per_entry(bytes) / (per_entry(payload_bytes) + 64.0)
    ));
    if let (Some(cold), Some(resident)) = (cold, resident) {
        extras.push(format!(
            "RSS of the restarted server: {:.0} MB before its view of current scores is warm, {:.0} MB after",
            cold as f64 / 1024.0,
            resident as f64 / 1024.0
        ));
    }
    if let Some(peak) = rss_kb("VmHWM:") {
        extras.push(format!("peak RSS of this process (server and load): {:.0} MB", peak as f64 / 1024.0));
    }

    let health = results.first().map_or(1.0, |m| m.per_second.max(f64::MIN_POSITIVE));
    println!(
        "{} enterprises, {} records, {} connections x {} streams, {} s per call, seed {}, reads by {}",
        args.enterprises, args.records, args.connections, args.streams, args.seconds, args.seed, args.reader
    );
    println!(
        "{:<22} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "call", "calls", "errors", "calls/s", "p50 us", "p99 us", "p999 us", "x Health"
    );
    for m in &results {
        println!(
            "{:<22} {:>10} {:>8} {:>12.0} {:>9} {:>9} {:>9} {:>8.3}",
            m.name,
            m.calls,
            m.errors,
            m.per_second,
            m.percentile(0.5),
            m.percentile(0.99),
            m.percentile(0.999),
            m.per_second / health
        );
    }
    for line in extras {
        println!("{line}");
    }
    Ok(())
}

/// One `BatchGetScores` of up to 10 000 USCCs (best of 3) against encoding
/// its response and as many hash lookups; then every enterprise in pages
/// of 1 000.
async fn batch_and_list(
    channel: &Channel,
    reader: &MetadataValue<tonic::metadata::Ascii>,
    admin: &MetadataValue<tonic::metadata::Ascii>,
    args: &Args,
) -> anyhow::Result<Vec<String>> {
    use prost::Message;
    let mut lines = Vec::new();
    let usccs: Vec<String> = (0..args.enterprises.min(10_000)).map(uscc).collect();
    let mut scores =
        pb::scores_client::ScoresClient::new(channel.clone()).max_decoding_message_size(256 << 20);
    let (mut best, mut response) = (f64::MAX, pb::BatchGetScoresResponse::default());
    for _ in 0..3 {
        let mut request = tonic::Request::new(pb::BatchGetScoresRequest { uscc: usccs.clone(), as_of: None });
        request.metadata_mut().insert("authorization", reader.clone());
        let started = Instant::now();
        response = scores.batch_get_scores(request).await?.into_inner();
        best = best.min(started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    let index: std::collections::HashMap<&str, &pb::Score> =
        response.scores.iter().map(|s| (s.uscc.as_str(), s)).collect();
    let found = usccs.iter().filter(|u| index.contains_key(u.as_str())).count();
    let encoded = response.encode_to_vec();
    let baseline = started.elapsed().as_secs_f64();
    std::hint::black_box((found, encoded.len()));
    lines.push(format!(
        "BatchGetScores of {}: {:.1} ms ({} bytes) | encode the response + {} lookups {:.1} ms | ratio {:.1}",
        usccs.len(),
        best * 1e3,
        encoded.len(),
        usccs.len(),
        baseline * 1e3,
        best / baseline
    ));

    let (mut pages, mut listed, mut token, mut slowest) = (0, 0, String::new(), 0f64);
    let started = Instant::now();
    loop {
        let mut request = tonic::Request::new(pb::ListScoresRequest {
            page_size: 1_000,
            page_token: token,
            ..Default::default()
        });
        request.metadata_mut().insert("authorization", admin.clone());
        let page_started = Instant::now();
        let page = scores.list_scores(request).await?.into_inner();
        slowest = slowest.max(page_started.elapsed().as_secs_f64());
        pages += 1;
        listed += page.scores.len();
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    lines.push(format!(
        "ListScores, every enterprise in pages of 1 000: {listed} in {pages} pages, {:.2} s, slowest page {:.1} ms",
        started.elapsed().as_secs_f64(),
        slowest * 1e3
    ));
    Ok(lines)
}

/// `--score-proof-entries`: per size, one enterprise with that many entries
/// (its registration and records), a signed checkpoint, `GetScoreProof` as
/// a lender, and `evidence::score::verify` of the bundle.
async fn score_proofs(
    addr: std::net::SocketAddr,
    admin: &str,
    lender: &str,
    args: &Args,
    ledger: ledger::Ledger,
) -> anyhow::Result<()> {
    let channel = connect(addr).await?;
    let (admin_token, lender_token) = (bearer(admin)?, bearer(lender)?);
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut rng = Rng(args.seed);
    let (key_name, key) = tlog::note::decode_verifier_key(&ledger.verifier_key())?;
    println!("| entries | bundle bytes | fetch (ms) | verify (ms) | verify / BLAKE3 of as many entries |");
    println!("|---:|---:|---:|---:|---:|");
    for (n, &entries) in args.score_proof_entries.iter().enumerate() {
        let enterprise = uscc(1_000_000 + n);
        let mut registry = pb::registry_client::RegistryClient::new(channel.clone());
        let mut request = tonic::Request::new(pb::Enterprise {
            uscc: enterprise.clone(),
            name: format!("Proof Co. {n}"),
            region_code: "330206".into(),
            industry_code: "C1713".into(),
        });
        request.metadata_mut().insert("authorization", admin_token.clone());
        registry.register_enterprise(request).await?;
        let mut ingest = pb::ingest_client::IngestClient::new(channel.clone());
        let mut sent = 1;
        while sent < entries {
            let chunk = (entries - sent).min(50_000);
            let records: Vec<pb::Record> = (sent..sent + chunk)
                .map(|i| {
                    let at = now.plus_days(-(1 + rng.below(300) as i64));
                    let (seconds, nanos) = at.to_unix();
                    pb::Record {
                        source: "load-admin".into(),
                        source_record_id: format!("P-{n}-{i}"),
                        uscc: enterprise.clone(),
                        kind: "inspection.finding".into(),
                        occurred_at: Some(prost_types::Timestamp { seconds, nanos }),
                        ..Default::default()
                    }
                })
                .collect();
            let mut request = tonic::Request::new(tokio_stream::iter(records));
            request.metadata_mut().insert("authorization", admin_token.clone());
            let response = ingest.append_records(request).await?.into_inner();
            anyhow::ensure!(response.rejected_count == 0, "rejected: {:?}", response.rejected.first());
            sent += chunk;
            eprintln!("{enterprise}: {sent} of {entries} entries");
        }
        let checkpoint = ledger.sign_checkpoint_now()?;
        let mut scores =
            pb::scores_client::ScoresClient::new(channel.clone()).max_decoding_message_size(8 << 20);
        let fetching = Instant::now();
        let mut request = tonic::Request::new(pb::GetScoreProofRequest {
            uscc: enterprise.clone(),
            tree_size: checkpoint.tree_size,
            as_of: None,
        });
        request.metadata_mut().insert("authorization", lender_token.clone());
        let mut stream = scores.get_score_proof(request).await?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            bytes.extend_from_slice(&chunk.bundle);
        }
        let fetched = fetching.elapsed();
        let verifying = Instant::now();
        let bundle: evidence::score::ScoreBundle = serde_json::from_slice(&bytes)?;
        let verified = evidence::score::verify(&bundle, &key_name, &key)?;
        let verify = verifying.elapsed();
        anyhow::ensure!(verified.entries == entries as u64, "the proof counts {} entries", verified.entries);
        let baseline = entries as f64 / blake3_baseline(entries as u64);
        println!(
            "| {entries} | {} | {:.1} | {:.1} | {:.1} |",
            bytes.len(),
            fetched.as_secs_f64() * 1e3,
            verify.as_secs_f64() * 1e3,
            verify.as_secs_f64() / baseline.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// Entries/s of BLAKE3 entry and chain hashes over `n` 250-byte entries in
/// memory: what verification cannot avoid.
fn blake3_baseline(n: u64) -> f64 {
    let payloads: Vec<Vec<u8>> = (0..n.min(1_000_000)).map(|i| vec![(i % 251) as u8; 250]).collect();
    let started = Instant::now();
    let mut chain = [0u8; 32];
    for (seq, payload) in payloads.iter().enumerate() {
        let mut entry = blake3::Hasher::new();
        entry.update(&[0]).update(&(seq as u64).to_be_bytes()).update(&0i64.to_be_bytes()).update(payload);
        let leaf = entry.finalize();
        let mut next = blake3::Hasher::new();
        next.update(&[2]).update(&chain).update(leaf.as_bytes());
        chain = *next.finalize().as_bytes();
    }
    std::hint::black_box(chain);
    payloads.len() as f64 / started.elapsed().as_secs_f64()
}

fn dir_size(path: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for item in std::fs::read_dir(path)? {
        let item = item?;
        let meta = item.metadata()?;
        total += if meta.is_dir() { dir_size(&item.path())? } else { meta.len() };
    }
    Ok(total)
}

/// VmHWM of this process, in KiB (Linux).
/// A figure of this process's memory, in kB: `VmHWM:` (peak) or `VmRSS:`.
fn rss_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// One HTTP/2 connection to the server.
async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?.connect().await?)
}

/// Registers the enterprises and streams the records, deterministically.
/// Returns the records' ingest rate (records/s). Enterprise `enterprises`
/// (one more) is registered with no records.
async fn seed(channel: Channel, admin: &str, args: &Args) -> anyhow::Result<f64> {
    let token = bearer(admin)?;
    let mut registry = pb::registry_client::RegistryClient::new(channel.clone());
    let registering = Instant::now();
    for i in 0..=args.enterprises {
        let mut request = tonic::Request::new(pb::Enterprise {
            uscc: uscc(i),
            name: format!("Load Co. {i}"),
            region_code: "330206".into(),
            industry_code: "C1713".into(),
        });
        request.metadata_mut().insert("authorization", token.clone());
        registry.register_enterprise(request).await?;
    }
    // The bank reads under each enterprise's grant, as `serve` requires by
    // default (--lender-access granted): recorded here by the admin.
    let mut consent = pb::consent_client::ConsentClient::new(channel.clone());
    let until = Timestamp::from_system_time(std::time::SystemTime::now()).plus_days(365).to_unix();
    for i in 0..=args.enterprises {
        let grant = pb::AccessGrant {
            uscc: uscc(i),
            lender: "load-bank".into(),
            purpose: "loan_monitoring".into(),
            covers: vec!["details".into(), "history".into()],
            starts_at: None,
            expires_at: Some(prost_types::Timestamp { seconds: until.0, nanos: until.1 }),
        };
        let mut request = tonic::Request::new(pb::GrantAccessRequest { grant: Some(grant) });
        request.metadata_mut().insert("authorization", token.clone());
        consent.grant_access(request).await?;
    }
    let kinds = ["inspection.finding", "complaint.verified", "monitoring.missing_day", "penalty.warning"];
    eprintln!(
        "registered {} enterprises in {:.1} s",
        args.enterprises + 1,
        registering.elapsed().as_secs_f64()
    );
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut rng = Rng(args.seed);
    let (mut streaming, ingesting) = (Duration::ZERO, Instant::now());
    let mut ingest = pb::ingest_client::IngestClient::new(channel);
    let mut sent = 0;
    while sent < args.records {
        let chunk = (args.records - sent).min(50_000);
        let records: Vec<pb::Record> = (sent..sent + chunk)
            .map(|i| {
                let at = now.plus_days(-(1 + rng.below(300) as i64));
                let (seconds, nanos) = at.to_unix();
                pb::Record {
                    source: "load-admin".into(),
                    source_record_id: format!("L-{i}"),
                    uscc: uscc(rng.below(args.enterprises.max(1) as u64) as usize),
                    kind: kinds[rng.below(kinds.len() as u64) as usize].into(),
                    occurred_at: Some(prost_types::Timestamp { seconds, nanos }),
                    ..Default::default()
                }
            })
            .collect();
        let mut request = tonic::Request::new(tokio_stream::iter(records));
        request.metadata_mut().insert("authorization", token.clone());
        let started = Instant::now();
        let response = ingest.append_records(request).await?.into_inner();
        streaming += started.elapsed();
        anyhow::ensure!(
            response.rejected_count == 0,
            "seeding rejected records: {:?}",
            response.rejected.first()
        );
        sent += chunk;
    }
    eprintln!(
        "appended {} records in {:.1} s ({:.1} s of it in the streams)",
        args.records,
        ingesting.elapsed().as_secs_f64(),
        streaming.as_secs_f64()
    );
    Ok(args.records as f64 / streaming.as_secs_f64().max(f64::MIN_POSITIVE))
}

/// Runs `call` from `streams` tasks on each channel for `seconds`.
async fn drive<F, Fut>(name: &'static str, channels: &[Channel], args: &Args, call: F) -> Measured
where
    F: Fn(Channel, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (c, channel) in channels.iter().enumerate() {
        for s in 0..args.streams {
            let (channel, call) = (channel.clone(), call.clone());
            let mut n = (c * args.streams + s) as u64;
            tasks.spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0u64);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if call(channel.clone(), n).await.is_err() {
                        errors += 1;
                    }
                    latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    n = n.wrapping_add(7919);
                }
                (latencies, errors)
            });
        }
    }
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    while let Some(Ok((l, e))) = tasks.join_next().await {
        latencies_us.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{name}: {} calls in {elapsed:.1} s", latencies_us.len());
    latencies_us.sort_unstable();
    let calls = latencies_us.len() as u64;
    Measured { name, calls, errors, per_second: (calls - errors.min(calls)) as f64 / elapsed, latencies_us }
}
