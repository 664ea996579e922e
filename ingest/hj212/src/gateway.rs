//! The TCP gateway data loggers connect to: frames, checks and acknowledges
//! their packets, feeds the daily aggregation and hands the resulting
//! records to a [`RecordSink`] (the server's ledger path), without knowing
//! anything about gRPC.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scoring::{MonitoringRules, Record, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::aggregate::{AcceptOutcome, DailyAggregator};
use super::availability::Outage;
use super::credentials::PasswordCheck;
use super::deviation::deviations;
use super::figures::{DeviceFigures, Figures, count, peer_key};
use super::framer::Framer;
use super::packet::{PacketError, parse_packet};
use super::point::MonitoringPoint;
use super::split::{Reassembled, Reassembly};
use super::throttle::{AfterWrong, Limits, Throttle};
use super::time::LocalDay;
use super::{Error, Result};

/// Where the gateway gets registrations from and puts records.
pub trait RecordSink: Send + Sync + 'static {
    /// The registered monitoring point of device `mn`, if any.
    fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint>;

    /// Every registered monitoring point, with its registration time, so
    /// that devices that never connect still have missing days.
    fn monitoring_points(&self) -> Vec<MonitoringPoint>;

    /// Checks a packet's `PW` against `point`'s credential (the server's
    /// [`crate::Credentials`]). May block on its store: the gateway calls it
    /// off the async workers. An error (store unreachable) means "not known
    /// now": the packet is neither recorded nor acknowledged.
    fn check_password(&self, point: &MonitoringPoint, pw: &str) -> Result<PasswordCheck, SinkError>;

    /// Appends records through the normal ledger path. Must be idempotent on
    /// (`source`, `source_record_id`): after a failure or crash the same
    /// records are appended again.
    fn append(&self, records: Vec<Record>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Records a platform outage of the gateway itself. Must be idempotent
    /// on `outage.from`.
    fn record_outage(&self, outage: Outage) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Why a [`RecordSink`] did not take a batch of records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink could not store the batch now (shutting down, storage
    /// failing). The gateway keeps the days open and sends the same records
    /// again at the next close; appends are idempotent.
    #[error("not stored now, will retry: {0}")]
    Transient(String),
    /// The sink refused `count` records for good (e.g. the enterprise is not
    /// registered); sending them again cannot change that, so the days close.
    #[error("{count} records refused: {first}")]
    Rejected { count: usize, first: String },
}

/// The gateway's source of "now"; the server passes its own clock so tests
/// can move time forward and see days close.
pub type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The gateway's limits and timing. Every limit has a flag of
/// `ecocode serve` (docs/hj212.md lists them with their defaults).
#[derive(Clone)]
pub struct GatewayConfig {
    /// A connection without a well-formed packet for this long is closed.
    /// Junk and partial frames do not reset it, so a slow or garbage sender
    /// is dropped as surely as a silent one. Devices send at least hourly
    /// data and a heartbeat, so 10 minutes without a packet means a dead or
    /// broken peer.
    pub idle_timeout: Duration,
    /// Connections beyond this are closed at once.
    pub max_connections: usize,
    /// Connections from one IP address beyond this are closed at once, so
    /// one peer cannot take every slot.
    pub max_connections_per_peer: usize,
    /// A connection is unauthenticated until its first packet with a
    /// registered MN and its right password. At most this many are open at
    /// once (a new one closes the oldest), so however many addresses a
    /// sender has, the rest of `max_connections` stays for devices.
    pub max_unauthenticated_connections: usize,
    /// At most this many unauthenticated connections from one /24 (IPv4)
    /// or /64 (IPv6) (a new one closes that prefix's oldest).
    pub max_unauthenticated_per_prefix: usize,
    /// An unauthenticated connection is closed this long after it opened
    /// (a device sends its first packet right after connecting).
    pub unauthenticated_timeout: Duration,
    /// Wrong passwords in a row for one device before it is locked out.
    pub max_password_failures: u32,
    /// Wrong passwords from one IP address (any device) before the address
    /// is locked out.
    pub max_password_failures_per_peer: u32,
    /// How long a lockout lasts; failures older than this are forgotten.
    pub password_lockout: Duration,
    /// The answer to the first wrong password waits this long, doubling
    /// with each further one up to `max_password_delay`.
    pub password_delay: Duration,
    pub max_password_delay: Duration,
    /// A connection that sends this many bytes without a well-formed packet
    /// is closed: it bounds what a junk sender costs (the framer itself
    /// holds at most one read chunk plus one largest frame).
    pub max_bytes_without_packet: usize,
    /// How long to pause accepting after an accept error (usually out of
    /// file descriptors), instead of spinning until a connection ends.
    pub accept_error_backoff: Duration,
    /// How often to log one summary line per device with the rejections and
    /// deviations seen since the last one (instead of a line per packet).
    pub summary_interval: Duration,
    /// A split packet's parts (`PNUM`/`PNO`) must all arrive within this
    /// time of the first, on one connection; else the set is dropped and
    /// counted as `split_incomplete`.
    pub split_timeout: Duration,
    /// Split packets with more parts than this are refused (`split_refused`).
    pub max_split_parts: u16,
    /// Incomplete split sets one connection may hold at once.
    pub max_split_sets: usize,
    /// Devices (MNs, or peer addresses for unreadable packets) with figures
    /// of their own; the rest are counted together as `other`.
    pub max_tracked_devices: usize,
    /// How often to look for days ready to close.
    pub close_interval: Duration,
    /// How long after local midnight a day stays open for late hourly data
    /// and re-sends, before it is judged.
    pub close_grace: Duration,
    /// A gap of at least this much between the gateway's last sign of
    /// health (it notes one at every close check and at shutdown) and its
    /// next start is a platform outage, recorded in the ledger; days it
    /// overlaps are excused. Shorter gaps are restarts: devices re-send.
    pub min_outage: Duration,
    /// The valid hours a daily mean needs, by pollutant class: the scoring
    /// model's `[monitoring]` (the server passes its model's).
    pub valid_days: MonitoringRules,
    /// The wall clock; tests set a fixed or manual time.
    pub clock: WallClock,
    /// `Some(url)`: keep the aggregation state in that shared PostgreSQL
    /// store instead of the state directory, so a device may report to
    /// any node.
    pub shared_state: Option<String>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("max_unauthenticated_connections", &self.max_unauthenticated_connections)
            .field("max_unauthenticated_per_prefix", &self.max_unauthenticated_per_prefix)
            .field("unauthenticated_timeout", &self.unauthenticated_timeout)
            .field("max_password_failures", &self.max_password_failures)
            .field("max_password_failures_per_peer", &self.max_password_failures_per_peer)
            .field("password_lockout", &self.password_lockout)
            .field("password_delay", &self.password_delay)
            .field("max_password_delay", &self.max_password_delay)
            .field("max_bytes_without_packet", &self.max_bytes_without_packet)
            .field("accept_error_backoff", &self.accept_error_backoff)
            .field("summary_interval", &self.summary_interval)
            .field("max_tracked_devices", &self.max_tracked_devices)
            .field("split_timeout", &self.split_timeout)
            .field("max_split_parts", &self.max_split_parts)
            .field("max_split_sets", &self.max_split_sets)
            .field("close_interval", &self.close_interval)
            .field("close_grace", &self.close_grace)
            .field("min_outage", &self.min_outage)
            .field("valid_days", &self.valid_days)
            .finish_non_exhaustive()
    }
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            idle_timeout: Duration::from_secs(600),
            max_connections: 1024,
            max_connections_per_peer: 16,
            max_unauthenticated_connections: 256,
            max_unauthenticated_per_prefix: 32,
            unauthenticated_timeout: Duration::from_secs(60),
            max_password_failures: 5,
            max_password_failures_per_peer: 20,
            password_lockout: Duration::from_secs(15 * 60),
            password_delay: Duration::from_secs(1),
            max_password_delay: Duration::from_secs(8),
            max_bytes_without_packet: 64 * 1024,
            accept_error_backoff: Duration::from_millis(100),
            summary_interval: Duration::from_secs(300),
            max_tracked_devices: 10_000,
            split_timeout: Duration::from_secs(600),
            max_split_parts: 64,
            max_split_sets: 8,
            close_interval: Duration::from_secs(300),
            close_grace: Duration::from_secs(24 * 3600),
            min_outage: Duration::from_secs(15 * 60),
            valid_days: MonitoringRules::STANDARD,
            clock: Arc::new(Timestamp::now),
            shared_state: None,
        }
    }
}

