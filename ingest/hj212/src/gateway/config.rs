//! The gateway's limits and timing, and its clock.

use std::sync::Arc;
use std::time::Duration;

use scoring::{MonitoringRules, Timestamp};

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
            clock: Arc::new(|| Timestamp::from_system_time(std::time::SystemTime::now())),
            shared_state: None,
        }
    }
}
