//! The gateway's counters: what it saw, readable while it runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::figures::{DeviceFigures, Figures};

/// Counters of everything the gateway saw, readable while it runs.
#[derive(Debug)]
pub struct GatewayStats {
    pub(super) connections_accepted: AtomicU64,
    pub(super) connections_refused: AtomicU64,
    pub(super) connections_refused_per_peer: AtomicU64,
    pub(super) connections_evicted_unauthenticated: AtomicU64,
    pub(super) connections_timed_out: AtomicU64,
    pub(super) connections_dropped_junk: AtomicU64,
    pub(super) devices: Figures,
    pub(super) packets_ok: AtomicU64,
    pub(super) bad_crc: AtomicU64,
    pub(super) bad_length: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) unknown_device: AtomicU64,
    pub(super) wrong_password: AtomicU64,
    pub(super) locked_out: AtomicU64,
    pub(super) lockouts: AtomicU64,
    pub(super) disconnected_wrong_password: AtomicU64,
    pub(super) legacy_verifier: AtomicU64,
    pub(super) alerts_suppressed: AtomicU64,
    pub(super) split_incomplete: AtomicU64,
    pub(super) split_refused: AtomicU64,
    pub(super) acks_sent: AtomicU64,
    pub(super) values_stored: AtomicU64,
    pub(super) values_not_counted: AtomicU64,
    pub(super) records_emitted: AtomicU64,
    pub(super) records_refused: AtomicU64,
    pub(super) append_failures: AtomicU64,
    pub(super) garbage_bytes: AtomicU64,
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

pub(super) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}
