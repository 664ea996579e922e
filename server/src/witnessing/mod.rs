//! `ecocode serve --witness-policy FILE`: the log asks its witnesses.
//!
//! After the ledger signs a new head, one round sends `add-checkpoint` to
//! every witness of the policy concurrently (each within its own timeout,
//! network failures retried, a 409 answered with a new proof from the
//! witness's size; the whole round within the publication timeout) and
//! collects the cosignatures that verify. Witnesses of the policy that the
//! quorum does not reference are contacted too but do not count. When they
//! meet the policy's quorum the checkpoint, with those cosignature lines,
//! becomes the *published* one: what `GetCheckpoint`, bundles and the page
//! show. Until then the last published checkpoint stays (it is kept in
//! `DATA/checkpoint.witnessed` across restarts). Appends never wait: a
//! writer whose receipts the published checkpoint does not cover yet gets
//! the log-signed checkpoint that does, without cosignatures.
//!
//! On PostgreSQL the published checkpoint is also a shared document
//! (`documents`, kind `witnessed`): each round first takes in a larger one
//! another node published, so every node publishes the same cosigned
//! checkpoints (within one checkpoint interval), and a node whose own
//! requests fail still publishes what the witnesses cosigned for another.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ledger::{Checkpoint, Ledger};
use tlog::policy::Policy;

pub mod client;

/// How long one witness may take to answer one request.
pub const DEFAULT_WITNESS_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a round waits for cosignatures before it publishes what it has
/// (if that meets the quorum): one slow witness, even one that does not
/// count, cannot hold back publication longer than this.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Network failures are retried this many times within a round.
const RETRIES: u32 = 2;

/// What tests and metrics see of the rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Rounds finished since start.
    pub rounds: u64,
    /// The size of the published (witnessed) checkpoint.
    pub published_size: Option<u64>,
    /// Policy names of the witnesses that cosigned it.
    pub cosigned_by: Vec<String>,
}

/// One witness's standing, for metrics and the log lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WitnessFigures {
    pub name: String,
    /// The size the witness last cosigned (as far as this node knows).
    pub size: u64,
    /// Entries the witness is behind the latest signed checkpoint.
    pub lag: u64,
    /// Failed requests since start.
    pub failures: u64,
    /// Cosignatures received since start.
    pub cosigned: u64,
    /// Why the last round failed for it; `None` when it cosigned.
    pub failing: Option<String>,
}

/// The log side of witnessing, shared by the service (reads) and the task
/// that runs the rounds.
pub struct Witnessing {
    policy: Policy,
    timeout: Duration,
    publish_timeout: Duration,
    path: PathBuf,
    published: RwLock<Option<Checkpoint>>,
    /// On PostgreSQL: the published checkpoint shared by every node.
    shared: Option<Arc<ledger::Documents>>,
    figures: Mutex<Vec<WitnessFigures>>,
    status: tokio::sync::watch::Sender<Status>,
}

impl std::fmt::Debug for Witnessing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witnessing").field("witnesses", &self.policy.witnesses.len()).finish_non_exhaustive()
    }
}

impl Witnessing {
    /// Loads the last published checkpoint of `ledger` from its data
    /// directory, if any still verifies against the policy.
    /// `timeout` bounds each request to a witness, `publish_timeout` a
    /// whole round. `store`: the shared PostgreSQL store of several nodes.
    pub fn new(
        policy: Policy,
        timeout: Duration,
        publish_timeout: Duration,
        ledger: &Ledger,
        store: Option<&str>,
    ) -> ledger::Result<Witnessing> {
        let path = ledger.dir().join("checkpoint.witnessed");
        let published = std::fs::read_to_string(&path).ok().and_then(|note| witnessed(&policy, ledger, note));
        let shared = store.map(|url| ledger::Documents::open(url, SHARED_KIND)).transpose()?.map(Arc::new);
        let figures = policy
            .witnesses
            .iter()
            .map(|w| WitnessFigures { name: w.name.clone(), ..WitnessFigures::default() })
            .collect();
        let status = Status { published_size: published.as_ref().map(|c| c.tree_size), ..Status::default() };
        Ok(Witnessing {
            policy,
            timeout,
            publish_timeout,
            path,
            published: RwLock::new(published),
            shared,
            figures: Mutex::new(figures),
            status: tokio::sync::watch::channel(status).0,
        })
    }

