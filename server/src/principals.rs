//! Principals and their bearer tokens: who may call the service, in which role.
//!
//! Principals live outside sled, one small TOML file each under
//! `DATA/principals/`, so `ecocode principal add` and `principal revoke`
//! work while a server holds the ledger's lock. A running server keeps
//! every principal in memory and reloads the directory in the background
//! when it changes ([`PrincipalStore::keep_fresh`], every 500 ms), so a
//! revoked token stops working within a second and authenticating a call,
//! with a known token or not, never touches the file system.
//!
//! Only a BLAKE3 hash of each token is stored; a presented token is hashed
//! and compared with the stored digest in constant time. A revoked
//! principal's file stays, marked `revoked_at`, so its name (and the source
//! it writes as) can never be taken over by a new principal.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};

/// What a principal may do; the scope travels with the role that has one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Role {
    Admin,
    /// Scoped to enterprises whose region code starts with this prefix
    /// (empty: every region).
    Regulator {
        region_prefix: String,
    },
    Lender,
    /// Bound to one enterprise.
    Enterprise {
        uscc: String,
    },
    /// An ingesting system, bound to its `source` name.
    Source {
        source: String,
    },
    /// Anyone, unauthenticated: a visitor of the web page (a citizen who
    /// scanned a code). Never stored, never given a token; it reads only
    /// what the public policy in `auth.rs` allows, and its reads are
    /// never inquiries.
    Public,
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Regulator { .. } => "regulator",
            Role::Lender => "lender",
            Role::Enterprise { .. } => "enterprise",
            Role::Source { .. } => "source",
            Role::Public => "public",
        }
    }

    /// Builds a role from the CLI's `--role` and `--scope`, checking that the
    /// scope fits the role.
    pub fn parse(role: &str, scope: Option<&str>) -> Result<Role> {
        let invalid = |msg: String| Error::InvalidArgument(msg);
        let scope = scope.map(str::trim).filter(|s| !s.is_empty());
        match (role, scope) {
            ("admin", None) => Ok(Role::Admin),
            ("lender", None) => Ok(Role::Lender),
            ("admin" | "lender", Some(_)) => Err(invalid(format!("role {role} takes no --scope"))),
            ("regulator", scope) => {
                let prefix = scope.unwrap_or("");
                if prefix.len() > 6 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(format!(
                        "--scope for a regulator is a region-code prefix of up to 6 digits, got {prefix:?}"
                    )));
                }
                Ok(Role::Regulator { region_prefix: prefix.to_owned() })
            }
            ("enterprise", Some(uscc)) => {
                let uscc = scoring::Uscc::parse(uscc)
                    .map_err(|e| invalid(format!("--scope for an enterprise must be its USCC: {e}")))?;
                Ok(Role::Enterprise { uscc: uscc.to_string() })
            }
            ("source", Some(source)) => {
                if source.len() > scoring::limits::SOURCE
                    || !source.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
                {
                    return Err(invalid(format!(
                        "--scope for a source must be a source name, got {source:?}"
                    )));
                }
                Ok(Role::Source { source: source.to_owned() })
            }
            ("enterprise" | "source", None) => Err(invalid(format!(
                "role {role} needs --scope ({})",
                if role == "enterprise" { "the enterprise's USCC" } else { "the source name" }
            ))),
            (other, _) => Err(invalid(format!(
                "unknown role {other:?}; use admin, regulator, lender, enterprise or source"
            ))),
        }
    }

    pub fn scope(&self) -> Option<&str> {
        match self {
            Role::Admin | Role::Lender | Role::Public => None,
            Role::Regulator { region_prefix } => Some(region_prefix),
            Role::Enterprise { uscc } => Some(uscc),
            Role::Source { source } => Some(source),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The unauthenticated visitor of the web page.
    pub fn public() -> Principal {
        Principal { name: "public".into(), role: Role::Public }
    }

    /// The `source` value this principal writes records under: a source
    /// system's bound name, otherwise the principal's own name. Sources are
    /// one namespace, so no writer can claim another's `source_record_id`s.
    pub fn writes_as(&self) -> &str {
        match &self.role {
            Role::Source { source } => source,
            _ => &self.name,
        }
    }
}

/// The file stored per principal.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalFile {
    name: String,
    role: String,
    #[serde(default)]
    scope: String,
    /// Hex BLAKE3 of the bearer token.
    token_blake3: String,
    /// When `ecocode principal revoke` revoked it (RFC 3339); its token no
    /// longer authenticates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

impl PrincipalFile {
    fn writes_as(&self) -> &str {
        if self.role == "source" { &self.scope } else { &self.name }
    }
}

/// How often [`PrincipalStore::keep_fresh`] looks for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// The principals of one data directory, or of a shared PostgreSQL store.
#[derive(Debug)]
pub struct PrincipalStore {
    dir: PathBuf,
    /// `Some`: the principals are documents in the shared store (every
    /// node and the CLI see the same ones); `dir` is then unused.
    shared: Option<ledger::Documents>,
    cache: RwLock<Cache>,
    /// Held from reading the files to replacing the cache, so that a
    /// reload that read the files before a change cannot replace the cache
    /// after a later reload that saw it (a lost update: a token just added
    /// was then unknown until the next change).
    reloading: std::sync::Mutex<()>,
    /// Counts completed reloads, for whoever waits for one.
    reloads: tokio::sync::watch::Sender<u64>,
    /// When a revocation happened (`revoked_at`); the system clock unless
    /// [`PrincipalStore::with_clock`] gave another.
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Cache {
    loaded_at_mtime: Option<SystemTime>,
    /// The shared store's `(count, newest version)` at the last load.
    loaded_version: Option<(i64, i64)>,
    by_token_hash: HashMap<[u8; 32], Principal>,
    /// The same principals by name, for [`PrincipalStore::is_current`].
    by_name: HashMap<String, Principal>,
}

impl Cache {
    fn new(
        loaded_at_mtime: Option<SystemTime>,
        loaded_version: Option<(i64, i64)>,
        by_token_hash: HashMap<[u8; 32], Principal>,
    ) -> Cache {
        let by_name = by_token_hash.values().map(|p| (p.name.clone(), p.clone())).collect();
        Cache { loaded_at_mtime, loaded_version, by_token_hash, by_name }
    }
}

impl PrincipalStore {
    /// Opens (creating if needed) `DATA/principals/` and loads it.
    pub fn open(data_dir: &Path) -> Result<PrincipalStore> {
        Self::open_in(data_dir, None)
    }

    /// Opens the principals of the shared PostgreSQL store at `store`, or
    /// (`None`) of `DATA/principals/`.
    pub fn open_in(data_dir: &Path, store: Option<&str>) -> Result<PrincipalStore> {
        let dir = data_dir.join("principals");
        let shared = match store {
            Some(url) => Some(ledger::Documents::open(url, "principal")?),
            None => {
                crate::private::create_dir(&dir)?;
                None
            }
        };
        let store = PrincipalStore {
            dir,
            shared,
            cache: RwLock::new(Cache::default()),
            reloading: std::sync::Mutex::new(()),
            reloads: tokio::sync::watch::Sender::new(0),
            clock: Arc::new(SystemClock),
        };
        store.reload_if_changed()?;
        Ok(store)
    }

    /// The same store, stamping revocations with `clock`'s time (the
    /// server's injected clock; tests a manual one).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> PrincipalStore {
        PrincipalStore { clock, ..self }
    }

    /// Creates a principal and returns its bearer token, which is not stored.
    /// The name, and the source the principal writes as, must be new (a
    /// revoked principal keeps both).
    pub fn add(&self, name: &str, role: Role) -> Result<String> {
        if role == Role::Public {
            return Err(Error::InvalidArgument("the public role has no token; anyone reads as it".into()));
        }
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Error::InvalidArgument(format!(
                "--name must be 1 to 64 ASCII letters, digits, '.', '_' or '-', got {name:?}"
            )));
        }
        let writes_as = Principal { name: name.to_owned(), role: role.clone() }.writes_as().to_owned();
        if writes_as == RESERVED_SOURCE {
            return Err(Error::InvalidArgument(format!(
                "source {RESERVED_SOURCE:?} is the service's own (the HJ 212 gateway); choose another"
            )));
        }
        for existing in self.files()? {
            if existing.writes_as() == writes_as || existing.name == writes_as {
                return Err(Error::AlreadyExists(format!(
                    "principal {:?} already writes records as source {writes_as:?}; choose another --name or --scope",
                    existing.name
                )));
            }
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Internal(format!("no randomness for a token: {e}")))?;
        let token = format!("eco_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let file = PrincipalFile {
            name: name.to_owned(),
            role: role.name().to_owned(),
            scope: role.scope().unwrap_or_default().to_owned(),
            token_blake3: blake3::hash(token.as_bytes()).to_hex().to_string(),
            revoked_at: None,
        };
        match self.write_file(&file, false) {
            Ok(()) => Ok(token),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(format!("principal {name:?} already exists; choose another --name")))
            }
            Err(e) => Err(e),
        }
    }

    /// Revokes principal `name`: its token stops authenticating (on a running
    /// server within [`RELOAD_INTERVAL`]). Revoking twice is harmless.
    pub fn revoke(&self, name: &str) -> Result<()> {
        let path = self.dir.join(format!("{name}.toml"));
        let text = match &self.shared {
            Some(documents) => match documents.get(name)? {
                Some(text) => text,
                None => return Err(Error::NotFound(format!("no principal {name:?} in the shared store"))),
            },
            None => match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotFound(format!("no principal {name:?} in {}", self.dir.display())));
                }
                Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
            },
        };
        let mut file: PrincipalFile =
            toml::from_str(&text).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
        if file.revoked_at.is_none() {
            file.revoked_at = Some(self.clock.now().to_string());
            self.write_file(&file, true)?;
        }
        Ok(())
    }

    /// The principal holding `token`, from memory: no file system access.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented = blake3::hash(token.as_bytes());
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let (stored, principal) = cache.by_token_hash.get_key_value(presented.as_bytes())?;
        // `blake3::Hash` equality is constant-time.
        (blake3::Hash::from_bytes(*stored) == presented).then(|| principal.clone())
    }

    /// Reloads the directory if it changed since the last load; answers
    /// whether it did.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let _reloading = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(documents) = &self.shared {
            let version = documents.version()?;
            if self.cache.read().unwrap_or_else(|p| p.into_inner()).loaded_version == Some(version) {
                return Ok(false);
            }
            let fresh = Self::principals(self.files()?);
            *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Cache::new(None, Some(version), fresh);
            self.reloads.send_modify(|n| *n += 1);
            return Ok(true);
        }
        let mtime = fs::metadata(&self.dir)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(format!("stat {}", self.dir.display()), e))?;
        // A change within the file system's timestamp granularity of the
        // last load would keep the same mtime: recent directories reload.
        let recent = SystemTime::now().duration_since(mtime).map_or(true, |age| age < Duration::from_secs(2));
        let unchanged = self.cache.read().unwrap_or_else(|p| p.into_inner()).loaded_at_mtime == Some(mtime);
        if unchanged && !recent {
            return Ok(false);
        }
        let fresh = Self::principals(self.files()?);
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Cache::new(Some(mtime), None, fresh);
        self.reloads.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// The usable principals of `files`, by token hash.
    fn principals(files: Vec<PrincipalFile>) -> HashMap<[u8; 32], Principal> {
        let mut fresh = HashMap::new();
        for file in files {
            if file.revoked_at.is_some() {
                continue;
            }
            let scope = (!file.scope.is_empty()).then_some(file.scope.as_str());
            let hash = blake3::Hash::from_hex(&file.token_blake3);
            match (Role::parse(&file.role, scope), hash) {
                (Ok(role), Ok(hash)) => {
                    fresh.insert(*hash.as_bytes(), Principal { name: file.name, role });
                }
                (Err(e), _) => {
                    tracing::warn!(name = %file.name, error = %e, "ignoring invalid principal file")
                }
                (_, Err(_)) => {
                    tracing::warn!(name = %file.name, "ignoring principal file with a malformed token hash")
                }
            }
        }
        fresh
    }

    /// Completed reloads so far; changes after each one.
    pub fn reloads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reloads.subscribe()
    }

    /// Whether `principal` still holds a usable token, from memory: not
    /// revoked (or removed) since it authenticated, with the same role.
    pub fn is_current(&self, principal: &Principal) -> bool {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache.by_name.get(&principal.name) == Some(principal)
    }

    /// The standing of `principal`, who authenticated a moment ago, for a
    /// long-lived call (a stream) to re-check and to be woken by.
    /// `UNAUTHENTICATED` if it was revoked already.
    pub fn standing(self: &Arc<Self>, principal: &Principal) -> Result<Standing> {
        // Subscribed before the check (a new receiver has seen the current
        // value), so every reload after it wakes `revoked`.
        let reloads = self.reloads.subscribe();
        let standing = Standing { store: self.clone(), principal: principal.clone(), reloads };
        standing.check()?;
        Ok(standing)
    }

    /// Reloads on change every [`RELOAD_INTERVAL`] until `stop` resolves.
    /// Each reload runs on the blocking pool: on a shared store it is a
    /// database round trip, which must never hold an async worker.
    pub async fn keep_fresh(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(RELOAD_INTERVAL);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {
                    let store = self.clone();
                    let reloaded = tokio::task::spawn_blocking(move || store.reload_if_changed())
                        .await
                        .unwrap_or_else(|e| Err(Error::Internal(format!("principal reload failed: {e}"))));
                    if let Err(e) = reloaded {
                        tracing::warn!(error = %e, "principals not reloaded; keeping the last good set");
                    }
                }
            }
        }
    }

    /// Every readable principal file, revoked ones included.
    fn files(&self) -> Result<Vec<PrincipalFile>> {
        let mut out = Vec::new();
        if let Some(documents) = &self.shared {
            for (name, text) in documents.list()? {
                match toml::from_str(&text) {
                    Ok(file) => out.push(file),
                    Err(e) => tracing::warn!(%name, error = %e, "ignoring unreadable principal document"),
                }
            }
            return Ok(out);
        }
        let entries =
            fs::read_dir(&self.dir).map_err(|e| Error::io(format!("read {}", self.dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("read {}", self.dir.display()), e))?;
            let path = entry.path();
            let is_principal = path.extension().is_some_and(|e| e == "toml")
                && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !is_principal {
                continue;
            }
            let text =
                fs::read_to_string(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            // A damaged file disables that principal, not the whole service.
            match toml::from_str(&text) {
                Ok(file) => out.push(file),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable principal file")
                }
            }
        }
        Ok(out)
    }

    /// Writes `file` durably: a new principal with a hard link (which fails
    /// if the name is taken, so two `add`s cannot race), a revocation by
    /// replacing the file.
    fn write_file(&self, file: &PrincipalFile, replace: bool) -> Result<()> {
        let text = toml::to_string(file).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(documents) = &self.shared {
            // One row per name: an insert of a taken name changes nothing,
            // so two `add`s cannot race here either.
            let written = if replace {
                documents.replace(&file.name, &text)?
            } else {
                documents.insert_new(&file.name, &text)?
            };
            if !written {
                let kind =
                    if replace { std::io::ErrorKind::NotFound } else { std::io::ErrorKind::AlreadyExists };
                return Err(Error::io(
                    format!("write principal {:?}", file.name),
                    std::io::Error::from(kind),
                ));
            }
            return Ok(());
        }
        let path = self.dir.join(format!("{}.toml", file.name));
        let tmp = self.dir.join(format!(".{}.toml.tmp", file.name));
        let write = || -> std::io::Result<()> {
            let mut f = crate::private::create_file(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            if replace {
                fs::rename(&tmp, &path)?;
            } else {
                fs::hard_link(&tmp, &path)?;
                fs::remove_file(&tmp)?;
            }
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(format!("write {}", path.display()), e)
        })
    }
}