/// Counters of everything the gateway saw, readable while it runs.
#[derive(Debug)]
pub struct GatewayStats {
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_refused_per_peer: AtomicU64,
    connections_evicted_unauthenticated: AtomicU64,
    connections_timed_out: AtomicU64,
    connections_dropped_junk: AtomicU64,
    devices: Figures,
    packets_ok: AtomicU64,
    bad_crc: AtomicU64,
    bad_length: AtomicU64,
    malformed: AtomicU64,
    unknown_device: AtomicU64,
    wrong_password: AtomicU64,
    locked_out: AtomicU64,
    lockouts: AtomicU64,
    disconnected_wrong_password: AtomicU64,
    legacy_verifier: AtomicU64,
    alerts_suppressed: AtomicU64,
    split_incomplete: AtomicU64,
    split_refused: AtomicU64,
    acks_sent: AtomicU64,
    values_stored: AtomicU64,
    values_not_counted: AtomicU64,
    records_emitted: AtomicU64,
    records_refused: AtomicU64,
    append_failures: AtomicU64,
    garbage_bytes: AtomicU64,
}

/// A copy of [`GatewayStats`] at one moment.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct GatewayCounts {
    pub connections_accepted: u64,
    /// Refused because `max_connections` were open.
    pub connections_refused: u64,
    /// Refused because `max_connections_per_peer` were open from that IP.
    pub connections_refused_per_peer: u64,
    /// Unauthenticated connections closed to make room for a newer one,
    /// because `max_unauthenticated_connections` (or as many from its /24
    /// or /64) were open without a right password yet.
    pub connections_evicted_unauthenticated: u64,
    /// Closed after `idle_timeout` without a well-formed packet.
    pub connections_timed_out: u64,
    /// Closed after `max_bytes_without_packet` bytes without one.
    pub connections_dropped_junk: u64,
    /// Well-formed packets, registered device or not.
    pub packets_ok: u64,
    pub bad_crc: u64,
    pub bad_length: u64,
    pub malformed: u64,
    /// Well-formed packets from an MN without a registered monitoring point.
    pub unknown_device: u64,
    /// Well-formed packets of a registered device whose `PW` is not its
    /// password: acknowledged, never recorded.
    pub wrong_password: u64,
    /// Packets with the right password of a device or from an address
    /// locked out after wrong passwords: acknowledged, never recorded.
    pub locked_out: u64,
    /// Lockouts begun (of a device or an address).
    pub lockouts: u64,
    /// Connections closed after a wrong password (the limit reached, or
    /// during a lockout).
    pub disconnected_wrong_password: u64,
    /// Packets accepted against a legacy (unkeyed, ledger-held) password
    /// hash: their devices' passwords should be rotated.
    pub legacy_verifier: u64,
    /// Lockout alert lines not logged because too many came in one
    /// summary interval (the summary counts them).
    pub alerts_suppressed: u64,
    /// Split sets dropped incomplete (timed out or connection ended).
    pub split_incomplete: u64,
    /// Split parts refused (too many parts or sets).
    pub split_refused: u64,
    pub acks_sent: u64,
    /// Pollutant values kept for daily judgement.
    pub values_stored: u64,
    /// Hourly or daily packets that came too late or with a `DataTime` too
    /// far from their receipt.
    pub values_not_counted: u64,
    pub records_emitted: u64,
    /// Records the ledger path refused for good ([`SinkError::Rejected`]).
    pub records_refused: u64,
    /// Closes whose records could not be stored then ([`SinkError::Transient`]).
    pub append_failures: u64,
    /// Bytes between frames that were no part of any.
    pub garbage_bytes: u64,
}

