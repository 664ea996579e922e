//! The single writer thread and its group commit: drain every queued
//! request, stage them into one atomic batch, flush once, answer all.
//!
//! One writer means seqs, the chain and the frontier need no locking beyond
//! publishing the new head; batching means concurrent appends share the
//! cost of a flush, which is what keeps "durable before answering" cheap.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use tokio::sync::oneshot;

use super::engine::{CATCH_UP_BATCH, Commit, Committed, LockedHead, StoredEntry, StoredHead};
use super::error::{Error, Result};
use super::hash::{self, Hash};
use super::tree::Frontier;
use super::verify::{Verified, check_index_entry};
use super::{AppendResult, Conflict, Core, Entry, Head, NewEntry, Receipt, lock, now_ns};

/// Upper bound on the entries of one group commit, so one giant burst does
/// not build an unbounded group frame or transaction.
const MAX_GROUP_ENTRIES: usize = 8192;

pub(crate) enum Request {
    Append {
        entries: Vec<NewEntry>,
        /// Explicit `recorded_at` per entry (tests, imports); else the clock.
        recorded_at: Option<Vec<i64>>,
        reply: oneshot::Sender<Result<Vec<AppendResult>>>,
    },
    /// Sent last by `close`; answered after everything queued before it.
    Close { reply: oneshot::Sender<()> },
    /// End the head with an index entry (unless it already ends with one)
    /// and answer the head that ends with it, for a checkpoint to sign.
    Seal { reply: std::sync::mpsc::SyncSender<Result<Head>> },
    /// Another node may have extended a shared store: read what it
    /// appended and publish the new head (then answer, if asked to).
    CatchUp { reply: Option<std::sync::mpsc::SyncSender<Result<()>>> },
}

/// The durable head as the writer left it; readers clone what they need.
#[derive(Clone, Debug)]
pub(crate) struct State {
    frontier: Frontier,
    root: Hash,
    chain: Hash,
    last_recorded_at_ns: i64,
    /// Whether the last entry is an index entry (a checkpoint of this head
    /// needs no new one).
    last_is_index: bool,
}

impl State {
    pub(crate) fn new(verified: Verified) -> State {
        State {
            root: verified.frontier.root(),
            frontier: verified.frontier,
            chain: verified.chain,
            last_recorded_at_ns: verified.last_recorded_at_ns,
            last_is_index: verified.last_is_index,
        }
    }

    pub(crate) fn head(&self) -> Head {
        Head { size: self.frontier.size(), root: self.root, chain: self.chain }
    }

    pub(crate) fn ends_with_index(&self) -> bool {
        self.last_is_index
    }
}

/// Index entries whose index the writer keeps in memory for
/// [`crate::Ledger::subject_index`].
const INDEX_SNAPSHOTS: usize = 8;

fn remember_index(core: &Core, seq: u64, tree: tlog::index::Tree) {
    let mut snapshots = lock(&core.index_snapshots);
    if snapshots.len() == INDEX_SNAPSHOTS {
        snapshots.pop_front();
    }
    snapshots.push_back((seq, tree));
}

type Reply = oneshot::Sender<Result<Vec<AppendResult>>>;

pub(crate) fn run(core: &Core, requests: Receiver<Request>) {
    // Ends when every handle is gone (queue closed) or on Close.
    while let Ok(first) = requests.recv() {
        let mut group = Vec::new();
        let mut seals = Vec::new();
        let mut closing = None;
        let mut queued_entries = 0;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Append { entries, recorded_at, reply } => {
                    queued_entries += entries.len();
                    group.push((entries, recorded_at, reply));
                }
                Request::Close { reply } => {
                    closing = Some(reply);
                    break;
                }
                Request::Seal { reply } => seals.push(reply),
                Request::CatchUp { reply } => {
                    // Before the queued appends are staged, so they are
                    // staged on top of what it reads.
                    let mut state = read_state(core);
                    let caught_up = catch_up(core, &mut state, None);
                    if let Err(e) = &caught_up {
                        note_catch_up_failure(core, e);
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(caught_up);
                    }
                }
            }
            if queued_entries < MAX_GROUP_ENTRIES {
                next = requests.try_recv().ok();
            }
        }
        if closing.is_some() && lock(&core.failed).is_none() {
            // The final checkpoint `close` signs ends with an index entry.
            let (reply, _answer) = std::sync::mpsc::sync_channel(1);
            seals.push(reply);
        }
        if !group.is_empty() || !seals.is_empty() {
            let sealed = group_commit(core, group, !seals.is_empty());
            for reply in seals {
                let _ = reply.send(sealed.clone());
            }
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
            return;
        }
    }
}

