//! The composition root: the one place that wires the service together.
//!
//! [`App::build`] opens the stores (verifying the ledger), binds every
//! listener and returns an [`App`]; [`App::run`] serves until the shutdown
//! future resolves. `ecocode serve` and the integration tests start the
//! service through these two calls and nothing else.
//!
//! Shutdown order, which keeps every acknowledged record in the final
//! checkpoint:
//! 1. every input stops accepting (gRPC, the HJ 212 gateway, the web page) and watch
//!    streams end with `UNAVAILABLE`;
//! 2. in-flight calls and the gateway's connections and day closes finish,
//!    and `run` waits for all of them; gRPC calls still running after the
//!    drain time (`TransportConfig::drain_timeout`) are cancelled with
//!    `UNAVAILABLE`, and connections still open one drain time later are
//!    closed, so no client can hold shutdown forever;
//! 3. only then the ledger is closed: queued appends are committed and
//!    flushed, and a final checkpoint is signed;
//! 4. the stores are dropped, which releases their directory locks before
//!    `run` returns (see the `kv` crate), so the same directory can be
//!    opened again at once.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use hj212::{Gateway, GatewayConfig, GatewayStats};
use ledger::LedgerConfig;
use scoring::Model;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;

use crate::calls::CallGuardLayer;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::gateway::LedgerSink;
use crate::metrics::{Metrics, MetricsSource};
use crate::principals::PrincipalStore;
use crate::service::Service;
use crate::transport::{self, DescriptorBudget, TransportConfig};
use crate::web::WebConfig;

/// Everything the service is started with.
pub struct Config {
    /// The data directory and the ledger's settings (origin, key,
    /// checkpoint interval).
    pub ledger: LedgerConfig,
    pub model: Model,
    pub clock: Arc<dyn Clock>,
    /// gRPC listen address (port 0: any free port).
    pub listen: SocketAddr,
    /// HJ 212 data loggers' listen address; `None`: no gateway.
    pub hj212_listen: Option<SocketAddr>,
    /// The gateway's limits and timing; its clock is replaced by [`Config::clock`].
    pub gateway: GatewayConfig,
    /// TLS and the limits of the gRPC transport.
    pub transport: TransportConfig,
    /// Where `GET /metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// At most this many enterprises' current scores are kept in memory
    /// between reads (see `service/current.rs`); more are recomputed.
    pub score_view_capacity: usize,
    /// Where the web page (`GET /e/{USCC}`, ...) is served; `None`: nowhere.
    pub http_listen: Option<SocketAddr>,
    /// The web listener's limits.
    pub web: WebConfig,
    /// `--witness-policy`: publish only checkpoints a quorum of these
    /// witnesses cosigned; each may take `witness_timeout` per request.
    pub witness_policy: Option<tlog::policy::Policy>,
    pub witness_timeout: std::time::Duration,
    /// A round publishes what it has after this long.
    pub witness_publish_timeout: std::time::Duration,
    /// `--lender-access`: whether a lender reads an enterprise's details
    /// only under a live grant (the default) or freely.
    pub lender_access: crate::consent::LenderAccess,
}

/// [`Config::score_view_capacity`] by default: a province's enterprises,
/// at a few KB each.
pub const DEFAULT_SCORE_VIEW_CAPACITY: usize = 1_000_000;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("ledger", &self.ledger)
            .field("model", &self.model.version())
            .field("listen", &self.listen)
            .field("hj212_listen", &self.hj212_listen)
            .field("transport", &self.transport)
            .field("metrics_listen", &self.metrics_listen)
            .field("http_listen", &self.http_listen)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The defaults of the library: data in `data_dir`, gRPC on
    /// 127.0.0.1:50051, the built-in model, the wall clock, no gateway, no
    /// web page (`ecocode serve` turns it on at 127.0.0.1:8080).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            ledger: LedgerConfig::new(data_dir),
            model: Model::builtin(),
            clock: Arc::new(SystemClock),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            hj212_listen: None,
            gateway: GatewayConfig::default(),
            transport: TransportConfig::default(),
            metrics_listen: None,
            score_view_capacity: DEFAULT_SCORE_VIEW_CAPACITY,
            http_listen: None,
            web: WebConfig::default(),
            witness_policy: None,
            witness_timeout: crate::witnessing::DEFAULT_WITNESS_TIMEOUT,
            witness_publish_timeout: crate::witnessing::DEFAULT_PUBLISH_TIMEOUT,
            lender_access: crate::consent::LenderAccess::default(),
        }
    }
}

