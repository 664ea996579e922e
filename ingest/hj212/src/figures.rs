//! Per-device figures of the gateway: packets, acknowledgements, rejections
//! by reason and deviations by kind, and when each device was last seen,
//! so a regulator can see which logger misbehaves and ask its vendor.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use scoring::Timestamp;

/// Where figures of traffic without a readable MN go: the peer's address.
pub fn peer_key(ip: IpAddr) -> String {
    format!("peer:{ip}")
}

/// Where figures go once `max_devices` keys are tracked, so a sender of
/// random MNs cannot grow memory without bound.
pub const OTHER_DEVICES: &str = "other";

/// What the gateway saw of one device (an MN), or of one peer address for
/// packets whose MN cannot be read.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct DeviceFigures {
    /// Well-formed packets.
    pub packets: u64,
    pub acknowledged: u64,
    /// Packets not recorded, by reason: `bad_crc`, `bad_length`,
    /// `malformed`, `unknown_device`, `wrong_password`, `locked_out`,
    /// `split_incomplete`, `split_refused`.
    pub rejected: BTreeMap<String, u64>,
    /// Accepted packets' deviations from the standard, by kind.
    pub deviations: BTreeMap<String, u64>,
    /// Packets accepted against a legacy (unkeyed, ledger-held) password
    /// hash: the device's password should be rotated.
    pub legacy_verifier: u64,
    pub last_seen: Option<Timestamp>,
}

impl DeviceFigures {
    /// Rejections and deviations since `before`, for the periodic summary.
    pub fn problems_since(&self, before: Option<&DeviceFigures>) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let old =
            |map: Option<&BTreeMap<String, u64>>, k: &str| map.and_then(|m| m.get(k)).copied().unwrap_or(0);
        for (k, v) in &self.rejected {
            let d = v - old(before.map(|b| &b.rejected), k).min(*v);
            if d > 0 {
                out.insert(format!("rejected {k}"), d);
            }
        }
        for (k, v) in &self.deviations {
            let d = v - old(before.map(|b| &b.deviations), k).min(*v);
            if d > 0 {
                out.insert(format!("deviation {k}"), d);
            }
        }
        let legacy = self.legacy_verifier - before.map_or(0, |b| b.legacy_verifier).min(self.legacy_verifier);
        if legacy > 0 {
            out.insert("legacy_verifier".to_owned(), legacy);
        }
        out
    }
}

/// The figures of every device, bounded in size.
#[derive(Debug)]
pub(crate) struct Figures {
    devices: Mutex<BTreeMap<String, DeviceFigures>>,
    max_devices: usize,
}

impl Figures {
    pub fn new(max_devices: usize) -> Figures {
        Figures { devices: Mutex::default(), max_devices }
    }

    /// Applies `change` to the figures of `key`, seen at `at`.
    pub fn update(&self, key: &str, at: Timestamp, change: impl FnOnce(&mut DeviceFigures)) {
        let mut devices = kv::lock(&self.devices);
        let key =
            if devices.contains_key(key) || devices.len() < self.max_devices { key } else { OTHER_DEVICES };
        let figures = devices.entry(key.to_owned()).or_default();
        figures.last_seen = Some(figures.last_seen.map_or(at, |seen| seen.max(at)));
        change(figures);
    }

    pub fn snapshot(&self) -> BTreeMap<String, DeviceFigures> {
        kv::lock(&self.devices).clone()
    }
}

pub(crate) fn count(map: &mut BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_bounded_and_summaries_show_only_what_is_new() {
        let figures = Figures::new(2);
        let at = Timestamp::from_unix_nanos(1);
        for mn in ["A", "B", "C", "D"] {
            figures.update(mn, at, |f| count(&mut f.rejected, "bad_crc"));
        }
        let snapshot = figures.snapshot();
        let keys: Vec<&str> = snapshot.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["A", "B", OTHER_DEVICES]);
        assert_eq!(snapshot[OTHER_DEVICES].rejected["bad_crc"], 2);

        figures.update("A", at, |f| count(&mut f.deviations, "no_crlf"));
        let now = figures.snapshot();
        let new = now["A"].problems_since(snapshot.get("A"));
        assert_eq!(new, BTreeMap::from([("deviation no_crlf".to_owned(), 1)]));
        assert!(now["B"].problems_since(snapshot.get("B")).is_empty());
    }
}
