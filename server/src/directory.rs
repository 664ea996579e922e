//! The registered enterprises and monitoring points, kept in memory for
//! lookups. Derived from the ledger at start and updated after each durable
//! append, so it is never a second source of truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hj212::MonitoringPoint;
use scoring::{Enterprise, Timestamp};

use crate::events::Event;

/// A registered enterprise and the seq of its registration.
#[derive(Clone, Debug)]
pub struct Registered {
    pub enterprise: Enterprise,
    pub seq: u64,
}

#[derive(Debug, Default)]
struct Maps {
    enterprises: BTreeMap<String, Registered>,
    /// Monitoring points by device MN; a later registration supersedes,
    /// keeping the time of the first.
    points: HashMap<String, MonitoringPoint>,
}

#[derive(Debug, Default)]
pub struct Directory {
    maps: RwLock<Maps>,
}

impl Directory {
    /// Takes in the event stored at `seq` (at start, and after appends) at
    /// instant `at`: the entry's `recorded_at` at start, the service's clock
    /// after an append.
    pub fn apply(&self, seq: u64, at: Timestamp, event: &Event) {
        match event {
            Event::Registration(e) => {
                self.write()
                    .enterprises
                    .insert(e.uscc.to_string(), Registered { enterprise: e.clone(), seq });
            }
            Event::MonitoringPoint(p) => {
                let mut maps = self.write();
                let first = maps.points.get(p.mn()).and_then(MonitoringPoint::first_registered_at);
                maps.points.insert(p.mn().to_owned(), p.clone().registered_at(first.unwrap_or(at)));
            }
            Event::Record(_) | Event::PlatformOutage(_) => {}
        }
    }

    pub fn enterprise(&self, uscc: &str) -> Option<Registered> {
        self.read().enterprises.get(uscc).cloned()
    }

    pub fn point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.read().points.get(mn).cloned()
    }

    pub fn points(&self) -> Vec<MonitoringPoint> {
        self.read().points.values().cloned().collect()
    }

    /// Registered enterprises with a USCC greater than `after`, in USCC
    /// order, whose region and industry codes start with the prefixes.
    pub fn enterprises_after(
        &self,
        after: &str,
        region_prefix: &str,
        industry_prefix: &str,
    ) -> Vec<Enterprise> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.read()
            .enterprises
            .range::<str, _>((Excluded(after), Unbounded))
            .map(|(_, r)| &r.enterprise)
            .filter(|e| {
                e.region_code.starts_with(region_prefix) && e.industry_code.starts_with(industry_prefix)
            })
            .cloned()
            .collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, Maps> {
        // A panic while holding the lock leaves whole entries behind: every
        // update is a single insert.
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }
}