impl Config {
    /// How the listeners that are on share `RLIMIT_NOFILE`: each one's
    /// connection cap, plus the reserve for the stores and files.
    pub fn descriptor_budget(&self) -> DescriptorBudget {
        let mut shares = vec![("--max-connections", self.transport.max_connections as u64)];
        if self.http_listen.is_some() {
            shares.push(("--http-max-connections", self.web.max_connections as u64));
        }
        if self.hj212_listen.is_some() {
            shares.push(("--hj212-max-connections", self.gateway.max_connections as u64));
        }
        if self.metrics_listen.is_some() {
            shares.push(("metrics scrapes", crate::metrics::MAX_SCRAPES as u64));
        }
        DescriptorBudget { shares, reserve: transport::RESERVED_DESCRIPTORS }
    }
}

/// A built service: stores open, listeners bound, nothing served yet.
pub struct App {
    service: Arc<Service>,
    principals: Arc<PrincipalStore>,
    grpc: TcpListener,
    grpc_addr: SocketAddr,
    transport: TransportConfig,
    tls: Option<ServerTlsConfig>,
    gateway: Option<(TcpListener, SocketAddr, Gateway<LedgerSink>)>,
    metrics: Arc<Metrics>,
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    web: Option<(TcpListener, SocketAddr, WebConfig)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("grpc_addr", &self.grpc_addr).finish_non_exhaustive()
    }
}

impl App {
    /// Opens and verifies the ledger (reporting `(done, total)` entries),
    /// the principals and the gateway's state, and binds the listeners.
    pub async fn build(config: Config, progress: &mut dyn FnMut(u64, u64)) -> Result<App> {
        // Before anything is opened: caps that cannot all be honoured would
        // let one listener starve the others of descriptors.
        config.descriptor_budget().ensure()?;
        if let Some(url) = &config.web.public_url {
            crate::web::parse_public_url(url)
                .map_err(|e| Error::InvalidArgument(format!("--public-url: {e}")))?;
        }
        let data_dir = config.ledger.dir.clone();
        crate::private::create_dir(&data_dir)?;
        // Read before anything is opened: a wrong PEM file is a usage error.
        let tls = match &config.transport.tls {
            Some(files) => Some(files.load(config.transport.tls_handshake_timeout)?),
            None => None,
        };
        let principals = Arc::new(
            PrincipalStore::open_in(&data_dir, config.ledger.store.as_deref())?
                .with_clock(config.clock.clone()),
        );
        let shared_store = config.ledger.store.clone();
        let valid_days = config.model.monitoring();
        let service = Arc::new(Service::open(
            config.ledger,
            config.model,
            config.clock.clone(),
            config.score_view_capacity,
            progress,
        )?);
        service.set_lender_access(config.lender_access);
        // After the ledger, which creates the shared tables on PostgreSQL.
        let credentials = hj212::Credentials::open(&data_dir, shared_store.as_deref())
            .map_err(|e| Error::Internal(format!("hj212 device credentials: {e}")))?;
        service.attach_credentials(Arc::new(credentials));
        // Before anything is scored: the model's exact file into the log.
        service.publish_model().await?;
        if let Some(policy) = config.witness_policy {
            let (timeout, publish) = (config.witness_timeout, config.witness_publish_timeout);
            let witnessing = crate::witnessing::Witnessing::new(
                policy,
                timeout,
                publish,
                service.ledger(),
                shared_store.as_deref(),
            )?;
            service.attach_witnessing(Arc::new(witnessing));
        }
        let grpc = bind(config.listen, "--listen").await?;
        let grpc_addr = local_addr(&grpc)?;
        let gateway = match config.hj212_listen {
            None => None,
            Some(addr) => {
                let listener = bind(addr, "--hj212-listen").await?;
                let addr = local_addr(&listener)?;
                let clock = config.clock.clone();
                let gateway_config = GatewayConfig {
                    clock: Arc::new(move || clock.now()),
                    valid_days,
                    // On a shared store the open days are shared too.
                    shared_state: shared_store.clone(),
                    ..config.gateway
                };
                let sink = Arc::new(LedgerSink::new(service.clone()));
                let gateway = Gateway::open(&data_dir.join("hj212"), sink, gateway_config)
                    .map_err(|e| Error::Internal(format!("hj212 gateway state: {e}")))?;
                service.attach_gateway_stats(gateway.stats());
                Some((listener, addr, gateway))
            }
        };
        let metrics_listener = match config.metrics_listen {
            None => None,
            Some(addr) => {
                let listener = bind(addr, "--metrics-listen").await?;
                let addr = local_addr(&listener)?;
                Some((listener, addr))
            }
        };
        let web = match config.http_listen {
            None => None,
            Some(addr) => {
                let listener = bind(addr, "--http-listen").await?;
                let addr = local_addr(&listener)?;
                Some((listener, addr, config.web))
            }
        };
        // The stores created their files; make them the service user's alone.
        crate::private::restrict_tree(&data_dir)?;
        Ok(App {
            service,
            principals,
            grpc,
            grpc_addr,
            transport: config.transport,
            tls,
            gateway,
            metrics: Arc::new(Metrics::default()),
            metrics_listener,
            web,
        })
    }

