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
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::aggregate::{AcceptOutcome, DailyAggregator};
use super::availability::Outage;
use super::deviation::deviations;
use super::figures::{DeviceFigures, Figures, count, peer_key};
use super::framer::Framer;
use super::packet::{PacketError, parse_packet};
use super::point::MonitoringPoint;
use super::split::{Reassembled, Reassembly};
use super::time::LocalDay;
use super::{Error, Result};

/// Where the gateway gets registrations from and puts records.
pub trait RecordSink: Send + Sync + 'static {
    /// The registered monitoring point of device `mn`, if any.
    fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint>;

    /// Every registered monitoring point, with its registration time, so
    /// that devices that never connect still have missing days.
    fn monitoring_points(&self) -> Vec<MonitoringPoint>;

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
    connections_timed_out: AtomicU64,
    connections_dropped_junk: AtomicU64,
    devices: Figures,
    packets_ok: AtomicU64,
    bad_crc: AtomicU64,
    bad_length: AtomicU64,
    malformed: AtomicU64,
    unknown_device: AtomicU64,
    wrong_password: AtomicU64,
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
            connections_timed_out: zero(),
            connections_dropped_junk: zero(),
            devices: Figures::new(max_tracked_devices),
            packets_ok: zero(),
            bad_crc: zero(),
            bad_length: zero(),
            malformed: zero(),
            unknown_device: zero(),
            wrong_password: zero(),
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
            connections_timed_out: get(&self.connections_timed_out),
            connections_dropped_junk: get(&self.connections_dropped_junk),
            packets_ok: get(&self.packets_ok),
            bad_crc: get(&self.bad_crc),
            bad_length: get(&self.bad_length),
            malformed: get(&self.malformed),
            unknown_device: get(&self.unknown_device),
            wrong_password: get(&self.wrong_password),
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
    config: GatewayConfig,
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
        Ok(Gateway {
            shared: Arc::new(Shared {
                sink,
                aggregator: Arc::new(Mutex::new(aggregator)),
                stats: Arc::new(GatewayStats::new(config.max_tracked_devices)),
                peers: Mutex::default(),
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
                                match PeerSlot::take(&shared.peers, peer.ip(), max) {
                                    Some(slot) => {
                                        bump(&shared.stats.connections_accepted, 1);
                                        serve_connection(stream, peer, &shared, stopped).await;
                                        drop(slot);
                                    }
                                    None => {
                                        bump(&shared.stats.connections_refused_per_peer, 1);
                                        debug!(%peer, "hj212 connection refused: too many from this peer");
                                    }
                                }
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
) {
    debug!(%peer, "hj212 device connected");
    let config = &shared.config;
    let mut framer = Framer::new();
    let mut buffer = vec![0u8; 4096];
    // Only a well-formed packet moves the deadline and resets the byte
    // budget: junk, partial frames and bad packets do not buy time.
    let mut deadline = tokio::time::Instant::now() + config.idle_timeout;
    let mut bytes_without_packet = 0usize;
    let mut reassembly = Reassembly::default();
    loop {
        let read = tokio::select! {
            _ = stopped.changed() => break,
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
                debug!(%peer, "hj212 connection without a packet for the idle timeout, closing");
                break;
            }
        };
        bytes_without_packet = bytes_without_packet.saturating_add(n);
        let discarded = framer.discarded_bytes();
        let frames = framer.push(&buffer[..n]);
        bump(&shared.stats.garbage_bytes, framer.discarded_bytes() - discarded);
        for frame in frames {
            let handled = shared.handle_frame(&frame, peer, &mut reassembly).await;
            if handled.well_formed {
                deadline = tokio::time::Instant::now() + config.idle_timeout;
                bytes_without_packet = framer.buffered();
            }
            let Some(ack) = handled.ack else { continue };
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
                    return;
                }
                Err(_) => {
                    debug!(%peer, "hj212 ack timed out");
                    return;
                }
            }
        }
        if bytes_without_packet > config.max_bytes_without_packet {
            bump(&shared.stats.connections_dropped_junk, 1);
            debug!(%peer, bytes_without_packet, "hj212 connection sends no packets, closing");
            break;
        }
    }
    for mn in reassembly.drain() {
        shared.split_incomplete(&mn, peer, "the connection ended");
    }
    debug!(%peer, "hj212 device disconnected");
}

/// What became of one frame.
struct Handled {
    /// The frame parsed as a packet.
    well_formed: bool,
    /// Its device, when the frame parsed.
    mn: Option<String>,
    /// The acknowledgement to send, if one is due.
    ack: Option<Vec<u8>>,
}

impl<S: RecordSink> Shared<S> {
    /// Checks one frame and keeps its values. Rejections are counted per
    /// device and logged at debug level; the periodic summary reports them.
    async fn handle_frame(&self, frame: &[u8], peer: SocketAddr, reassembly: &mut Reassembly) -> Handled {
        let now = (self.config.clock)();
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
                return Handled { well_formed: false, mn: None, ack: None };
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
            debug!(%peer, mn = packet.mn(), cn = packet.cn(), "hj212 packet from unregistered device");
            return Handled { well_formed: true, mn, ack };
        };
        if !point.accepts_password(packet.pw()) {
            // Whoever knows an MN must not be able to put values into the
            // ledger; the ack is still due, since acknowledging is transport.
            bump(&self.stats.wrong_password, 1);
            reject("wrong_password");
            debug!(%peer, mn = packet.mn(), "hj212 packet with a wrong password, not recorded");
            return Handled { well_formed: true, mn, ack };
        }
        let packet =
            match reassembly.add(packet, now, self.config.max_split_parts, self.config.max_split_sets) {
                Reassembled::Complete(packet) => packet,
                Reassembled::Pending => return Handled { well_formed: true, mn, ack },
                Reassembled::Refused => {
                    bump(&self.stats.split_refused, 1);
                    self.stats.devices.update(point.mn(), now, |f| count(&mut f.rejected, "split_refused"));
                    debug!(%peer, mn = point.mn(), "hj212 split packet refused: too many parts or sets");
                    return Handled { well_formed: true, mn, ack };
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
                return Handled { well_formed: true, mn, ack: None };
            }
            Err(e) => {
                error!(%peer, error = %e, "hj212 aggregation task failed");
                return Handled { well_formed: true, mn, ack: None };
            }
        }
        Handled { well_formed: true, mn, ack }
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

/// Logs one line per device with the rejections and deviations seen since
/// the last summary, so a flood of bad packets costs a line per interval.
async fn summarize_periodically<S: RecordSink>(shared: Arc<Shared<S>>, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(shared.config.summary_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = ticks.tick() => {}
        }
        let now = shared.stats.devices();
        for (device, figures) in &now {
            let problems = figures.problems_since(last.get(device));
            if !problems.is_empty() {
                warn!(%device, ?problems, "hj212 device problems since the last summary");
            }
        }
        last = now;
    }
}

/// The aggregator stays usable after a panic elsewhere: its state is on
/// disk and every operation on it is a whole batch.
fn lock(aggregator: &Mutex<DailyAggregator>) -> std::sync::MutexGuard<'_, DailyAggregator> {
    aggregator.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