impl GatewayStats {
    pub fn new(max_tracked_devices: usize) -> GatewayStats {
        let zero = AtomicU64::default;
        GatewayStats {
            connections_accepted: zero(),
            connections_refused: zero(),
            connections_refused_per_peer: zero(),
            connections_evicted_unauthenticated: zero(),
            connections_timed_out: zero(),
            connections_dropped_junk: zero(),
            devices: Figures::new(max_tracked_devices),
            packets_ok: zero(),
            bad_crc: zero(),
            bad_length: zero(),
            malformed: zero(),
            unknown_device: zero(),
            wrong_password: zero(),
            locked_out: zero(),
            lockouts: zero(),
            disconnected_wrong_password: zero(),
            legacy_verifier: zero(),
            alerts_suppressed: zero(),
            split_incomplete: zero(),
            split_refused: zero(),
            acks_sent: zero(),
            values_stored: zero(),
            values_not_counted: zero(),
            records_emitted: zero(),
            records_refused: zero(),
            append_failures: zero(),
            garbage_bytes: zero(),
        }
    }

    /// The figures of each device (by MN; `peer:<ip>` for packets whose MN
    /// cannot be read; `other` beyond `max_tracked_devices`).
    pub fn devices(&self) -> BTreeMap<String, DeviceFigures> {
        self.devices.snapshot()
    }