type Group = Vec<(Vec<NewEntry>, Option<Vec<i64>>, Reply)>;
type Answers = Vec<Result<Vec<AppendResult>>>;

/// Commits `group` (and, with `seal`, an index entry after it unless the
/// head already ends with one); answers the head after it.
fn group_commit(core: &Core, group: Group, seal: bool) -> Result<Head> {
    if let Some(failure) = lock(&core.failed).clone() {
        let e = Error::Storage(failure);
        fail_all(group, &e);
        return Err(e);
    }
    // Refuse before writing anything rather than let a full disk fail the
    // commit half-way (after which the store needs a restart to re-verify).
    if let Err(e) = core.check_space() {
        tracing::warn!(error = %e, "appends refused: the disk is full");
        fail_all(group, &e);
        return Err(e);
    }
    let held = read_state(core).frontier.size();
    match core.engine.lock_head(held) {
        Ok(Some(locked)) => sequenced_commit(core, locked, group, seal),
        Ok(None) => local_commit(core, group, seal),
        Err(e) => {
            fail_all(group, &e);
            Err(e)
        }
    }
}

/// A store only this process writes (the embedded engine): stage on the published state,
/// apply atomically, flush, answer.
fn local_commit(core: &Core, group: Group, seal: bool) -> Result<Head> {
    let (mut staged, answers) = match stage(core, read_state(core), &group, seal) {
        Ok(staged) => staged,
        Err((index, e)) => {
            fail_group(group, index, &e);
            return Err(e);
        }
    };
    if staged.commit.entries.is_empty() {
        return Ok(answer(core, group, staged, answers));
    }
    staged.seal();
    match core.engine.commit(&staged.commit) {
        Ok(Committed::Done) => Ok(answer(core, group, staged, answers)),
        Ok(Committed::HeadMoved(size)) => {
            let what = format!("the store's head moved to {size} under its only writer");
            *lock(&core.failed) = Some(what.clone());
            let e = Error::Storage(what);
            fail_all(group, &e);
            Err(e)
        }
        Err(e) => {
            let what = e.to_string();
            tracing::error!(error = %what, "ledger commit failed; refusing further appends");
            *lock(&core.failed) = Some(format!("an earlier commit failed: {what}"));
            let e = Error::Storage(what);
            fail_all(group, &e);
            Err(e)
        }
    }
}

/// A store several nodes write (PostgreSQL), as Tessera sequences: lock
/// the head row, take in what other nodes appended since this node's head,
/// stage the group on top, write and commit in the same transaction. No
/// other node can move the head meanwhile, so no staged work is lost.
fn sequenced_commit(core: &Core, locked: LockedHead, group: Group, seal: bool) -> Result<Head> {
    let LockedHead { lock: head_lock, head, appended } = locked;
    let size = head.map_or(0, |h| h.size);
    let mut state = read_state(core);
    let ours = state.frontier.size();
    if size < ours {
        let e = Error::tampered(size, format!("the stored head ({size}) is behind this node's ({ours})"));
        note_catch_up_failure(core, &e);
        fail_all(group, &e);
        return Err(e);
    }
    if size > ours
        && let Some(head) = head
        && let Err(e) = catch_up_to(core, &mut state, head, size, appended)
    {
        note_catch_up_failure(core, &e);
        fail_all(group, &e);
        return Err(e);
    }
    // Staged on top of everything other nodes appended, under the head
    // lock: the index entry covers all of it.
    let (mut staged, answers) = match stage(core, state, &group, seal) {
        Ok(staged) => staged,
        Err((index, e)) => {
            if e.is_fail_stop() {
                note_catch_up_failure(core, &e);
            }
            fail_group(group, index, &e);
            return Err(e);
        }
    };
    if staged.commit.entries.is_empty() {
        drop(head_lock);
        return Ok(answer(core, group, staged, answers));
    }
    staged.seal();
    match core.engine.commit_locked(head_lock, &staged.commit) {
        Ok(()) => Ok(answer(core, group, staged, answers)),
        // Rolled back, or the outcome was lost with the connection: the
        // next group reads the stored head under the lock, which settles it.
        Err(e) => {
            tracing::warn!(error = %e, "ledger commit failed; the next commit reads the stored head first");
            fail_all(group, &e);
            Err(e)
        }
    }
}

