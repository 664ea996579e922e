//! The one door: every call, from every transport (gRPC, the HJ 212
//! gateway, later HTTP), enters the service here with an authenticated
//! [`Principal`] and domain values, and is authorized here before any work.
//!
//! Transports only authenticate, convert at their edge and call a method of
//! [`Service`]; the rules of who may do what are in [`crate::auth`] and
//! are applied nowhere else.
//!
//! Every write goes through the same append pipeline, in this order, so
//! errors are the same everywhere:
//! 1. validate the kind-specific rules of the model → `INVALID_ARGUMENT`;
//! 2. authorize the role for the kind, then the scope for the enterprise →
//!    `PERMISSION_DENIED`;
//! 3. preconditions: the enterprise is registered, a workflow step's record
//!    is eligible → `FAILED_PRECONDITION`. These facts only ever become
//!    true (nothing is removed from the ledger), so checking them before the
//!    group commit cannot race;
//! 4. append ([`Event::encode`], one group commit), update the directory
//!    and tell score watchers which enterprise changed.
//!
//! One `Service`, one door, several `impl Service` blocks by concern:
//! `append` (writes), `registry` (enterprises, points), `scores` (score
//! reads, watches, attestations), `page` (a web page in one call),
//! `inquiry_log`, `evaluate` (the view and recomputation), `ledger_reads`
//! (checkpoints, entries, proofs, the entry policy), `gateway` (HJ 212
//! outages and figures), `updates` (enterprises that change) and `proof`
//! (the model in the log, score proof bundles); `current`
//! keeps the view of current scores and `watch` feeds `WatchCodes`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hj212::{MonitoringPoint, Outage, PointRegistration};
use inquiries::{Inquiry, InquiryLog, Scope};
use ledger::{Checkpoint, Entry, Hash, Ledger, LedgerConfig, Receipt};
use scoring::{Code, Enterprise, KindClass, LedgerRecord, Model, Record, Seq, Timestamp, Uscc};
use tokio::sync::{broadcast, mpsc};

use crate::auth;
use crate::clock::Clock;
pub use crate::consent::{Grant as LenderGrant, GrantState};
use crate::directory::Directory;
use crate::enterprise::{EnterpriseStatus, EnterpriseUpdate, UpdateRequest};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::principals::{Principal, Role};
use crate::views::GatewayFigures;
pub use crate::views::{
    BatchScores, CodeChange, MAX_PAGE_HISTORY, MAX_PAGE_REASONS, PAGE_HISTORY_DAYS, PageView, ScorePage,
    ScoreView, Withheld,
};
pub use disclosure::WITHHELD_KIND;
pub use export::ExportItem;

mod append;
mod consent;
mod current;
mod disclosure;
mod evaluate;
mod export;
mod gateway;
mod inquiry_log;
mod ledger_reads;
mod page;
mod proof;
mod registry;
mod scores;
mod updates;
mod watch;

use current::{CurrentScores, Kept};

/// Most USCCs in one `BatchGetScores` or `WatchCodes` call.
pub const MAX_BATCH: usize = 10_000;
/// Scores per `ListScores` page: the default and the most.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1_000;
/// Most changes of points, grade or colour one `GetScoreHistory` call
/// answers (the page summarizes instead: [`crate::views::MAX_PAGE_HISTORY`]).
pub const MAX_HISTORY_POINTS: usize = 10_000;
/// Most workflow steps (disputes, rectifications) one enterprise may file
/// in 24 hours: each re-reads its history, and a flood is no complaint.
pub const MAX_FILINGS_PER_DAY: usize = 50;

/// What [`Service::list_scores`] is asked for.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub region_prefix: String,
    pub industry_prefix: String,
    /// Empty: every colour.
    pub codes: Vec<Code>,
    /// Empty: every MEE four-level colour.
    pub mee_levels: Vec<scoring::MeeLevel>,
    /// 0: the default page size; capped at [`MAX_PAGE`].
    pub page_size: usize,
    /// Continue after this USCC (empty: from the start).
    pub after: String,
    /// Also list closed and merged enterprises.
    pub include_closed: bool,
}

pub struct Service {
    ledger: Ledger,
    /// The ledger's checkpoint origin; attestations are `<origin>/score`.
    origin: String,
    model: Arc<Model>,
    clock: Arc<dyn Clock>,
    directory: Arc<Directory>,
    /// Who read which score: recorded by every lender's and regulator's read.
    inquiries: InquiryLog,
    /// Recent workflow filings per enterprise, for [`MAX_FILINGS_PER_DAY`].
    filings: Mutex<HashMap<String, VecDeque<Timestamp>>>,
    /// Current scores, kept between reads (derived, in memory).
    current: Arc<CurrentScores>,
    /// USCCs whose entries changed; watchers re-evaluate on each.
    changes: broadcast::Sender<Uscc>,
    /// Set when shutdown begins, so long-lived streams end.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The HJ 212 gateway's counters, when it runs.
    gateway_stats: std::sync::OnceLock<Arc<hj212::GatewayStats>>,
    /// Device passwords' keyed verifiers: server-side state, never ledger
    /// (attached once the ledger has created the shared tables).
    credentials: std::sync::OnceLock<Arc<hj212::Credentials>>,
    /// With `--witness-policy`: the published (cosigned) checkpoint.
    witnessing: std::sync::OnceLock<Arc<crate::witnessing::Witnessing>>,
    /// The entry (seq, hash) holding the model's exact file, once published
    /// at start ([`Service::publish_model`]).
    model_entry: std::sync::OnceLock<(u64, Hash)>,
    /// Whether the entry ending a tree of each size is an index entry, and
    /// the index root it commits to ([`Self::with_commitments`]): entries
    /// never change, so what was read once holds. Bounded: cleared past
    /// [`INDEX_MEMO`] sizes.
    index_at: Mutex<HashMap<u64, Option<Hash>>>,
    /// `--lender-access`; `granted` until set.
    lender_access: std::sync::OnceLock<crate::consent::LenderAccess>,
}

