//! The service's state: the ledger, the scoring model, the directory of
//! registered enterprises, and the append pipeline every write goes through
//! (gRPC, streams, the HJ 212 gateway and bulk imports alike).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use ecocode_proto::v1 as pb;
use ingest::hj212::MonitoringPoint;
use ingest::ledger::{self, Hash, Idempotency, Ledger, LedgerConfig, NewEntry};
use prost::Message;
use scoring::{Enterprise, Evaluation, KindClass, LedgerRecord, Model, Record, Seq, Timestamp, Uscc};
use tokio::sync::broadcast;

use crate::auth;
use crate::clock::Clock;
use crate::convert::{from_proto, to_proto};
use crate::error::{Error, Result};
use crate::principals::{Principal, PrincipalStore};

/// How the service is started: the data directory and the ledger's
/// settings (origin, key, checkpoint interval) live in one `LedgerConfig`.
#[derive(Clone, Debug)]
pub struct Config {
    pub ledger: LedgerConfig,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config { ledger: LedgerConfig::new(data_dir) }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.ledger.dir
    }
}

/// A score with the enterprise and the ledger prefix behind it.
#[derive(Clone, Debug)]
pub struct ScoreView {
    pub enterprise: Enterprise,
    pub evaluation: Evaluation,
    pub tree_size: u64,
    pub root: Hash,
}

/// A registered enterprise and the seq of its registration.
#[derive(Clone, Debug)]
struct Registered {
    enterprise: Enterprise,
    seq: u64,
}

/// What the ledger says, kept in memory for lookups; rebuilt from the ledger
/// at start, so it is never a second source of truth.
#[derive(Debug, Default)]
struct Directory {
    enterprises: BTreeMap<String, Registered>,
    /// Monitoring points by device MN; a later registration supersedes.
    points: HashMap<String, MonitoringPoint>,
}

pub struct AppState {
    pub ledger: Ledger,
    /// The ledger's checkpoint origin; attestations are `<origin>/score`.
    pub origin: String,
    pub model: Arc<Model>,
    pub principals: PrincipalStore,
    pub clock: Arc<dyn Clock>,
    directory: RwLock<Directory>,
    /// USCCs whose entries changed; watchers re-evaluate on each.
    changes: broadcast::Sender<Uscc>,
    /// Set when shutdown begins, so long-lived streams end.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("model", &self.model.version()).finish_non_exhaustive()
    }
}

/// The decoded payload of one ledger entry.
pub enum Event {
    Registration(Enterprise),
    Record(Record),
    MonitoringPoint(MonitoringPoint),
}

pub fn decode_event(entry: &ledger::Entry) -> Result<Event> {
    let corrupt = |what: String| Error::Ledger(ledger::Error::Corruption { seq: entry.seq, what });
    let event = pb::LedgerEvent::decode(entry.payload.as_slice())
        .map_err(|e| corrupt(format!("payload is not a LedgerEvent: {e}")))?;
    Ok(match event.event {
        Some(pb::ledger_event::Event::Registration(e)) => Event::Registration(
            from_proto::enterprise(&e)
                .map_err(|e| corrupt(format!("stored registration is invalid: {e}")))?,
        ),
        Some(pb::ledger_event::Event::Record(r)) => Event::Record(
            from_proto::record(&r).map_err(|e| corrupt(format!("stored record is invalid: {e}")))?,
        ),
        Some(pb::ledger_event::Event::MonitoringPoint(p)) => Event::MonitoringPoint(
            from_proto::monitoring_point(&p)
                .map_err(|e| corrupt(format!("stored monitoring point is invalid: {e}")))?,
        ),
        None => return Err(corrupt("payload holds no event".into())),
    })
}