    /// The published checkpoint (cosigned by a quorum), if any yet.
    pub fn published(&self) -> Option<Checkpoint> {
        self.published.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Rounds and publications, as they happen.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Each witness's size, lag and failures.
    pub fn figures(&self) -> Vec<WitnessFigures> {
        self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The policy's witnesses, their count and the quorum's name.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Runs a round for each new signed head, every `period`, until `stop`.
    pub async fn run(self: Arc<Self>, ledger: Ledger, period: Duration, stop: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => self.round(&ledger).await,
            }
        }
    }

    /// Asks every witness to cosign the latest signed checkpoint (unless it
    /// is already published) and publishes it once the quorum is met.
    pub async fn round(&self, ledger: &Ledger) {
        let Ok(latest) = ledger.checkpoint() else { return };
        self.take_in_shared(ledger).await;
        if self.published().is_some_and(|p| p.tree_size >= latest.tree_size) {
            self.status.send_modify(|s| s.rounds += 1);
            return;
        }
        let asks = (0..self.policy.witnesses.len()).map(|i| {
            let latest = &latest;
            async move {
                match tokio::time::timeout(self.publish_timeout, self.ask(i, ledger, latest)).await {
                    Ok(line) => line,
                    Err(_) => {
                        let ms = self.publish_timeout.as_millis();
                        self.update(
                            i,
                            latest.tree_size,
                            Err(format!("no cosignature within the publication timeout ({ms} ms)")),
                        )
                    }
                }
            }
        });
        let lines: Vec<Option<String>> = futures::future::join_all(asks).await;
        let signed: Vec<bool> = lines.iter().map(Option::is_some).collect();
        let verdict = self.policy.evaluate_with(&signed);
        if verdict.met {
            let mut note = latest.note.clone();
            for line in lines.iter().flatten() {
                note.push_str(line);
            }
            if let Err(e) = write_replacing(&self.path, note.as_bytes()) {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot keep the witnessed checkpoint for restarts");
            }
            let published = Checkpoint { note, ..latest.clone() };
            self.share(&published).await;
            *self.published.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(published);
            tracing::debug!(size = latest.tree_size, cosigned_by = ?verdict.cosigned, "published a witnessed checkpoint");
        }
        self.status.send_modify(|s| {
            s.rounds += 1;
            if verdict.met {
                s.published_size = Some(latest.tree_size);
                s.cosigned_by = verdict.cosigned.clone();
            }
        });
    }

    /// On a shared store: publishes the checkpoint another node published,
    /// when it is larger than ours and verifies (the log's signature, the
    /// policy's quorum, the tree this node holds). Unreadable or damaged
    /// documents are logged and ignored: the node's own rounds go on.
    async fn take_in_shared(&self, ledger: &Ledger) {
        let Some(shared) = self.shared.clone() else { return };
        let ours = self.published().map_or(0, |p| p.tree_size);
        let (policy, reader) = (self.policy.clone(), ledger.clone());
        let found = tokio::task::spawn_blocking(move || match shared.get(SHARED_NAME) {
            Ok(note) => note.and_then(|note| witnessed(&policy, &reader, note)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared witnessed checkpoint");
                None
            }
        })
        .await
        .ok()
        .flatten();
        if let Some(theirs) = found.filter(|c| c.tree_size > ours) {
            let size = theirs.tree_size;
            if let Err(e) = write_replacing(&self.path, theirs.note.as_bytes()) {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot keep the witnessed checkpoint for restarts");
            }
            let cosigned_by = self.policy.evaluate(&theirs.note).cosigned;
            *self.published.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(theirs);
            self.status.send_modify(|s| {
                s.published_size = Some(size);
                s.cosigned_by = cosigned_by;
            });
        }
    }

