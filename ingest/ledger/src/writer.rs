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

use super::error::{Error, Result};
use super::hash::{self, Hash};
use super::store::{Commit, StoredEntry, StoredHead};
use super::tree::Frontier;
use super::verify::Verified;
use super::{AppendResult, Conflict, Core, Head, NewEntry, Receipt, lock, now_ns};

/// Upper bound on the entries of one group commit, so one giant burst does
/// not build an unbounded sled batch.
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
}

/// The durable head as the writer left it; readers clone what they need.
#[derive(Clone, Debug)]
pub(crate) struct State {
    frontier: Frontier,
    root: Hash,
    chain: Hash,
    last_recorded_at_ns: i64,
}

impl State {
    pub(crate) fn new(verified: Verified) -> State {
        State {
            root: verified.frontier.root(),
            frontier: verified.frontier,
            chain: verified.chain,
            last_recorded_at_ns: verified.last_recorded_at_ns,
        }
    }

    pub(crate) fn head(&self) -> Head {
        Head { size: self.frontier.size(), root: self.root, chain: self.chain }
    }
}

type Reply = oneshot::Sender<Result<Vec<AppendResult>>>;

pub(crate) fn run(core: &Core, requests: Receiver<Request>) {
    // Ends when every handle is gone (queue closed) or on Close.
    while let Ok(first) = requests.recv() {
        let mut group = Vec::new();
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
            }
            if queued_entries < MAX_GROUP_ENTRIES {
                next = requests.try_recv().ok();
            }
        }
        if !group.is_empty() {
            group_commit(core, group);
        }
        if let Some(reply) = closing {
            let _ = reply.send(());
            return;
        }
    }
}

fn group_commit(core: &Core, group: Vec<(Vec<NewEntry>, Option<Vec<i64>>, Reply)>) {
    if let Some(failure) = lock(&core.failed).clone() {
        for (_, _, reply) in group {
            let _ = reply.send(Err(Error::Storage(failure.clone())));
        }
        return;
    }
    // Refuse before writing anything rather than let a full disk fail the
    // commit half-way (after which the store needs a restart to re-verify).
    if let Err(e) = core.check_space() {
        tracing::warn!(error = %e, "appends refused: the disk is full");
        for (_, _, reply) in group {
            let _ = reply.send(Err(e.clone()));
        }
        return;
    }
    let mut staged = Staging {
        core,
        state: core.state.read().unwrap_or_else(|e| e.into_inner()).clone(),
        commit: Commit::default(),
        keys: HashMap::new(),
        now_ns: now_ns(),
    };
    let mut answers = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    let mut group = group.into_iter();
    while let Some((entries, recorded_at, reply)) = group.next() {
        match staged.request(entries, recorded_at) {
            Ok(answer) => answers.push(Ok(answer)),
            // A caller mistake is that caller's answer alone; anything else
            // (a read failing while looking up a duplicate) sinks the group,
            // because the staged state may hold part of the request.
            Err(e @ Error::InvalidArgument(_)) => answers.push(Err(e)),
            Err(e) => {
                let what = e.to_string();
                tracing::error!(error = %what, "ledger group commit aborted");
                let _ = reply.send(Err(e));
                let others = replies.into_iter().chain(group.map(|(_, _, reply)| reply));
                for reply in others {
                    let _ = Reply::send(reply, Err(Error::Storage(format!("group commit aborted: {what}"))));
                }
                return;
            }
        }
        replies.push(reply);
    }

    if !staged.commit.entries.is_empty() {
        staged.state.root = staged.state.frontier.root();
        staged.commit.head = Some(StoredHead {
            size: staged.state.frontier.size(),
            root: staged.state.root,
            chain: staged.state.chain,
            last_recorded_at_ns: staged.state.last_recorded_at_ns,
        });
        if let Err(e) = core.engine.commit(&staged.commit) {
            let what = e.to_string();
            tracing::error!(error = %what, "ledger commit failed; refusing further appends");
            *lock(&core.failed) = Some(format!("an earlier commit failed: {what}"));
            for reply in replies {
                let _ = reply.send(Err(Error::Storage(what.clone())));
            }
            return;
        }
        core.flushes.fetch_add(1, Ordering::Relaxed);
        if let Some(observe) = core.observer.get() {
            for entry in &staged.commit.entries {
                observe(entry.seq, &entry.subject);
            }
        }
        *core.state.write().unwrap_or_else(|e| e.into_inner()) = staged.state;
    }
    for (reply, answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}

/// One group being assembled on top of a copy of the durable state.
struct Staging<'a> {
    core: &'a Core,
    state: State,
    commit: Commit,
    /// Idempotency keys appended in this group: key -> (fingerprint, receipt).
    keys: HashMap<Vec<u8>, (Hash, Receipt)>,
    now_ns: i64,
}

impl Staging<'_> {
    fn request(
        &mut self,
        entries: Vec<NewEntry>,
        recorded_at: Option<Vec<i64>>,
    ) -> Result<Vec<AppendResult>> {
        if let Some(times) = &recorded_at {
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
        let mut answers = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let at = recorded_at.as_ref().map_or(self.now_ns, |times| times[i]);
            answers.push(self.entry(entry, at)?);
        }
        Ok(answers)
    }

    fn entry(&mut self, entry: NewEntry, at: i64) -> Result<AppendResult> {
        if let Some(idempotency) = &entry.idempotency {
            let existing = match self.keys.get(&idempotency.key) {
                Some((fingerprint, receipt)) => Some((*fingerprint, receipt.clone())),
                None => match self.core.engine.idempotency(&idempotency.key)? {
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

        let seq = self.state.frontier.size();
        // The clock may step back; the ledger's time may not.
        let recorded_at_ns = at.max(self.state.last_recorded_at_ns);
        let entry_hash = hash::entry_hash(seq, recorded_at_ns, &entry.payload);
        let chain_hash = hash::chain_hash(&self.state.chain, &entry_hash);
        let nodes = &mut self.commit.nodes;
        self.state.frontier.push(entry_hash, |level, index, hash| nodes.push((level, index, hash)));
        self.state.chain = chain_hash;
        self.state.last_recorded_at_ns = recorded_at_ns;
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
        });
        Ok(Ok(receipt))
    }
}