/// The source only the service itself writes under (the HJ 212 gateway).
pub const RESERVED_SOURCE: &str = "hj212";

/// A principal's standing during a long-lived call (`WatchCodes`,
/// `ListEntries`, an `AppendRecords` stream): authentication happens once,
/// when the call opens, so a stream re-checks here before each batch it
/// appends or sends, and waits on [`Standing::revoked`] to end as soon as
/// the background reload drops the principal (within [`RELOAD_INTERVAL`]
/// of `ecocode principal revoke`).
#[derive(Debug)]
pub struct Standing {
    store: Arc<PrincipalStore>,
    principal: Principal,
    reloads: tokio::sync::watch::Receiver<u64>,
}

impl Standing {
    /// `UNAUTHENTICATED` once the principal is revoked.
    pub fn check(&self) -> Result<()> {
        if self.store.is_current(&self.principal) { Ok(()) } else { Err(self.revocation()) }
    }

    /// Resolves (with the error to end the call with) when the principal
    /// is revoked; pending until then. Cancel-safe, for `select!`.
    /// Only a reload can revoke, so between reloads this costs nothing.
    pub async fn revoked(&mut self) -> Error {
        loop {
            // The sender lives in the store this holds: never closed.
            if self.reloads.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if let Err(e) = self.check() {
                return e;
            }
        }
    }

