//! `ecocode serve`: its flags and the service's composition root.

use super::*;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Data directory (ledger, keys, principals).
    #[arg(long, default_value = "./data")]
    pub data: PathBuf,
    /// `postgres://USER@HOST/DB`: keep the ledger in that PostgreSQL
    /// database, shared with every other node given the same URL (give
    /// them all the same --key-file). Default: sled in --data.
    #[arg(long, env = "ECOCODE_STORE")]
    pub store: Option<String>,
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Scoring model file (TOML); default: the model built into the binary.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Checkpoint origin line.
    #[arg(long)]
    pub origin: Option<String>,
    /// Signing key name in checkpoints and attestations.
    #[arg(long)]
    pub key_name: Option<String>,
    /// Ed25519 key file to use instead of DATA/ledger.key.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Sign a new checkpoint at most this often, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_interval_ms: u64,
    /// sled's page cache, in MiB, when migrating an older release's sled
    /// ledger on first start (the file engine uses the OS page cache).
    #[arg(long, default_value_t = ledger::DEFAULT_CACHE_BYTES >> 20)]
    pub cache_mb: u64,
    /// At most this many enterprises' current scores are kept in memory
    /// between reads (a few KB each); more are recomputed.
    #[arg(long, default_value_t = server::DEFAULT_SCORE_VIEW_CAPACITY)]
    pub score_view_capacity: usize,
    /// Accept HJ 212 data loggers on this TCP address (off by default).
    #[arg(long)]
    pub hj212_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub hj212: GatewayArgs,
    /// Serve Prometheus metrics on `GET /metrics` at this address (off by default).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the 环保码 web page (`/e/<USCC>`) on this address; `off`: no web page.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_http_listen)]
    pub http_listen: HttpListen,
    #[command(flatten)]
    pub web: WebArgs,
    #[command(flatten)]
    pub transport: TransportArgs,
    /// A C2SP tlog-policy file whose witnesses (with URLs) cosign each new
    /// checkpoint; only checkpoints that meet its quorum are published.
    #[arg(long)]
    pub witness_policy: Option<PathBuf>,
    /// How long each witness may take to answer, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub witness_timeout_ms: u64,
    /// A round of asking the witnesses publishes what it has after this
    /// many milliseconds, however slow the others are.
    #[arg(long, default_value_t = 10000)]
    pub witness_publish_timeout_ms: u64,
    /// `granted`: a lender reads an enterprise's details (reasons,
    /// entries, history) only under a live grant from it (Consent.GrantAccess,
    /// `ecocode grant add`); `open`: any lender reads any enterprise.
    #[arg(long, default_value = "granted")]
    pub lender_access: server::consent::LenderAccess,
}

/// The web listener's limits and public address; defaults in README.md.
#[derive(Args, Debug)]
pub struct WebArgs {
    /// The page's address as visitors reach it (e.g. https://ecocode.example.gov.cn): the
    /// origin of QR codes and feed links, never taken from a request's Host
    /// [default: http:// and the --http-listen address].
    #[arg(long, value_parser = server::web::parse_public_url)]
    pub public_url: Option<String>,
    /// Web connections open at once; more are answered 503 and closed.
    #[arg(long, default_value_t = WebConfig::default().max_connections)]
    pub http_max_connections: usize,
    /// Web connections open at once from one IP address; more are answered 503 and closed.
    #[arg(long, default_value_t = WebConfig::default().max_connections_per_peer)]
    pub http_max_connections_per_peer: usize,
    /// A web request's head and body must both arrive within this long (ms) of the
    /// connection being ready for it; else 408 and the connection is closed.
    #[arg(long, default_value_t = millis(WebConfig::default().request_timeout))]
    pub http_request_timeout_ms: u64,
    /// Web requests one IP address may make per minute; more are answered 429
    /// (a mirror catching up makes two per 256 entries: raise it for one).
    #[arg(long, default_value_t = WebConfig::default().requests_per_minute)]
    pub http_requests_per_minute: u32,
}