    pub fn snapshot(&self) -> GatewayCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayCounts {
            connections_accepted: get(&self.connections_accepted),
            connections_refused: get(&self.connections_refused),
            connections_refused_per_peer: get(&self.connections_refused_per_peer),
            connections_evicted_unauthenticated: get(&self.connections_evicted_unauthenticated),
            connections_timed_out: get(&self.connections_timed_out),
            connections_dropped_junk: get(&self.connections_dropped_junk),
            packets_ok: get(&self.packets_ok),
            bad_crc: get(&self.bad_crc),
            bad_length: get(&self.bad_length),
            malformed: get(&self.malformed),
            unknown_device: get(&self.unknown_device),
            wrong_password: get(&self.wrong_password),
            locked_out: get(&self.locked_out),
            lockouts: get(&self.lockouts),
            disconnected_wrong_password: get(&self.disconnected_wrong_password),
            legacy_verifier: get(&self.legacy_verifier),
            alerts_suppressed: get(&self.alerts_suppressed),
            split_incomplete: get(&self.split_incomplete),
            split_refused: get(&self.split_refused),
            acks_sent: get(&self.acks_sent),
            values_stored: get(&self.values_stored),
            values_not_counted: get(&self.values_not_counted),
            records_emitted: get(&self.records_emitted),
            records_refused: get(&self.records_refused),
            append_failures: get(&self.append_failures),
            garbage_bytes: get(&self.garbage_bytes),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// An HJ 212 gateway bound to its state directory, ready to serve.
pub struct Gateway<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    sink: Arc<S>,
    aggregator: Arc<Mutex<DailyAggregator>>,
    stats: Arc<GatewayStats>,
    /// Open connections per peer IP address.
    peers: Mutex<HashMap<IpAddr, usize>>,
    /// Open unauthenticated connections, in all and per /24 or /64.
    unauthenticated: Mutex<Unauthenticated>,
    /// Wrong passwords per device and per peer, and lockouts.
    throttle: Mutex<Throttle>,
    /// Lockout alert lines logged since the last summary.
    alerts: AtomicU64,
    config: GatewayConfig,
}

/// Lockout alert lines per summary interval; more are counted instead.
const MAX_ALERTS_PER_INTERVAL: u64 = 10;

#[derive(Default)]
struct Unauthenticated {
    next_id: u64,
    /// Open unauthenticated connections, oldest first: their prefix and
    /// how to tell them they are evicted.
    open: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    by_prefix: HashMap<IpAddr, usize>,
}

impl Unauthenticated {
    fn evict(&mut self, id: u64) {
        if let Some((prefix, evicted)) = self.open.remove(&id) {
            if let Some(n) = self.by_prefix.get_mut(&prefix) {
                *n -= 1;
                if *n == 0 {
                    self.by_prefix.remove(&prefix);
                }
            }
            evicted.notify_one();
        }
    }
}

/// The /24 (IPv4) or /64 (IPv6) an address belongs to: one sender usually
/// holds many addresses of one prefix, rarely many prefixes.
fn prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// The slot of a connection that has not yet sent a right password;
/// dropping it (authenticated or closed) frees it.
struct UnauthenticatedSlot<'a> {
    slots: &'a Mutex<Unauthenticated>,
    id: u64,
    /// Notified when a newer connection took this slot.
    evicted: Arc<Notify>,
}

impl<'a> UnauthenticatedSlot<'a> {
    /// Takes a slot, never refusing: when the connection's prefix, or all
    /// unauthenticated connections, are at their limit, the oldest
    /// unauthenticated connection (of that prefix, or of all) is closed
    /// instead. A device sends its first packet right after connecting, so
    /// it is authenticated long before a flood could push it out; a flood
    /// only ever pushes out its own connections first. Returns how many
    /// were evicted.
    fn take(slots: &'a Mutex<Unauthenticated>, ip: IpAddr, config: &GatewayConfig) -> (Self, u64) {
        let mut open = slots.lock().unwrap_or_else(|p| p.into_inner());
        let prefix = prefix(ip);
        let mut evicted = 0;
        if open.by_prefix.get(&prefix).copied().unwrap_or(0) >= config.max_unauthenticated_per_prefix.max(1) {
            let oldest = open.open.iter().find(|(_, (p, _))| *p == prefix).map(|(id, _)| *id);
            if let Some(id) = oldest {
                open.evict(id);
                evicted += 1;
            }
        }
        if open.open.len() >= config.max_unauthenticated_connections.max(1) {
            let oldest = open.open.keys().next().copied();
            if let Some(id) = oldest {
                open.evict(id);
                evicted += 1;
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let notify = Arc::new(Notify::new());
        open.open.insert(id, (prefix, notify.clone()));
        *open.by_prefix.entry(prefix).or_default() += 1;
        (UnauthenticatedSlot { slots, id, evicted: notify }, evicted)
    }
}

impl Drop for UnauthenticatedSlot<'_> {
    fn drop(&mut self) {
        // A no-op when it was evicted: the eviction freed it.
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).evict(self.id);
    }
}

/// One open connection of a peer; dropping it frees the slot.
struct PeerSlot<'a> {
    peers: &'a Mutex<HashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl<'a> PeerSlot<'a> {
    fn take(peers: &'a Mutex<HashMap<IpAddr, usize>>, ip: IpAddr, max: usize) -> Option<PeerSlot<'a>> {
        let mut open = peers.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot { peers, ip })
    }
}

impl Drop for PeerSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl<S: RecordSink> Gateway<S> {
    /// Opens the aggregation state in `state_dir` (e.g. `DATA/hj212`) and
    /// notes the start, which is when the listener is bound: a gap since the
    /// last sign of health is an outage that ends now.
    pub fn open(state_dir: &Path, sink: Arc<S>, config: GatewayConfig) -> Result<Gateway<S>> {
        let mut aggregator = match &config.shared_state {
            Some(url) => DailyAggregator::open_shared(url)?,
            None => DailyAggregator::open(state_dir)?,
        };
        if let Some(outage) = aggregator.note_start((config.clock)(), config.min_outage)? {
            warn!(%outage, "hj212 gateway was down; days it overlaps are excused");
        }
        let legacy = sink
            .monitoring_points()
            .iter()
            .filter(|p| matches!(p.credential(), Some(super::credentials::Credential::Legacy(_))))
            .count();
        if legacy > 0 {
            // Their unkeyed hash is in a ledger entry any ledger reader can
            // fetch: rotating is the only remedy (docs/hj212.md).
            warn!(
                legacy,
                "hj212 monitoring points still checked against a legacy password hash in the ledger; \
                 register each again with a new password"
            );
        }
        Ok(Gateway {
            shared: Arc::new(Shared {
                sink,
                aggregator: Arc::new(Mutex::new(aggregator)),
                stats: Arc::new(GatewayStats::new(config.max_tracked_devices)),
                peers: Mutex::default(),
                unauthenticated: Mutex::default(),
                throttle: Mutex::default(),
                alerts: AtomicU64::default(),
                config,
            }),
        })
    }

