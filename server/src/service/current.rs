//! The materialized view of current scores: each enterprise's evaluation
//! at the ledger head, kept from one read to the next instead of being
//! recomputed from its entries every time.
//!
//! It is derived data, in memory only, never trusted over the ledger: a
//! kept evaluation is served only while it provably equals
//! `score(enterprise, at, head)`, and anything else is recomputed from the
//! enterprise's entries and kept again. Two things end a kept evaluation:
//!
//! * **A new entry of the enterprise.** The ledger tells the view of every
//!   entry before it publishes the head that holds it
//!   ([`ledger::Ledger::observe_commits`]), so by the time a reader sees a
//!   head, the view knows the newest seq of each subject in it. An
//!   evaluation computed over the first `covers` entries is served for a
//!   head of `size >= covers` only if the enterprise has no entry in
//!   `covers..size`: then both prefixes give the same score.
//! * **Time.** An evaluation is constant between two change points of the
//!   model (a record starts or stops counting, a workflow step takes
//!   effect); it is kept with that interval (`Model::stable_interval`) and
//!   served only for instants inside it. Kept evaluations are also
//!   indexed by their `until` (a time-ordered set), so expiry costs nothing
//!   until it happens: then the refresher (or the first read after the
//!   change point, whichever comes first) recomputes.
//! * **Disclosure.** Each evaluation is kept with what its reasons' records
//!   disclose to the public and lenders, decided when it was computed and
//!   holding until their publicity next changes (a window ends, a repair
//!   takes effect), which need not change the score. The time index uses
//!   the earlier of the two ends, so the refresher decides it again then;
//!   a read after it decides from the entries.
//!
//! The view is also kept current ahead of reads: every subject with a new
//! entry is marked stale, and the composition root's refresher re-evaluates
//! stale enterprises in the background (all of them at start-up), so a read
//! after a burst of appends or a restart usually finds its answer kept.
//!
//! Memory is bounded: at most `capacity` evaluations are kept; a shard that
//! grows past its share drops its kept evaluations (the newest seq per
//! subject stays, a few bytes per enterprise).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use scoring::{Evaluation, Timestamp};

use crate::views::KeptDisclosure;

/// Independent locks, so readers and the ledger's writer rarely meet.
const SHARDS: usize = 64;

/// An evaluation and where it holds.
#[derive(Clone, Debug)]
pub(crate) struct Kept {
    /// The ledger prefix (number of entries) it was computed over.
    pub covers: u64,
    pub evaluation: Arc<Evaluation>,
    /// It holds at every instant of `[from, until)`; `None`: unbounded.
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// The disclosure of the evaluation's reasons' records to the public
    /// and lenders, decided when it was computed; `until` is no later than
    /// its end, so the refresher decides it again when publicity changes.
    pub disclosure: Arc<KeptDisclosure>,
}

impl Kept {
    fn holds_at(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|f| f <= at) && self.until.is_none_or(|u| at < u)
    }

    /// When the refresher should compute it again: the score's end, or
    /// earlier when its disclosure ends first.
    fn refresh_at(&self) -> Option<Timestamp> {
        match (self.until, self.disclosure.until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Default)]
struct Slot {
    /// One past the seq of the subject's newest entry appended since the
    /// service started (0: none; older entries are in every kept
    /// evaluation, since each covers at least the head at start).
    newest_end: u64,
    kept: Option<Kept>,
}

#[derive(Default)]
struct Shard {
    slots: HashMap<Box<str>, Slot>,
    kept: usize,
}

pub(crate) struct CurrentScores {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
    kept_per_shard: usize,
    /// Subjects with entries newer than what is kept, for the refresher.
    stale: Mutex<HashSet<Box<str>>>,
    /// `(until, subject)` of kept evaluations that time will end.
    expiring: Mutex<BTreeSet<(Timestamp, Box<str>)>>,
}

impl std::fmt::Debug for CurrentScores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurrentScores").field("kept", &self.kept()).finish_non_exhaustive()
    }
}

impl CurrentScores {
    /// A view keeping at most about `capacity` evaluations.
    pub(crate) fn new(capacity: usize) -> CurrentScores {
        CurrentScores {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: RandomState::new(),
            kept_per_shard: capacity.div_ceil(SHARDS).max(1),
            stale: Mutex::default(),
            expiring: Mutex::default(),
        }
    }

    /// The ledger's commit observer: entry `seq` about `subject` is durable
    /// and about to be published.
    pub(crate) fn committed(&self, seq: u64, subject: &[u8]) {
        let Ok(subject) = std::str::from_utf8(subject) else { return };
        if subject.is_empty() {
            return;
        }
        {
            let mut shard = self.write(subject);
            match shard.slots.get_mut(subject) {
                Some(slot) => slot.newest_end = slot.newest_end.max(seq + 1),
                None => {
                    shard.slots.insert(subject.into(), Slot { newest_end: seq + 1, kept: None });
                }
            }
        }
        self.mark_stale(subject);
    }

    /// Asks the refresher to (re-)evaluate `subject`.
    pub(crate) fn mark_stale(&self, subject: &str) {
        let mut stale = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        if !stale.contains(subject) {
            stale.insert(subject.into());
        }
    }

    /// Up to `max` subjects whose kept evaluation ends at or before `now`,
    /// removing them from the time index.
    pub(crate) fn take_due(&self, now: Timestamp, max: usize) -> Vec<Box<str>> {
        let mut expiring = self.expiring.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        while due.len() < max {
            match expiring.first() {
                Some((until, _)) if *until <= now => {
                    if let Some((_, subject)) = expiring.pop_first() {
                        due.push(subject);
                    }
                }
                _ => break,
            }
        }
        due
    }