impl WebArgs {
    fn config(self) -> WebConfig {
        WebConfig {
            public_url: self.public_url,
            max_connections: self.http_max_connections,
            max_connections_per_peer: self.http_max_connections_per_peer,
            request_timeout: Duration::from_millis(self.http_request_timeout_ms),
            requests_per_minute: self.http_requests_per_minute,
            ..WebConfig::default()
        }
    }
}

/// `--http-listen`: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

pub(super) fn parse_http_listen(text: &str) -> Result<HttpListen, String> {
    if text == "off" {
        return Ok(HttpListen(None));
    }
    text.parse()
        .map(|addr| HttpListen(Some(addr)))
        .map_err(|_| format!("{text:?} is neither an address like 127.0.0.1:8080 nor `off`"))
}

/// The HJ 212 gateway's limits; each defaults to `GatewayConfig::default()`
/// (the values in the help text and docs/hj212.md).
#[derive(Args, Debug, Default)]
pub struct GatewayArgs {
    /// Most device connections at once [default: 1024].
    #[arg(long)]
    pub hj212_max_connections: Option<usize>,
    /// Most connections from one IP address [default: 16].
    #[arg(long)]
    pub hj212_max_connections_per_peer: Option<usize>,
    /// Close a connection after this many bytes without a well-formed packet [default: 65536].
    #[arg(long)]
    pub hj212_max_bytes_without_packet: Option<usize>,
    /// Close a connection after this many seconds without a well-formed packet [default: 600].
    #[arg(long)]
    pub hj212_idle_timeout_secs: Option<u64>,
    /// Pause accepting this many milliseconds after an accept error [default: 100].
    #[arg(long)]
    pub hj212_accept_backoff_ms: Option<u64>,
    /// Log one summary line per misbehaving device this often, in seconds [default: 300].
    #[arg(long)]
    pub hj212_summary_interval_secs: Option<u64>,
    /// Devices with figures of their own; the rest count as "other" [default: 10000].
    #[arg(long)]
    pub hj212_max_tracked_devices: Option<usize>,
    /// A gap of at least this many seconds in the gateway's health is a platform outage [default: 900].
    #[arg(long)]
    pub hj212_min_outage_secs: Option<u64>,
    /// Drop a split packet's set unless all parts arrive within this many seconds [default: 600].
    #[arg(long)]
    pub hj212_split_timeout_secs: Option<u64>,
    /// Refuse split packets with more parts than this [default: 64].
    #[arg(long)]
    pub hj212_max_split_parts: Option<u16>,
    /// Incomplete split sets one connection may hold [default: 8].
    #[arg(long)]
    pub hj212_max_split_sets: Option<usize>,
    /// Most connections without a right password yet; a new one closes the oldest [default: 256].
    #[arg(long)]
    pub hj212_max_unauthenticated_connections: Option<usize>,
    /// Most unauthenticated connections from one /24 (IPv4) or /64 (IPv6); a new one closes its oldest [default: 32].
    #[arg(long)]
    pub hj212_max_unauthenticated_per_prefix: Option<usize>,
    /// Close a connection without a right password after this many seconds [default: 60].
    #[arg(long)]
    pub hj212_unauthenticated_timeout_secs: Option<u64>,
    /// Wrong passwords in a row that lock a device out [default: 5].
    #[arg(long)]
    pub hj212_max_password_failures: Option<u32>,
    /// Wrong passwords from one IP address that lock it out [default: 20].
    #[arg(long)]
    pub hj212_max_password_failures_per_peer: Option<u32>,
    /// How long a lockout lasts, in seconds [default: 900].
    #[arg(long)]
    pub hj212_password_lockout_secs: Option<u64>,
    /// Delay before answering the first wrong password, in milliseconds; doubles each time [default: 1000].
    #[arg(long)]
    pub hj212_password_delay_ms: Option<u64>,
    /// Longest delay before answering a wrong password, in milliseconds [default: 8000].
    #[arg(long)]
    pub hj212_max_password_delay_ms: Option<u64>,
}