/// Stages every request of `group` on `state`. `Err((index, e))` when
/// request `index` failed in a way that sinks the group.
#[allow(clippy::result_large_err)]
fn stage<'a>(
    core: &'a Core,
    state: State,
    group: &Group,
    seal: bool,
) -> std::result::Result<(Staging<'a>, Answers), (usize, Error)> {
    let mut staged = Staging {
        core,
        commit: Commit { base: state.frontier.size(), ..Commit::default() },
        state,
        keys: HashMap::new(),
        now_ns: now_ns(),
        hashes: Vec::new(),
        index: None,
    };
    let mut answers = Vec::with_capacity(group.len());
    for (index, (entries, recorded_at, _)) in group.iter().enumerate() {
        match staged.request(entries, recorded_at.as_deref()) {
            Ok(answer) => answers.push(Ok(answer)),
            // A caller mistake is that caller's answer alone; anything else
            // (a read failing while looking up a duplicate) sinks the group,
            // because the staged state may hold part of the request.
            Err(e @ Error::InvalidArgument(_)) => answers.push(Err(e)),
            Err(e) => return Err((index, e)),
        }
    }
    // A replica holds the log's own index entries, never one of its own.
    if seal && !core.replica && !staged.state.last_is_index && staged.state.frontier.size() > 0 {
        staged.index_entry().map_err(|e| (group.len(), e))?;
    }
    Ok((staged, answers))
}

/// The group is durable: fold it into the index, tell the observer,
/// publish the head, answer; returns the head.
fn answer(core: &Core, group: Group, staged: Staging<'_>, answers: Answers) -> Head {
    let head = staged.state.head();
    if !staged.commit.entries.is_empty() {
        core.flushes.fetch_add(1, Ordering::Relaxed);
        {
            let mut index = lock(&core.index);
            for (entry, entry_hash) in staged.commit.entries.iter().zip(&staged.hashes) {
                // Staged on this builder's size, so the seqs follow on.
                if let Err(e) = index.push(entry.seq, &entry.subject, entry_hash) {
                    tracing::error!(error = %e, "the subject index lost track of the ledger; refusing further appends");
                    *lock(&core.failed) = Some(format!("the subject index lost track of the ledger: {e}"));
                }
            }
        }
        if let Some((seq, tree)) = staged.index.clone() {
            remember_index(core, seq, tree);
        }
        if let Some(observe) = core.observer.get() {
            for entry in &staged.commit.entries {
                observe(entry.seq, &entry.subject);
            }
        }
        publish(core, staged.state);
    }
    for ((_, _, reply), answer) in group.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
    head
}

fn fail_all(group: Group, e: &Error) {
    for (_, _, reply) in group {
        let _ = reply.send(Err(e.clone()));
    }
}

/// Request `index` failed with `e`; the others were staged with it, so
/// they fail too, saying why.
fn fail_group(group: Group, index: usize, e: &Error) {
    let what = e.to_string();
    tracing::error!(error = %what, "ledger group commit aborted");
    for (i, (_, _, reply)) in group.into_iter().enumerate() {
        let answer = if i == index || matches!(e, Error::Unavailable(_)) {
            e.clone()
        } else {
            Error::Storage(format!("group commit aborted: {what}"))
        };
        let _ = Reply::send(reply, Err(answer));
    }
}