impl AppState {
    /// Opens the ledger (verifying it; see `ingest::ledger`) and rebuilds the
    /// directory from its entries.
    pub fn open(
        config: &Config,
        model: Model,
        clock: Arc<dyn Clock>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<AppState> {
        let data_dir = config.data_dir();
        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io(format!("create data directory {}", data_dir.display()), e))?;
        let ledger = Ledger::open_with_progress(config.ledger.clone(), progress)?;
        let principals = PrincipalStore::open(data_dir)?;
        let mut directory = Directory::default();
        let size = ledger.head().size;
        for entry in ledger.scan(0, size) {
            let entry = entry?;
            match decode_event(&entry)? {
                Event::Registration(e) => {
                    directory
                        .enterprises
                        .insert(e.uscc.to_string(), Registered { enterprise: e, seq: entry.seq });
                }
                Event::MonitoringPoint(p) => {
                    directory.points.insert(p.mn().to_owned(), p);
                }
                Event::Record(_) => {}
            }
        }
        let (changes, _) = broadcast::channel(4096);
        Ok(AppState {
            ledger,
            origin: config.ledger.origin.clone(),
            model: Arc::new(model),
            principals,
            clock,
            directory: RwLock::new(directory),
            changes,
            stopping: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Ends long-lived streams (watches); in-flight unary calls finish.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub fn subscribe_changes(&self) -> broadcast::Receiver<Uscc> {
        self.changes.subscribe()
    }

    pub fn enterprise(&self, uscc: &str) -> Option<Enterprise> {
        self.read_directory().enterprises.get(uscc).map(|r| r.enterprise.clone())
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
        self.read_directory()
            .enterprises
            .range::<str, _>((Excluded(after), Unbounded))
            .map(|(_, r)| &r.enterprise)
            .filter(|e| {
                e.region_code.starts_with(region_prefix) && e.industry_code.starts_with(industry_prefix)
            })
            .cloned()
            .collect()
    }

    fn read_directory(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every record about `uscc` in the ledger, in seq order.
    pub fn records_of(&self, uscc: &str) -> Result<Vec<LedgerRecord>> {
        let mut out = Vec::new();
        for entry in self.ledger.entries_for_subject(uscc.as_bytes())? {
            if let Event::Record(record) = decode_event(&entry)? {
                out.push(LedgerRecord { seq: Seq(entry.seq), record });
            }
        }
        Ok(out)
    }

    /// The score of `uscc` at `at` (default now) over the ledger prefix
    /// `tree_size` (0 = the current size).
    pub fn evaluate(&self, uscc: &str, at: Option<Timestamp>, tree_size: u64) -> Result<ScoreView> {
        self.evaluate_with_records(uscc, at, tree_size).map(|(view, _)| view)
    }

    /// [`Self::evaluate`], also handing back the enterprise's decoded
    /// records for callers that need them next (watches, history), so they
    /// are not read from the ledger twice.
    pub fn evaluate_with_records(
        &self,
        uscc: &str,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<(ScoreView, Vec<LedgerRecord>)> {
        let head = self.ledger.head();
        let (tree_size, root) = if tree_size == 0 || tree_size == head.size {
            (head.size, head.root)
        } else {
            (tree_size, self.ledger.root_at(tree_size)?)
        };
        let registered = self.read_directory().enterprises.get(uscc).cloned();
        let registered = registered
            .filter(|r| r.seq < tree_size)
            .ok_or_else(|| not_registered(uscc, tree_size, head.size))?;
        let records = self.records_of(uscc)?;
        let at = at.unwrap_or_else(|| self.clock.now());
        let evaluation = self.model.score(&records, at, tree_size);
        Ok((ScoreView { enterprise: registered.enterprise, evaluation, tree_size, root }, records))
    }

    /// Registers an enterprise; re-sending the same registration returns the
    /// original receipt as a duplicate.
    pub async fn register(&self, who: &Principal, enterprise: &pb::Enterprise) -> Result<ledger::Receipt> {
        let enterprise = from_proto::enterprise(enterprise)?;
        auth::may_register(who, &enterprise)?;
        let canonical = to_proto::enterprise(&enterprise);
        let event = pb::LedgerEvent {
            event: Some(pb::ledger_event::Event::Registration(canonical.clone())),
            submitted_by: who.name.clone(),
        };
        let entry = NewEntry {
            payload: event.encode_to_vec(),
            subject: enterprise.uscc.as_str().as_bytes().to_vec(),
            idempotency: Some(Idempotency {
                key: [b"enterprise\0".as_slice(), enterprise.uscc.as_str().as_bytes()].concat(),
                fingerprint: *blake3::hash(&canonical.encode_to_vec()).as_bytes(),
            }),
        };
        let receipt = self.append_one(entry).await?.map_err(|c| {
            Error::AlreadyExists(format!(
                "enterprise {} is already registered (seq {}) with different details",
                enterprise.uscc, c.existing.seq
            ))
        })?;
        if !receipt.duplicate {
            let uscc = enterprise.uscc.clone();
            self.directory
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .enterprises
                .insert(uscc.to_string(), Registered { enterprise, seq: receipt.seq });
            let _ = self.changes.send(uscc);
        }
        Ok(receipt)
    }

    /// Registers (or updates the limits of) a monitoring point. The same
    /// content again is a duplicate; new content supersedes, since limits
    /// change when a discharge permit is renewed.
    pub async fn register_monitoring_point(
        &self,
        who: &Principal,
        point: &pb::MonitoringPoint,
    ) -> Result<ledger::Receipt> {
        let point = from_proto::monitoring_point(point)?;
        let enterprise = self.enterprise(point.uscc().as_str()).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "enterprise {} is not registered; register it before its monitoring points",
                point.uscc()
            ))
        })?;
        auth::may_register(who, &enterprise)?;
        let canonical = to_proto::monitoring_point(&point);
        let fingerprint = *blake3::hash(&canonical.encode_to_vec()).as_bytes();
        let key = [b"point\0".as_slice(), point.mn().as_bytes(), b"\0", &fingerprint].concat();
        let event = pb::LedgerEvent {
            event: Some(pb::ledger_event::Event::MonitoringPoint(canonical)),
            submitted_by: who.name.clone(),
        };
        let entry = NewEntry {
            payload: event.encode_to_vec(),
            subject: point.uscc().as_str().as_bytes().to_vec(),
            idempotency: Some(Idempotency { key, fingerprint }),
        };
        let receipt = self.append_one(entry).await?.map_err(|c| {
            Error::Internal(format!("monitoring point key collided at seq {}", c.existing.seq))
        })?;
        if !receipt.duplicate {
            self.directory
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .points
                .insert(point.mn().to_owned(), point);
        }
        Ok(receipt)
    }

    /// Appends a single entry (its own group commit, shared with whatever
    /// else is queued).
    async fn append_one(&self, entry: NewEntry) -> Result<ledger::AppendResult> {
        self.ledger
            .append(vec![entry])
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("ledger answered an append of one entry with no result".into()))
    }

