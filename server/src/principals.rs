//! Principals and their bearer tokens: who may call the service, in which role.
//!
//! Principals live outside sled, one small TOML file each under
//! `DATA/principals/`, so `ecocode principal add` works while a server holds
//! the ledger's lock, and a running server sees a new principal on its next
//! request (it reloads when the directory's modification time changes). Only
//! a BLAKE3 hash of each token is stored.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use base64::Engine;
use serde::{Deserialize, Serialize};

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
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Regulator { .. } => "regulator",
            Role::Lender => "lender",
            Role::Enterprise { .. } => "enterprise",
            Role::Source { .. } => "source",
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

    fn scope(&self) -> Option<&str> {
        match self {
            Role::Admin | Role::Lender => None,
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
}

/// The principals of one data directory.
#[derive(Debug)]
pub struct PrincipalStore {
    dir: PathBuf,
    cache: RwLock<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    loaded_at_mtime: Option<SystemTime>,
    by_token_hash: HashMap<String, Principal>,
}

impl PrincipalStore {
    /// Opens (creating if needed) `DATA/principals/`.
    pub fn open(data_dir: &Path) -> Result<PrincipalStore> {
        let dir = data_dir.join("principals");
        crate::private::create_dir(&dir)?;
        Ok(PrincipalStore { dir, cache: RwLock::new(Cache::default()) })
    }

    /// Creates a principal and returns its bearer token, which is not stored.
    pub fn add(&self, name: &str, role: Role) -> Result<String> {
        if name.is_empty()
            || name.len() > 64
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(Error::InvalidArgument(format!(
                "--name must be 1 to 64 ASCII letters, digits, '.', '_' or '-', got {name:?}"
            )));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Internal(format!("no randomness for a token: {e}")))?;
        let token = format!("eco_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let file = PrincipalFile {
            name: name.to_owned(),
            role: role.name().to_owned(),
            scope: role.scope().unwrap_or_default().to_owned(),
            token_blake3: token_hash(&token),
        };
        let text = toml::to_string(&file).map_err(|e| Error::Internal(e.to_string()))?;
        let path = self.dir.join(format!("{name}.toml"));
        let tmp = self.dir.join(format!(".{name}.toml.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = crate::private::create_file(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            // hard_link fails if the name is taken, which makes "add" race-free
            // between two CLI invocations.
            fs::hard_link(&tmp, &path)?;
            fs::remove_file(&tmp)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        match write() {
            Ok(()) => Ok(token),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&tmp);
                Err(Error::AlreadyExists(format!("principal {name:?} already exists; choose another --name")))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::io(format!("write {}", path.display()), e))
            }
        }
    }

    /// The principal holding `token`, if any.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let mtime = fs::metadata(&self.dir)
            .and_then(|m| m.modified())
            .map_err(|e| Error::io(format!("stat {}", self.dir.display()), e))?;
        let hash = token_hash(token);
        {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            if cache.loaded_at_mtime == Some(mtime) {
                return Ok(cache.by_token_hash.get(&hash).cloned());
            }
        }
        let fresh = self.load()?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        *cache = Cache { loaded_at_mtime: Some(mtime), by_token_hash: fresh };
        Ok(cache.by_token_hash.get(&hash).cloned())
    }

    fn load(&self) -> Result<HashMap<String, Principal>> {
        let mut map = HashMap::new();
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
            let parsed: PrincipalFile = match toml::from_str(&text) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable principal file");
                    continue;
                }
            };
            let scope = (!parsed.scope.is_empty()).then_some(parsed.scope.as_str());
            match Role::parse(&parsed.role, scope) {
                Ok(role) => {
                    map.insert(parsed.token_blake3, Principal { name: parsed.name, role });
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring invalid principal file")
                }
            }
        }
        Ok(map)
    }
}

fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_authenticate_and_only_the_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = PrincipalStore::open(dir.path()).unwrap();
        let token = store.add("bank-a", Role::Lender).unwrap();
        let p = store.authenticate(&token).unwrap().unwrap();
        assert_eq!(p, Principal { name: "bank-a".into(), role: Role::Lender });
        assert_eq!(store.authenticate("eco_wrong").unwrap(), None);
        let stored = fs::read_to_string(dir.path().join("principals/bank-a.toml")).unwrap();
        assert!(!stored.contains(&token));
        assert!(stored.contains(&token_hash(&token)));
    }

    #[test]
    fn a_second_store_sees_principals_added_by_another() {
        let dir = tempfile::tempdir().unwrap();
        let server_side = PrincipalStore::open(dir.path()).unwrap();
        assert_eq!(server_side.authenticate("eco_x").unwrap(), None);
        let cli_side = PrincipalStore::open(dir.path()).unwrap();
        let token = cli_side.add("epb", Role::Regulator { region_prefix: "3302".into() }).unwrap();
        let p = server_side.authenticate(&token).unwrap().unwrap();
        assert_eq!(p.role, Role::Regulator { region_prefix: "3302".into() });
    }

    #[test]
    fn duplicate_names_and_bad_scopes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = PrincipalStore::open(dir.path()).unwrap();
        store.add("a", Role::Admin).unwrap();
        assert!(matches!(store.add("a", Role::Admin), Err(Error::AlreadyExists(_))));
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