/// An entry another node appended to the shared store: see `Service::open`.
fn take_in_foreign(directory: &Directory, changes: &broadcast::Sender<Uscc>, entry: &Entry) {
    if !Event::is_record_payload(&entry.payload) {
        match Event::decode(entry) {
            Ok(event) => directory.apply(entry.seq, Timestamp::from_unix_nanos(entry.recorded_at_ns), &event),
            Err(e) => {
                tracing::error!(seq = entry.seq, error = %e, "an entry appended by another node does not decode")
            }
        }
    }
    if let Some(uscc) = std::str::from_utf8(&entry.subject).ok().and_then(|s| Uscc::parse(s).ok()) {
        let _ = changes.send(uscc);
    }
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("model", &self.model.version()).finish_non_exhaustive()
    }
}

impl Service {
    /// Opens the ledger (verifying it; see the `ledger` crate) and rebuilds
    /// the directory from its entries.
    pub fn open(
        config: LedgerConfig,
        model: Model,
        clock: Arc<dyn Clock>,
        view_capacity: usize,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Service> {
        let origin = config.origin.clone();
        let (inquiry_dir, store) = (config.dir.join("inquiries"), config.store.clone());
        // The directory is rebuilt from the entries as verification reads
        // them: one pass over the store. Records, the bulk of the ledger,
        // change nothing in it and are not decoded.
        let mut registry_entries = Vec::new();
        let ledger = Ledger::open_visiting(config, progress, &mut |visited| {
            if !Event::is_record_payload(visited.payload) {
                registry_entries.push(visited.to_entry());
            }
        })?;
        // After the ledger: on a shared store, opening the ledger is what
        // creates or migrates the tables, the inquiry log's included.
        let inquiries = match &store {
            Some(url) => InquiryLog::open_shared(url)?,
            None => InquiryLog::open(&inquiry_dir)?,
        };
        let directory = Arc::new(Directory::default());
        for entry in &registry_entries {
            directory.apply(
                entry.seq,
                Timestamp::from_unix_nanos(entry.recorded_at_ns),
                &Event::decode(entry)?,
            );
        }
        drop(registry_entries);
        let current = Arc::new(CurrentScores::new(view_capacity));
        // Warmed in the background from the start: see `refresh_view`.
        for uscc in directory.usccs() {
            current.mark_stale(&uscc);
        }
        let observer = current.clone();
        ledger.observe_commits(Box::new(move |seq, subject| observer.committed(seq, subject)))?;
        let (changes, _) = broadcast::channel(4096);
        // What other nodes append to a shared store is taken in as an
        // append through this node would be: registrations and changes
        // into the directory, watchers told. (The view of current scores
        // already learnt of each entry from the commit observer.)
        let (known, told) = (directory.clone(), changes.clone());
        ledger.observe_foreign_entries(Box::new(move |entry| take_in_foreign(&known, &told, entry)))?;
        Ok(Service {
            current,
            ledger,
            origin,
            model: Arc::new(model),
            clock,
            directory,
            inquiries,
            filings: Mutex::default(),
            changes,
            stopping: tokio::sync::watch::Sender::new(false),
            gateway_stats: std::sync::OnceLock::new(),
            credentials: std::sync::OnceLock::new(),
            witnessing: std::sync::OnceLock::new(),
            model_entry: std::sync::OnceLock::new(),
            index_at: Mutex::default(),
            lender_access: std::sync::OnceLock::new(),
        })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The ledger, for the composition root (close) and operators' tools;
    /// callers' reads go through the methods below, which authorize.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Ends long-lived streams (watches); in-flight unary calls finish.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The USCC of every enterprise whose entries change from now on.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Uscc> {
        self.changes.subscribe()
    }
}

/// Sets a flag when dropped: a blocking task polls it to stop work for a
/// caller that has gone away (tonic drops the handler's future when the
/// client disconnects or its deadline passes).
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl CancelOnDrop {
    fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A requested page size: 0 is the default, more than the most is the most.
fn page_size(requested: usize) -> usize {
    match requested {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

fn check_batch_len(field: &str, len: usize, min: usize) -> Result<()> {
    if len < min || len > MAX_BATCH {
        return Err(Error::InvalidArgument(format!("{field}: {min} to {MAX_BATCH} per call, got {len}")));
    }
    Ok(())
}

/// Every record about `uscc` in `ledger`, in seq order (blocking I/O).
fn records_in(ledger: &Ledger, uscc: &str) -> Result<Vec<LedgerRecord>> {
    let mut out = Vec::new();
    for entry in ledger.entries_for_subject(uscc.as_bytes())? {
        if let Event::Record(record) = Event::decode(&entry)? {
            out.push(LedgerRecord { seq: Seq(entry.seq), record });
        }
    }
    Ok(out)
}

/// Runs evaluation and ledger reads (blocking I/O) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("evaluation task failed: {e}")))?
}

fn not_registered(uscc: &str, tree_size: u64, current: u64) -> Error {
    if tree_size < current {
        Error::NotFound(format!(
            "enterprise {uscc} was not registered within the first {tree_size} ledger entries"
        ))
    } else {
        Error::NotFound(format!("enterprise {uscc} is not registered"))
    }
}