    fn revocation(&self) -> Error {
        Error::Unauthenticated(format!(
            "principal {:?} was revoked while this call was open; it was ended, and nothing of it not yet \
             committed is appended",
            self.principal.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_authenticate_and_only_the_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = PrincipalStore::open(dir.path()).unwrap();
        let token = store.add("bank-a", Role::Lender).unwrap();
        store.reload_if_changed().unwrap();
        let p = store.authenticate(&token).unwrap();
        assert_eq!(p, Principal { name: "bank-a".into(), role: Role::Lender });
        assert_eq!(store.authenticate("eco_wrong"), None);
        let stored = fs::read_to_string(dir.path().join("principals/bank-a.toml")).unwrap();
        assert!(!stored.contains(&token));
        assert!(stored.contains(blake3::hash(token.as_bytes()).to_hex().as_str()));
    }

    #[test]
    fn a_second_store_sees_principals_added_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let server_side = PrincipalStore::open(dir.path()).unwrap();
        assert_eq!(server_side.authenticate("eco_x"), None);
        let cli_side = PrincipalStore::open(dir.path()).unwrap();
        let token = cli_side.add("epb", Role::Regulator { region_prefix: "3302".into() }).unwrap();
        // Authentication itself never reads the directory: the reload does.
        assert_eq!(server_side.authenticate(&token), None);
        assert!(server_side.reload_if_changed().unwrap());
        let p = server_side.authenticate(&token).unwrap();
        assert_eq!(p.role, Role::Regulator { region_prefix: "3302".into() });

        cli_side.revoke("epb").unwrap();
        server_side.reload_if_changed().unwrap();
        assert_eq!(server_side.authenticate(&token), None, "a revoked token no longer authenticates");
        assert!(matches!(cli_side.revoke("nobody"), Err(Error::NotFound(_))));
        cli_side.revoke("epb").unwrap();
    }

    // Revocations were stamped with the system time, not the injected clock.
    #[test]
    fn revocation_is_stamped_with_the_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let at = scoring::Timestamp::parse_rfc3339("2031-05-04T03:02:01Z").unwrap();
        let store = PrincipalStore::open(dir.path())
            .unwrap()
            .with_clock(Arc::new(crate::clock::ManualClock::new(at)));
        store.add("bank-a", Role::Lender).unwrap();
        store.revoke("bank-a").unwrap();
        let text = fs::read_to_string(dir.path().join("principals/bank-a.toml")).unwrap();
        assert!(text.contains("revoked_at = \"2031-05-04T03:02:01Z\""), "{text}");
    }