    pub fn stats(&self) -> Arc<GatewayStats> {
        self.shared.stats.clone()
    }

    /// Accepts devices on `listener` until `shutdown` completes, then closes
    /// every connection and returns once they are gone.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        let shared = self.shared;
        let (stop, stopped) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(shared.config.max_connections));
        let mut tasks = JoinSet::new();
        tasks.spawn(close_days_periodically(shared.clone(), stopped.clone()));
        tasks.spawn(summarize_periodically(shared.clone(), stopped.clone()));
        info!(addr = ?listener.local_addr().ok(), "hj212 gateway listening");

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let (shared, stopped) = (shared.clone(), stopped.clone());
                            tasks.spawn(async move {
                                let max = shared.config.max_connections_per_peer;
                                let Some(slot) = PeerSlot::take(&shared.peers, peer.ip(), max) else {
                                    bump(&shared.stats.connections_refused_per_peer, 1);
                                    debug!(%peer, "hj212 connection refused: too many from this peer");
                                    return;
                                };
                                let (unauthenticated, evicted) =
                                    UnauthenticatedSlot::take(&shared.unauthenticated, peer.ip(), &shared.config);
                                bump(&shared.stats.connections_evicted_unauthenticated, evicted);
                                bump(&shared.stats.connections_accepted, 1);
                                serve_connection(stream, peer, &shared, stopped, unauthenticated).await;
                                drop(slot);
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            bump(&shared.stats.connections_refused, 1);
                            debug!(%peer, "hj212 connection refused: too many connections");
                        }
                    },
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of
                        // spinning until some connection ends.
                        warn!(error = %e, "hj212 accept failed");
                        tokio::time::sleep(shared.config.accept_error_backoff).await;
                    }
                },
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = joined {
                        error!(error = %e, "hj212 connection task failed");
                    }
                }
            }
        }
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
        lock(&shared.aggregator).note_alive((shared.config.clock)())?;
        info!("hj212 gateway stopped");
        Ok(())
    }
}

/// Serves HJ 212 devices on `listener` with the default configuration until
/// `shutdown` completes; returns the final counters.
pub async fn serve_gateway<S: RecordSink>(
    listener: TcpListener,
    sink: Arc<S>,
    state_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<Arc<GatewayStats>> {
    let gateway = Gateway::open(&state_dir, sink, GatewayConfig::default())?;
    let stats = gateway.stats();
    gateway.serve(listener, shutdown).await?;
    Ok(stats)
}

async fn serve_connection<S: RecordSink>(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared<S>,
    mut stopped: watch::Receiver<bool>,
    unauthenticated: UnauthenticatedSlot<'_>,
) {
    debug!(%peer, "hj212 device connected");
    let config = &shared.config;
    let mut framer = Framer::new();
    let mut buffer = vec![0u8; 4096];
    // Only a good packet (a registered device's, with its right password,
    // not locked out) moves the deadline and resets the byte budget: junk,
    // partial frames, bad packets, unknown devices and wrong passwords do
    // not buy time. Until the first good packet the connection holds an
    // unauthenticated slot and has the shorter deadline.
    let mut deadline = tokio::time::Instant::now() + config.unauthenticated_timeout;
    let mut unauthenticated = Some(unauthenticated);
    let mut bytes_without_packet = 0usize;
    let mut connection = Connection::default();
    'reading: loop {
        let evicted = async {
            match &unauthenticated {
                Some(slot) => slot.evicted.notified().await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            _ = stopped.changed() => break,
            () = evicted => {
                debug!(%peer, "hj212 unauthenticated connection evicted by a newer one");
                break;
            }
            read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)) => read,
        };
        let n = match read {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "hj212 read failed");
                break;
            }
            Err(_) => {
                bump(&shared.stats.connections_timed_out, 1);
                debug!(%peer, "hj212 connection without a good packet for its deadline, closing");
                break;
            }
        };
        bytes_without_packet = bytes_without_packet.saturating_add(n);
        let discarded = framer.discarded_bytes();
        let frames = framer.push(&buffer[..n]);
        bump(&shared.stats.garbage_bytes, framer.discarded_bytes() - discarded);
        for frame in frames {
            let handled = shared.handle_frame(&frame, peer, &mut connection).await;
            if handled.good {
                deadline = tokio::time::Instant::now() + config.idle_timeout;
                bytes_without_packet = framer.buffered();
                // Authenticated: the slot is a device's now.
                unauthenticated = None;
            }
            if handled.disconnect {
                bump(&shared.stats.disconnected_wrong_password, 1);
                debug!(%peer, "hj212 connection closed after a wrong password");
                break 'reading;
            }
            let Some(ack) = handled.ack else { continue };
            if !handled.delay.is_zero() {
                // A guesser waits; so does nothing else (the task is its own).
                tokio::select! {
                    _ = stopped.changed() => break 'reading,
                    () = tokio::time::sleep(handled.delay) => {}
                }
            }
            // A device that stops reading must not hold the task forever.
            match tokio::time::timeout(config.idle_timeout, stream.write_all(&ack)).await {
                Ok(Ok(())) => {
                    bump(&shared.stats.acks_sent, 1);
                    if let Some(mn) = handled.mn {
                        shared.stats.devices.update(&mn, (config.clock)(), |f| f.acknowledged += 1);
                    }
                }
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "hj212 ack not sent");
                    break 'reading;
                }
                Err(_) => {
                    debug!(%peer, "hj212 ack timed out");
                    break 'reading;
                }
            }
        }
        if bytes_without_packet > config.max_bytes_without_packet {
            bump(&shared.stats.connections_dropped_junk, 1);
            debug!(%peer, bytes_without_packet, "hj212 connection sends no good packets, closing");
            break;
        }
    }
    drop(unauthenticated);
    for mn in connection.reassembly.drain() {
        shared.split_incomplete(&mn, peer, "the connection ended");
    }
    debug!(%peer, "hj212 device disconnected");
}

