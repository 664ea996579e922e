//! Split packets (HJ 212 `PNUM`/`PNO`): the parts of one message are kept
//! per connection until every part has arrived, then merged into one packet
//! for the aggregation. A set that stays incomplete past its deadline, or
//! is still incomplete when the connection ends, is dropped as a counted,
//! logged event: partial data is never judged.

use std::collections::BTreeMap;
use std::time::Duration;

use scoring::Timestamp;

use super::packet::Packet;

/// What to do with one part.
#[derive(Debug)]
pub(crate) enum Reassembled {
    /// Kept; more parts are due.
    Pending,
    /// The last part arrived: the whole message.
    Complete(Packet),
    /// `PNUM` above the gateway's limit, or too many sets pending on this
    /// connection; not kept.
    Refused,
}

/// A set's (MN, QN, PNUM).
type SetKey = (String, String, u16);

/// When a set's first part arrived, and its parts by `PNO`.
type Parts = (Timestamp, BTreeMap<u16, Packet>);

/// The incomplete sets of one connection.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    /// By (MN, QN, PNUM): the first part's arrival and the parts by PNO.
    sets: BTreeMap<SetKey, Parts>,
}

impl Reassembly {
    /// Takes one part of a split packet (`packet.split()` is `Some`).
    pub fn add(&mut self, packet: Packet, now: Timestamp, max_parts: u16, max_sets: usize) -> Reassembled {
        let Some((pnum, pno)) = packet.split() else { return Reassembled::Complete(packet) };
        if pnum > max_parts {
            return Reassembled::Refused;
        }
        let key = (packet.mn().to_owned(), packet.qn().unwrap_or_default().to_owned(), pnum);
        if !self.sets.contains_key(&key) && self.sets.len() >= max_sets {
            return Reassembled::Refused;
        }
        let (_, parts) = self.sets.entry(key.clone()).or_insert_with(|| (now, BTreeMap::new()));
        // A re-sent part replaces its earlier copy.
        parts.insert(pno, packet);
        if parts.len() < usize::from(pnum) {
            return Reassembled::Pending;
        }
        let Some((_, parts)) = self.sets.remove(&key) else { return Reassembled::Pending };
        let parts: Vec<Packet> = parts.into_values().collect();
        match Packet::merge_split(&parts) {
            Some(merged) => Reassembled::Complete(merged),
            None => Reassembled::Pending,
        }
    }

    /// Removes and returns the MNs of the sets begun more than `timeout`
    /// before `now`.
    pub fn expire(&mut self, now: Timestamp, timeout: Duration) -> Vec<String> {
        let timeout = i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX);
        let expired: Vec<_> = self
            .sets
            .iter()
            .filter(|(_, (began, _))| now.unix_nanos().saturating_sub(began.unix_nanos()) > timeout)
            .map(|(key, _)| key.clone())
            .collect();
        expired.into_iter().filter_map(|key| self.sets.remove(&key).map(|_| key.0)).collect()
    }

    /// Every set still incomplete (the connection ends), by MN.
    pub fn drain(&mut self) -> Vec<String> {
        std::mem::take(&mut self.sets).into_keys().map(|(mn, _, _)| mn).collect()
    }
}
