//! The command line: `serve`, offline tools (`principal`, `verify`, `key`,
//! `attest verify`, `proof verify`) and a small client for people without a
//! gRPC tool (`register`, `append`, `score`, `checkpoint`, `attest get`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use ecocode_proto::v1 as pb;
use scoring::{Model, Timestamp};
use server::convert::to_proto;
use server::principals::{PrincipalStore, Role};
use server::web::WebConfig;
use server::{App, Config, GatewayConfig, TlsFiles, TransportConfig};

use crate::client::{Connection, authed, channel, progress_bar, status_error};

#[derive(Parser, Debug)]
#[command(
    name = "ecocode",
    version,
    about = "Environmental-protection codes and credit scores on a verifiable ledger"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service on an embedded sled store in the data directory.
    Serve(Box<ServeArgs>),
    /// Manage principals (who may call the service).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Check every entry, the hash chain, the Merkle tree and the last
    /// signed checkpoint of a stopped server's data directory, or of the
    /// PostgreSQL store given with --store (nodes may keep running).
    Verify {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        /// `postgres://USER@HOST/DB`: verify the ledger in that database.
        #[arg(long, env = "ECOCODE_STORE")]
        store: Option<String>,
        /// The signer key file, so that the last checkpoint's signature is
        /// checked too (default: DATA/ledger.key if it exists).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Copy a stopped server's sled ledger into an empty PostgreSQL
    /// database, proving the copy has the same root and chain hash.
    Migrate {
        /// The data directory to copy from.
        #[arg(long)]
        from: PathBuf,
        /// `postgres://USER@HOST/DB` of an empty database.
        #[arg(long)]
        to: String,
    },
    /// Show the service's public key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Change a registered enterprise or show its history (client).
    #[command(subcommand)]
    Enterprise(EnterpriseCommand),
    /// The HJ 212 gateway's figures: totals, and per device packets,
    /// acknowledgements, rejections by reason, deviations by kind and when
    /// it was last seen (client; admin or regulator).
    Gateway {
        #[command(flatten)]
        conn: Connection,
        /// Only this device (MN).
        #[arg(long)]
        mn: Option<String>,
    },
    /// Register or update an HJ 212 monitoring point (client).
    Point {
        #[command(flatten)]
        conn: Connection,
        /// The data logger's device id (MN).
        #[arg(long)]
        mn: String,
        #[arg(long)]
        uscc: String,
        /// The outlet's id in the discharge permit, e.g. DW001.
        #[arg(long)]
        outlet: String,
        /// A permitted daily mean: POLLUTANT=LIMIT[UNIT][@Avg|@ZsAvg], e.g.
        /// w01018=50mg/L or a21026=35mg/m3@ZsAvg; repeat per pollutant.
        #[arg(long = "limit")]
        limits: Vec<String>,
        /// The data logger's HJ 212 password (PW): packets with another PW
        /// are acknowledged but never recorded. Registering again with a new
        /// one rotates it. The server keeps only a verifier keyed with its
        /// own secret, never in the ledger.
        #[arg(long, env = "ECOCODE_DEVICE_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Register an enterprise (client).
    Register {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "")]
        industry: String,
    },
    /// Append the records of a JSON Lines file, one record per line (client):
    /// streamed in chunks with progress; a stop says how to resume.
    Append {
        #[command(flatten)]
        conn: Connection,
        file: PathBuf,
        /// Records per `AppendRecords` stream; keep it at or below the
        /// server's --max-stream-records.
        #[arg(long, default_value_t = crate::append::DEFAULT_CHUNK_RECORDS)]
        chunk_records: u64,
        /// Lines at the start of FILE not to send: what a run that stopped
        /// says was appended.
        #[arg(long, default_value_t = 0)]
        skip_lines: u64,
    },
    /// Print an enterprise's score with its reasons (client).
    Score {
        #[command(flatten)]
        conn: Connection,
        uscc: String,
        /// Evaluation time, RFC 3339 (default: now).
        #[arg(long)]
        as_of: Option<String>,
        /// Ledger prefix to evaluate (default: the whole ledger).
        #[arg(long, default_value_t = 0)]
        tree_size: u64,
        /// Print the score as JSON.
        #[arg(long)]
        json: bool,
        /// Why you look (e.g. a loan application number); lenders' and
        /// regulators' reads are recorded with it in the inquiry log.
        #[arg(long, default_value = "")]
        purpose: String,
    },
    /// Who looked at whose score, newest first (client): an enterprise sees
    /// every inquiry on itself, a lender its own, a regulator its region's.
    Inquiries {
        #[command(flatten)]
        conn: Connection,
        /// Only inquiries on this enterprise.
        #[arg(long, default_value = "")]
        uscc: String,
        /// Only inquiries at or after this time, RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// Only inquiries before this time, RFC 3339.
        #[arg(long)]
        to: Option<String>,
        /// Stop after this many (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Print the latest signed checkpoint (client).
    Checkpoint {
        #[command(flatten)]
        conn: Connection,
    },
    /// Signed score attestations.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Import records from a CSV or Parquet file, reporting every rejected
    /// row; re-running the same file adds nothing (client).
    Import {
        #[command(flatten)]
        conn: Connection,
        /// A `.csv` (UTF-8, header row) or `.parquet` file; see README for the columns.
        file: PathBuf,
    },
    /// Re-score every enterprise with the batch (polars) scorer and write one
    /// row per enterprise to a `.parquet` or `.csv` file (client).
    ScoreAll {
        #[command(flatten)]
        conn: Connection,
        /// Evaluation time, RFC 3339 (default: now).
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Scoring model file (default: the model built into the binary).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Grades and colours by region, city and industry, and the enterprises
    /// whose colour changed between --from and --to (client).
    Report {
        #[command(flatten)]
        conn: Connection,
        /// Start of the period for colour changes, RFC 3339.
        #[arg(long)]
        from: Option<String>,
        /// Evaluation time of the distribution, RFC 3339 (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only enterprises whose region code starts with this prefix.
        #[arg(long)]
        region: Option<String>,
        /// Write the distribution to this `.csv` or `.parquet` file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the colour changes to this `.csv` or `.parquet` file.
        #[arg(long)]
        changes_out: Option<PathBuf>,
        /// Scoring model file (default: the model built into the binary).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Inclusion and consistency proofs, fetched as files and checked offline.
    #[command(subcommand)]
    Proof(ProofCommand),
    /// Run a C2SP tlog-witness that cosigns logs' checkpoints (banks,
    /// regulators), or print its key.
    #[command(subcommand)]
    Witness(crate::witness::WitnessCommand),
}

#[derive(Subcommand, Debug)]
pub enum ProofCommand {
    /// Fetch entry SEQ with its inclusion proof in the latest checkpoint (client).
    Inclusion {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch a proof that the ledger only grew since an older checkpoint,
    /// saved earlier with `ecocode checkpoint > old.note` (client).
    Consistency {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        old_checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a proof file offline against the signed checkpoint(s) it holds.
    Verify {
        file: PathBuf,
        /// The verifier key, as printed by `ecocode key show`.
        #[arg(long)]
        public_key: String,
        /// A C2SP tlog-policy file: also require its quorum of witness
        /// cosignatures on the (newest) checkpoint.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

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
    /// The ledger store's page cache (sled), in MiB.
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
}

impl WebArgs {
    fn config(self) -> WebConfig {
        WebConfig {
            public_url: self.public_url,
            max_connections: self.http_max_connections,
            max_connections_per_peer: self.http_max_connections_per_peer,
            request_timeout: Duration::from_millis(self.http_request_timeout_ms),
            ..WebConfig::default()
        }
    }
}

/// `--http-listen`: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

fn parse_http_listen(text: &str) -> Result<HttpListen, String> {
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

fn millis(d: Duration) -> u64 {
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

#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Create a principal and print its token once, alone on the last line.
    Add {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// admin, regulator, lender, enterprise or source.
        #[arg(long)]
        role: String,
        /// Region-code prefix (regulator), USCC (enterprise) or source name (source).
        #[arg(long)]
        scope: Option<String>,
        /// `postgres://USER@HOST/DB`: add it to that shared store (every
        /// node sees it) instead of DATA/principals/.
        #[arg(long, env = "ECOCODE_STORE")]
        store: Option<String>,
    },
    /// Revoke a principal: its token stops working, on a running server
    /// within a second. The name stays taken.
    Revoke {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// `postgres://USER@HOST/DB`: revoke it in that shared store.
        #[arg(long, env = "ECOCODE_STORE")]
        store: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EnterpriseCommand {
    /// Change name, region or industry, or mark closed or merged; a new
    /// ledger entry, the history is kept (admin, regulator in scope).
    Update {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        industry: Option<String>,
        /// Mark the enterprise closed (ceased operating).
        #[arg(long, conflicts_with = "merged_into")]
        close: bool,
        /// Mark the enterprise merged into this USCC.
        #[arg(long)]
        merged_into: Option<String>,
        /// Mark a closed or merged enterprise active again.
        #[arg(long, conflicts_with_all = ["close", "merged_into"])]
        reopen: bool,
        /// Why, e.g. the notice the change is based on.
        #[arg(long)]
        reason: String,
    },
    /// Every state of the enterprise, oldest first.
    History {
        #[command(flatten)]
        conn: Connection,
        #[arg(long)]
        uscc: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print the verifier key (`<name>+<key id>+<base64 key>`) of a data
    /// directory or key file; checkpoints and attestations verify with it.
    Show {
        #[arg(long, default_value = "./data")]
        data: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Fetch a signed attestation of a score and write it to a file (client).
    Get {
        #[command(flatten)]
        conn: Connection,
        uscc: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an attestation file offline against the service's public key.
    /// The file holds a signed note (`attest get`, the page's download) or
    /// the text of a scanned QR code: the compact form
    /// (`HTTP://HOST/Q/<digits>`) or the full one (`<page URL>?att=...`).
    Verify {
        file: PathBuf,
        /// The verifier key, as printed by `ecocode key show`.
        #[arg(long)]
        public_key: String,
        /// A C2SP tlog-policy file: also require the quorum of witness
        /// cosignatures on the checkpoint given with --checkpoint.
        #[arg(long, requires = "checkpoint")]
        policy: Option<PathBuf>,
        /// The cosigned checkpoint of the attestation's tree (its size and
        /// root), e.g. saved with `ecocode checkpoint`; needed by --policy.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
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

/// The model file given with `--model`, or the one built into the binary.
fn load_model(path: Option<&Path>) -> anyhow::Result<Model> {
    match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the model file {}", path.display()))?;
            Model::from_toml(&text).with_context(|| format!("model file {}", path.display()))
        }
        None => Ok(Model::builtin()),
    }
}

fn parse_time(flag: &str, text: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse_rfc3339(text)
        .with_context(|| format!("{flag} {text:?} is not RFC 3339, e.g. 2026-03-15T08:00:00Z"))
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => unreachable!("serve is dispatched by main"),
        Command::Witness(crate::witness::WitnessCommand::Serve(_)) => {
            unreachable!("witness serve is dispatched by main")
        }
        Command::Witness(crate::witness::WitnessCommand::Key { data, name }) => {
            crate::witness::key(&data, &name)
        }
        Command::Principal(PrincipalCommand::Add { data, name, role, scope, store }) => {
            let role = Role::parse(&role, scope.as_deref())?;
            let url = postgres_url(store)?;
            let principals = PrincipalStore::open_in(&data, url.as_deref())?;
            let token = principals.add(&name, role.clone())?;
            let place = principals_place(&data, url.as_deref());
            println!("created principal {name} ({}) in {place}", role.name());
            println!("the token is shown once; keep it secret:");
            println!("{token}");
            Ok(())
        }
        Command::Principal(PrincipalCommand::Revoke { data, name, store }) => {
            let url = postgres_url(store)?;
            PrincipalStore::open_in(&data, url.as_deref())?.revoke(&name)?;
            let place = principals_place(&data, url.as_deref());
            println!("revoked principal {name} in {place}; its token no longer works");
            Ok(())
        }
        Command::Verify { data, store, key_file } => match postgres_url(store)? {
            None => verify(&data),
            Some(url) => {
                let key = key_file.or_else(|| Some(data.join("ledger.key")).filter(|k| k.exists()));
                verify_postgres(&url, key.as_deref())
            }
        },
        Command::Migrate { from, to } => migrate(&from, &to),
        Command::Key(KeyCommand::Show { data }) => {
            let path = if data.is_dir() { data.join("ledger.key") } else { data.clone() };
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("cannot read {}; a server creates it on first start", path.display())
            })?;
            let (name, seed) = tlog::note::decode_signer_key(text.trim())
                .with_context(|| format!("{} is not an ecocode key file", path.display()))?;
            let public_key = tlog::note::public_key(&seed);
            println!("{}", tlog::note::encode_verifier_key(&name, &public_key));
            Ok(())
        }
        Command::Register { conn, uscc, name, region, industry } => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request =
                authed(&conn, pb::Enterprise { uscc, name, region_code: region, industry_code: industry })?;
            let receipt = client.register_enterprise(request).await.map_err(status_error)?.into_inner();
            println!(
                "registered at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (already registered, same details)" } else { "" }
            );
            Ok(())
        }
        Command::Append { conn, file, chunk_records, skip_lines } => {
            let options = crate::append::Options { chunk_records, skip_lines, report: true };
            crate::append::append(&conn, &file, &options).await.map(drop)
        }
        Command::Enterprise(EnterpriseCommand::Update {
            conn,
            uscc,
            name,
            region,
            industry,
            close,
            merged_into,
            reopen,
            reason,
        }) => {
            let status = match (close, &merged_into, reopen) {
                (true, _, _) => pb::EnterpriseStatus::Closed,
                (_, Some(_), _) => pb::EnterpriseStatus::Merged,
                (_, _, true) => pb::EnterpriseStatus::Active,
                _ => pb::EnterpriseStatus::Unspecified,
            };
            let update = pb::EnterpriseUpdate {
                uscc,
                name: name.unwrap_or_default(),
                region_code: region.unwrap_or_default(),
                industry_code: industry.unwrap_or_default(),
                status: status as i32,
                merged_into: merged_into.unwrap_or_default(),
                reason,
            };
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let receipt =
                client.update_enterprise(authed(&conn, update)?).await.map_err(status_error)?.into_inner();
            println!(
                "enterprise updated at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (no change)" } else { "" }
            );
            Ok(())
        }
        Command::Enterprise(EnterpriseCommand::History { conn, uscc }) => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetEnterpriseRequest { uscc })?;
            let history = client.get_enterprise_history(request).await.map_err(status_error)?.into_inner();
            for v in history.versions {
                let Some(s) = v.state else { continue };
                let status = s.status().as_str_name();
                let into =
                    if s.merged_into.is_empty() { String::new() } else { format!(" into {}", s.merged_into) };
                println!(
                    "seq {} {status}{into} name={:?} region={} industry={} reason={:?}",
                    v.seq, s.name, s.region_code, s.industry_code, s.reason
                );
            }
            Ok(())
        }
        Command::Gateway { conn, mn } => {
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetGatewayFiguresRequest { mn: mn.unwrap_or_default() })?;
            let figures = client.get_gateway_figures(request).await.map_err(status_error)?.into_inner();
            print!("{}", gateway_figures_text(&figures));
            Ok(())
        }
        Command::Point { conn, mn, uscc, outlet, limits, password } => {
            let limits = limits.iter().map(|l| parse_limit(l)).collect::<anyhow::Result<Vec<_>>>()?;
            let mut client = pb::registry_client::RegistryClient::new(channel(&conn).await?);
            let request = authed(
                &conn,
                pb::MonitoringPoint { mn, uscc, outlet, limits, password, ..Default::default() },
            )?;
            let receipt = client.register_monitoring_point(request).await.map_err(status_error)?.into_inner();
            println!(
                "monitoring point registered at seq {}{}",
                receipt.seq,
                if receipt.duplicate { " (unchanged)" } else { "" }
            );
            Ok(())
        }
        Command::Score { conn, uscc, as_of, tree_size, json, purpose } => {
            let as_of =
                as_of.as_deref().map(|s| parse_time("--as-of", s).map(to_proto::timestamp)).transpose()?;
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let mut request = authed(&conn, pb::GetScoreRequest { uscc, as_of, tree_size })?;
            if !purpose.is_empty() {
                let value =
                    purpose.parse().context("--purpose must be printable ASCII, at most 200 bytes")?;
                request.metadata_mut().insert("x-ecocode-purpose", value);
            }
            let score = client.get_score(request).await.map_err(status_error)?.into_inner();
            if json {
                println!("{}", score_json(&score));
            } else {
                print_score(&score);
            }
            Ok(())
        }
        Command::Inquiries { conn, uscc, from, to, limit } => {
            let from =
                from.as_deref().map(|t| parse_time("--from", t).map(to_proto::timestamp)).transpose()?;
            let to = to.as_deref().map(|t| parse_time("--to", t).map(to_proto::timestamp)).transpose()?;
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let mut page_token = String::new();
            let mut shown = 0;
            println!(
                "{:<25} {:<18} {:<16} {:<10} {:<14} purpose",
                "at", "uscc", "principal", "role", "method"
            );
            loop {
                let request =
                    pb::ListInquiriesRequest { uscc: uscc.clone(), from, to, page_size: 1_000, page_token };
                let page =
                    client.list_inquiries(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
                for i in &page.inquiries {
                    if limit != 0 && shown == limit {
                        return Ok(());
                    }
                    let at = i.at.as_ref().and_then(|t| Timestamp::from_unix(t.seconds, t.nanos));
                    // Every field is the server's text: shown, never run.
                    println!(
                        "{:<25} {:<18} {:<16} {:<10} {:<14} {}",
                        at.map(|t| t.to_string()).unwrap_or_default(),
                        terminal_text(&i.uscc),
                        terminal_text(&i.principal),
                        terminal_text(&i.role),
                        terminal_text(&i.method),
                        terminal_text(&i.purpose)
                    );
                    shown += 1;
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                page_token = page.next_page_token;
            }
        }
        Command::Checkpoint { conn } => {
            let mut client = pb::ledger_client::LedgerClient::new(channel(&conn).await?);
            let checkpoint = client
                .get_checkpoint(authed(&conn, pb::GetCheckpointRequest {})?)
                .await
                .map_err(status_error)?
                .into_inner();
            print!("{}", checkpoint.signed_note);
            Ok(())
        }
        Command::Attest(AttestCommand::Get { conn, uscc, out }) => {
            let mut client = pb::scores_client::ScoresClient::new(channel(&conn).await?);
            let request = authed(&conn, pb::GetAttestationRequest { uscc, as_of: None, tree_size: 0 })?;
            let attestation = client.get_attestation(request).await.map_err(status_error)?.into_inner();
            std::fs::write(&out, &attestation.signed_note)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Proof(command) => proof(command).await,
        Command::Import { conn, file } => crate::import::run(&conn, &file).await.map(|_| ()),
        Command::ScoreAll { conn, as_of, out, model } => {
            let model = load_model(model.as_deref())?;
            let as_of = as_of.as_deref().map(|t| parse_time("--as-of", t)).transpose()?;
            crate::batch::score_all(&conn, &model, as_of, &out).await.map(|_| ())
        }
        Command::Report { conn, from, to, region, out, changes_out, model } => {
            let model = load_model(model.as_deref())?;
            let from = from.as_deref().map(|t| parse_time("--from", t)).transpose()?;
            let to = to.as_deref().map(|t| parse_time("--to", t)).transpose()?;
            crate::batch::report(
                &conn,
                &model,
                from,
                to,
                region.as_deref(),
                out.as_deref(),
                changes_out.as_deref(),
            )
            .await
            .map(|_| ())
        }
        Command::Attest(AttestCommand::Verify { file, public_key, policy, checkpoint }) => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            // A signed note has lines; a QR code's text is one URL.
            let note = if text.trim().contains('\n') {
                text
            } else {
                tlog::attestation::note_from_qr_text(&text).with_context(|| {
                    format!("{} is neither a signed note nor a QR code's text", file.display())
                })?
            };
            let (key_name, key) = tlog::note::decode_verifier_key(public_key.trim())
                .context("--public-key must be a verifier key as printed by `ecocode key show`")?;
            let attestation = tlog::attestation::verify(&note, &key_name, &key)
                .map_err(|e| anyhow::anyhow!("attestation {} does NOT verify: {e}", file.display()))?;
            println!("attestation verifies against the given public key");
            if let (Some(policy), Some(checkpoint)) = (policy, checkpoint) {
                crate::witness::attestation_quorum(&policy, &checkpoint, &attestation, &key_name, &key)?;
            }
            for (k, v) in attestation.fields() {
                println!("  {k:<10} {v}");
            }
            Ok(())
        }
    }
}

async fn proof(command: ProofCommand) -> anyhow::Result<()> {
    use tlog::bundle::{Bundle, Verified};
    let write = |out: &Path, bundle: &Bundle| -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(bundle)?;
        std::fs::write(out, text + "\n").with_context(|| format!("cannot write {}", out.display()))?;
        println!("wrote {}", out.display());
        Ok(())
    };
    match command {
        ProofCommand::Inclusion { conn, seq, out } => {
            let mut client = pb::ledger_client::LedgerClient::new(channel(&conn).await?);
            let checkpoint = checkpoint_covering(&conn, &mut client, seq + 1).await?;
            let entry =
                client.get_entry(authed(&conn, pb::GetEntryRequest { seq })?).await.map_err(status_error)?;
            let entry = entry.into_inner();
            let request = pb::GetInclusionProofRequest { seq, tree_size: checkpoint.tree_size };
            let p =
                client.get_inclusion_proof(authed(&conn, request)?).await.map_err(status_error)?.into_inner();
            let recorded_at = entry.recorded_at.unwrap_or_default();
            write(
                &out,
                &Bundle::Inclusion {
                    checkpoint: checkpoint.signed_note,
                    seq,
                    recorded_at_ns: recorded_at.seconds * 1_000_000_000 + i64::from(recorded_at.nanos),
                    payload: base64::engine::general_purpose::STANDARD.encode(&entry.payload),
                    hashes: p
                        .hashes
                        .iter()
                        .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                        .collect(),
                },
            )
        }
        ProofCommand::Consistency { conn, old_checkpoint, out } => {
            let old = std::fs::read_to_string(&old_checkpoint)
                .with_context(|| format!("cannot read {}", old_checkpoint.display()))?;
            let old_size = old
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .with_context(|| format!("{} is not a checkpoint note", old_checkpoint.display()))?;
            let mut client = pb::ledger_client::LedgerClient::new(channel(&conn).await?);
            let checkpoint = client
                .get_checkpoint(authed(&conn, pb::GetCheckpointRequest {})?)
                .await
                .map_err(status_error)?;
            let checkpoint = checkpoint.into_inner();
            let request =
                pb::GetConsistencyProofRequest { from_size: old_size, to_size: checkpoint.tree_size };
            let p = client
                .get_consistency_proof(authed(&conn, request)?)
                .await
                .map_err(status_error)?
                .into_inner();
            write(
                &out,
                &Bundle::Consistency {
                    old_checkpoint: old,
                    checkpoint: checkpoint.signed_note,
                    hashes: p
                        .hashes
                        .iter()
                        .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                        .collect(),
                },
            )
        }
        ProofCommand::Verify { file, public_key, policy } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let bundle: Bundle = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a proof file from `ecocode proof`", file.display()))?;
            let (key_name, key) = tlog::note::decode_verifier_key(public_key.trim())
                .context("--public-key must be a verifier key as printed by `ecocode key show`")?;
            let witnessed = match &policy {
                Some(policy) => Some(crate::witness::bundle_quorum(policy, &bundle)?),
                None => None,
            };
            match tlog::bundle::verify(&bundle, &key_name, &key) {
                Ok(Verified::Inclusion { seq, tree_size, entry_hash }) => println!(
                    "ok: entry {seq} (hash {}) is in the signed ledger of {tree_size} entries",
                    base64::engine::general_purpose::STANDARD.encode(entry_hash)
                ),
                Ok(Verified::Consistency { from_size, to_size }) => {
                    println!(
                        "ok: the signed ledger of {from_size} entries is a prefix of the one of {to_size}"
                    )
                }
                Err(e) => bail!("proof {} does NOT verify: {e}", file.display()),
            }
            if let Some(witnessed) = witnessed {
                println!("{witnessed}");
            }
            Ok(())
        }
    }
}

/// The latest signed checkpoint once it holds the first `size` entries: the
/// service signs new heads every `--checkpoint-interval-ms`, so a very new
/// entry may need a moment. Waits at most ten seconds.
async fn checkpoint_covering(
    conn: &Connection,
    client: &mut pb::ledger_client::LedgerClient<tonic::transport::Channel>,
    size: u64,
) -> anyhow::Result<pb::Checkpoint> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let checkpoint = client
            .get_checkpoint(authed(conn, pb::GetCheckpointRequest {})?)
            .await
            .map_err(status_error)?
            .into_inner();
        if checkpoint.tree_size >= size {
            return Ok(checkpoint);
        }
        if std::time::Instant::now() >= deadline {
            bail!(
                "the latest signed checkpoint holds {} entries, not yet entry {}; try again in a few seconds",
                checkpoint.tree_size,
                size - 1
            );
        }
        eprintln!("waiting for a signed checkpoint that covers entry {} ...", size - 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where `principal add|revoke` wrote, for its message.
fn principals_place(data: &Path, store: Option<&str>) -> String {
    match store {
        Some(_) => "the shared store".to_string(),
        None => data.display().to_string(),
    }
}

/// `--store`: a PostgreSQL URL, or nothing (sled). Anything else is a
/// mistake worth naming.
fn postgres_url(store: Option<String>) -> anyhow::Result<Option<String>> {
    match store {
        None => Ok(None),
        Some(url) if url.is_empty() => Ok(None),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Some(url)),
        Some(_) => bail!(
            "--store (or ECOCODE_STORE) must be a postgres://USER@HOST/DB URL; leave it out for sled in --data"
        ),
    }
}

fn verify_postgres(url: &str, key_file: Option<&Path>) -> anyhow::Result<()> {
    let bar = progress_bar("verifying", "entries");
    let report = ledger::verify_postgres(url, key_file, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match report {
        Ok(r) => {
            let signature = if r.checkpoint_signature_checked {
                "signature checked"
            } else {
                "signature NOT checked: pass --key-file"
            };
            println!(
                "ok, {} entries, root {}, last checkpoint {} ({signature})",
                r.entries,
                base64::engine::general_purpose::STANDARD.encode(r.root),
                r.checkpoint_size.map_or("none".to_string(), |s| format!("at {s}")),
            );
            Ok(())
        }
        Err(e) => bail!("verification FAILED: {e}"),
    }
}

fn migrate(from: &Path, to: &str) -> anyhow::Result<()> {
    let Some(url) = postgres_url(Some(to.to_string()))? else {
        bail!("--to must be a postgres://USER@HOST/DB URL");
    };
    if !from.join("ledger").exists() {
        bail!("{} holds no ledger; pass the stopped server's --data directory", from.display());
    }
    let bar = progress_bar("migrating", "entries");
    let report = ledger::migrate_to_postgres(from, &url, &mut |phase, done, total| {
        bar.set_message(phase.to_string());
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let r = report.map_err(|e| anyhow::anyhow!("migration FAILED, the source is unchanged: {e}"))?;
    println!(
        "ok, {} entries copied; root {} and chain {} are identical in both stores",
        r.entries,
        base64::engine::general_purpose::STANDARD.encode(r.root),
        base64::engine::general_purpose::STANDARD.encode(r.chain),
    );
    println!("start every node with --store {} --key-file {}", to, from.join("ledger.key").display());
    Ok(())
}

fn verify(data: &Path) -> anyhow::Result<()> {
    if !data.join("ledger").exists() {
        bail!("{} holds no ledger; pass the server's --data directory", data.display());
    }
    let bar = progress_bar("verifying", "entries");
    let report = ledger::verify(data, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    match report {
        Ok(r) => {
            println!(
                "ok, {} entries, root {}",
                r.entries,
                base64::engine::general_purpose::STANDARD.encode(r.root)
            );
            Ok(())
        }
        Err(e) => bail!("verification FAILED: {e}"),
    }
}

/// `w01018=50mg/L`, `a21026=35mg/m3@ZsAvg`.
fn parse_limit(text: &str) -> anyhow::Result<pb::PollutantLimit> {
    let bad = || anyhow::anyhow!("--limit {text:?} must look like w01018=50mg/L or a21026=35mg/m3@ZsAvg");
    let (pollutant, rest) = text.split_once('=').ok_or_else(bad)?;
    let (rest, statistic) = rest.split_once('@').unwrap_or((rest, "Avg"));
    let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let limit: f64 = rest[..split].parse().map_err(|_| bad())?;
    Ok(pb::PollutantLimit {
        pollutant: pollutant.to_owned(),
        limit,
        unit: rest[split..].to_owned(),
        statistic: statistic.to_owned(),
    })
}

fn print_score(s: &pb::Score) {
    let grade = pb::CreditGrade::try_from(s.grade).map(|g| g.as_str_name()).unwrap_or("?");
    let code = pb::EcoCode::try_from(s.code).map(|c| c.as_str_name()).unwrap_or("?");
    println!("{} {}", terminal_text(&s.uscc), terminal_text(&s.name));
    println!(
        "  {code}  {grade}  {} points  MEE {}{}{}",
        s.points,
        mee_level_name(s.mee_level),
        if s.veto { "  VETO" } else { "" },
        if s.disputed { "  DISPUTED" } else { "" }
    );
    println!("  model {}, ledger size {}", s.model_version, s.tree_size);
    for r in s.reasons.iter() {
        println!(
            "  {:>+4}  {:<32} seq {:<6} {}",
            r.points,
            terminal_text(&r.kind),
            r.seq,
            terminal_text(&r.description)
        );
    }
}

/// Text from the server as a terminal shows it: control characters and
/// bidirectional overrides escaped (`\u{1b}`), so no name, description or
/// inquiry purpose moves the cursor, recolours the screen or starts a
/// forged line. The server strips them where they enter; this is the
/// second line of defence.
pub fn terminal_text(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(scoring::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| if scoring::is_control(c) { c.escape_unicode().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}

/// `GREEN`, `BLUE`, `YELLOW` or `RED` (the enum value without its
/// `MEE_LEVEL_` prefix, as in exports and the page's JSON); `?` from a
/// server that does not send it.
fn mee_level_name(level: i32) -> &'static str {
    match pb::MeeLevel::try_from(level) {
        Ok(pb::MeeLevel::Green) => "GREEN",
        Ok(pb::MeeLevel::Blue) => "BLUE",
        Ok(pb::MeeLevel::Yellow) => "YELLOW",
        Ok(pb::MeeLevel::Red) => "RED",
        _ => "?",
    }
}

fn score_json(s: &pb::Score) -> serde_json::Value {
    let ts = |t: &Option<prost_types::Timestamp>| {
        t.as_ref().and_then(|t| Timestamp::from_unix(t.seconds, t.nanos)).map(|t| t.to_string())
    };
    serde_json::json!({
        "uscc": s.uscc,
        "name": s.name,
        "points": s.points,
        "grade": pb::CreditGrade::try_from(s.grade).map(|g| g.as_str_name()).unwrap_or("?"),
        "code": pb::EcoCode::try_from(s.code).map(|c| c.as_str_name()).unwrap_or("?"),
        "mee_level": mee_level_name(s.mee_level),
        "veto": s.veto,
        "disputed": s.disputed,
        "as_of": ts(&s.as_of),
        "tree_size": s.tree_size,
        "model_version": s.model_version,
        "reasons": s.reasons.iter().map(|r| serde_json::json!({
            "kind": r.kind, "points": r.points, "seq": r.seq, "description": r.description,
            "expires_at": ts(&r.expires_at),
        })).collect::<Vec<_>>(),
    })
}

/// `ecocode gateway`: one `total NAME VALUE` line per counter, then per
/// device one line of figures, with its rejections and deviations by name.
fn gateway_figures_text(figures: &pb::GatewayFigures) -> String {
    let mut out = String::new();
    for (name, value) in &figures.totals {
        out.push_str(&format!("total {name} {value}\n"));
    }
    let joined = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    };
    for d in &figures.devices {
        let last_seen = d
            .last_seen
            .as_ref()
            .and_then(|t| Timestamp::from_unix(t.seconds, t.nanos))
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        // A device still checked against a legacy (ledger-held) hash says so.
        let legacy = if d.legacy_verifier > 0 {
            format!(" legacy_verifier={} (rotate its password)", d.legacy_verifier)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "device {} packets={} acknowledged={} rejected=[{}] deviations=[{}] last_seen={last_seen}{legacy}\n",
            d.device,
            d.packets,
            d.acknowledged,
            joined(&d.rejected),
            joined(&d.deviations),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_flags_override_only_what_they_name() {
        let args = GatewayArgs {
            hj212_max_connections_per_peer: Some(4),
            hj212_idle_timeout_secs: Some(30),
            ..GatewayArgs::default()
        };
        let config = args.apply(GatewayConfig::default());
        assert_eq!((config.max_connections_per_peer, config.idle_timeout), (4, Duration::from_secs(30)));
        assert_eq!(config.max_connections, GatewayConfig::default().max_connections);
    }

    /// The second line of defence: whatever the server sends, a printed
    /// text neither runs escape sequences nor starts a line of its own.
    #[test]
    fn texts_from_the_server_are_printed_with_control_characters_escaped() {
        let shown = terminal_text("LA-7\u{1b}[2J\r\nforged\u{202e}\u{9b}x");
        assert_eq!(shown, "LA-7\\u{1b}[2J\\u{d}\\u{a}forged\\u{202e}\\u{9b}x");
        assert!(matches!(terminal_text("贷款 LA-7"), std::borrow::Cow::Borrowed("贷款 LA-7")));
    }

    #[test]
    fn gateway_figures_print_one_line_per_total_and_per_device() {
        let figures = pb::GatewayFigures {
            totals: [("acks_sent".to_owned(), 2), ("wrong_password".to_owned(), 1)].into(),
            devices: vec![pb::DeviceFigures {
                device: "LD130133000015".into(),
                packets: 3,
                acknowledged: 2,
                rejected: [("wrong_password".to_owned(), 1)].into(),
                deviations: [("no_crlf".to_owned(), 3), ("no_qn".to_owned(), 1)].into(),
                last_seen: Some(prost_types::Timestamp { seconds: 1_780_272_000, nanos: 0 }),
                legacy_verifier: 2,
            }],
        };
        assert_eq!(
            gateway_figures_text(&figures),
            "total acks_sent 2\ntotal wrong_password 1\ndevice LD130133000015 packets=3 acknowledged=2 \
             rejected=[wrong_password=1] deviations=[no_crlf=3,no_qn=1] last_seen=2026-06-01T00:00:00Z \
             legacy_verifier=2 (rotate its password)\n"
        );
    }
}