/// What one connection remembers between packets.
#[derive(Default)]
struct Connection {
    reassembly: Reassembly,
    /// Devices this connection sent a right password for (not locked out):
    /// a lockout that begins later does not stop them, so a guesser cannot
    /// cut off a device that is already connected.
    authenticated: Vec<String>,
}

/// Devices one connection may authenticate as; a data logger has one MN.
const MAX_DEVICES_PER_CONNECTION: usize = 16;

/// What became of one frame.
#[derive(Default)]
struct Handled {
    /// A registered device's packet with its right password, not locked
    /// out: it keeps the connection alive.
    good: bool,
    /// Its device, when the frame parsed.
    mn: Option<String>,
    /// The acknowledgement to send, if one is due.
    ack: Option<Vec<u8>>,
    /// How long to wait before sending it (after a wrong password).
    delay: Duration,
    /// Close the connection instead of answering.
    disconnect: bool,
}

impl<S: RecordSink> Shared<S> {
    /// Checks one frame and keeps its values. Rejections are counted per
    /// device and logged at debug level; the periodic summary reports them.
    async fn handle_frame(&self, frame: &[u8], peer: SocketAddr, connection: &mut Connection) -> Handled {
        let now = (self.config.clock)();
        let reassembly = &mut connection.reassembly;
        for mn in reassembly.expire(now, self.config.split_timeout) {
            self.split_incomplete(&mn, peer, "its parts timed out");
        }
        let packet = match parse_packet(frame) {
            Ok(packet) => packet,
            Err(e) => {
                let (counter, reason) = match e {
                    PacketError::BadCrc { .. } => (&self.stats.bad_crc, "bad_crc"),
                    PacketError::Framing(_) | PacketError::BadLength { .. } => {
                        (&self.stats.bad_length, "bad_length")
                    }
                    PacketError::Malformed { .. } => (&self.stats.malformed, "malformed"),
                };
                bump(counter, 1);
                self.stats.devices.update(&peer_key(peer.ip()), now, |f| count(&mut f.rejected, reason));
                debug!(%peer, error = %e, "hj212 packet rejected");
                return Handled::default();
            }
        };
        bump(&self.stats.packets_ok, 1);
        let found = deviations(frame, &packet);
        self.stats.devices.update(packet.mn(), now, |f| {
            f.packets += 1;
            for d in &found {
                count(&mut f.deviations, d.as_str());
            }
        });
        let mn = Some(packet.mn().to_owned());
        let ack = packet.wants_ack().then(|| packet.ack());
        let reject = |reason: &str| {
            self.stats.devices.update(packet.mn(), now, |f| count(&mut f.rejected, reason));
        };
        let Some(point) = self.sink.monitoring_point(packet.mn()) else {
            bump(&self.stats.unknown_device, 1);
            reject("unknown_device");
            debug!(%peer, mn = ?packet.mn(), cn = ?packet.cn(), "hj212 packet from unregistered device");
            return Handled { mn, ack, ..Handled::default() };
        };
        let (sink, pw) = (self.sink.clone(), packet.pw().to_owned());
        // The credential store may block on I/O (PostgreSQL): off the workers.
        let checked = tokio::task::spawn_blocking(move || {
            let check = sink.check_password(&point, &pw);
            (check, point)
        })
        .await;
        let (check, point) = match checked {
            Ok((Ok(check), point)) => (check, point),
            Ok((Err(e), _)) => {
                // Not known now, so neither kept nor acknowledged: the device sends again.
                error!(%peer, error = %e, "hj212 password not checked");
                return Handled { mn, ..Handled::default() };
            }
            Err(e) => {
                error!(%peer, error = %e, "hj212 password check failed");
                return Handled { mn, ..Handled::default() };
            }
        };
        let ip = peer.ip();
        if check == PasswordCheck::Wrong {
            // Whoever knows an MN must not be able to put values into the
            // ledger, nor try passwords at line speed.
            bump(&self.stats.wrong_password, 1);
            reject("wrong_password");
            let limits = self.limits();
            let after = lock_throttle(&self.throttle).wrong(point.mn(), ip, now, limits);
            debug!(%peer, mn = ?point.mn(), ?after, "hj212 packet with a wrong password, not recorded");
            return match after {
                AfterWrong::Delay(delay) => Handled { mn, ack, delay, ..Handled::default() },
                AfterWrong::Disconnect { locked_now } => {
                    if locked_now {
                        self.locked_out_alert(point.mn(), peer);
                    }
                    Handled { mn, disconnect: true, ..Handled::default() }
                }
            };
        }
        let known = connection.authenticated.iter().any(|m| m == point.mn());
        if !known && lock_throttle(&self.throttle).locked(point.mn(), ip, now) {
            // The right password during a lockout: acknowledged (transport),
            // not recorded, counted; the guesser learns nothing from it.
            bump(&self.stats.locked_out, 1);
            reject("locked_out");
            debug!(%peer, mn = ?point.mn(), "hj212 packet of a locked-out device or address, not recorded");
            return Handled { mn, ack, ..Handled::default() };
        }
        lock_throttle(&self.throttle).right(point.mn());
        if !known && connection.authenticated.len() < MAX_DEVICES_PER_CONNECTION {
            connection.authenticated.push(point.mn().to_owned());
        }
        if check == PasswordCheck::RightLegacy {
            bump(&self.stats.legacy_verifier, 1);
            self.stats.devices.update(point.mn(), now, |f| f.legacy_verifier += 1);
        }
        let packet =
            match reassembly.add(packet, now, self.config.max_split_parts, self.config.max_split_sets) {
                Reassembled::Complete(packet) => packet,
                Reassembled::Pending => return Handled { good: true, mn, ack, ..Handled::default() },
                Reassembled::Refused => {
                    bump(&self.stats.split_refused, 1);
                    self.stats.devices.update(point.mn(), now, |f| count(&mut f.rejected, "split_refused"));
                    debug!(%peer, mn = ?point.mn(), "hj212 split packet refused: too many parts or sets");
                    return Handled { good: true, mn, ack, ..Handled::default() };
                }
            };
        let aggregator = self.aggregator.clone();
        // sled may block on I/O (the flush before the ack), so it runs off
        // the async workers.
        let accepted =
            tokio::task::spawn_blocking(move || lock(&aggregator).accept(&point, &packet, now)).await;
        match accepted {
            Ok(Ok(AcceptOutcome::Stored(n))) => bump(&self.stats.values_stored, n as u64),
            Ok(Ok(AcceptOutcome::NotAggregated)) => {}
            Ok(Ok(outcome @ (AcceptOutcome::Late(_) | AcceptOutcome::OutOfWindow))) => {
                bump(&self.stats.values_not_counted, 1);
                info!(%peer, ?outcome, "hj212 values not counted");
            }
            Ok(Err(e)) => {
                // Not kept, so not acknowledged: the device will send it again.
                error!(%peer, error = %e, "hj212 values not stored");
                return Handled { good: true, mn, ..Handled::default() };
            }
            Err(e) => {
                error!(%peer, error = %e, "hj212 aggregation task failed");
                return Handled { good: true, mn, ..Handled::default() };
            }
        }
        Handled { good: true, mn, ack, ..Handled::default() }
    }

