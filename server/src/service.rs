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
use crate::directory::Directory;
use crate::enterprise::{EnterpriseStatus, EnterpriseUpdate, UpdateRequest};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::principals::{Principal, Role};
use crate::views::GatewayFigures;
pub use crate::views::{
    BatchScores, CodeChange, MAX_PAGE_HISTORY, MAX_PAGE_REASONS, PAGE_HISTORY_DAYS, PageView, ScorePage,
    ScoreView,
};

mod current;
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

    // ---- writes -----------------------------------------------------------

    /// Registers an enterprise; re-sending the same registration returns the
    /// original receipt as a duplicate.
    pub async fn register(&self, who: &Principal, enterprise: Enterprise) -> Result<Receipt> {
        auth::may_register(who, &enterprise)?;
        let uscc = enterprise.uscc.clone();
        self.append_enterprise_event(who, uscc.clone(), Event::Registration(enterprise), |seq| {
            format!("enterprise {uscc} is already registered (seq {seq}) with different details")
        })
        .await
    }

    /// Appends an enterprise's registration or change; a new entry updates
    /// the directory and tells the watchers of that enterprise.
    async fn append_enterprise_event(
        &self,
        who: &Principal,
        uscc: Uscc,
        event: Event,
        conflict: impl FnOnce(u64) -> String,
    ) -> Result<Receipt> {
        let receipt = self
            .append_event(who, &event)
            .await?
            .map_err(|c| Error::AlreadyExists(conflict(c.existing.seq)))?;
        if !receipt.duplicate {
            self.directory.apply(receipt.seq, self.clock.now(), &event);
            let _ = self.changes.send(uscc);
        }
        Ok(receipt)
    }

    /// Registers (or updates the limits of) a monitoring point. The same
    /// content again is a duplicate; new content supersedes, since limits
    /// change when a discharge permit is renewed.
    pub async fn register_point(&self, who: &Principal, registration: PointRegistration) -> Result<Receipt> {
        let point = &registration.point;
        let enterprise = self.registered(point.uscc().as_str()).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "enterprise {} is not registered; register it before its monitoring points",
                point.uscc()
            ))
        })?;
        auth::may_manage_points(who, &enterprise)?;
        // Moving a device to another enterprise touches the one it leaves
        // as well: the caller must be entitled to both.
        if let Some(current) = self.directory.point(point.mn())
            && current.uscc() != point.uscc()
        {
            let leaving = self.registered(current.uscc().as_str()).await?.ok_or_else(|| {
                Error::Internal(format!(
                    "monitoring point {} names unregistered {}",
                    point.mn(),
                    current.uscc()
                ))
            })?;
            auth::may_manage_points(who, &leaving)?;
        }
        // The password's keyed verifier goes to server-side state first, so
        // the entry (which names only its random id) never points at a
        // verifier that is not there; the same password again is the same id.
        let credentials = self.device_credentials()?.clone();
        let current = self.directory.point(point.mn());
        let point =
            tokio::task::spawn_blocking(move || credentials.credential_for(current.as_ref(), registration))
                .await
                .map_err(|e| Error::Internal(format!("device credential task: {e}")))?
                .map_err(|e| Error::Unavailable(format!("device credentials not stored: {e}")))?;
        let event = Event::MonitoringPoint(point);
        let receipt = self.append_event(who, &event).await?.map_err(|c| {
            Error::Internal(format!("monitoring point key collided at seq {}", c.existing.seq))
        })?;
        if !receipt.duplicate {
            self.directory.apply(receipt.seq, self.clock.now(), &event);
        }
        Ok(receipt)
    }

    /// Appends one record.
    pub async fn append_record(&self, who: &Principal, record: Record) -> Result<Receipt> {
        self.append_records(who, vec![record])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no result for one record".into())))
    }

    /// Appends records in order, one result per record. Valid records are
    /// kept even when others fail. Records go to the ledger in as few group
    /// commits as possible; a workflow step is checked against everything
    /// appended before it, including earlier records of the same call.
    pub async fn append_records(&self, who: &Principal, records: Vec<Record>) -> Vec<Result<Receipt>> {
        let mut results: Vec<Option<Result<Receipt>>> = (0..records.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, Record)> = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            let is_workflow = matches!(self.model.kind_class(&record.kind), Some(KindClass::Workflow(_)));
            if is_workflow && !pending.is_empty() {
                self.commit(who, std::mem::take(&mut pending), &mut results).await;
            }
            match self.admit(who, &record).await {
                Ok(()) => pending.push((i, record)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        self.commit(who, pending, &mut results).await;
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Internal("record was neither appended nor rejected".into())))
            })
            .collect()
    }

    /// Steps 1 to 3 of the pipeline for one record. What reads the ledger
    /// (a workflow step's history, a registration another node made) runs
    /// on the blocking pool.
    async fn admit(&self, who: &Principal, record: &Record) -> Result<()> {
        self.model.check_record(record, self.clock.now())?;
        let class = self.model.kind_class(&record.kind).ok_or_else(|| {
            Error::Internal(format!("kind {} passed check_record but has no class", record.kind))
        })?;
        auth::may_append_kind(who, &record.kind, class, &record.source)?;
        let enterprise = self.registered(record.uscc.as_str()).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "enterprise {} is not registered; register it with Registry.RegisterEnterprise first",
                record.uscc
            ))
        })?;
        auth::may_append_for(who, &enterprise)?;
        if let KindClass::Workflow(_) = class {
            if let Role::Enterprise { .. } = who.role {
                self.count_filing(&record.uscc)?;
            }
            let (ledger, model, step) = (self.ledger.clone(), self.model.clone(), record.clone());
            blocking(move || {
                let history = records_in(&ledger, step.uscc.as_str())?;
                model.check_workflow(&step, &history).map_err(|e| Error::FailedPrecondition(e.to_string()))
            })
            .await?;
        }
        Ok(())
    }

    /// Counts an enterprise's workflow filing against
    /// [`MAX_FILINGS_PER_DAY`] (kept in memory: a rate limit, not a rule of
    /// the ledger).
    fn count_filing(&self, uscc: &Uscc) -> Result<()> {
        let now = self.clock.now();
        let day_ago = now.plus_days(-1);
        let mut filings = self.filings.lock().unwrap_or_else(|p| p.into_inner());
        let recent = filings.entry(uscc.to_string()).or_default();
        while recent.front().is_some_and(|t| *t <= day_ago) {
            recent.pop_front();
        }
        if recent.len() >= MAX_FILINGS_PER_DAY {
            let again = recent.front().map_or(now, |t| t.plus_days(1));
            return Err(Error::ResourceExhausted(format!(
                "enterprise {uscc} filed {MAX_FILINGS_PER_DAY} disputes or rectifications in the last 24 hours; \
                 file again after {again}"
            )));
        }
        recent.push_back(now);
        Ok(())
    }

    async fn commit(
        &self,
        who: &Principal,
        batch: Vec<(usize, Record)>,
        results: &mut [Option<Result<Receipt>>],
    ) {
        if batch.is_empty() {
            return;
        }
        let entries = batch.iter().map(|(_, record)| Event::encode_record(record, &who.name)).collect();
        match self.ledger.append(entries).await {
            Ok(outcomes) => {
                for ((slot, record), outcome) in batch.into_iter().zip(outcomes) {
                    results[slot] = Some(match outcome {
                        Ok(receipt) => {
                            if !receipt.duplicate {
                                let _ = self.changes.send(record.uscc);
                            }
                            Ok(receipt)
                        }
                        Err(conflict) => Err(Error::AlreadyExists(format!(
                            "source {:?} already recorded source_record_id {:?} (seq {}) with different content",
                            record.source, record.source_record_id, conflict.existing.seq
                        ))),
                    });
                }
            }
            Err(e) => {
                // The whole group commit failed: nothing of it is in the
                // ledger. The status table decides what each caller sees.
                for (slot, _) in batch {
                    results[slot] = Some(Err(Error::Ledger(e.clone())));
                }
            }
        }
    }

    async fn append_event(&self, who: &Principal, event: &Event) -> Result<ledger::AppendResult> {
        self.ledger.append(vec![event.encode(&who.name)]).await?.pop().ok_or_else(|| {
            Error::Internal("the ledger answered an append of one entry with no result".into())
        })
    }

    // ---- registry reads ---------------------------------------------------

    pub async fn enterprise(&self, who: &Principal, uscc: &Uscc) -> Result<Enterprise> {
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        let enterprise = self
            .registered(uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        auth::may_read_score(who, &enterprise)?;
        Ok(enterprise)
    }

    pub async fn monitoring_point(&self, who: &Principal, mn: &str) -> Result<MonitoringPoint> {
        let point = self.directory.point(mn).ok_or_else(|| {
            let shown: String = mn.chars().take(32).collect();
            Error::NotFound(format!("no monitoring point is registered for device {shown:?}"))
        })?;
        let enterprise = self.registered(point.uscc().as_str()).await?.ok_or_else(|| {
            Error::Internal(format!("monitoring point {mn} names unregistered {}", point.uscc()))
        })?;
        auth::may_read_score(who, &enterprise)?;
        Ok(point)
    }

    /// The point of device `mn`, for the HJ 212 gateway, which is part of
    /// the service itself (its records are authorized as the gateway's
    /// principal when they are appended).
    pub(crate) fn device_point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.directory.point(mn)
    }

    /// Every registered point, for the gateway's missing days of devices
    /// that never connect.
    pub(crate) fn device_points(&self) -> Vec<MonitoringPoint> {
        self.directory.points()
    }

    /// Makes the device passwords' verifiers usable (the composition root
    /// opens them after the ledger).
    pub fn attach_credentials(&self, credentials: Arc<hj212::Credentials>) {
        let _ = self.credentials.set(credentials);
    }

    /// The device passwords' verifiers, for registrations and the gateway.
    pub(crate) fn device_credentials(&self) -> Result<&Arc<hj212::Credentials>> {
        self.credentials
            .get()
            .ok_or_else(|| Error::Unavailable("device credentials are not open yet; try again".into()))
    }

    async fn registered(&self, uscc: &str) -> Result<Option<Enterprise>> {
        Ok(self.registration(uscc).await?.map(|r| r.enterprise))
    }

    /// The directory's record of `uscc`. On a shared store a miss first
    /// catches up with what other nodes appended (one round trip, on the
    /// blocking pool), so an enterprise registered through another node a
    /// moment ago is found; if the store cannot be reached, that is the
    /// answer (`UNAVAILABLE`), not "not registered".
    async fn registration(&self, uscc: &str) -> Result<Option<crate::directory::Registered>> {
        if let Some(found) = self.directory.enterprise(uscc) {
            return Ok(Some(found));
        }
        if !self.ledger.is_shared() {
            return Ok(None);
        }
        self.on_ledger(|ledger| ledger.catch_up()).await?;
        Ok(self.directory.enterprise(uscc))
    }

    /// Runs `read` on the blocking pool: on PostgreSQL every ledger read
    /// is a database round trip, and on sled it may be a disk read; an
    /// async worker never waits for either (docs/api.md, "Blocking").
    async fn on_ledger<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Ledger) -> ledger::Result<T> + Send + 'static,
    ) -> Result<T> {
        let ledger = self.ledger.clone();
        blocking(move || Ok(read(&ledger)?)).await
    }

    // ---- scores -----------------------------------------------------------

    /// The score of `uscc` at `at` (default now) over the ledger prefix
    /// `tree_size` (0 = the current size), if `who` may see it. A lender's
    /// or regulator's read is recorded in the inquiry log, with `purpose`,
    /// before it is answered.
    pub async fn score(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<ScoreView> {
        let view = self.read_score(who, uscc, at, tree_size).await?;
        self.inquire(who, purpose, "GetScore", &[&view.enterprise]).await?;
        Ok(view)
    }

    /// [`Self::score`] without the inquiry, for reads that record their own.
    async fn read_score(
        self: &Arc<Self>,
        who: &Principal,
        uscc: &Uscc,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<ScoreView> {
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        // A kept score is a memory read, answered here; anything else
        // reads the ledger, off the async workers.
        let view = match self.kept_view(uscc.as_str(), at, tree_size) {
            Some(view) => view?,
            None => {
                let (service, key) = (self.clone(), uscc.clone());
                blocking(move || service.evaluate(key.as_str(), at, tree_size)).await?
            }
        };
        auth::may_read_score(who, &view.enterprise)?;
        Ok(view)
    }

    /// Scores of many enterprises at one instant; unknown USCCs are listed
    /// in `not_found`, a USCC asked twice is answered once. Evaluation runs
    /// off the async workers and stops as soon as the caller goes away (its
    /// deadline passes or it disconnects) or the service shuts down.
    pub async fn batch_scores(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        usccs: Vec<Uscc>,
        at: Option<Timestamp>,
    ) -> Result<BatchScores> {
        check_batch_len("uscc", usccs.len(), 0)?;
        for uscc in &usccs {
            auth::may_read_scores_at_all(who, uscc.as_str())?;
        }
        let mut seen = std::collections::HashSet::with_capacity(usccs.len());
        let usccs: Vec<Uscc> = usccs.into_iter().filter(|u| seen.insert(u.clone())).collect();
        let at = at.unwrap_or_else(|| self.clock.now());
        let (service, reader) = (self.clone(), who.clone());
        let cancel = CancelOnDrop::default();
        let cancelled = cancel.flag();
        let stopping = self.stopping();
        let answer = blocking(move || {
            let mut answer = BatchScores::default();
            for uscc in usccs {
                if cancelled.load(Ordering::Relaxed) || *stopping.borrow() {
                    return Err(Error::Unavailable(
                        "the call was cancelled or the service is stopping".into(),
                    ));
                }
                match service.evaluate(uscc.as_str(), Some(at), 0) {
                    Ok(view) => {
                        auth::may_read_score(&reader, &view.enterprise)?;
                        answer.scores.push(view);
                    }
                    Err(Error::NotFound(_)) => answer.not_found.push(uscc),
                    Err(e) => return Err(e),
                }
            }
            Ok(answer)
        })
        .await?;
        drop(cancel);
        let read: Vec<&Enterprise> = answer.scores.iter().map(|v| &v.enterprise).collect();
        self.inquire(who, purpose, "BatchGetScores", &read).await?;
        Ok(answer)
    }

    /// A page of current scores in USCC order, filtered by region, industry
    /// and colour; a regulator's region is narrowed to its scope.
    pub async fn list_scores(self: &Arc<Self>, who: &Principal, query: ListQuery) -> Result<ScorePage> {
        let region = auth::list_scope(who, &query.region_prefix)?;
        let page_size = page_size(query.page_size);
        let at = self.clock.now();
        let service = self.clone();
        blocking(move || {
            // Candidates come in chunks, so a page costs its own size (plus
            // what the colour filter skips), not the directory's.
            let mut page = ScorePage::default();
            let mut after = query.after;
            loop {
                let chunk = service.directory.enterprises_after(
                    &after,
                    &region,
                    &query.industry_prefix,
                    query.include_closed,
                    page_size,
                );
                let Some(last) = chunk.last() else { return Ok(page) };
                let exhausted = chunk.len() < page_size;
                after = last.uscc.to_string();
                for (i, e) in chunk.iter().enumerate() {
                    let view = service.evaluate(e.uscc.as_str(), Some(at), 0)?;
                    let score = &view.evaluation;
                    if (query.codes.is_empty() || query.codes.contains(&score.code))
                        && (query.mee_levels.is_empty() || query.mee_levels.contains(&score.mee_level))
                    {
                        page.scores.push(view);
                    }
                    if page.scores.len() == page_size {
                        let more = i + 1 < chunk.len()
                            || !exhausted
                                && !service
                                    .directory
                                    .enterprises_after(
                                        e.uscc.as_str(),
                                        &region,
                                        &query.industry_prefix,
                                        query.include_closed,
                                        1,
                                    )
                                    .is_empty();
                        if more {
                            page.next_after = Some(e.uscc.to_string());
                        }
                        return Ok(page);
                    }
                }
                if exhausted {
                    return Ok(page);
                }
            }
        })
        .await
    }

    /// The score at `from` (default a year before `to`) and every later
    /// change of points, grade or colour up to `to` (default now).
    pub async fn score_history(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<ScoreView>> {
        let to = to.unwrap_or_else(|| self.clock.now());
        let from = from.unwrap_or(to.plus_days(-365));
        if from > to {
            return Err(Error::InvalidArgument(format!("from: {from} is after to ({to})")));
        }
        let first = self.read_score(who, uscc, Some(from), 0).await?;
        let enterprise = first.enterprise.clone();
        let service = self.clone();
        let points = blocking(move || {
            let records = service.records_of(first.enterprise.uscc.as_str())?;
            let tree_size = first.tree_size;
            // The instants where points, grade or colour change come from
            // one sweep; only those are evaluated in full (with reasons).
            let changes = service.model.timeline(&records, from, to, tree_size);
            if changes.len() > MAX_HISTORY_POINTS {
                return Err(Error::InvalidArgument(format!(
                    "from/to: the score changes {} times in the period, more than {MAX_HISTORY_POINTS}; \
                     ask for a shorter period",
                    changes.len() - 1
                )));
            }
            let mut points = vec![first.clone()];
            for step in changes.into_iter().skip(1) {
                let evaluation = service.model.score(&records, step.at, tree_size);
                points.push(ScoreView { evaluation, ..first.clone() });
            }
            Ok(points)
        })
        .await?;
        self.inquire(who, purpose, "GetScoreHistory", &[&enterprise]).await?;
        Ok(points)
    }

    /// Watches the colours of `usccs`: first each current code, then every
    /// change, until the receiver is dropped or the service shuts down.
    pub async fn watch(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        usccs: &[Uscc],
    ) -> Result<mpsc::Receiver<Result<CodeChange>>> {
        check_batch_len("uscc", usccs.len(), 1)?;
        for uscc in usccs {
            auth::may_read_scores_at_all(who, uscc.as_str())?;
        }
        // Subscribe before the first evaluation so no change falls between.
        let changes = self.subscribe_changes();
        let (service, reader, usccs) = (self.clone(), who.clone(), usccs.to_vec());
        let current = blocking(move || {
            let mut current = HashMap::with_capacity(usccs.len());
            for uscc in usccs {
                let (view, next_change) = service.evaluate_for_watch(uscc.as_str())?;
                auth::may_read_score(&reader, &view.enterprise)?;
                current.insert(uscc.to_string(), (view, next_change));
            }
            Ok(current)
        })
        .await?;
        let watched: Vec<&Enterprise> = current.values().map(|(v, _)| &v.enterprise).collect();
        self.inquire(who, purpose, "WatchCodes", &watched).await?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(watch::run(self.clone(), current, changes, tx));
        Ok(rx)
    }

    /// A score and its attestation: a signed note anyone can check offline
    /// with the service's verifier key.
    pub async fn attestation(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<(ScoreView, String)> {
        let view = self.read_score(who, uscc, at, tree_size).await?;
        let note = self.sign_attestation(&view)?;
        self.inquire(who, purpose, "GetAttestation", &[&view.enterprise]).await?;
        Ok((view, note))
    }

    /// The signed note stating `view`.
    fn sign_attestation(&self, view: &ScoreView) -> Result<String> {
        let statement = tlog::attestation::Attestation {
            origin: self.origin.clone(),
            uscc: view.enterprise.uscc.to_string(),
            points: i64::from(view.evaluation.points),
            grade: view.evaluation.grade.as_str().to_owned(),
            code: view.evaluation.code.as_str().to_owned(),
            veto: view.evaluation.veto,
            disputed: view.evaluation.disputed,
            model: view.evaluation.model_version.clone(),
            as_of: view.evaluation.as_of.to_string(),
            tree_size: view.tree_size,
            root: view.root,
        };
        Ok(self.ledger.sign_note(&statement.body())?)
    }

    /// What the web page of `uscc` shows, all of the tree of the latest
    /// published checkpoint: the score, the records behind it as far as
    /// `who` may see them ([`auth::may_see_record`]), the open disputes,
    /// whether credit repair may be granted for each reason shown, the
    /// summarized history of the last 24 months, the signed attestation
    /// and the reasons' inclusion proofs. It signs no checkpoint and
    /// stores nothing but a lender's or regulator's inquiry. Its cost is bounded by the enterprise's records,
    /// not by how often its score changed. A lender's or regulator's read
    /// is one inquiry, as `GetScore`.
    pub async fn page(self: &Arc<Self>, who: &Principal, purpose: &str, uscc: &Uscc) -> Result<PageView> {
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        auth::may_read_ledger(who)?;
        // The latest published checkpoint, never one signed for this read:
        // a page view writes nothing (a crawler causes no disk writes).
        let checkpoint = self.published_checkpoint()?;
        let at = self.clock.now();
        let (service, reader, uscc) = (self.clone(), who.clone(), uscc.clone());
        let page = blocking(move || {
            let size = checkpoint.tree_size;
            let enterprise = service
                .directory
                .enterprise_at(uscc.as_str(), size)
                .ok_or_else(|| not_registered(uscc.as_str(), size, service.ledger.head().size))?
                .enterprise;
            auth::may_read_score(&reader, &enterprise)?;
            // One read of the records; the score, history, disputes and
            // repair all come from it.
            let all = service.records_of(uscc.as_str())?;
            let evaluation = service.model.score(&all, at, size);
            let score = ScoreView { enterprise, evaluation, tree_size: size, root: checkpoint.root };
            let open_disputes = service.model.open_disputes(&all, at, size);
            let shown = || score.evaluation.reasons.iter().take(MAX_PAGE_REASONS);
            let repair = shown()
                // Record lines have an expiry; caps and the clamp do not.
                .filter(|r| r.expires_at.is_some())
                .map(|r| {
                    let step = Record {
                        source: reader.writes_as().to_owned(),
                        source_record_id: String::new(),
                        uscc: score.enterprise.uscc.clone(),
                        kind: scoring::WorkflowKind::RepairGranted.name().to_owned(),
                        occurred_at: at,
                        amount_yuan: 0,
                        refers_to: Some(r.seq),
                        description: String::new(),
                        attributes: Default::default(),
                    };
                    (r.seq, service.model.check_workflow(&step, &all).map_err(|e| e.message))
                })
                .collect();
            let proofs = shown()
                .filter(|r| r.expires_at.is_some() && r.seq.0 < size)
                .map(|r| Ok((r.seq, service.ledger.inclusion_proof(r.seq.0, size)?)))
                .collect::<Result<Vec<_>>>()?;
            let timeline = service.model.timeline(&all, at.plus_days(-PAGE_HISTORY_DAYS), at, size);
            let (history, history_complete) = scoring::summarize(&timeline, MAX_PAGE_HISTORY);
            let records = all
                .into_iter()
                .filter(|r| {
                    let class = service.model.kind_class(&r.record.kind);
                    auth::may_see_record(&reader, &score.enterprise, class).is_ok()
                })
                .collect();
            let note = service.sign_attestation(&score)?;
            let detailed = auth::may_see_filings(&reader, &score.enterprise);
            Ok(PageView {
                detailed,
                score,
                records,
                open_disputes,
                repair,
                history,
                history_complete,
                note,
                checkpoint,
                proofs,
            })
        })
        .await?;
        self.inquire(who, purpose, "GetScore", &[&page.score.enterprise]).await?;
        Ok(page)
    }

    /// Entry `seq`, a record of `uscc`, if `who` may see that record: what
    /// the page's proofs are built from (the public reads the entries of
    /// scored records, nothing else; see [`auth::may_see_record`]).
    pub async fn record_entry(&self, who: &Principal, uscc: &Uscc, seq: u64) -> Result<Entry> {
        let enterprise = self.enterprise(who, uscc).await?;
        let entry = self.on_ledger(move |ledger| ledger.entry(seq)).await?;
        let class = match Event::decode(&entry)? {
            Event::Record(record) if record.uscc == *uscc => self.model.kind_class(&record.kind),
            _ => return Err(Error::NotFound(format!("entry {seq} is not a record of {uscc}"))),
        };
        auth::may_see_record(who, &enterprise, class)?;
        Ok(entry)
    }

    /// The verifier key of checkpoints and attestations, as `ecocode key
    /// show` prints it: public by nature.
    pub fn verifier_key(&self) -> String {
        self.ledger.verifier_key()
    }

    /// The Ed25519 public key behind [`Self::verifier_key`]: public by nature.
    pub fn public_key(&self) -> [u8; 32] {
        self.ledger.public_key()
    }

    /// Who reads the web page of `uscc`, `signed` in or not: the decision
    /// is [`auth::page_reader`]'s.
    pub async fn page_reader(&self, signed: Option<&Principal>, uscc: &Uscc) -> Result<Principal> {
        let enterprise = match signed {
            Some(_) => self.registered(uscc.as_str()).await?,
            None => None,
        };
        Ok(auth::page_reader(signed, enterprise.as_ref()))
    }

    // ---- the inquiry log --------------------------------------------------

    /// Records that `who` read these enterprises' scores with `method`,
    /// durably, when `who` is a lender or a regulator (an enterprise reading
    /// itself, an admin and the service are not inquirers).
    async fn inquire(
        &self,
        who: &Principal,
        purpose: &str,
        method: &str,
        read: &[&Enterprise],
    ) -> Result<()> {
        if !matches!(who.role, Role::Lender | Role::Regulator { .. }) || read.is_empty() {
            return Ok(());
        }
        let at_ns = self.clock.now().unix_nanos();
        let inquiries: Vec<Inquiry> = read
            .iter()
            .map(|e| Inquiry {
                uscc: e.uscc.to_string(),
                region_code: e.region_code.clone(),
                principal: who.name.clone(),
                role: who.role.name().to_owned(),
                method: method.to_owned(),
                purpose: purpose.to_owned(),
                at_ns,
            })
            .collect();
        self.inquiries.record(&inquiries).await.map_err(|e| {
            // Never answer a read that could not be recorded.
            tracing::error!(error = %e, "inquiry not recorded; refusing the read");
            Error::Unavailable("the inquiry log cannot record this read now; try again later".into())
        })
    }

    /// A page of the inquiries `who` may see, newest first: an enterprise
    /// sees every inquiry on itself, a lender only its own, a regulator
    /// those on enterprises in its scope, an admin all. `uscc` narrows to
    /// one enterprise.
    pub async fn list_inquiries(
        self: &Arc<Self>,
        who: &Principal,
        uscc: Option<&Uscc>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        page_size: usize,
        after: Option<Vec<u8>>,
    ) -> Result<inquiries::Page> {
        let scope = match (&who.role, uscc) {
            (Role::Enterprise { uscc: own }, None) => Scope::Enterprise(own.clone()),
            (Role::Enterprise { uscc: own }, Some(u)) if u.as_str() == own => Scope::Enterprise(own.clone()),
            (Role::Lender, u) => {
                Scope::Inquirer { principal: who.name.clone(), uscc: u.map(ToString::to_string) }
            }
            (Role::Regulator { region_prefix }, None) => Scope::Region(region_prefix.clone()),
            (Role::Regulator { .. }, Some(u)) => {
                let enterprise = self
                    .registered(u.as_str())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("enterprise {u} is not registered")))?;
                auth::may_read_score(who, &enterprise)?;
                Scope::Enterprise(u.to_string())
            }
            (Role::Admin, None) => Scope::All,
            (Role::Admin, Some(u)) => Scope::Enterprise(u.to_string()),
            _ => return Err(auth::denied(who, "list these inquiries")),
        };
        let page_size = self::page_size(page_size);
        let query = inquiries::Query {
            scope,
            from_ns: from.map(Timestamp::unix_nanos),
            to_ns: to.map(Timestamp::unix_nanos),
            page_size,
            after,
        };
        let service = self.clone();
        blocking(move || Ok(service.inquiries.list(&query)?)).await
    }

    /// Evaluates without authorization, for callers that authorized already.
    /// At the head (`tree_size` 0 or the current size) the answer comes
    /// from the view of current scores when it holds; an older prefix is
    /// computed from the enterprise's entries.
    pub(crate) fn evaluate(&self, uscc: &str, at: Option<Timestamp>, tree_size: u64) -> Result<ScoreView> {
        let head = self.ledger.head();
        let at = at.unwrap_or_else(|| self.clock.now());
        if tree_size != 0 && tree_size != head.size {
            return self.evaluate_prefix(uscc, at, tree_size, head.size);
        }
        let (view, _) = self.evaluate_at_head(uscc, at, head)?;
        Ok(view)
    }

    /// The score at the head if the view holds it (no I/O); `None` when it
    /// must be computed.
    fn kept_view(&self, uscc: &str, at: Option<Timestamp>, tree_size: u64) -> Option<Result<ScoreView>> {
        let head = self.ledger.head();
        if tree_size != 0 && tree_size != head.size {
            return None;
        }
        let at = at.unwrap_or_else(|| self.clock.now());
        let kept = self.current.get(uscc, at, head.size)?;
        Some(self.view_of(uscc, at, head, kept))
    }

    fn view_of(&self, uscc: &str, at: Timestamp, head: ledger::Head, kept: Kept) -> Result<ScoreView> {
        let registered = self
            .directory
            .enterprise_at(uscc, head.size)
            .ok_or_else(|| not_registered(uscc, head.size, head.size))?;
        let mut evaluation = Arc::unwrap_or_clone(kept.evaluation);
        evaluation.as_of = at;
        Ok(ScoreView { enterprise: registered.enterprise, evaluation, tree_size: head.size, root: head.root })
    }

    /// The score at the head, and when it can next change with no new entry.
    fn evaluate_at_head(
        &self,
        uscc: &str,
        at: Timestamp,
        head: ledger::Head,
    ) -> Result<(ScoreView, Option<Timestamp>)> {
        let kept = match self.current.get(uscc, at, head.size) {
            Some(kept) => kept,
            None => {
                if self.directory.enterprise_at(uscc, head.size).is_none() {
                    return Err(not_registered(uscc, head.size, head.size));
                }
                // Entries past the head are read too but not counted: the
                // evaluation is exactly that of the prefix `head.size`.
                let records = self.records_of(uscc)?;
                let (from, until) = self.model.stable_interval(&records, at, head.size);
                let evaluation = Arc::new(self.model.score(&records, at, head.size));
                let kept = Kept { covers: head.size, evaluation, from, until };
                self.current.put(uscc, kept.clone());
                kept
            }
        };
        let until = kept.until;
        Ok((self.view_of(uscc, at, head, kept)?, until))
    }

    /// The score over the first `tree_size` entries, computed.
    fn evaluate_prefix(&self, uscc: &str, at: Timestamp, tree_size: u64, current: u64) -> Result<ScoreView> {
        let root = self.ledger.root_at(tree_size)?;
        // The details (name, region, ...) as of the prefix: a later change
        // of name does not rewrite what was known then.
        let registered = self
            .directory
            .enterprise_at(uscc, tree_size)
            .ok_or_else(|| not_registered(uscc, tree_size, current))?;
        let records = self.records_of(uscc)?;
        let evaluation = self.model.score(&records, at, tree_size);
        Ok(ScoreView { enterprise: registered.enterprise, evaluation, tree_size, root })
    }

    /// Re-evaluates up to `max` enterprises whose kept score is stale (new
    /// entries, never evaluated since start-up, or ended by time) into the
    /// view; returns how many it took. The composition root calls it in the background.
    pub fn refresh_view(&self, max: usize) -> Result<usize> {
        let now = self.clock.now();
        let mut stale = self.current.take_stale(max);
        stale.extend(self.current.take_due(now, max.saturating_sub(stale.len())));
        for uscc in &stale {
            let head = self.ledger.head();
            if self.current.get(uscc, now, head.size).is_some()
                || self.directory.enterprise_at(uscc, head.size).is_none()
            {
                continue;
            }
            self.evaluate_at_head(uscc, now, head)?;
        }
        Ok(stale.len())
    }

    /// Enterprises waiting for the refresher (operators, the load generator).
    pub fn stale_scores(&self) -> usize {
        self.current.stale()
    }

    /// The current score of `uscc` and when it can next change with no new
    /// entry (watches need both).
    pub(crate) fn evaluate_for_watch(&self, uscc: &str) -> Result<(ScoreView, Option<Timestamp>)> {
        self.evaluate_at_head(uscc, self.clock.now(), self.ledger.head())
    }

    /// Recomputes the current score of `uscc` from its entries, bypassing
    /// the view: what the view must always equal (an admin's audit; tests).
    pub fn recompute(
        &self,
        who: &Principal,
        uscc: &str,
        at: Timestamp,
    ) -> Result<(ScoreView, Option<Timestamp>)> {
        auth::may_audit_scores(who)?;
        let head = self.ledger.head();
        let view = self.evaluate_prefix(uscc, at, head.size, head.size)?;
        let next = self.model.next_change_after(&self.records_of(uscc)?, at, head.size);
        Ok((ScoreView { root: head.root, ..view }, next))
    }

    /// The current score of `uscc` as served to readers (view or
    /// recomputation), without inquiry: an admin's audit (tests).
    pub fn current_score(
        &self,
        who: &Principal,
        uscc: &str,
        at: Timestamp,
    ) -> Result<(ScoreView, Option<Timestamp>)> {
        auth::may_audit_scores(who)?;
        self.evaluate_at_head(uscc, at, self.ledger.head())
    }

    /// Every record about `uscc` in the ledger, in seq order.
    pub(crate) fn records_of(&self, uscc: &str) -> Result<Vec<LedgerRecord>> {
        records_in(&self.ledger, uscc)
    }

    // ---- the ledger -------------------------------------------------------

    /// The latest signed checkpoint.
    pub fn checkpoint(&self, who: &Principal) -> Result<Checkpoint> {
        auth::may_read_ledger(who)?;
        self.published_checkpoint()
    }

    /// The witnessed checkpoint under `--witness-policy`, else the latest
    /// signed one: read, never signed.
    fn published_checkpoint(&self) -> Result<Checkpoint> {
        if let Some(published) = self.witnessing.get().and_then(|w| w.published()) {
            return Ok(published);
        }
        Ok(self.ledger.checkpoint()?)
    }

    /// Publishes only checkpoints its witnesses cosigned (`--witness-policy`).
    pub fn attach_witnessing(&self, witnessing: Arc<crate::witnessing::Witnessing>) {
        let _ = self.witnessing.set(witnessing);
    }

    pub fn witnessing(&self) -> Option<&Arc<crate::witnessing::Witnessing>> {
        self.witnessing.get()
    }

    /// A checkpoint whose tree holds the first `size` entries: what a
    /// writer hands back so that every receipt it acknowledged can be
    /// proven at once. Signs a new one only when the latest is too small.
    pub(crate) async fn checkpoint_covering(&self, who: &Principal, size: u64) -> Result<Checkpoint> {
        auth::may_sign_checkpoint(who)?;
        // The witnessed one when it covers `size`; appends never wait for witnesses.
        if let Some(published) =
            self.witnessing.get().and_then(|w| w.published()).filter(|p| p.tree_size >= size)
        {
            return Ok(published);
        }
        self.on_ledger(move |ledger| ledger.checkpoint_covering(size)).await
    }

    pub async fn entry(&self, who: &Principal, seq: u64) -> Result<Entry> {
        auth::may_read_ledger(who)?;
        let entry = self.on_ledger(move |ledger| ledger.entry(seq)).await?;
        self.may_read_entry(who, &entry)?;
        Ok(entry)
    }

    /// Entries `[from, to)` (`to = 0`: the current size) that `who` may
    /// read, streamed through a bounded channel. Entries are read in chunks
    /// on the blocking pool and only when the reader has room, so a stream
    /// that is never read holds no thread and little memory.
    pub fn entries(
        self: &Arc<Self>,
        who: &Principal,
        from: u64,
        to: u64,
    ) -> Result<mpsc::Receiver<Result<Entry>>> {
        const CHUNK: u64 = 256;
        auth::may_read_ledger(who)?;
        let size = self.ledger.head().size;
        let to = if to == 0 { size } else { to };
        if to > size || from > to {
            return Err(ledger::Error::OutOfRange(format!(
                "entries {from}..{to} are not within the ledger's {size} entries"
            ))
            .into());
        }
        let (tx, rx) = mpsc::channel(CHUNK as usize);
        let (service, who) = (self.clone(), who.clone());
        tokio::spawn(async move {
            let mut next = from;
            while next < to {
                // Wait for room before reading: an unread stream stops here.
                let Ok(permits) = tx.reserve_many(CHUNK.min(to - next) as usize).await else { return };
                let (end, reader, service) = ((next + CHUNK).min(to), who.clone(), service.clone());
                let chunk = tokio::task::spawn_blocking(move || {
                    service
                        .ledger
                        .scan(next, end)
                        .filter_map(|e| match e.map_err(Error::from) {
                            Ok(e) => match service.may_read_entry(&reader, &e) {
                                Ok(()) => Some(Ok(e)),
                                Err(Error::PermissionDenied(_)) => None,
                                Err(other) => Some(Err(other)),
                            },
                            Err(e) => Some(Err(e)),
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                let chunk =
                    chunk.unwrap_or_else(|e| vec![Err(Error::Internal(format!("entry reader failed: {e}")))]);
                for (permit, item) in permits.zip(chunk) {
                    let stop = item.is_err();
                    permit.send(item);
                    if stop {
                        return;
                    }
                }
                next = end;
            }
        });
        Ok(rx)
    }

    /// RFC 9162 inclusion proof of `seq` in the tree of `tree_size` (0 = now);
    /// answers the tree size used.
    pub async fn inclusion_proof(
        &self,
        who: &Principal,
        seq: u64,
        tree_size: u64,
    ) -> Result<(u64, Vec<Hash>)> {
        auth::may_read_ledger(who)?;
        let tree_size = if tree_size == 0 { self.ledger.head().size } else { tree_size };
        Ok((tree_size, self.on_ledger(move |ledger| ledger.inclusion_proof(seq, tree_size)).await?))
    }

    /// RFC 9162 consistency proof from `from` to `to` (0 = now); answers the
    /// `to` size used.
    pub async fn consistency_proof(&self, who: &Principal, from: u64, to: u64) -> Result<(u64, Vec<Hash>)> {
        auth::may_read_ledger(who)?;
        let to = if to == 0 { self.ledger.head().size } else { to };
        Ok((to, self.on_ledger(move |ledger| ledger.consistency_proof(from, to)).await?))
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

// ---- platform availability (HJ 212 gateway) ----------------------------------

impl Service {
    /// Records an outage of the HJ 212 gateway itself. Only the gateway's
    /// own principal (or an admin) may: an outage excuses enterprises'
    /// missing days. Re-sending the same outage is a duplicate.
    pub async fn record_outage(&self, who: &Principal, outage: Outage) -> Result<Receipt> {
        let gateway = matches!(&who.role, Role::Source { source } if source == hj212::SOURCE);
        if !(gateway || who.role == Role::Admin) {
            return Err(Error::PermissionDenied(format!(
                "{} may not record platform outages; only the hj212 gateway does",
                who.name
            )));
        }
        let event = Event::PlatformOutage(outage);
        self.append_event(who, &event).await?.map_err(|c| {
            Error::AlreadyExists(format!("another outage from {} is at seq {}", outage.from, c.existing.seq))
        })
    }
}

// ---- HJ 212 gateway figures ---------------------------------------------------

impl Service {
    /// Makes the running gateway's counters readable through the door.
    pub fn attach_gateway_stats(&self, stats: Arc<hj212::GatewayStats>) {
        let _ = self.gateway_stats.set(stats);
    }

    /// The gateway's totals and the figures of each device `who` may see
    /// (`mn` empty: all of them). A regulator scoped to a region sees only
    /// the devices of its enterprises' monitoring points, and no totals.
    pub fn gateway_figures(&self, who: &Principal, mn: &str) -> Result<GatewayFigures> {
        let scope = auth::list_scope(who, "")?;
        let stats = self.gateway_stats.get().ok_or_else(|| {
            Error::FailedPrecondition(
                "the hj212 gateway is not running (start it with --hj212-listen)".into(),
            )
        })?;
        let visible = |device: &str| {
            scope.is_empty()
                || self.directory.point(device).is_some_and(|p| {
                    // The directory alone (no I/O): a point's enterprise
                    // was registered before the point.
                    self.directory
                        .enterprise(p.uscc().as_str())
                        .is_some_and(|r| r.enterprise.region_code.starts_with(&scope))
                })
        };
        let devices = stats
            .devices()
            .into_iter()
            .filter(|(device, _)| (mn.is_empty() || device == mn) && visible(device))
            .collect();
        let totals = if scope.is_empty() { Some(stats.snapshot()) } else { None };
        Ok(GatewayFigures { totals, devices })
    }
}

// ---- enterprises that change ---------------------------------------------------

impl Service {
    /// Changes an enterprise's details or status with a new ledger entry;
    /// the earlier state stays in the ledger and in the directory's history.
    /// A change that alters nothing answers with the entry that set the
    /// current state, as a duplicate.
    pub async fn update_enterprise(&self, who: &Principal, request: UpdateRequest) -> Result<Receipt> {
        let uscc = request.uscc.clone();
        let current = self
            .registration(uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        auth::may_register(who, &current.enterprise)?;
        let update = request.resolve(&current.enterprise, &current.status)?;
        auth::may_register(who, &update.enterprise)?;
        if let EnterpriseStatus::Merged(into) = &update.status
            && self.registered(into.as_str()).await?.is_none()
        {
            return Err(Error::FailedPrecondition(format!(
                "merged_into: enterprise {into} is not registered; register the successor first"
            )));
        }
        if update.enterprise == current.enterprise && update.status == current.status {
            let state_seq = current.state_seq;
            let entry = self.on_ledger(move |ledger| ledger.entry(state_seq)).await?;
            return Ok(Receipt {
                seq: entry.seq,
                entry_hash: entry.entry_hash,
                chain_hash: entry.chain_hash,
                recorded_at_ns: entry.recorded_at_ns,
                duplicate: true,
            });
        }
        let event = Event::EnterpriseUpdate { update, changes_seq: current.state_seq };
        let changed = uscc.clone();
        self.append_enterprise_event(who, uscc, event, |seq| {
            format!("enterprise {changed} was changed concurrently (seq {seq}); read it and try again")
        })
        .await
    }

    /// Every state of the enterprise, oldest first, if `who` may see it.
    pub async fn enterprise_history(
        &self,
        who: &Principal,
        uscc: &Uscc,
    ) -> Result<Vec<(u64, EnterpriseUpdate)>> {
        self.enterprise(who, uscc).await?;
        Ok(self.directory.enterprise(uscc.as_str()).map(|r| r.versions()).unwrap_or_default())
    }
}

// ---- the entry policy -----------------------------------------------------------

impl Service {
    /// [`auth::may_read_entry`] for `entry`: what it is (a record of which
    /// kind, a registration, a monitoring point) is read from its payload,
    /// the enterprise it is about from the directory.
    fn may_read_entry(&self, who: &Principal, entry: &Entry) -> Result<()> {
        use auth::EntryKind;
        match &who.role {
            // Every entry, without decoding (audits read the whole log).
            Role::Admin => return Ok(()),
            // Only entries about itself, whatever they are.
            Role::Enterprise { uscc } if uscc.as_bytes() != entry.subject.as_slice() => {
                return Err(auth::denied(
                    who,
                    &format!("read entry {}, which is not about {uscc}", entry.seq),
                ));
            }
            _ => {}
        }
        // The directory, without catching up: the entry lies below the head
        // it was read from, and the directory has taken in every entry
        // below a published head (the commit observer runs first).
        let about = |uscc: &Uscc, stated: Option<&Enterprise>| -> Result<Enterprise> {
            match (self.directory.enterprise(uscc.as_str()).map(|r| r.enterprise), stated) {
                (Some(current), _) => Ok(current),
                (None, Some(stated)) => Ok(stated.clone()),
                (None, None) => Err(Error::Internal(format!(
                    "entry {} is about {uscc}, which is not registered",
                    entry.seq
                ))),
            }
        };
        let seq = entry.seq;
        match Event::decode(entry)? {
            Event::Record(record) => {
                let enterprise = about(&record.uscc, None)?;
                let class = self.model.kind_class(&record.kind);
                auth::may_read_entry(who, seq, EntryKind::Record { enterprise: &enterprise, class })
            }
            Event::Registration(e) => {
                auth::may_read_entry(who, seq, EntryKind::Enterprise(&about(&e.uscc, Some(&e))?))
            }
            Event::EnterpriseUpdate { update, .. } => {
                let e = about(&update.enterprise.uscc, Some(&update.enterprise))?;
                auth::may_read_entry(who, seq, EntryKind::Enterprise(&e))
            }
            Event::MonitoringPoint(point) => {
                auth::may_read_entry(who, seq, EntryKind::MonitoringPoint(&about(point.uscc(), None)?))
            }
            Event::PlatformOutage(_) => auth::may_read_entry(who, seq, EntryKind::Platform),
        }
    }
}