fn read_state(core: &Core) -> State {
    core.state.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn publish(core: &Core, state: State) {
    let mut current = core.state.write().unwrap_or_else(|e| e.into_inner());
    // Never move the published head backwards.
    if state.frontier.size() >= current.frontier.size() {
        *current = state;
    }
}

fn note_catch_up_failure(core: &Core, e: &Error) {
    if e.is_fail_stop() {
        tracing::error!(error = %e, "entries appended by another node fail verification; refusing further appends");
        *lock(&core.failed) = Some(format!("catching up with the shared store failed: {e}"));
    } else {
        tracing::warn!(error = %e, "catching up with the shared store failed; retrying on the next commit");
    }
}

/// Reads the entries other nodes appended to a shared store beyond
/// `state` (up to `target`, else the stored head), checks each one's chain
/// and the resulting root against the stored head, tells the observer and
/// extends and publishes `state`. Nothing here trusts the other node: a row it wrote
/// that does not chain is [`Error::Tampered`].
fn catch_up(core: &Core, state: &mut State, target: Option<u64>) -> Result<()> {
    if !core.engine.is_shared() {
        return Ok(());
    }
    let Some(head) = core.engine.head()? else { return Ok(()) };
    let target = target.unwrap_or(head.size).min(head.size);
    catch_up_to(core, state, head, target, Vec::new())
}

/// [`catch_up`] to `target` (at most the stored head `head`'s size), given
/// the first entries beyond `state` already read (`appended`).
fn catch_up_to(
    core: &Core,
    state: &mut State,
    head: StoredHead,
    target: u64,
    mut appended: Vec<StoredEntry>,
) -> Result<()> {
    let from = state.frontier.size();
    if target <= from {
        return Ok(());
    }
    let mut next = state.clone();
    let mut seen = Vec::with_capacity((target - from) as usize);
    let mut indexed = Vec::with_capacity((target - from) as usize);
    let mut foreign = Vec::new();
    let mut at = from;
    while at < target {
        let end = (at + CATCH_UP_BATCH).min(target);
        let batch = if at == from && !appended.is_empty() {
            let mut batch = std::mem::take(&mut appended);
            batch.truncate((end - at) as usize);
            batch
        } else {
            core.engine.entries_between(at, end)?
        };
        let end = at + batch.len() as u64;
        if batch.first().is_some_and(|e| e.seq != at) || end == at {
            return Err(Error::tampered(at, "entry is missing from the store"));
        }
        for entry in batch {
            let entry_hash = hash::entry_hash(entry.seq, entry.recorded_at_ns, &entry.payload);
            let chain = hash::chain_hash(&next.chain, &entry_hash);
            if chain != entry.chain_hash {
                return Err(Error::tampered(entry.seq, "chain hash does not match the recomputed chain"));
            }
            if entry.recorded_at_ns < next.last_recorded_at_ns {
                return Err(Error::tampered(entry.seq, "recorded_at decreases"));
            }
            next.frontier.push(entry_hash, |_, _, _| {});
            next.chain = chain;
            next.last_recorded_at_ns = entry.recorded_at_ns;
            next.last_is_index = tlog::index::is_index_payload(&entry.payload);
            let commitment = if next.last_is_index {
                let commitment = tlog::index::Commitment::parse(&entry.payload)
                    .map_err(|e| Error::tampered(entry.seq, e.to_string()))?;
                Some(commitment)
            } else {
                None
            };
            indexed.push((entry.seq, entry.subject.clone(), entry_hash, commitment));
            seen.push((entry.seq, entry.subject.clone()));
            if core.foreign.get().is_some() {
                foreign.push((entry, entry_hash));
            }
        }
        at = end;
    }
    next.root = next.frontier.root();
    if next.frontier.size() == head.size && (next.root != head.root || next.chain != head.chain) {
        return Err(Error::tampered(None, "the stored head differs from the entries another node appended"));
    }
    // Only now, with every entry's chain checked, into the index; another
    // node's index entry must say what this node's index says.
    {
        let mut index = lock(&core.index);
        for (seq, subject, entry_hash, commitment) in &indexed {
            if let Some(commitment) = commitment {
                let tree = index.commit().clone();
                check_index_entry(*seq, commitment, &tree)?;
                remember_index(core, *seq, tree);
            }
            index.push(*seq, subject, entry_hash).map_err(|e| Error::tampered(*seq, e.to_string()))?;
        }
    }
    if let Some(observe) = core.observer.get() {
        for (seq, subject) in &seen {
            observe(*seq, subject);
        }
    }
    // Published at once: restaging reads receipts of these entries.
    publish(core, next.clone());
    *state = next;
    if let Some(observe) = core.foreign.get() {
        for (entry, entry_hash) in &foreign {
            observe(&Entry {
                seq: entry.seq,
                recorded_at_ns: entry.recorded_at_ns,
                payload: entry.payload.clone(),
                subject: entry.subject.clone(),
                entry_hash: *entry_hash,
                chain_hash: entry.chain_hash,
                details: entry.details.clone(),
            });
        }
    }
    Ok(())
}

/// One group being assembled on top of a copy of the durable state.
struct Staging<'a> {
    core: &'a Core,
    state: State,
    commit: Commit,
    /// Idempotency keys appended in this group: key -> (fingerprint, receipt).
    keys: HashMap<Vec<u8>, (Hash, Receipt)>,
    now_ns: i64,
    /// The entry hash of each staged entry, for the index.
    hashes: Vec<Hash>,
    /// The index entry staged at the end, and the index it commits to.
    index: Option<(u64, tlog::index::Tree)>,
}

