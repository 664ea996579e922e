//! Who may hold a connection: the per-peer slots and the bounded, evicting
//! slots of connections that have not yet sent a right password.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::GatewayConfig;

#[derive(Default)]
pub(super) struct Unauthenticated {
    next_id: u64,
    /// Open unauthenticated connections, oldest first: their prefix and
    /// how to tell them they are evicted.
    pub(super) open: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
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
pub(super) fn prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xFFFF_FF00)),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// The slot of a connection that has not yet sent a right password;
/// dropping it (authenticated or closed) frees it.
pub(super) struct UnauthenticatedSlot<'a> {
    slots: &'a Mutex<Unauthenticated>,
    id: u64,
    /// Notified when a newer connection took this slot.
    pub(super) evicted: Arc<Notify>,
}

impl<'a> UnauthenticatedSlot<'a> {
    /// Takes a slot, never refusing: when the connection's prefix, or all
    /// unauthenticated connections, are at their limit, the oldest
    /// unauthenticated connection (of that prefix, or of all) is closed
    /// instead. A device sends its first packet right after connecting, so
    /// it is authenticated long before a flood could push it out; a flood
    /// only ever pushes out its own connections first. Returns how many
    /// were evicted.
    pub(super) fn take(slots: &'a Mutex<Unauthenticated>, ip: IpAddr, config: &GatewayConfig) -> (Self, u64) {
        let mut open = kv::lock(slots);
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
        kv::lock(self.slots).evict(self.id);
    }
}

/// One open connection of a peer; dropping it frees the slot.
pub(super) struct PeerSlot<'a> {
    peers: &'a Mutex<HashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl<'a> PeerSlot<'a> {
    pub(super) fn take(
        peers: &'a Mutex<HashMap<IpAddr, usize>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<PeerSlot<'a>> {
        let mut open = kv::lock(peers);
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
        let mut open = kv::lock(self.peers);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}