    /// How many subjects are marked stale.
    pub(crate) fn stale(&self) -> usize {
        self.stale.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Up to `max` subjects marked stale, unmarking them.
    pub(crate) fn take_stale(&self, max: usize) -> Vec<Box<str>> {
        let mut stale = self.stale.lock().unwrap_or_else(|p| p.into_inner());
        let taken: Vec<Box<str>> = stale.iter().take(max).cloned().collect();
        for key in &taken {
            stale.remove(key);
        }
        taken
    }

    /// The kept evaluation of `uscc` if it equals the score at `at` over a
    /// head of `head_size` entries.
    pub(crate) fn get(&self, uscc: &str, at: Timestamp, head_size: u64) -> Option<Kept> {
        let shard = self.read(uscc);
        let slot = shard.slots.get(uscc)?;
        let kept = slot.kept.as_ref()?;
        (kept.covers <= head_size && slot.newest_end <= kept.covers && kept.holds_at(at))
            .then(|| kept.clone())
    }

    /// Keeps `kept` unless what is kept already covers more of the ledger,
    /// or as much and a later interval.
    pub(crate) fn put(&self, uscc: &str, kept: Kept) {
        let mut shard = self.write(uscc);
        let shard = &mut *shard;
        let slot = shard.slots.entry(uscc.into()).or_default();
        if let Some(old) = &slot.kept
            && (old.covers, old.from) > (kept.covers, kept.from)
        {
            return;
        }
        let until = kept.refresh_at();
        let replaced = slot.kept.replace(kept);
        {
            let mut expiring = self.expiring.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = replaced.as_ref().and_then(Kept::refresh_at) {
                expiring.remove(&(old, Box::from(uscc)));
            }
            if let Some(until) = until {
                expiring.insert((until, uscc.into()));
            }
        }
        if replaced.is_some() {
            return;
        }
        shard.kept += 1;
        if shard.kept > self.kept_per_shard {
            for (key, slot) in shard.slots.iter_mut() {
                if &**key != uscc {
                    slot.kept = None;
                }
            }
            shard.kept = 1;
        }
    }

    /// How many evaluations are kept.
    pub(crate) fn kept(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(|p| p.into_inner()).kept).sum()
    }

    fn index(&self, key: &str) -> usize {
        // Lossless on every platform that has fewer than 2^64 shards.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn read(&self, key: &str) -> RwLockReadGuard<'_, Shard> {
        // A panic while holding the lock leaves whole slots: every update
        // is a single assignment.
        self.shards[self.index(key)].read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: &str) -> RwLockWriteGuard<'_, Shard> {
        self.shards[self.index(key)].write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(covers: u64, from: Option<i64>, until: Option<i64>) -> Kept {
        let evaluation = Arc::new(scoring::Model::builtin().score(&[], Timestamp::default(), covers));
        let t = |d: i64| Timestamp::default().plus_days(d);
        Kept { covers, evaluation, from: from.map(t), until: until.map(t), disclosure: Arc::default() }
    }

    fn day(d: i64) -> Timestamp {
        Timestamp::default().plus_days(d)
    }

    #[test]
    fn a_kept_evaluation_is_served_inside_its_interval_only() {
        let view = CurrentScores::new(100);
        view.put("A", kept(10, Some(0), Some(5)));
        assert!(view.get("A", day(0), 10).is_some());
        assert!(view.get("A", day(4), 10).is_some());
        assert!(view.get("A", day(5), 10).is_none(), "until is exclusive");
        assert!(view.get("A", day(-1), 10).is_none());
        assert!(view.get("B", day(1), 10).is_none());
    }

    #[test]
    fn a_new_entry_of_the_enterprise_ends_it_and_others_do_not() {
        let view = CurrentScores::new(100);
        view.put("A", kept(10, None, None));
        view.committed(10, b"B");
        assert!(view.get("A", day(1), 11).is_some(), "another enterprise's entry changes nothing");
        view.committed(11, b"A");
        assert!(view.get("A", day(1), 12).is_none());
        // Computed over a prefix that holds the new entry: served again.
        view.put("A", kept(12, None, None));
        assert!(view.get("A", day(1), 12).is_some());
        // A head older than the computation cannot be answered from it.
        assert!(view.get("A", day(1), 11).is_none());
    }

    #[test]
    fn a_late_writer_does_not_replace_a_newer_evaluation() {
        let view = CurrentScores::new(100);
        view.committed(11, b"A");
        view.put("A", kept(12, None, None));
        // A reader that started before the entry puts what it computed.
        view.put("A", kept(10, None, None));
        assert_eq!(view.get("A", day(1), 12).map(|k| k.covers), Some(12));
    }

    #[test]
    fn expiry_is_found_in_time_order() {
        let view = CurrentScores::new(100);
        view.put("A", kept(10, Some(0), Some(30)));
        view.put("B", kept(10, Some(0), Some(5)));
        view.put("C", kept(10, None, None));
        assert!(view.take_due(day(4), 10).is_empty());
        assert_eq!(view.take_due(day(5), 10), vec![Box::from("B")]);
        // A replaced evaluation's old end is forgotten.
        view.put("A", kept(11, Some(0), Some(40)));
        assert!(view.take_due(day(35), 10).is_empty());
        assert_eq!(view.take_due(day(40), 10), vec![Box::from("A")]);
    }

    #[test]
    fn memory_is_bounded() {
        let view = CurrentScores::new(SHARDS * 2);
        for i in 0..10_000 {
            view.put(&format!("E{i}"), kept(1, None, None));
        }
        assert!(view.kept() <= SHARDS * 2, "kept {}", view.kept());
        assert!(view.get("E9999", day(0), 1).is_some(), "the newest stays");
    }
}