impl GatewayArgs {
    /// The gateway configuration: the defaults, with every flag given applied.
    pub fn apply(&self, mut config: GatewayConfig) -> GatewayConfig {
        let secs = Duration::from_secs;
        if let Some(v) = self.hj212_max_connections {
            config.max_connections = v;
        }
        if let Some(v) = self.hj212_max_connections_per_peer {
            config.max_connections_per_peer = v;
        }
        if let Some(v) = self.hj212_max_bytes_without_packet {
            config.max_bytes_without_packet = v;
        }
        if let Some(v) = self.hj212_idle_timeout_secs {
            config.idle_timeout = secs(v);
        }
        if let Some(v) = self.hj212_accept_backoff_ms {
            config.accept_error_backoff = Duration::from_millis(v);
        }
        if let Some(v) = self.hj212_summary_interval_secs {
            config.summary_interval = secs(v);
        }
        if let Some(v) = self.hj212_max_tracked_devices {
            config.max_tracked_devices = v;
        }
        if let Some(v) = self.hj212_min_outage_secs {
            config.min_outage = secs(v);
        }
        if let Some(v) = self.hj212_split_timeout_secs {
            config.split_timeout = secs(v);
        }
        if let Some(v) = self.hj212_max_unauthenticated_connections {
            config.max_unauthenticated_connections = v;
        }
        if let Some(v) = self.hj212_max_unauthenticated_per_prefix {
            config.max_unauthenticated_per_prefix = v;
        }
        if let Some(v) = self.hj212_unauthenticated_timeout_secs {
            config.unauthenticated_timeout = secs(v);
        }
        if let Some(v) = self.hj212_max_password_failures {
            config.max_password_failures = v;
        }
        if let Some(v) = self.hj212_max_password_failures_per_peer {
            config.max_password_failures_per_peer = v;
        }
        if let Some(v) = self.hj212_password_lockout_secs {
            config.password_lockout = secs(v);
        }
        if let Some(v) = self.hj212_password_delay_ms {
            config.password_delay = Duration::from_millis(v);
        }
        if let Some(v) = self.hj212_max_password_delay_ms {
            config.max_password_delay = Duration::from_millis(v);
        }
        if let Some(v) = self.hj212_max_split_parts {
            config.max_split_parts = v;
        }
        if let Some(v) = self.hj212_max_split_sets {
            config.max_split_sets = v;
        }
        config
    }
}

/// TLS and the limits of the gRPC transport; defaults in README.md.
#[derive(Args, Debug)]
pub struct TransportArgs {
    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Largest request message in bytes; larger ones are RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = TransportConfig::default().max_message_bytes)]
    pub max_message_bytes: usize,
    /// Most records one AppendRecords stream may carry; more is RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = TransportConfig::default().max_stream_records)]
    pub max_stream_records: u64,
    /// HTTP/2 concurrent streams per connection (clients queue beyond it).
    #[arg(long, default_value_t = TransportConfig::default().max_concurrent_streams)]
    pub max_concurrent_streams: u32,
    /// Calls in progress per connection before further ones are shed.
    #[arg(long, default_value_t = TransportConfig::default().max_calls_per_connection)]
    pub max_calls_per_connection: usize,
    /// Calls in progress in the whole server before further ones are shed.
    #[arg(long, default_value_t = TransportConfig::default().max_calls)]
    pub max_calls: usize,
    /// gRPC connections open at once; more are closed as they are accepted.
    #[arg(long, default_value_t = TransportConfig::default().max_connections)]
    pub max_connections: usize,
    /// End a request stream that sends nothing for this long (ms).
    #[arg(long, default_value_t = millis(TransportConfig::default().stream_idle_timeout))]
    pub stream_idle_timeout_ms: u64,
    /// Close a connection without calls for this long (ms).
    #[arg(long, default_value_t = millis(TransportConfig::default().connection_idle_timeout))]
    pub connection_idle_timeout_ms: u64,
    /// HTTP/2 keepalive PING interval (ms).
    #[arg(long, default_value_t = millis(TransportConfig::default().keepalive_interval))]
    pub keepalive_interval_ms: u64,
    /// Drop a peer that does not answer a PING within this long (ms).
    #[arg(long, default_value_t = millis(TransportConfig::default().keepalive_timeout))]
    pub keepalive_timeout_ms: u64,
    /// At shutdown, cancel calls still running after this long (ms).
    #[arg(long, default_value_t = millis(TransportConfig::default().drain_timeout))]
    pub drain_timeout_ms: u64,
}