impl Staging<'_> {
    /// Stages the index entry over every entry before it: the writer's
    /// index (which holds every durable entry) with this group's entries.
    fn index_entry(&mut self) -> Result<()> {
        let seq = self.state.frontier.size();
        let tree = self.staged_index()?;
        let payload = tlog::index::Commitment::of(seq, &tree).payload();
        let entry = NewEntry { payload, subject: Vec::new(), idempotency: None, details: Vec::new() };
        self.append(entry, self.now_ns);
        self.index = Some((seq, tree));
        Ok(())
    }

    /// On a replica (a mirror's copy), an index entry taken from the log
    /// must be exactly the index this copy computes over the entries
    /// before it; then it is stored verbatim like any other entry.
    fn check_replicated_index(&mut self, payload: &[u8]) -> Result<()> {
        let seq = self.state.frontier.size();
        let tree = self.staged_index()?;
        if tlog::index::Commitment::of(seq, &tree).payload() != payload {
            return Err(Error::tampered(
                seq,
                "the index entry differs from the index of the entries before it",
            ));
        }
        Ok(())
    }

    /// The index over every durable entry and this group's staged ones.
    fn staged_index(&mut self) -> Result<tlog::index::Tree> {
        Ok({
            let mut index = lock(&self.core.index);
            if index.size() != self.commit.base {
                return Err(Error::Storage(format!(
                    "the subject index holds {} entries, the head {}",
                    index.size(),
                    self.commit.base
                )));
            }
            let mut values: HashMap<&[u8], tlog::index::Value> = HashMap::new();
            for (entry, entry_hash) in self.commit.entries.iter().zip(&self.hashes) {
                if entry.subject.is_empty() {
                    continue;
                }
                values
                    .entry(&entry.subject)
                    .or_insert_with(|| index.value(&entry.subject).unwrap_or_default())
                    .push(entry.seq, entry_hash);
            }
            let updates: Vec<_> =
                values.into_iter().map(|(subject, value)| (tlog::index::key(subject), value)).collect();
            index.commit().apply(updates)
        })
    }

    /// The head the staged entries lead to, for the commit.
    fn seal(&mut self) {
        self.state.root = self.state.frontier.root();
        self.commit.head = Some(StoredHead {
            size: self.state.frontier.size(),
            root: self.state.root,
            chain: self.state.chain,
            last_recorded_at_ns: self.state.last_recorded_at_ns,
        });
    }

    fn request(&mut self, entries: &[NewEntry], recorded_at: Option<&[i64]>) -> Result<Vec<AppendResult>> {
        if let Some(times) = recorded_at {
            // Checked before staging anything so a rejected request leaves
            // no trace; any subsequence of a non-decreasing list is too.
            if times.len() != entries.len() {
                return Err(Error::InvalidArgument("one recorded_at per entry".into()));
            }
            let mut last = self.state.last_recorded_at_ns;
            for &t in times {
                if t < last {
                    return Err(Error::InvalidArgument(format!(
                        "recorded_at {t} is before {last}; it must not decrease along the ledger"
                    )));
                }
                last = t;
            }
        }
        if !self.core.replica && entries.iter().any(|e| tlog::index::is_index_payload(&e.payload)) {
            return Err(Error::InvalidArgument(
                "a payload starting with the index entry line is reserved for index entries".into(),
            ));
        }
        let mut answers = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let at = recorded_at.map_or(self.now_ns, |times| times[i]);
            answers.push(self.entry(entry.clone(), at)?);
        }
        Ok(answers)
    }

    fn entry(&mut self, entry: NewEntry, at: i64) -> Result<AppendResult> {
        if tlog::index::is_index_payload(&entry.payload) {
            // Only a replica gets here (`request` refuses it otherwise).
            self.check_replicated_index(&entry.payload)?;
        }
        if let Some(idempotency) = &entry.idempotency {
            let existing = match self.keys.get(&idempotency.key) {
                Some((fingerprint, receipt)) => Some((*fingerprint, receipt.clone())),
                None => match self.core.engine.idempotency(&idempotency.key)? {
                    // Staging happens on the whole stored head (under the
                    // head lock on a shared store): nothing is beyond it
                    // unless the index is damaged.
                    Some((seq, _)) if seq >= self.state.frontier.size() => {
                        return Err(Error::tampered(
                            None,
                            "an idempotency key points beyond the stored head",
                        ));
                    }
                    Some((seq, fingerprint)) => Some((fingerprint, self.core.receipt(seq, false)?)),
                    None => None,
                },
            };
            if let Some((fingerprint, receipt)) = existing {
                return Ok(if fingerprint == idempotency.fingerprint {
                    Ok(Receipt { duplicate: true, ..receipt })
                } else {
                    Err(Conflict { existing: receipt })
                });
            }
        }

        Ok(Ok(self.append(entry, at)))
    }

    /// Stages `entry` as the next one.
    fn append(&mut self, entry: NewEntry, at: i64) -> Receipt {
        let seq = self.state.frontier.size();
        // The clock may step back; the ledger's time may not.
        let recorded_at_ns = at.max(self.state.last_recorded_at_ns);
        let entry_hash = hash::entry_hash(seq, recorded_at_ns, &entry.payload);
        let chain_hash = hash::chain_hash(&self.state.chain, &entry_hash);
        let nodes = &mut self.commit.nodes;
        self.state.frontier.push(entry_hash, |level, index, hash| nodes.push((level, index, hash)));
        self.state.chain = chain_hash;
        self.state.last_recorded_at_ns = recorded_at_ns;
        self.state.last_is_index = tlog::index::is_index_payload(&entry.payload);
        self.hashes.push(entry_hash);
        let receipt = Receipt { seq, entry_hash, chain_hash, recorded_at_ns, duplicate: false };
        let idempotency = entry.idempotency.map(|i| (i.key, i.fingerprint));
        if let Some((key, fingerprint)) = &idempotency {
            self.keys.insert(key.clone(), (*fingerprint, receipt.clone()));
        }
        self.commit.entries.push(StoredEntry {
            seq,
            recorded_at_ns,
            chain_hash,
            subject: entry.subject,
            idempotency,
            payload: entry.payload,
            details: entry.details,
        });
        receipt
    }
}