    /// Where `GET /metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// Where the web page is served, when it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.web.as_ref().map(|(_, addr, _)| *addr)
    }

    /// Whether gRPC is served over TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Where gRPC is served.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where data loggers connect, when the gateway is on.
    pub fn hj212_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().map(|(_, addr, _)| *addr)
    }

    /// The gateway's counters, readable while it runs.
    pub fn gateway_stats(&self) -> Option<Arc<GatewayStats>> {
        self.gateway.as_ref().map(|(_, _, g)| g.stats())
    }

    /// The service, for operators' tools and tests that look inside.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The ledger behind the service's door, for operators' tools and
    /// tests that look inside (signing a checkpoint now, reading entries).
    /// Transports get the [`Service`] only, never this.
    pub fn ledger(&self) -> &ledger::Ledger {
        self.service.ledger()
    }

    /// The principals the service authenticates against.
    pub fn principals(&self) -> &Arc<PrincipalStore> {
        &self.principals
    }

    /// Serves every input until `shutdown` resolves, then shuts down in the
    /// order of the module documentation.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let App {
            service,
            principals,
            grpc,
            grpc_addr,
            transport,
            tls,
            gateway,
            metrics,
            metrics_listener,
            web,
        } = self;
        let data_dir = service.ledger().dir().to_path_buf();
        let (stop, stopped) = watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new calls or connections");
            let _ = stop.send(true);
        };
        let reloads = {
            let (principals, stopped) = (principals.clone(), until_stopped(stopped.clone()));
            async move { principals.keep_fresh(stopped).await }
        };
        let web = serve_web(
            web,
            service.clone(),
            principals.clone(),
            metrics.clone(),
            transport.drain_timeout,
            stopped.clone(),
        );
        let (routes, health) = crate::grpc::routes(service.clone(), principals, &transport).await?;
        let writability = watch_writable(service.clone(), health, until_stopped(stopped.clone()));
        let grpc =
            serve_grpc(grpc, grpc_addr, tls, &transport, routes, service.clone(), metrics.clone(), &stopped)?;
        let gateway_stats = gateway.as_ref().map(|(_, _, g)| g.stats());
        let gateway = serve_gateway(gateway, stopped.clone());
        let metrics_endpoint =
            serve_metrics(metrics_listener, metrics, service.clone(), gateway_stats, stopped.clone());
        let checkpoints = sign_and_witness(service.clone(), stopped.clone());
        let view = keep_view_current(service.clone(), until_stopped(stopped.clone()));
        // Steps 1 and 2 of the shutdown order: the stop reaches every named
        // future at once and each drains; the ledger closes only after all.
        let ((), (), (), (), (), grpc, gateway, (), ()) = tokio::join!(
            signal,
            reloads,
            checkpoints,
            view,
            writability,
            grpc,
            gateway,
            metrics_endpoint,
            web
        );
        tracing::info!("every input stopped; closing the ledger");
        let closed = service.ledger().close().await;
        drop(service);
        // Files the stores created while serving (sled's snapshots, the
        // final checkpoint) are made private too.
        let restricted = crate::private::restrict_tree(&data_dir);
        grpc.map_err(|e| Error::Internal(format!("gRPC server: {e}")))?;
        gateway?;
        closed?;
        restricted?;
        Ok(())
    }
}