pub(super) fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl TransportArgs {
    fn config(self) -> TransportConfig {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: self.client_ca }),
            _ => None,
        };
        TransportConfig {
            tls,
            max_message_bytes: self.max_message_bytes,
            max_stream_records: self.max_stream_records,
            max_concurrent_streams: self.max_concurrent_streams,
            max_calls_per_connection: self.max_calls_per_connection,
            max_calls: self.max_calls,
            max_connections: self.max_connections,
            stream_idle_timeout: Duration::from_millis(self.stream_idle_timeout_ms),
            connection_idle_timeout: Duration::from_millis(self.connection_idle_timeout_ms),
            keepalive_interval: Duration::from_millis(self.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(self.keepalive_timeout_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            ..TransportConfig::default()
        }
    }
}

/// `ecocode serve`: builds the service through its composition root and
/// runs it until `shutdown`.
pub async fn serve(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut config = Config::new(&args.data);
    config.model = load_model(args.model.as_deref())?;
    if let Some(origin) = args.origin {
        config.ledger.origin = origin;
    }
    if let Some(key_name) = args.key_name {
        config.ledger.key_name = key_name;
    }
    config.ledger.key_file = args.key_file;
    config.ledger.checkpoint_interval = Duration::from_millis(args.checkpoint_interval_ms);
    config.ledger.cache_bytes = args.cache_mb.saturating_mul(1 << 20);
    config.ledger.store = postgres_url(args.store.clone())?;
    config.score_view_capacity = args.score_view_capacity;
    config.listen = args.listen;
    config.hj212_listen = args.hj212_listen;
    config.gateway = args.hj212.apply(config.gateway);
    config.metrics_listen = args.metrics_listen;
    config.http_listen = args.http_listen.0;
    config.web = args.web.config();
    config.transport = args.transport.config();
    config.witness_policy = args.witness_policy.as_deref().map(crate::witness::read_policy).transpose()?;
    config.witness_timeout = Duration::from_millis(args.witness_timeout_ms);
    config.witness_publish_timeout = Duration::from_millis(args.witness_publish_timeout_ms);
    config.lender_access = args.lender_access;
    // Checked before the stores are opened, and with its own message: the
    // listeners' caps must fit in the process's file-descriptor limit.
    config.descriptor_budget().ensure().context("cannot start: too few file descriptors")?;
    let bar = progress_bar("verifying ledger", "entries");
    let app = App::build(config, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await
    .with_context(|| match &args.store {
        Some(_) => "cannot start on the PostgreSQL store given with --store; if the ledger is damaged, \
             `ecocode verify --store URL --key-file KEY` names the first bad entry"
            .to_string(),
        None => format!(
            "cannot start on the data directory {}; if the ledger is damaged, `ecocode verify --data {}` names the first bad entry",
            args.data.display(),
            args.data.display()
        ),
    })?;
    bar.finish_and_clear();
    if let Some(addr) = app.hj212_addr() {
        eprintln!("hj212 gateway listening on {addr}");
    }
    if let Some(addr) = app.metrics_addr() {
        eprintln!("metrics on http://{addr}/metrics");
    }
    if let Some(addr) = app.http_addr() {
        eprintln!("web page on http://{addr}/e/<USCC>");
    }
    let transport = if app.tls() { "TLS" } else { "plaintext" };
    eprintln!("ecocode listening on {} ({transport}, data {})", app.grpc_addr(), args.data.display());
    app.run(shutdown).await?;
    Ok(())
}