    fn limits(&self) -> Limits {
        let c = &self.config;
        Limits {
            per_device: c.max_password_failures.max(1),
            per_peer: c.max_password_failures_per_peer.max(1),
            lockout: c.password_lockout,
            first_delay: c.password_delay,
            max_delay: c.max_password_delay,
        }
    }

    /// The alert when a device or an address is locked out: one line each,
    /// at most [`MAX_ALERTS_PER_INTERVAL`] per summary interval (the rest
    /// are counted and the summary says how many).
    fn locked_out_alert(&self, mn: &str, peer: SocketAddr) {
        bump(&self.stats.lockouts, 1);
        if self.alerts.fetch_add(1, Ordering::Relaxed) < MAX_ALERTS_PER_INTERVAL {
            warn!(
                mn = ?mn,
                peer = %peer.ip(),
                lockout_secs = self.config.password_lockout.as_secs(),
                "hj212 ALERT: wrong passwords reached the limit; device or address locked out"
            );
        } else {
            bump(&self.stats.alerts_suppressed, 1);
        }
    }

    /// Counts and logs a split set dropped incomplete: its parts are never
    /// judged as partial data.
    fn split_incomplete(&self, mn: &str, peer: SocketAddr, why: &str) {
        bump(&self.stats.split_incomplete, 1);
        self.stats.devices.update(mn, (self.config.clock)(), |f| count(&mut f.rejected, "split_incomplete"));
        info!(%peer, mn, why, "hj212 split packet incomplete, dropped");
    }