    /// The monitoring point of device `mn`, for the gateway.
    pub fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.read_directory().points.get(mn).cloned()
    }

    /// The monitoring point of device `mn`, if `who` may see it.
    pub fn monitoring_point_for(&self, who: &Principal, mn: &str) -> Result<pb::MonitoringPoint> {
        let point = self
            .monitoring_point(mn)
            .ok_or_else(|| Error::NotFound(format!("no monitoring point is registered for device {mn:?}")))?;
        let enterprise = self.enterprise(point.uscc().as_str()).ok_or_else(|| {
            Error::Internal(format!("monitoring point {mn} names unregistered {}", point.uscc()))
        })?;
        auth::may_read_score(who, &enterprise)?;
        Ok(to_proto::monitoring_point(&point))
    }

    /// Appends records in order, one result per record. Valid records are
    /// kept even when others fail. Records go to the ledger in as few group
    /// commits as possible; a workflow step is checked against everything
    /// appended before it, including earlier records of the same call.
    pub async fn append_records(
        &self,
        who: &Principal,
        records: &[pb::Record],
    ) -> Vec<Result<ledger::Receipt>> {
        let mut results: Vec<Option<Result<ledger::Receipt>>> = (0..records.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, Prepared)> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let is_workflow =
                self.model.kind_class(&record.kind).is_some_and(|c| matches!(c, KindClass::Workflow(_)));
            if is_workflow && !pending.is_empty() {
                self.commit(std::mem::take(&mut pending), &mut results).await;
            }
            match self.prepare(who, record) {
                Ok(p) => pending.push((i, p)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        self.commit(pending, &mut results).await;
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Internal("record was neither appended nor rejected".into())))
            })
            .collect()
    }

    pub async fn append_record(&self, who: &Principal, record: &pb::Record) -> Result<ledger::Receipt> {
        self.append_records(who, std::slice::from_ref(record))
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no result for one record".into())))
    }

    /// Validation, authorization and preconditions of one record.
    fn prepare(&self, who: &Principal, record: &pb::Record) -> Result<Prepared> {
        let record = from_proto::record(record)?;
        self.model.check_record(&record, self.clock.now())?;
        let class = self.model.kind_class(&record.kind).ok_or_else(|| {
            Error::Internal(format!("kind {} passed check_record but has no class", record.kind))
        })?;
        auth::may_append_kind(who, &record.kind, class, &record.source)?;
        let enterprise = self.enterprise(record.uscc.as_str()).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "enterprise {} is not registered; register it with Registry.RegisterEnterprise first",
                record.uscc
            ))
        })?;
        auth::may_append_for(who, &enterprise)?;
        if let KindClass::Workflow(_) = class {
            let history = self.records_of(record.uscc.as_str())?;
            self.model
                .check_workflow(&record, &history)
                .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        }
        let canonical = to_proto::record(&record);
        let fingerprint = *blake3::hash(&canonical.encode_to_vec()).as_bytes();
        let key =
            [b"record\0".as_slice(), record.source.as_bytes(), b"\0", record.source_record_id.as_bytes()]
                .concat();
        let event = pb::LedgerEvent {
            event: Some(pb::ledger_event::Event::Record(canonical)),
            submitted_by: who.name.clone(),
        };
        Ok(Prepared {
            entry: NewEntry {
                payload: event.encode_to_vec(),
                subject: record.uscc.as_str().as_bytes().to_vec(),
                idempotency: Some(Idempotency { key, fingerprint }),
            },
            record,
        })
    }

    async fn commit(&self, batch: Vec<(usize, Prepared)>, results: &mut [Option<Result<ledger::Receipt>>]) {
        if batch.is_empty() {
            return;
        }
        let (slots, prepared): (Vec<usize>, Vec<Prepared>) = batch.into_iter().unzip();
        let (entries, records): (Vec<NewEntry>, Vec<Record>) =
            prepared.into_iter().map(|p| (p.entry, p.record)).unzip();
        match self.ledger.append(entries).await {
            Ok(outcomes) => {
                for ((slot, record), outcome) in slots.into_iter().zip(records).zip(outcomes) {
                    results[slot] = Some(match outcome {
                        Ok(receipt) => {
                            if !receipt.duplicate {
                                let _ = self.changes.send(record.uscc.clone());
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
                // The whole group commit failed: nothing of it is in the ledger.
                let shutting_down = matches!(e, ledger::Error::ShuttingDown);
                for slot in slots {
                    results[slot] = Some(Err(if shutting_down {
                        Error::Unavailable(
                            "the service is shutting down; retry on another node or later".into(),
                        )
                    } else {
                        Error::Internal(format!("append failed: {e}"))
                    }));
                }
            }
        }
    }
}

struct Prepared {
    entry: NewEntry,
    record: Record,
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
