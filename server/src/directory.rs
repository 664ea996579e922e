//! The registered enterprises and monitoring points, kept in memory for
//! lookups. Derived from the ledger at start and updated after each durable
//! append, so it is never a second source of truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hj212::MonitoringPoint;
use scoring::{Enterprise, Timestamp};

use crate::consent::{Cover, GrantState};
use crate::enterprise::{EnterpriseStatus, EnterpriseUpdate};
use crate::events::Event;

/// A registered enterprise and the seq of its registration, as of its
/// latest change (or of a ledger prefix, see [`Directory::enterprise_at`]).
#[derive(Clone, Debug)]
pub struct Registered {
    pub enterprise: Enterprise,
    pub seq: u64,
    pub status: EnterpriseStatus,
    /// The seq of the entry that set the details and status above: the
    /// registration or the latest update.
    pub state_seq: u64,
    /// Why the current state was set (`registered` for a registration).
    pub reason: String,
    /// Earlier states, oldest first, with the seq that set each.
    history: Vec<(u64, EnterpriseUpdate)>,
}

impl Registered {
    /// Every state, oldest first, with the seq that set it; the
    /// registration's reason is `registered`.
    pub fn versions(&self) -> Vec<(u64, EnterpriseUpdate)> {
        let current = EnterpriseUpdate {
            enterprise: self.enterprise.clone(),
            status: self.status.clone(),
            reason: self.reason.clone(),
        };
        self.history.iter().cloned().chain([(self.state_seq, current)]).collect()
    }

    /// The state as of the ledger prefix of `tree_size` entries; `None` if
    /// the registration is not inside it.
    fn at(&self, tree_size: u64) -> Option<Registered> {
        if self.seq >= tree_size {
            return None;
        }
        if self.state_seq < tree_size {
            return Some(self.clone());
        }
        let (state_seq, state) = self.history.iter().rev().find(|(seq, _)| *seq < tree_size)?.clone();
        Some(Registered {
            enterprise: state.enterprise,
            status: state.status,
            state_seq,
            reason: state.reason,
            history: Vec::new(),
            seq: self.seq,
        })
    }
}

#[derive(Debug, Default)]
struct Maps {
    enterprises: BTreeMap<String, Registered>,
    /// Monitoring points by device MN; a later registration supersedes,
    /// keeping the time of the first.
    points: HashMap<String, MonitoringPoint>,
    /// Lender access grants by the seq of their entry.
    grants: BTreeMap<u64, GrantState>,
    /// The seqs of the grants of each (USCC, lender), ascending: a lender's
    /// read looks its grant up here, not through every grant.
    grants_by_pair: HashMap<(String, String), Vec<u64>>,
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
                let registered = Registered {
                    enterprise: e.clone(),
                    seq,
                    status: EnterpriseStatus::Active,
                    state_seq: seq,
                    reason: "registered".to_owned(),
                    history: Vec::new(),
                };
                self.write().enterprises.insert(e.uscc.to_string(), registered);
            }
            Event::EnterpriseUpdate { update, .. } => {
                let mut maps = self.write();
                if let Some(r) = maps.enterprises.get_mut(update.enterprise.uscc.as_str()) {
                    let previous = EnterpriseUpdate {
                        enterprise: r.enterprise.clone(),
                        status: r.status.clone(),
                        reason: std::mem::take(&mut r.reason),
                    };
                    r.history.push((r.state_seq, previous));
                    r.enterprise = update.enterprise.clone();
                    r.status = update.status.clone();
                    r.reason = update.reason.clone();
                    r.state_seq = seq;
                }
            }
            Event::MonitoringPoint(p) => {
                let mut maps = self.write();
                let first = maps.points.get(p.mn()).and_then(MonitoringPoint::first_registered_at);
                maps.points.insert(p.mn().to_owned(), p.clone().registered_at(first.unwrap_or(at)));
            }
            Event::AccessGrant(grant) => {
                let mut maps = self.write();
                maps.grants.insert(seq, GrantState { seq, grant: grant.clone(), revoked: None });
                let pair = (grant.uscc.to_string(), grant.lender.clone());
                maps.grants_by_pair.entry(pair).or_default().push(seq);
            }
            Event::AccessRevocation { grant_seq, .. } => {
                if let Some(g) = self.write().grants.get_mut(grant_seq) {
                    g.revoked.get_or_insert((seq, at));
                }
            }
            Event::Record(_) | Event::PlatformOutage(_) | Event::Index(_) | Event::ScoringModel { .. } => {}
        }
    }

    pub fn enterprise(&self, uscc: &str) -> Option<Registered> {
        self.read().enterprises.get(uscc).cloned()
    }

    /// The enterprise's current details alone (every append asks; the
    /// history and reason of [`Directory::enterprise`] are not copied).
    pub fn current(&self, uscc: &str) -> Option<Enterprise> {
        self.read().enterprises.get(uscc).map(|r| r.enterprise.clone())
    }

    /// The enterprise as the first `tree_size` ledger entries describe it.
    pub fn enterprise_at(&self, uscc: &str, tree_size: u64) -> Option<Registered> {
        self.read().enterprises.get(uscc).and_then(|r| r.at(tree_size))
    }

    /// Every registered USCC.
    pub fn usccs(&self) -> Vec<String> {
        self.read().enterprises.keys().cloned().collect()
    }

    pub fn point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.read().points.get(mn).cloned()
    }

    pub fn points(&self) -> Vec<MonitoringPoint> {
        self.read().points.values().cloned().collect()
    }

    /// Registered enterprises with a USCC greater than `after`, in USCC
    /// order, whose current region and industry codes start with the
    /// prefixes; closed and merged ones only if `include_closed`.
    pub fn enterprises_after(
        &self,
        after: &str,
        region_prefix: &str,
        industry_prefix: &str,
        include_closed: bool,
        limit: usize,
    ) -> Vec<Enterprise> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.read()
            .enterprises
            .range::<str, _>((Excluded(after), Unbounded))
            .filter(|(_, r)| include_closed || r.status.is_active())
            .map(|(_, r)| &r.enterprise)
            .filter(|e| {
                e.region_code.starts_with(region_prefix) && e.industry_code.starts_with(industry_prefix)
            })
            .take(limit)
            .cloned()
            .collect()
    }

    /// The grant whose entry is `seq`.
    pub fn grant(&self, seq: u64) -> Option<GrantState> {
        self.read().grants.get(&seq).cloned()
    }

    /// Grants matching `filter`, newest first, at most `limit`.
    pub fn grants(&self, filter: impl Fn(&GrantState) -> bool, limit: usize) -> Vec<GrantState> {
        self.read().grants.values().rev().filter(|g| filter(g)).take(limit).cloned().collect()
    }

    /// The newest grant of `uscc` to `lender` that is live at `now` and
    /// covers `cover`.
    pub fn live_grant(&self, uscc: &str, lender: &str, cover: Cover, now: Timestamp) -> Option<GrantState> {
        let maps = self.read();
        let seqs = maps.grants_by_pair.get(&(uscc.to_owned(), lender.to_owned()))?;
        seqs.iter()
            .rev()
            .filter_map(|seq| maps.grants.get(seq))
            .find(|g| g.grant.covers(cover) && g.status(now) == crate::consent::GrantStatus::Live)
            .cloned()
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
