//! The TCP gateway data loggers connect to: frames, checks and acknowledges
//! their packets, feeds the daily aggregation and hands the resulting
//! records to a [`RecordSink`] (the server's ledger path), without knowing
//! anything about gRPC.

mod admission;
mod config;
mod days;
mod sink;
mod stats;
mod summary;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kv::lock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use self::admission::{PeerSlot, Unauthenticated, UnauthenticatedSlot};
pub use self::config::{GatewayConfig, WallClock};
use self::days::close_days_periodically;
pub use self::sink::{RecordSink, SinkError};
use self::stats::bump;
pub use self::stats::{GatewayCounts, GatewayStats};
use self::summary::summarize_periodically;
use super::Result;
use super::aggregate::{AcceptOutcome, DailyAggregator};
use super::credentials::PasswordCheck;
use super::deviation::deviations;
use super::figures::{count, peer_key};
use super::framer::Framer;
use super::packet::{PacketError, parse_packet};
use super::split::{Reassembled, Reassembly};
use super::throttle::{AfterWrong, Limits, Throttle};

/// An HJ 212 gateway bound to its state directory, ready to serve.
pub struct Gateway<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    sink: Arc<S>,
    /// Stays usable after a panic elsewhere ([`kv::lock`]): its state is on
    /// disk and every operation on it is a whole batch.
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
            let after = lock(&self.throttle).wrong(point.mn(), ip, now, limits);
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
        if !known && lock(&self.throttle).locked(point.mn(), ip, now) {
            // The right password during a lockout: acknowledged (transport),
            // not recorded, counted; the guesser learns nothing from it.
            bump(&self.stats.locked_out, 1);
            reject("locked_out");
            debug!(%peer, mn = ?point.mn(), "hj212 packet of a locked-out device or address, not recorded");
            return Handled { mn, ack, ..Handled::default() };
        }
        lock(&self.throttle).right(point.mn());
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
}

#[cfg(test)]
mod tests;