/// The web page until the stop, then its drain: in-flight requests finish;
/// a client still holding a connection two drain times after the stop is
/// cut off.
async fn serve_web(
    web: Option<(TcpListener, SocketAddr, WebConfig)>,
    service: Arc<Service>,
    principals: Arc<PrincipalStore>,
    metrics: Arc<Metrics>,
    drain: std::time::Duration,
    stopped: watch::Receiver<bool>,
) {
    let stopping = until_stopped(stopped.clone());
    let drained = until_stopped(stopped);
    let Some((listener, addr, config)) = web else { return };
    tracing::info!(%addr, "serving the web page on http://{addr}/e/<USCC>");
    if transport::plaintext_is_exposed(addr) {
        tracing::warn!(
            %addr,
            "serving the web page in plaintext on a non-loopback address: sign-in tokens and \
             session cookies cross the network unencrypted; put a TLS-terminating proxy in front"
        );
    }
    if config.public_url.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "no --public-url: QR codes and feeds link to http://{addr}; set --public-url to the \
             address visitors use"
        );
    }
    let router = crate::web::router(service, principals, addr, &config, metrics.clone());
    tokio::select! {
        () = crate::web::serve(listener, router, &config, metrics, stopping) => {}
        () = async { drained.await; tokio::time::sleep(2 * drain).await } => {
            tracing::warn!("closing the web connections still open after the drain");
        }
    }
}

/// gRPC until the stop, then its drain: calls still running after the
/// drain time are cancelled, connections still open one drain time later
/// are closed.
#[allow(clippy::too_many_arguments)]
fn serve_grpc(
    grpc: TcpListener,
    grpc_addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
    transport: &TransportConfig,
    routes: tonic::service::Routes,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    stopped: &watch::Receiver<bool>,
) -> Result<impl Future<Output = std::result::Result<(), tonic::transport::Error>> + use<>> {
    if tls.is_none() && transport::plaintext_is_exposed(grpc_addr) {
        tracing::warn!(
            addr = %grpc_addr,
            "serving gRPC in plaintext on a non-loopback address: tokens and data cross the network \
             unencrypted; use --tls-cert and --tls-key"
        );
    }
    tracing::info!(
        addr = %grpc_addr,
        tls = tls.is_some(),
        mtls = transport.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        model = service.model().version(),
        entries = service.ledger().head().size,
        "serving gRPC"
    );
    let cancel = CancellationToken::new();
    let grpc = {
        let accepting = until_stopped(stopped.clone());
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).map_err(|e| Error::InvalidArgument(format!("TLS: {e}")))?;
        }
        let close_connections = CancellationToken::new();
        let incoming = transport::incoming(
            grpc,
            transport.connection_idle_timeout,
            transport.max_connections,
            metrics.clone(),
            close_connections.clone(),
        );
        let serve = server
            .max_concurrent_streams(transport.max_concurrent_streams)
            .http2_keepalive_interval(Some(transport.keepalive_interval))
            .http2_keepalive_timeout(Some(transport.keepalive_timeout))
            .layer(CallGuardLayer::new(transport, metrics.clone(), cancel.clone()))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                accepting.await;
                service.begin_shutdown();
            });
        let drain = transport.drain_timeout;
        let draining = until_stopped(stopped.clone());
        async move {
            let mut serve = Box::pin(serve);
            tokio::select! {
                served = &mut serve => served,
                () = async { draining.await; tokio::time::sleep(drain).await } => {
                    tracing::warn!(drain_ms = drain.as_millis() as u64, "drain time over; cancelling the calls still running");
                    cancel.cancel();
                    // Cancelled calls answer at once; a connection still
                    // open one more drain time later belongs to a peer that
                    // does not read, and is closed under it.
                    tokio::select! {
                        served = &mut serve => served,
                        () = tokio::time::sleep(drain) => {
                            tracing::warn!("closing the connections still open after the drain");
                            close_connections.cancel();
                            serve.await
                        }
                    }
                }
            }
        }
    };
    Ok(grpc)
}

