//! `ecocode witness serve`: a C2SP tlog-witness v1 that banks, regulators
//! or courts run to cosign a log's checkpoints and to catch split views.
//!
//! * `POST /add-checkpoint`: the spec's request; the decision is the pure
//!   [`tlog::witness`], the state and the cosignature are here.
//! * `GET /<hex SHA-256 of the origin>/checkpoint`: the latest cosigned
//!   checkpoint of a log, for monitors.
//! * `GET /conflicts`: the evidence of forks, as JSON.
//!
//! The log's side (asking witnesses, publishing once the quorum is met) is
//! [`crate::witnessing`].
//!
//! State (in `--data`, private): `witness.key` (the Ed25519 seed, made on
//! first start), `logs/<origin hash>` (the latest cosigned checkpoint note
//! of each log: its size and root are the witness's record) and
//! `conflicts/<n>.json` (each refused checkpoint that contradicts one the
//! witness cosigned, with that one). A log's file is replaced atomically
//! (write, fsync, rename, fsync the directory) before the cosignature is
//! returned, and check-then-write runs under one lock, so two requests
//! can never roll a log back (the race the spec describes).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tlog::witness::{AddCheckpoint, Head, LogKey, Refusal};

use crate::error::{Error, Result};

pub use tlog::witness::SIZE_CONTENT_TYPE;

/// Largest `add-checkpoint` body: 63 proof lines and a checkpoint with
/// its signatures fit many times over.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// At most this many conflicts are kept; more are still refused and logged.
pub const MAX_CONFLICTS: usize = 10_000;

/// One piece of evidence that a log showed two views.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Conflict {
    pub origin: String,
    /// `fork`: two signed checkpoints of one size with different roots;
    /// `inconsistent`: a signed checkpoint the log could not prove
    /// consistent with the one cosigned.
    pub kind: String,
    /// Unix seconds when the witness refused it.
    pub detected_at: u64,
    pub reason: String,
    /// The checkpoint the witness had cosigned (with its cosignature).
    pub cosigned: String,
    /// The refused checkpoint, signed by the log.
    pub offered: String,
    /// The `old` size and proof lines it came with.
    pub old: u64,
    pub proof: Vec<String>,
}

/// A witness: its key, the logs it follows and their state.
pub struct Witness {
    name: String,
    seed: [u8; 32],
    keys: Vec<LogKey>,
    dir: PathBuf,
    state: Mutex<WitnessState>,
}