    #[test]
    fn duplicate_names_and_bad_scopes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PrincipalStore::open(dir.path()).unwrap();
        store.add("a", Role::Admin).unwrap();
        assert!(matches!(store.add("a", Role::Admin), Err(Error::AlreadyExists(_))));
        // Sources are one namespace: a feed cannot write as an existing
        // principal, nor a new principal as an existing feed.
        store.add("feed", Role::Source { source: "beilun-epb".into() }).unwrap();
        let squat = store.add("x", Role::Source { source: "a".into() });
        assert!(matches!(squat, Err(Error::AlreadyExists(_))));
        let squat = store.add("beilun-epb", Role::Regulator { region_prefix: "3302".into() });
        assert!(matches!(squat, Err(Error::AlreadyExists(_))));
        store.revoke("a").unwrap();
        assert!(matches!(store.add("a", Role::Admin), Err(Error::AlreadyExists(_))), "names stay taken");
        assert!(matches!(
            store.add("gw", Role::Source { source: "hj212".into() }),
            Err(Error::InvalidArgument(_))
        ));
        assert!(Role::parse("enterprise", None).is_err());
        assert!(Role::parse("enterprise", Some("91330421739237858Y")).is_err());
        assert!(Role::parse("regulator", Some("33ab")).is_err());
        assert!(Role::parse("lender", Some("x")).is_err());
        assert!(Role::parse("root", None).is_err());
        assert_eq!(
            Role::parse("source", Some("beilun-epb")).unwrap(),
            Role::Source { source: "beilun-epb".into() }
        );
    }
}