/// The HJ 212 gateway until the stop; its connections and day closes finish.
async fn serve_gateway(
    gateway: Option<(TcpListener, SocketAddr, Gateway<LedgerSink>)>,
    stopped: watch::Receiver<bool>,
) -> Result<()> {
    match gateway {
        None => Ok(()),
        Some((listener, _, gateway)) => {
            let stats = gateway.stats();
            let served = gateway.serve(listener, until_stopped(stopped)).await;
            tracing::info!(counts = ?stats.snapshot(), "hj212 gateway stopped");
            served.map_err(|e| Error::Internal(format!("hj212 gateway: {e}")))
        }
    }
}

/// `GET /metrics` until the stop.
async fn serve_metrics(
    listener: Option<(TcpListener, SocketAddr)>,
    metrics: Arc<Metrics>,
    service: Arc<Service>,
    gateway: Option<Arc<GatewayStats>>,
    stopped: watch::Receiver<bool>,
) {
    if let Some((listener, addr)) = listener {
        tracing::info!(%addr, "serving metrics on GET /metrics");
        let source = MetricsSource { metrics, service, gateway };
        crate::metrics::serve(listener, source, until_stopped(stopped)).await;
    }
}

/// The checkpoint timer and, under `--witness-policy`, the witnessing of
/// new checkpoints, until the stop.
async fn sign_and_witness(service: Arc<Service>, stopped: watch::Receiver<bool>) {
    let signing = sign_checkpoints(service.clone(), until_stopped(stopped.clone()));
    let witnessing = async {
        if let Some(w) = service.witnessing() {
            let period = service.ledger().checkpoint_interval();
            w.clone().run(service.ledger().clone(), period, until_stopped(stopped.clone())).await;
        }
    };
    tokio::join!(signing, witnessing);
}

/// Signs a checkpoint of each new head, at most once per checkpoint
/// interval, until `stop`; reads only ever return the latest one.
async fn sign_checkpoints(service: Arc<Service>, stop: impl Future<Output = ()>) {
    // A zero interval (sign every new head) still ticks at a bounded rate.
    let period = service.ledger().checkpoint_interval().max(std::time::Duration::from_millis(10));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {
                let ledger = service.ledger().clone();
                match tokio::task::spawn_blocking(move || ledger.sign_checkpoint_if_due()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "checkpoint not signed; trying again next interval"),
                    Err(e) => tracing::warn!(error = %e, "checkpoint task failed"),
                }
            }
        }
    }
}

/// Keeps the view of current scores ahead of reads: re-evaluates the
/// enterprises with new entries (every one at start-up) in the background,
/// in rounds of at most [`REFRESH_ROUND`], resting after each round as long
/// as it took, so that it never takes more than half of one core from
/// ingest and reads.
async fn keep_view_current(service: Arc<Service>, stop: impl Future<Output = ()>) {
    const IDLE: std::time::Duration = std::time::Duration::from_millis(100);
    tokio::pin!(stop);
    loop {
        let started = std::time::Instant::now();
        let state = service.clone();
        let rest = match tokio::task::spawn_blocking(move || state.refresh_view(REFRESH_ROUND)).await {
            Ok(Ok(0)) => IDLE,
            Ok(Ok(_)) => started.elapsed(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "refreshing current scores failed; reads recompute");
                IDLE
            }
            Err(e) => {
                tracing::warn!(error = %e, "the score refresher failed");
                IDLE
            }
        };
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(rest) => {}
        }
    }
}

/// Enterprises re-evaluated per round by [`keep_view_current`].
const REFRESH_ROUND: usize = 256;

/// Checks every second whether the ledger can take appends and reports it
/// through the health service (NOT_SERVING while the disk is full).
async fn watch_writable(
    service: Arc<Service>,
    health: tonic_health::server::HealthReporter,
    stop: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut reported = true;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {
                let writable = service.ledger().writable();
                if writable.is_ok() != reported {
                    match &writable {
                        Ok(()) => tracing::info!("the ledger takes appends again; SERVING"),
                        Err(e) => tracing::warn!(error = %e, "the ledger cannot take appends; NOT_SERVING"),
                    }
                    reported = writable.is_ok();
                    crate::grpc::report_writable(&health, reported).await;
                }
            }
        }
    }
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::io(format!("cannot listen on {addr}; is another server running there? try another {flag}"), e)
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr> {
    listener.local_addr().map_err(|e| Error::io("listener address", e))
}