    /// Judges every day that is over (plus the grace period) and appends
    /// its records; the days are closed only once the sink has them.
    async fn close_due_days(self: &Arc<Self>) -> Result<()> {
        // On a shared state, one node's gateway closes at a time; the
        // others try again at their next tick.
        let Some(_claim) = lock(&self.aggregator).claim_closing()? else {
            return Ok(());
        };
        let now = (self.config.clock)();
        // Outages go into the ledger before any day they excuse is closed.
        let pending = lock(&self.aggregator).pending_outages()?;
        for outage in pending {
            if let Err(e) = self.sink.record_outage(outage).await {
                bump(&self.stats.append_failures, 1);
                warn!(error = %e, %outage, "hj212 outage not recorded, retrying at the next close");
                return Ok(());
            }
            lock(&self.aggregator).outage_recorded(outage)?;
        }
        self.close_days_due_at(now).await?;
        let aggregator = self.aggregator.clone();
        tokio::task::spawn_blocking(move || lock(&aggregator).note_alive(now))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    async fn close_days_due_at(self: &Arc<Self>, now: Timestamp) -> Result<()> {
        let grace = i64::try_from(self.config.close_grace.as_nanos()).unwrap_or(i64::MAX);
        let before = LocalDay::containing(now.plus_nanos(-grace));
        let shared = self.clone();
        let closing = tokio::task::spawn_blocking(move || {
            let registered = shared.sink.monitoring_points();
            lock(&shared.aggregator).close_days_before(
                before,
                |mn| shared.sink.monitoring_point(mn),
                &registered,
                shared.config.valid_days,
            )
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        if closing.is_empty() {
            return Ok(());
        }
        let records = closing.records().to_vec();
        let count = records.len() as u64;
        if !records.is_empty() {
            match self.sink.append(records).await {
                Ok(()) => bump(&self.stats.records_emitted, count),
                Err(e @ SinkError::Transient(_)) => {
                    bump(&self.stats.append_failures, 1);
                    warn!(error = %e, "hj212 records not appended, retrying at the next close");
                    return Ok(());
                }
                Err(e @ SinkError::Rejected { count: refused, .. }) => {
                    bump(&self.stats.records_refused, refused as u64);
                    bump(&self.stats.records_emitted, count.saturating_sub(refused as u64));
                    warn!(error = %e, "hj212 records refused by the ledger path; closing the days anyway");
                }
            }
        }
        let aggregator = self.aggregator.clone();
        tokio::task::spawn_blocking(move || lock(&aggregator).commit(closing))
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }
}

async fn close_days_periodically<S: RecordSink>(shared: Arc<Shared<S>>, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(shared.config.close_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = shared.close_due_days().await {
            error!(error = %e, "hj212 closing days failed");
        }
    }
}

/// How many devices a summary line names by example.
const SUMMARY_SAMPLES: usize = 5;

/// Logs one line per interval with the rejections and deviations seen since
/// the last one, summed over every device, and a few devices as examples,
/// so a flood of bad packets or invented MNs costs one line per interval.
/// (`ecocode gateway` has the figures of each device.)
async fn summarize_periodically<S: RecordSink>(shared: Arc<Shared<S>>, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(shared.config.summary_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        let suppressed = shared.alerts.swap(0, Ordering::Relaxed).saturating_sub(MAX_ALERTS_PER_INTERVAL);
        let now = shared.stats.devices();
        if let Some(summary) = summarize(&last, &now) {
            warn!(
                devices = summary.devices,
                problems = ?summary.totals,
                examples = ?summary.examples,
                alerts_not_logged = suppressed,
                "hj212 problems since the last summary"
            );
        }
        last = now;
    }
}

/// What the summary line says.
#[derive(Debug, PartialEq)]
struct Summary {
    /// Devices (or peers) with new problems.
    devices: usize,
    /// New problems by kind, over every device.
    totals: BTreeMap<String, u64>,
    /// A few devices with their new problems; printed with `Debug`, so
    /// whatever bytes an MN holds are escaped.
    examples: Vec<(String, BTreeMap<String, u64>)>,
}

fn summarize(
    last: &BTreeMap<String, DeviceFigures>,
    now: &BTreeMap<String, DeviceFigures>,
) -> Option<Summary> {
    let mut summary = Summary { devices: 0, totals: BTreeMap::new(), examples: Vec::new() };
    for (device, figures) in now {
        let problems = figures.problems_since(last.get(device));
        if problems.is_empty() {
            continue;
        }
        summary.devices += 1;
        for (kind, n) in &problems {
            *summary.totals.entry(kind.clone()).or_default() += n;
        }
        if summary.examples.len() < SUMMARY_SAMPLES {
            summary.examples.push((device.clone(), problems));
        }
    }
    (summary.devices > 0).then_some(summary)
}

fn lock_throttle(throttle: &Mutex<Throttle>) -> std::sync::MutexGuard<'_, Throttle> {
    throttle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The aggregator stays usable after a panic elsewhere: its state is on
/// disk and every operation on it is a whole batch.
fn lock(aggregator: &Mutex<DailyAggregator>) -> std::sync::MutexGuard<'_, DailyAggregator> {
    aggregator.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
