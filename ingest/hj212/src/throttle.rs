//! Online password guessing, bounded: wrong passwords per device (MN) and
//! per peer address earn a growing delay before the answer, then a
//! disconnect and a lockout window during which the device's packets are
//! acknowledged but not recorded. With six-character passwords
//! (HJ 212-2017's `PW`), this is what protects a device, not the hash.
//!
//! State is in memory, per node, on the gateway's clock; it is bounded by
//! the registered devices (a wrong password needs a registered MN) and by
//! [`MAX_PEERS`] addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use scoring::Timestamp;

/// Peer addresses with failures of their own; beyond it, addresses not
/// locked out are forgotten first (the per-device limit still holds).
pub(crate) const MAX_PEERS: usize = 65_536;

/// The limits, from [`crate::GatewayConfig`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub per_device: u32,
    pub per_peer: u32,
    pub lockout: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

#[derive(Clone, Copy, Debug, Default)]
struct Failures {
    count: u32,
    last: Option<Timestamp>,
    locked_until: Option<Timestamp>,
}

impl Failures {
    fn locked(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }

    /// One more failure at `now`; returns whether this one locks out.
    fn fail(&mut self, now: Timestamp, max: u32, lockout: Duration) -> bool {
        let window = nanos(lockout);
        // Failures older than a lockout window are forgotten.
        if self.last.is_some_and(|last| now.unix_nanos().saturating_sub(last.unix_nanos()) >= window) {
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.last = Some(now);
        if self.count >= max && !self.locked(now) {
            self.locked_until = Some(now.plus_nanos(window));
            return true;
        }
        false
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// What to do after a wrong password.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AfterWrong {
    /// Answer after this delay.
    Delay(Duration),
    /// Close the connection without an answer. `locked_now`: this failure
    /// began a lockout (of the device, the peer or both).
    Disconnect { locked_now: bool },
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    devices: HashMap<String, Failures>,
    peers: HashMap<IpAddr, Failures>,
}

impl Throttle {
    /// Whether packets of `mn` from `ip` are locked out at `now`.
    pub fn locked(&self, mn: &str, ip: IpAddr, now: Timestamp) -> bool {
        self.devices.get(mn).is_some_and(|f| f.locked(now))
            || self.peers.get(&ip).is_some_and(|f| f.locked(now))
    }

    /// Counts a wrong password for `mn` from `ip`.
    pub fn wrong(&mut self, mn: &str, ip: IpAddr, now: Timestamp, limits: Limits) -> AfterWrong {
        let already = self.locked(mn, ip, now);
        if !self.peers.contains_key(&ip) && self.peers.len() >= MAX_PEERS {
            self.peers.retain(|_, f| f.locked(now));
        }
        let device =
            self.devices.entry(mn.to_owned()).or_default().fail(now, limits.per_device, limits.lockout);
        let peer = if self.peers.len() < MAX_PEERS || self.peers.contains_key(&ip) {
            self.peers.entry(ip).or_default().fail(now, limits.per_peer, limits.lockout)
        } else {
            false
        };
        if already || device || peer {
            return AfterWrong::Disconnect { locked_now: device || peer };
        }
        let count =
            self.devices.get(mn).map_or(1, |f| f.count).max(self.peers.get(&ip).map_or(1, |f| f.count));
        AfterWrong::Delay(delay(count, limits))
    }

    /// A right password for `mn` (not locked out): its failures are forgotten.
    /// The peer's are not, so a guesser cannot clear them with a device of
    /// its own; they fade after a lockout window.
    pub fn right(&mut self, mn: &str) {
        self.devices.remove(mn);
    }
}

/// The delay before answering the `count`th wrong password in a row:
/// `first_delay`, doubling, at most `max_delay`.
pub(crate) fn delay(count: u32, limits: Limits) -> Duration {
    let doublings = count.saturating_sub(1).min(20);
    limits.first_delay.saturating_mul(1 << doublings).min(limits.max_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_device: 5,
        per_peer: 8,
        lockout: Duration::from_secs(900),
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
    };

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_780_000_000_000_000_000 + secs * 1_000_000_000)
    }

    #[test]
    fn wrong_passwords_earn_a_growing_delay_then_a_lockout_that_ends() {
        let (mut t, ip) = (Throttle::default(), IpAddr::from([10, 0, 0, 1]));
        let delays: Vec<AfterWrong> = (0..5).map(|i| t.wrong("LD13", ip, at(i), LIMITS)).collect();
        let s = |n| AfterWrong::Delay(Duration::from_secs(n));
        assert_eq!(delays, vec![s(1), s(2), s(4), s(8), AfterWrong::Disconnect { locked_now: true }]);
        assert!(t.locked("LD13", ip, at(5)));
        // During the lockout even the right password is not let in, and a
        // wrong one disconnects at once.
        assert_eq!(t.wrong("LD13", ip, at(6), LIMITS), AfterWrong::Disconnect { locked_now: false });
        // Another device from another address is not affected.
        assert!(!t.locked("LD14", IpAddr::from([10, 0, 1, 1]), at(6)));
        assert!(!t.locked("LD13", ip, at(4 + 900)));
    }

    #[test]
    fn a_right_password_clears_the_device_but_not_the_peer() {
        let (mut t, ip) = (Throttle::default(), IpAddr::from([10, 0, 0, 1]));
        for mn in ["A", "B", "C", "D"] {
            t.wrong(mn, ip, at(0), LIMITS);
            t.right(mn);
        }
        for mn in ["E", "F", "G"] {
            t.wrong(mn, ip, at(1), LIMITS);
        }
        // Eight wrong passwords from one address over several devices.
        assert_eq!(t.wrong("H", ip, at(2), LIMITS), AfterWrong::Disconnect { locked_now: true });
        assert!(t.locked("A", ip, at(3)));
        assert!(!t.locked("A", IpAddr::from([10, 0, 0, 2]), at(3)));
        // Old failures fade: one more after the window starts again at one.
        let mut t = Throttle::default();
        t.wrong("A", ip, at(0), LIMITS);
        assert_eq!(t.wrong("A", ip, at(901), LIMITS), AfterWrong::Delay(Duration::from_secs(1)));
    }
}