    /// On a shared store: makes `published` the shared one unless another
    /// node already shared a larger one. (Read, then write: two nodes
    /// publishing at once may leave the smaller; the next round of either
    /// replaces it, and no node ever takes in a smaller one.)
    async fn share(&self, published: &Checkpoint) {
        let Some(shared) = self.shared.clone() else { return };
        let (size, note) = (published.tree_size, published.note.clone());
        let stored = tokio::task::spawn_blocking(move || -> ledger::Result<()> {
            let current = shared.get(SHARED_NAME)?;
            let larger = current.as_deref().and_then(note_size).is_some_and(|theirs| theirs >= size);
            if !larger && !shared.replace(SHARED_NAME, &note)? {
                shared.insert_new(SHARED_NAME, &note)?;
            }
            Ok(())
        })
        .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot share the witnessed checkpoint with the other nodes")
            }
            Err(e) => tracing::warn!(error = %e, "sharing the witnessed checkpoint failed"),
        }
    }

    /// One witness: its cosignature line(s) on `checkpoint`, or `None`.
    async fn ask(&self, i: usize, ledger: &Ledger, checkpoint: &Checkpoint) -> Option<String> {
        let witness = &self.policy.witnesses[i];
        let Some(url) = &witness.url else {
            self.update(i, checkpoint.tree_size, Err("the policy gives no URL for it".into()));
            return None;
        };
        let mut old = self.figures()[i].size;
        let mut network_failures = 0;
        for _ in 0..4 + RETRIES {
            if old > checkpoint.tree_size {
                let e = format!("the witness is at size {old}, beyond this log's {}", checkpoint.tree_size);
                return self.update(i, checkpoint.tree_size, Err(e));
            }
            let proof = match ledger.consistency_proof(old, checkpoint.tree_size) {
                Ok(proof) if old > 0 => proof,
                Ok(_) => Vec::new(),
                Err(e) => {
                    return self.update(
                        i,
                        checkpoint.tree_size,
                        Err(format!("no proof from size {old}: {e}")),
                    );
                }
            };
            let body = tlog::witness::encode_add_checkpoint(old, &proof, &checkpoint.note);
            match client::request("POST", url, "/add-checkpoint", &body, self.timeout).await {
                Ok(answer) if answer.status == 200 => {
                    let note = format!("{}{}", checkpoint.note, answer.body);
                    if let Err(e) = tlog::cosignature::verify(&note, &witness.key_name, &witness.public_key) {
                        return self.update(i, checkpoint.tree_size, Err(format!("a bad cosignature: {e}")));
                    }
                    let prefix = format!("\u{2014} {} ", witness.key_name);
                    let line: String = answer
                        .body
                        .lines()
                        .filter(|l| l.starts_with(&prefix))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    self.set_size(i, checkpoint.tree_size);
                    return self.update(i, checkpoint.tree_size, Ok(line));
                }
                Ok(answer)
                    if answer.status == 409
                        && answer.content_type.as_deref() == Some(tlog::witness::SIZE_CONTENT_TYPE) =>
                {
                    match answer.body.trim_end_matches('\n').parse::<u64>() {
                        Ok(size) if size != old => {
                            old = size;
                            self.set_size(i, size);
                        }
                        _ => {
                            let e = format!("409 with the size {:?}", answer.body);
                            return self.update(i, checkpoint.tree_size, Err(e));
                        }
                    }
                }
                Ok(answer) => {
                    let e = format!("refused with {}: {}", answer.status, answer.body.trim());
                    return self.update(i, checkpoint.tree_size, Err(e));
                }
                Err(e) => {
                    network_failures += 1;
                    if network_failures > RETRIES {
                        return self.update(i, checkpoint.tree_size, Err(e));
                    }
                    tokio::time::sleep(Duration::from_millis(50 << network_failures)).await;
                }
            }
        }
        self.update(i, checkpoint.tree_size, Err("too many size conflicts (409) in one round".into()))
    }

    /// For the page: `witnessed by k of n: names` (见证), or that `note` is
    /// not witnessed yet.
    pub fn witnessed_line(&self, note: &str) -> String {
        let verdict = self.policy.evaluate(note);
        let n = self.policy.witnesses.len();
        match (verdict.cosigned.is_empty(), verdict.met) {
            (true, _) => {
                format!("未经见证 not witnessed yet (0 of {n}); the quorum is {}", self.policy.quorum_name())
            }
            (false, met) => format!(
                "{}witnessed by {} of {n}: {}",
                if met { "" } else { "quorum not met: " },
                verdict.cosigned.len(),
                verdict.cosigned.join(", ")
            ),
        }
    }

    /// The Prometheus lines of `GET /metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let status = self.status.borrow().clone();
        out.push_str(
            "# HELP ecocode_witnessed_checkpoint_size Size of the published (witnessed) checkpoint.\n",
        );
        out.push_str("# TYPE ecocode_witnessed_checkpoint_size gauge\n");
        let _ = writeln!(out, "ecocode_witnessed_checkpoint_size {}", status.published_size.unwrap_or(0));
        out.push_str("# HELP ecocode_witness_rounds_total Rounds of asking the witnesses.\n");
        out.push_str("# TYPE ecocode_witness_rounds_total counter\n");
        let _ = writeln!(out, "ecocode_witness_rounds_total {}", status.rounds);
        let figures = self.figures();
        for (metric, kind, help, value) in [
            (
                "ecocode_witness_lag_entries",
                "gauge",
                "Entries a witness is behind the latest signed checkpoint.",
                0,
            ),
            ("ecocode_witness_failures_total", "counter", "Failed requests to a witness.", 1),
            ("ecocode_witness_cosignatures_total", "counter", "Cosignatures a witness returned.", 2),
            ("ecocode_witness_up", "gauge", "1 when the witness cosigned in its last round.", 3),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for f in &figures {
                let v =
                    [f.lag, f.failures, f.cosigned, u64::from(f.failing.is_none() && f.cosigned > 0)][value];
                let name: String = f.name.chars().filter(|c| !matches!(c, '"' | '\\' | '\n')).collect();
                let _ = writeln!(out, "{metric}{{witness=\"{name}\"}} {v}");
            }
        }
        out
    }

    fn set_size(&self, i: usize, size: u64) {
        self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i].size = size;
    }

    /// Records the outcome of asking witness `i`, with one log line per
    /// change of its state (cosigning / failing).
    fn update(&self, i: usize, latest: u64, outcome: Result<String, String>) -> Option<String> {
        let mut figures = self.figures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let f = &mut figures[i];
        f.lag = latest.saturating_sub(f.size);
        match outcome {
            Ok(line) => {
                if f.failing.take().is_some() || f.cosigned == 0 {
                    tracing::info!(witness = %f.name, size = latest, "witness cosigns");
                }
                f.cosigned += 1;
                Some(line)
            }
            Err(e) => {
                f.failures += 1;
                if f.failing.as_deref() != Some(e.as_str()) {
                    tracing::warn!(witness = %f.name, size = latest, lag = f.lag, "witness not cosigning: {e}");
                }
                f.failing = Some(e);
                None
            }
        }
    }
}

/// Replaces `path` atomically with a private file (write, fsync, rename).
/// The shared document of the published checkpoint: kind and name.
const SHARED_KIND: &str = "witnessed";
const SHARED_NAME: &str = "checkpoint";

/// `note` as the published checkpoint of `ledger`, if it still verifies:
/// the log's signature, the policy's quorum, and a tree this node holds.
fn witnessed(policy: &Policy, ledger: &Ledger, note: String) -> Option<Checkpoint> {
    let body = tlog::note::verify(&note, ledger.key_name(), &ledger.public_key()).ok()?;
    let (_, size, root, chain) = tlog::note::parse_checkpoint(&body).ok()?;
    let fits = size <= ledger.head().size && ledger.root_at(size).ok()? == root;
    (fits && policy.evaluate(&note).met).then(|| Checkpoint {
        tree_size: size,
        root,
        chain,
        timestamp_ns: 0,
        note,
        public_key: ledger.public_key(),
    })
}

/// The tree size a checkpoint note states (its second line), unverified:
/// only to compare which of two shared notes is larger.
fn note_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.parse().ok()
}

fn write_replacing(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = crate::private::create_file(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