struct WitnessState {
    /// origin → (recorded head, the cosigned note).
    logs: HashMap<String, (Head, String)>,
    conflicts: Vec<Conflict>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("name", &self.name).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Parses a `--log-key`: `VKEY` (the key name is the origin) or
/// `ORIGIN=VKEY`.
pub fn parse_log_key(text: &str) -> Result<LogKey> {
    let text = text.trim();
    // A vkey's name holds no '+', and its base64 padding comes last, so an
    // '=' before the first '+' separates an origin.
    let (origin, vkey) = match text.split_once('=') {
        Some((origin, vkey)) if !origin.contains('+') => (Some(origin), vkey),
        _ => (None, text),
    };
    let (name, public_key) = tlog::note::decode_verifier_key(vkey).map_err(|e| {
        Error::InvalidArgument(format!(
            "--log-key {text:?}: {e}; give the log's verifier key (`ecocode key show`), as VKEY or ORIGIN=VKEY"
        ))
    })?;
    let origin = origin.map_or_else(|| name.clone(), str::to_string);
    if origin.is_empty() {
        return Err(Error::InvalidArgument(format!("--log-key {text:?}: the origin before '=' is empty")));
    }
    Ok(LogKey { origin, name, public_key })
}

/// Loads the witness key in `dir`, creating it on first use.
fn load_or_create_key(dir: &Path, name: &str) -> Result<[u8; 32]> {
    tlog::note::check_key_name(name).map_err(|e| Error::InvalidArgument(format!("--name: {e}")))?;
    crate::private::create_dir(dir)?;
    let path = dir.join("witness.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let (file_name, seed) = tlog::cosignature::decode_signer_key(&text)
                .map_err(|e| Error::FailedPrecondition(format!("{}: {e}", path.display())))?;
            if file_name != name {
                return Err(Error::FailedPrecondition(format!(
                    "the witness key in {} is named {file_name}, not {name}; pass --name {file_name} \
                     or use another --data directory",
                    path.display()
                )));
            }
            Ok(seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| Error::Internal(format!("no randomness for a key: {e}")))?;
            let text = tlog::cosignature::encode_signer_key(name, &seed) + "\n";
            write_atomically(&path, text.as_bytes())?;
            tracing::info!(path = %path.display(), "created the witness key");
            Ok(seed)
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

/// The witness's verifier key (vkey), creating its key in `dir` if needed.
pub fn verifier_key(dir: &Path, name: &str) -> Result<String> {
    let seed = load_or_create_key(dir, name)?;
    Ok(tlog::cosignature::encode_verifier_key(name, &tlog::note::public_key(&seed)))
}

/// Writes `path` so that a crash leaves the old or the new content, never
/// a mix: a private temporary file, fsync, rename, fsync the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    let tmp = path.with_extension("tmp");
    let mut file = crate::private::create_file(&tmp).map_err(|e| io("create", e))?;
    file.write_all(bytes).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("fsync", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| io("rename into", e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync the directory of", e))?;
    Ok(())
}

/// Lower-case hex of SHA-256 of the origin: the monitoring path's key.
pub fn origin_hash(origin: &str) -> String {
    Sha256::digest(origin.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What `add-checkpoint` answers: status, content type, body.
pub type Answer = (StatusCode, &'static str, String);

impl Witness {
    /// Opens (or creates) the witness in `dir`: its key and every log's
    /// recorded checkpoint and conflict.
    pub fn open(dir: &Path, name: &str, keys: Vec<LogKey>) -> Result<Witness> {
        let seed = load_or_create_key(dir, name)?;
        let (logs_dir, conflicts_dir) = (dir.join("logs"), dir.join("conflicts"));
        crate::private::create_dir(&logs_dir)?;
        crate::private::create_dir(&conflicts_dir)?;
        let read_dir = |d: &Path| -> Result<Vec<PathBuf>> {
            let mut paths = Vec::new();
            for entry in std::fs::read_dir(d).map_err(|e| Error::io(format!("list {}", d.display()), e))? {
                let path = entry.map_err(|e| Error::io(format!("list {}", d.display()), e))?.path();
                if path.extension().is_none_or(|x| x != "tmp") {
                    paths.push(path);
                }
            }
            paths.sort();
            Ok(paths)
        };
        let corrupt = |path: &Path, what: String| {
            Error::FailedPrecondition(format!("witness state {} is damaged: {what}", path.display()))
        };
        let mut logs = HashMap::new();
        for path in read_dir(&logs_dir)? {
            let note = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            let head = tlog::witness::parse_head(&note).map_err(|e| corrupt(&path, e.to_string()))?;
            logs.insert(head.origin.clone(), (head, note));
        }
        let mut conflicts = Vec::new();
        for path in read_dir(&conflicts_dir)? {
            let text = std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            conflicts.push(serde_json::from_slice(&text).map_err(|e| corrupt(&path, e.to_string()))?);
        }
        Ok(Witness {
            name: name.to_string(),
            seed,
            keys,
            dir: dir.to_path_buf(),
            state: Mutex::new(WitnessState { logs, conflicts }),
        })
    }

    /// The witness's vkey.
    pub fn verifier_key(&self) -> String {
        tlog::cosignature::encode_verifier_key(&self.name, &tlog::note::public_key(&self.seed))
    }

    /// The latest cosigned checkpoint of `origin`.
    pub fn latest(&self, origin: &str) -> Option<String> {
        self.lock().logs.get(origin).map(|(_, note)| note.clone())
    }

    /// Every conflict recorded, oldest first.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.lock().conflicts.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WitnessState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers an `add-checkpoint` body (blocking: it writes and fsyncs).
    pub fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let text = "text/plain; charset=utf-8";
        let refuse = |refusal: &Refusal| (status(refusal.status()), text, format!("{refusal}\n"));
        let Ok(body) = std::str::from_utf8(body) else {
            return refuse(&Refusal::BadRequest("the body is not UTF-8".into()));
        };
        let request = match tlog::witness::parse_add_checkpoint(body) {
            Ok(request) => request,
            Err(e) => return refuse(&Refusal::BadRequest(e.to_string())),
        };
        if let Err(refusal) = tlog::witness::check_signature(&request, &self.keys) {
            tracing::info!(origin = %request.head.origin, status = refusal.status(), "add-checkpoint refused: {refusal}");
            return refuse(&refusal);
        }
        let origin = request.head.origin.clone();
        // Check and persist under one lock: no request can slip between.
        let mut state = self.lock();
        let recorded = state.logs.get(&origin).cloned();
        match tlog::witness::check_consistency(&request, recorded.as_ref().map(|(h, _)| h)) {
            Ok(()) => {}
            Err(Refusal::Conflict(size)) => {
                tracing::info!(%origin, old = request.old, size, "add-checkpoint: old size differs (409)");
                return (StatusCode::CONFLICT, SIZE_CONTENT_TYPE, format!("{size}\n"));
            }
            Err(refusal @ Refusal::Unprocessable { .. }) => {
                if let Some((_, cosigned)) = &recorded {
                    self.record_conflict(&mut state, &request, cosigned, &refusal);
                }
                return refuse(&refusal);
            }
            Err(refusal) => return refuse(&refusal),
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_secs().max(1));
        let (note_body, _) = tlog::cosignature::split_note(&request.checkpoint).expect("parsed above");
        let line = match tlog::cosignature::sign(note_body, &self.name, &self.seed, now) {
            Ok(line) => line,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, text, format!("cannot cosign: {e}\n")),
        };
        // The published note: the log's signatures and ours, without the
        // cosignatures of other witnesses (they are not ours to vouch for).
        let log_lines: String = request
            .checkpoint
            .rsplit_once("\n\n")
            .map(|(_, sigs)| sigs)
            .unwrap_or("")
            .lines()
            .filter(|l| {
                self.keys
                    .iter()
                    .any(|k| k.origin == origin && l.starts_with(&format!("\u{2014} {} ", k.name)))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let note = format!("{note_body}\n{log_lines}{line}");
        let path = self.dir.join("logs").join(origin_hash(&origin));
        if let Err(e) = write_atomically(&path, note.as_bytes()) {
            tracing::error!(%origin, error = %e, "cannot persist the witness state; not cosigning");
            return (StatusCode::SERVICE_UNAVAILABLE, text, "the witness cannot persist its state\n".into());
        }
        if recorded.as_ref().is_none_or(|(h, _)| h.size != request.head.size) {
            tracing::info!(%origin, size = request.head.size, old = request.old, "cosigned");
        }
        state.logs.insert(origin, (request.head, note));
        (StatusCode::OK, text, line)
    }

    fn record_conflict(
        &self,
        state: &mut WitnessState,
        request: &AddCheckpoint,
        cosigned: &str,
        refusal: &Refusal,
    ) {
        let fork = matches!(refusal, Refusal::Unprocessable { fork: true, .. });
        let origin = &request.head.origin;
        if fork {
            tracing::error!(%origin, size = request.head.size, "fork: the log signed two different trees of the same size; both checkpoints kept as evidence");
        } else {
            tracing::error!(%origin, old = request.old, size = request.head.size, "possible fork: a signed checkpoint is not proven consistent with the cosigned one; both kept as evidence");
        }
        if state.conflicts.iter().any(|c| c.offered == request.checkpoint) {
            return;
        }
        if state.conflicts.len() >= MAX_CONFLICTS {
            tracing::warn!(%origin, "conflict not stored: {MAX_CONFLICTS} already kept");
            return;
        }
        let conflict = Conflict {
            origin: origin.clone(),
            kind: if fork { "fork" } else { "inconsistent" }.to_string(),
            detected_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            reason: refusal.to_string(),
            cosigned: cosigned.to_string(),
            offered: request.checkpoint.clone(),
            old: request.old,
            proof: request
                .proof
                .iter()
                .map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h))
                .collect(),
        };
        let path = self.dir.join("conflicts").join(format!("{:08}.json", state.conflicts.len()));
        let json = serde_json::to_vec_pretty(&conflict).expect("a conflict serializes");
        match write_atomically(&path, &json) {
            Ok(()) => state.conflicts.push(conflict),
            Err(e) => tracing::error!(%origin, error = %e, "cannot store the fork evidence"),
        }
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The witness's HTTP routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/conflicts", get(conflicts))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(witness)
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: axum::body::Bytes) -> Response {
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body)).await;
    let (code, content_type, body) = answer.unwrap_or_else(|_| {
        (StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", "the witness failed\n".into())
    });
    (code, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn conflicts(State(witness): State<Arc<Witness>>) -> Response {
    axum::Json(witness.conflicts()).into_response()
}

async fn checkpoint(State(witness): State<Arc<Witness>>, UrlPath(hash): UrlPath<String>) -> Response {
    let found = {
        let state = witness.lock();
        state.logs.iter().find(|(origin, _)| origin_hash(origin) == hash).map(|(_, (_, note))| note.clone())
    };
    match found {
        Some(note) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response(),
        None => (StatusCode::NOT_FOUND, "this witness has cosigned no checkpoint of that origin\n")
            .into_response(),
    }
}

/// Serves the witness on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    // The web listener's limits (connections in total and per address, a
    // deadline for each request), counted in metrics of the witness's own.
    let config = crate::web::WebConfig::default();
    let metrics = Arc::new(crate::metrics::Metrics::default());
    crate::web::serve(listener, router(witness), &config, metrics, stop).await;
}

/// The address a `--listen` resolved to, for messages.
pub fn describe(addr: SocketAddr, witness: &Witness) -> String {
    format!("witness {} listening on http://{addr} (vkey {})", witness.name, witness.verifier_key())
}
