//! The test harness: a real server on 127.0.0.1:0 over a real sled store in
//! a temporary directory, reached with the generated clients.

use std::path::Path;
use std::sync::Arc;

use ecocode_proto::v1 as pb;
use scoring::Timestamp;
use server::principals::{PrincipalStore, Role};
use server::{App, Config, ManualClock, Service};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// 2026-06-01T00:00:00Z: the harness clock's start.
pub const T0: Timestamp = Timestamp::from_unix_nanos(1_780_272_000 * 1_000_000_000);

pub fn days(n: i64) -> Timestamp {
    T0.plus_days(n)
}

pub fn ts(t: Timestamp) -> Option<prost_types::Timestamp> {
    let (seconds, nanos) = t.to_unix();
    Some(prost_types::Timestamp { seconds, nanos })
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    /// The HJ 212 gateway's address, when started with one.
    pub gateway: Option<std::net::SocketAddr>,
    pub dir: tempfile::TempDir,
    /// Where `GET /metrics` is served, when started with `metrics_listen`.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the web page is served, when started with `http_listen`
    /// ([`TestServer::start_web`]).
    pub http: Option<std::net::SocketAddr>,
    pub service: Arc<Service>,
    /// The ledger behind the door ([`server::App::ledger`]).
    pub ledger: ledger::Ledger,
    pub principals: Arc<PrincipalStore>,
    pub clock: Arc<ManualClock>,
    /// The shared PostgreSQL store, when started on one.
    pub store: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<server::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_in(tempfile::tempdir().unwrap()).await
    }

    /// Starts on an existing data directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir) -> TestServer {
        Self::try_start_in(dir).await.map_err(|(e, _)| e).expect("server starts")
    }

    /// Starts with the HJ 212 gateway on another port; it looks for days to
    /// close every few milliseconds, by the server's (manual) clock.
    pub async fn start_with_gateway() -> TestServer {
        Self::start_with_gateway_in(tempfile::tempdir().unwrap()).await
    }

    pub async fn start_with_gateway_in(dir: tempfile::TempDir) -> TestServer {
        Self::start_with_gateway_in_at(dir, T0).await
    }

    /// A restart whose manual clock starts at `start`, e.g. days after the
    /// stop, as after an outage.
    pub async fn start_with_gateway_in_at(dir: tempfile::TempDir, start: Timestamp) -> TestServer {
        Self::build(dir, true, start, |_| {}).await.map_err(|(e, _)| e).expect("server starts")
    }

    pub async fn try_start_in(
        dir: tempfile::TempDir,
    ) -> Result<TestServer, (server::Error, tempfile::TempDir)> {
        Self::build(dir, false, T0, |_| {}).await
    }

    /// [`TestServer::start_with_in`], answering the start-up error.
    pub async fn try_start_with_in(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Config),
    ) -> Result<TestServer, (server::Error, tempfile::TempDir)> {
        Self::build(dir, false, T0, configure).await
    }

    /// Starts with the web page on a free port as well.
    pub async fn start_web() -> TestServer {
        Self::start_with(|c| c.http_listen = Some("127.0.0.1:0".parse().unwrap())).await
    }

    /// Starts on sled whatever `ECOCODE_TEST_ENGINE` says, for tests of
    /// sled's own files.
    pub async fn start_on_sled() -> TestServer {
        Self::start_with(|c| c.ledger.store = Some(SLED.into())).await
    }

    /// The web page's address.
    pub fn web(&self) -> WebClient {
        WebClient::new(self.http.expect("started with the web page"))
    }

    /// Starts with the harness's settings changed by `configure` (TLS,
    /// transport limits, metrics).
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestServer {
        Self::build(tempfile::tempdir().unwrap(), false, T0, configure)
            .await
            .map_err(|(e, _)| e)
            .expect("server starts")
    }

    /// A restart on `dir` with the harness's settings changed by `configure`.
    pub async fn start_with_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut Config)) -> TestServer {
        Self::build(dir, false, T0, configure).await.map_err(|(e, _)| e).expect("server starts")
    }

    /// The service as `ecocode serve` composes it (the same `App`), on
    /// free ports, with a manual clock.
    async fn build(
        dir: tempfile::TempDir,
        gateway: bool,
        start: Timestamp,
        configure: impl FnOnce(&mut Config),
    ) -> Result<TestServer, (server::Error, tempfile::TempDir)> {
        let clock = Arc::new(ManualClock::new(start));
        let mut config = Config::new(dir.path());
        config.clock = clock.clone();
        config.listen = "127.0.0.1:0".parse().unwrap();
        // Tests sign checkpoints themselves (`publish`): the service's timer
        // would otherwise seal the head with an index entry whenever a test
        // paused for a second, moving every later seq (tests that need the
        // timer, e.g. witness rounds, set their own interval).
        config.ledger.checkpoint_interval = std::time::Duration::from_secs(3600);
        if gateway {
            config.hj212_listen = Some("127.0.0.1:0".parse().unwrap());
            config.gateway.close_interval = std::time::Duration::from_millis(5);
            // Tests count wrong passwords, they do not wait for them (the
            // growing delay is unit-tested in the hj212 crate).
            config.gateway.password_delay = std::time::Duration::ZERO;
        }
        configure(&mut config);
        if config.ledger.store.as_deref() == Some(SLED) {
            config.ledger.store = None;
        } else if config.ledger.store.is_none()
            && let Some(url) = suite_store(dir.path())
        {
            config.ledger.store = Some(url);
        }
        let store = config.ledger.store.clone();
        let app = match App::build(config, &mut |_, _| {}).await {
            Ok(app) => app,
            Err(e) => return Err((e, dir)),
        };
        let (addr, gateway, metrics, http, service) =
            (app.grpc_addr(), app.hj212_addr(), app.metrics_addr(), app.http_addr(), app.service().clone());
        let principals = app.principals().clone();
        let ledger = app.ledger().clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        Ok(TestServer {
            addr,
            gateway,
            dir,
            metrics,
            http,
            service,
            ledger,
            principals,
            clock,
            store,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Stops the server (graceful: every input, then the ledger) and hands
    /// back its data directory, ready to be opened again.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().expect("server stopped cleanly");
        // The last handle on the stores: dropping it releases their locks
        // before it returns.
        let TestServer { dir, service, ledger, principals, .. } = self;
        drop((service, ledger, principals));
        dir
    }

    /// Signs a checkpoint of the head now, as the service's timer does
    /// every `--checkpoint-interval`: what the web page shows is the tree of
    /// the latest published checkpoint, and a page view signs none.
    pub fn publish(&self) -> ledger::Checkpoint {
        self.ledger.sign_checkpoint_now().unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The principals as `ecocode principal add|revoke` sees them: a store
    /// of its own on the data directory, or on the shared PostgreSQL store.
    pub fn principal_store(&self) -> PrincipalStore {
        PrincipalStore::open_in(self.data_dir(), self.store.as_deref()).unwrap()
    }

    /// Creates a principal the way `ecocode principal add` does (a store of
    /// its own on the data directory, or on the shared PostgreSQL store),
    /// then has the running server reload, as its background reload would
    /// within half a second.
    pub fn token(&self, name: &str, role: Role) -> String {
        let principals = PrincipalStore::open_in(self.data_dir(), self.store.as_deref()).unwrap();
        let token = principals.add(name, role).unwrap();
        self.principals.reload_if_changed().unwrap();
        token
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    pub async fn client(&self, token: &str) -> Client {
        Client::new(self.channel().await, token)
    }

    pub async fn admin(&self) -> Client {
        let token = self.token(&format!("admin-{}", unique()), Role::Admin);
        self.client(&token).await
    }
}

/// `ECOCODE_TEST_ENGINE=postgres` runs the whole suite on the PostgreSQL
/// engine: each data directory gets a fresh database of its own, kept
/// across restarts of a server on that directory (its URL is remembered
/// in the directory).
/// A directory that already holds a sled ledger stays on sled.
fn suite_store(dir: &Path) -> Option<String> {
    let remembered = dir.join("test-store-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return Some(url);
    }
    if std::env::var("ECOCODE_TEST_ENGINE").ok()? != "postgres" || ledger::holds_ledger(dir) {
        return None;
    }
    let url = pgtest::database();
    std::fs::write(&remembered, &url).unwrap();
    Some(url)
}

/// [`TestServer::start_on_sled`]'s marker in `configure`.
const SLED: &str = "sled (whatever ECOCODE_TEST_ENGINE says)";

/// Verifies the ledger of a stopped server's directory offline, on the
/// engine it ran on (as `ecocode verify --data` or `--store` would).
pub fn verify_stopped(dir: &Path) -> ledger::Result<ledger::VerifyReport> {
    match std::fs::read_to_string(dir.join("test-store-url")) {
        Ok(url) => ledger::verify_postgres(&url, Some(&dir.join("ledger.key")), &mut |_, _| {}),
        Err(_) => ledger::verify(dir, &mut |_, _| {}),
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

type Svc = InterceptedService<Channel, Bearer>;

/// The five generated clients, all sending one bearer token.
pub struct Client {
    pub registry: pb::registry_client::RegistryClient<Svc>,
    pub ingest: pb::ingest_client::IngestClient<Svc>,
    pub scores: pb::scores_client::ScoresClient<Svc>,
    pub ledger: pb::ledger_client::LedgerClient<Svc>,
    pub consent: pb::consent_client::ConsentClient<Svc>,
}

impl Client {
    /// `token` empty: no authorization metadata at all.
    pub fn new(channel: Channel, token: &str) -> Client {
        let bearer = Bearer((!token.is_empty()).then(|| format!("Bearer {token}").parse().unwrap()));
        Client {
            registry: pb::registry_client::RegistryClient::with_interceptor(channel.clone(), bearer.clone()),
            ingest: pb::ingest_client::IngestClient::with_interceptor(channel.clone(), bearer.clone()),
            scores: pb::scores_client::ScoresClient::with_interceptor(channel.clone(), bearer.clone()),
            consent: pb::consent_client::ConsentClient::with_interceptor(channel.clone(), bearer.clone()),
            ledger: pb::ledger_client::LedgerClient::with_interceptor(channel, bearer),
        }
    }

    pub async fn register(&mut self, uscc: &str, name: &str, region: &str) -> pb::Receipt {
        self.registry
            .register_enterprise(enterprise(uscc, name, region))
            .await
            .expect("registration succeeds")
            .into_inner()
    }

    pub async fn append(&mut self, record: pb::Record) -> Result<pb::Receipt, tonic::Status> {
        self.ingest.append_record(record).await.map(|r| r.into_inner())
    }

    /// Watches `uscc`; returns its first message (the current code) and the stream.
    pub async fn watch(&mut self, uscc: &str) -> (pb::CodeChange, tonic::Streaming<pb::CodeChange>) {
        let mut stream = self
            .scores
            .watch_codes(pb::WatchCodesRequest { uscc: vec![uscc.into()] })
            .await
            .expect("watch starts")
            .into_inner();
        let first = stream.message().await.expect("first message").expect("stream open");
        (first, stream)
    }

    pub async fn score(&mut self, uscc: &str) -> pb::Score {
        self.scores
            .get_score(pb::GetScoreRequest { uscc: uscc.into(), as_of: None, tree_size: 0 })
            .await
            .expect("score")
            .into_inner()
    }
}

/// The record an entry holds: a committed record opened with the details
/// stored beside it (checked against its commitment, so a test reads only
/// what verifies), or a record written before committed records; `None`
/// for any other event, or a committed record whose details the reader
/// did not receive.
pub fn record_in(seq: u64, payload: &[u8], details: &[u8]) -> Option<pb::Record> {
    use prost::Message as _;
    match pb::LedgerEvent::decode(payload).ok()?.event? {
        pb::ledger_event::Event::Record(r) => Some(r),
        pb::ledger_event::Event::CommittedRecord(c) if !details.is_empty() => {
            evidence::stored::open(seq, &c, details).expect("the details open the commitment");
            let details = pb::RecordDetails::decode(details).unwrap();
            Some(pb::Record::decode(details.record.as_slice()).unwrap())
        }
        _ => None,
    }
}

/// `GetScoreProof` of `uscc` at `tree_size` (0: the latest checkpoint): the
/// bundle's bytes, its chunks joined.
pub async fn score_proof_bytes(
    client: &mut Client,
    uscc: &str,
    tree_size: u64,
) -> Result<Vec<u8>, tonic::Status> {
    let request = pb::GetScoreProofRequest { uscc: uscc.into(), tree_size, as_of: None };
    let mut stream = client.scores.get_score_proof(request).await?.into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.bundle);
    }
    Ok(bytes)
}

/// [`score_proof_bytes`], parsed as a score bundle.
pub async fn score_proof(
    client: &mut Client,
    uscc: &str,
    tree_size: u64,
) -> Result<evidence::score::ScoreBundle, tonic::Status> {
    let bytes = score_proof_bytes(client, uscc, tree_size).await?;
    Ok(serde_json::from_slice(&bytes).expect("a score bundle"))
}

/// The offline verification a bank runs on `bundle`, under the server's
/// verifier key.
pub fn verify_score_proof(
    server: &TestServer,
    bundle: &evidence::score::ScoreBundle,
) -> Result<evidence::score::Verified, String> {
    let (name, key) = tlog::note::decode_verifier_key(&server.ledger.verifier_key()).unwrap();
    evidence::score::verify(bundle, &name, &key).map_err(|e| e.to_string())
}

pub fn enterprise(uscc: &str, name: &str, region: &str) -> pb::Enterprise {
    pb::Enterprise {
        uscc: uscc.into(),
        name: name.into(),
        region_code: region.into(),
        industry_code: "C2614".into(),
    }
}

/// A record from `beilun-epb` about `uscc`, occurring `day` days after T0.
pub fn record(uscc: &str, id: &str, kind: &str, day: i64) -> pb::Record {
    pb::Record {
        source: "beilun-epb".into(),
        source_record_id: id.into(),
        uscc: uscc.into(),
        kind: kind.into(),
        occurred_at: ts(days(day)),
        amount_yuan: if kind == "penalty.fine" { 80_000 } else { 0 },
        refers_to_seq: 0,
        description: format!("{kind} {id}"),
        attributes: Default::default(),
    }
}

/// A workflow step acting on `seq`.
pub fn step(uscc: &str, id: &str, kind: &str, day: i64, seq: u64) -> pb::Record {
    pb::Record { refers_to_seq: seq, source: "workflow".into(), ..record(uscc, id, kind, day) }
}

/// An access grant of `uscc` to `lender` covering details and history,
/// from T0 for a year: what a bank holds before it reads an enterprise
/// under `--lender-access granted`. `by` is the enterprise itself or an
/// admin acting on its signed authorization.
pub async fn grant(by: &mut Client, uscc: &str, lender: &str) -> pb::Grant {
    grant_until(by, uscc, lender, 365).await
}

/// [`grant`], expiring `expires_day` days after T0 (tests whose clock runs
/// beyond a year and whose lender keeps reading).
pub async fn grant_until(by: &mut Client, uscc: &str, lender: &str, expires_day: i64) -> pb::Grant {
    let grant = pb::AccessGrant {
        uscc: uscc.into(),
        lender: lender.into(),
        purpose: "loan_application".into(),
        covers: vec!["details".into(), "history".into()],
        // 1 365 days long, within the 1 830 a grant may run.
        starts_at: ts(days(expires_day - 1365)),
        expires_at: ts(days(expires_day)),
    };
    by.consent.grant_access(pb::GrantAccessRequest { grant: Some(grant) }).await.expect("grant").into_inner()
}

/// Valid USCCs for tests (check characters computed per GB 32100-2015).
pub const ACME: &str = "91330421739237858X";
pub const BETA: &str = "11330206MB1593493A";

/// Computes a valid USCC from a 17-character body.
pub fn uscc(body17: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let mut weight = 1u32;
    let mut sum = 0u32;
    for c in body17.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("body uses the USCC alphabet") as u32;
        sum += v * weight;
        weight = weight * 3 % 31;
    }
    let check = ALPHABET[((31 - sum % 31) % 31) as usize] as char;
    format!("{body17}{check}")
}

// ---- HTTP: a small HTTP/1.1 client that keeps cookies like a browser -------------

/// One HTTP answer.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the first `<input ... name="NAME" value="...">` in the body.
    pub fn input(&self, name: &str) -> Option<String> {
        let at = self.body.find(&format!("name=\"{name}\" value=\""))?;
        let rest = &self.body[at + name.len() + 15..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

/// A client of the web page holding cookies, as a browser does; requests
/// carry `Host` and (for forms) the same-site `Origin` a browser sends.
#[derive(Clone, Debug)]
pub struct WebClient {
    pub addr: std::net::SocketAddr,
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl WebClient {
    pub fn new(addr: std::net::SocketAddr) -> WebClient {
        WebClient { addr, cookies: Default::default() }
    }

    pub async fn get(&mut self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], None).await
    }

    /// Posts a form (`application/x-www-form-urlencoded`).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpResponse {
        let origin = format!("http://{}", self.addr);
        self.request("POST", path, &[("Origin", &origin)], Some(&form(fields))).await
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> HttpResponse {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        for (k, v) in extra {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            }
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or_default());
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.expect("web listener accepts");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let response = parse_response(&raw);
        for cookie in response.set_cookies() {
            let pair = cookie.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || cookie.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        response
    }
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = out;
    }
    HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// `application/x-www-form-urlencoded`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect::<Vec<_>>().join("&")
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
