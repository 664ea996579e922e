//! Device passwords kept by the server alone: a verifier keyed with a
//! secret the server generates on its first start, in server-side state
//! that no ledger reader can fetch. The ledger entry of a monitoring point
//! holds only a random credential id saying "a password was set here"
//! (docs/hj212.md#device-authentication).
//!
//! HJ 212-2017 gives `PW` six characters, so no hash of it can resist an
//! offline search: the protection is that the verifier is useless without
//! the secret, and that guessing online is throttled by the gateway.
//!
//! Keys (`\0` separates parts, since an MN may hold any printable byte):
//! * `v\0<MN>\0<credential id, 32 hex digits>` -> the 32-byte verifier;
//! * `secret` -> the 32-byte secret, on a shared (PostgreSQL) store only;
//!   on disk it is the file `DATA/hj212-secret` (mode 0600).

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use scoring::ValidationError;

use super::point::{MonitoringPoint, PasswordHash};
use super::{Error, Result};

/// The sled directory of the verifiers, under the data directory.
pub const CREDENTIALS_DIR: &str = "hj212-credentials";
/// The secret's file, under the data directory.
pub const SECRET_FILE: &str = "hj212-secret";
/// The key space of the shared `kv_state` table.
const SPACE: &str = "hj212-credentials";
const SECRET_KEY: &[u8] = b"secret";
/// Domain separation of the keyed verifier.
const VERIFIER_CONTEXT: &[u8] = b"ecocode 2026 hj212 device password v2\0";
/// Verifiers kept in memory; ids never change meaning, so the cache is
/// never stale, only bounded.
const MAX_CACHED: usize = 100_000;

/// A device's `PW` as a registration supplies it: checked, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePassword(String);

impl DevicePassword {
    pub fn new(password: &str) -> Result<DevicePassword, ValidationError> {
        super::packet::check_password(password).map_err(|rule| {
            ValidationError::new("password", format!("{rule}, got {} characters", password.len()))
        })?;
        Ok(DevicePassword(password.to_owned()))
    }
}

impl fmt::Debug for DevicePassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DevicePassword(<redacted>)")
    }
}

/// A monitoring point as a client registers it, with its device's password.
#[derive(Clone, Debug)]
pub struct PointRegistration {
    pub point: MonitoringPoint,
    pub password: DevicePassword,
}

/// The random id of one password setting, stored in the ledger entry; the
/// verifier for it is in server-side state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CredentialId([u8; 16]);

impl CredentialId {
    fn random() -> Result<CredentialId> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
        Ok(CredentialId(bytes))
    }

    pub fn from_hex(hex: &str) -> Result<CredentialId, ValidationError> {
        let bad = || ValidationError::new("credential_id", "must be 32 hex digits");
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(CredentialId(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// How a monitoring point's device proves itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Credential {
    /// Registered before keyed verifiers: an unkeyed hash in the ledger
    /// entry, readable by ledger readers. Still accepted (devices keep
    /// reporting) but counted as `legacy_verifier`: rotate the password.
    Legacy(PasswordHash),
    /// A password set at the registration with this id; its keyed verifier
    /// is in server-side state.
    Keyed(CredentialId),
}

/// What a packet's `PW` is for its device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PasswordCheck {
    Right,
    /// Right, checked against a legacy (unkeyed, ledger-held) hash.
    RightLegacy,
    Wrong,
}

/// The verifier store and the server's secret.
pub struct Credentials {
    backend: Backend,
    secret: [u8; 32],
    cache: Mutex<HashMap<(String, CredentialId), blake3::Hash>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

enum Backend {
    Local(kv::Db),
    Shared(Box<kv::pg::Table>),
}

fn shared(e: kv::pg::Failure) -> Error {
    Error::SharedStore(format!("PostgreSQL: {e}"))
}

impl Credentials {
    /// Opens the verifiers in `DATA/hj212-credentials` and the secret in
    /// `DATA/hj212-secret` (created on first start), or, with `shared`,
    /// both in the `hj212-credentials` key space of that PostgreSQL store,
    /// so every node checks the same passwords.
    pub fn open(data_dir: &Path, shared_store: Option<&str>) -> Result<Credentials> {
        let (backend, secret) = match shared_store {
            None => {
                let db = kv::open(sled::Config::new(), &data_dir.join(CREDENTIALS_DIR))?;
                (Backend::Local(db), local_secret(&data_dir.join(SECRET_FILE))?)
            }
            Some(url) => {
                let table = kv::pg::Table::open(url, SPACE).map_err(shared)?;
                let secret = shared_secret(&table, data_dir)?;
                (Backend::Shared(Box::new(table)), secret)
            }
        };
        Ok(Credentials { backend, secret, cache: Mutex::default() })
    }

    fn verifier(&self, mn: &str, password: &str) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher
            .update(VERIFIER_CONTEXT)
            .update(&(mn.len() as u64).to_le_bytes())
            .update(mn.as_bytes())
            .update(password.as_bytes());
        hasher.finalize()
    }

    fn key(mn: &str, id: CredentialId) -> Vec<u8> {
        [b"v\0".as_slice(), mn.as_bytes(), b"\0", id.to_hex().as_bytes()].concat()
    }

    fn stored(&self, mn: &str, id: CredentialId) -> Result<Option<blake3::Hash>> {
        let cached = kv::lock(&self.cache).get(&(mn.to_owned(), id)).copied();
        if cached.is_some() {
            return Ok(cached);
        }
        let key = Self::key(mn, id);
        let value = match &self.backend {
            Backend::Local(db) => db.get(&key)?.map(|v| v.to_vec()),
            Backend::Shared(table) => table.get(&key).map_err(shared)?,
        };
        let Some(value) = value else { return Ok(None) };
        let bytes: [u8; 32] = value
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corruption(format!("verifier of {mn:?} is not 32 bytes")))?;
        let hash = blake3::Hash::from_bytes(bytes);
        let mut cache = kv::lock(&self.cache);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert((mn.to_owned(), id), hash);
        Ok(Some(hash))
    }

    /// Whether `password` is device `mn`'s password set with `id`.
    fn verifies(&self, mn: &str, id: CredentialId, password: &str) -> Result<bool> {
        // blake3::Hash compares in constant time.
        Ok(self.stored(mn, id)?.is_some_and(|stored| stored == self.verifier(mn, password)))
    }

    /// The point to record for `registration`, given the device's current
    /// point: the current one again (a duplicate) when nothing changed and
    /// the password is the current one; else `registration.point` with a
    /// new credential, whose verifier is durably stored before this
    /// returns (so the entry never names a verifier that is not there).
    /// Blocking: it may write to the store.
    pub fn credential_for(
        &self,
        current: Option<&MonitoringPoint>,
        registration: PointRegistration,
    ) -> Result<MonitoringPoint> {
        let PointRegistration { point, password } = registration;
        if let Some(current) = current
            && current.same_registration(&point)
            && let Some(Credential::Keyed(id)) = current.credential()
            && self.verifies(point.mn(), *id, &password.0)?
        {
            return Ok(point.with_credential(Credential::Keyed(*id)));
        }
        let id = CredentialId::random()?;
        let verifier = self.verifier(point.mn(), &password.0);
        let key = Self::key(point.mn(), id);
        match &self.backend {
            Backend::Local(db) => {
                db.insert(key, verifier.as_bytes().as_slice())?;
                db.flush()?;
            }
            Backend::Shared(table) => {
                table.apply(vec![(key, verifier.as_bytes().to_vec())], Vec::new()).map_err(shared)?
            }
        }
        Ok(point.with_credential(Credential::Keyed(id)))
    }

    /// Checks a packet's `PW` for `point`. A point without a credential
    /// accepts nothing; a keyed credential without its verifier (server
    /// state lost) accepts nothing either, until the point is registered
    /// again. Blocking: it may read the store.
    pub fn check(&self, point: &MonitoringPoint, pw: &str) -> Result<PasswordCheck> {
        Ok(match point.credential() {
            None => PasswordCheck::Wrong,
            Some(Credential::Legacy(hash)) => {
                if *hash == PasswordHash::derive(point.mn(), pw) {
                    PasswordCheck::RightLegacy
                } else {
                    PasswordCheck::Wrong
                }
            }
            Some(Credential::Keyed(id)) => {
                if self.verifies(point.mn(), *id, pw)? {
                    PasswordCheck::Right
                } else {
                    PasswordCheck::Wrong
                }
            }
        })
    }
}

/// Reads the secret file, or creates it (0600) with 32 random bytes.
fn local_secret(path: &Path) -> Result<[u8; 32]> {
    let read = |path: &Path| -> Result<[u8; 32]> {
        let bytes = std::fs::read(path)?;
        bytes.as_slice().try_into().map_err(|_| {
            Error::Corruption(format!("{} is not 32 bytes; restore it from a backup", path.display()))
        })
    };
    if path.exists() {
        return read(path);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(&secret)?;
            file.sync_all()?;
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(e.into()),
    }
}

/// The shared secret, created by the first node under an advisory claim so
/// that two nodes starting at once agree on one. A first node started with
/// the data directory of a sled server (after `ecocode migrate`) brings
/// that server's secret and verifiers along, so its devices' passwords
/// keep working.
fn shared_secret(table: &kv::pg::Table, data_dir: &Path) -> Result<[u8; 32]> {
    let parse = |value: Vec<u8>| -> Result<[u8; 32]> {
        value
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corruption("the shared hj212 secret is not 32 bytes".into()))
    };
    if let Some(value) = table.get(SECRET_KEY).map_err(shared)? {
        return parse(value);
    }
    // Waits while another node creates it, then reads what that node wrote.
    let _claim = table.claim("secret").map_err(shared)?;
    if let Some(value) = table.get(SECRET_KEY).map_err(shared)? {
        return parse(value);
    }
    let (secret, mut puts) = match local_state(data_dir)? {
        Some(local) => local,
        None => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
            (secret, Vec::new())
        }
    };
    // The secret last, in the same transaction: a node that sees it sees the
    // verifiers too.
    puts.push((SECRET_KEY.to_vec(), secret.to_vec()));
    table.apply(puts, Vec::new()).map_err(shared)?;
    Ok(secret)
}

/// A sled server's secret and verifiers in `data_dir`, if it has them.
fn local_state(data_dir: &Path) -> Result<Option<([u8; 32], Vec<kv::pg::KeyValue>)>> {
    let (secret_path, dir) = (data_dir.join(SECRET_FILE), data_dir.join(CREDENTIALS_DIR));
    if !secret_path.exists() {
        return Ok(None);
    }
    let secret = local_secret(&secret_path)?;
    let mut verifiers = Vec::new();
    if dir.exists() {
        let db = kv::open(sled::Config::new(), &dir)?;
        for item in db.scan_prefix(b"v\0") {
            let (k, v) = item?;
            verifiers.push((k.to_vec(), v.to_vec()));
        }
    }
    tracing::info!(
        verifiers = verifiers.len(),
        "hj212 device credentials taken over from the data directory"
    );
    Ok(Some((secret, verifiers)))
}

#[cfg(test)]
mod tests {
    use scoring::Uscc;

    use super::*;

    fn point(mn: &str) -> MonitoringPoint {
        MonitoringPoint::new(mn, Uscc::parse("91330421739237858X").unwrap(), "DW001", vec![]).unwrap()
    }

    fn register(c: &Credentials, current: Option<&MonitoringPoint>, mn: &str, pw: &str) -> MonitoringPoint {
        let registration = PointRegistration { point: point(mn), password: DevicePassword::new(pw).unwrap() };
        c.credential_for(current, registration).unwrap()
    }

    #[test]
    fn only_the_registered_password_is_accepted_and_the_secret_persists() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = Credentials::open(dir.path(), None).unwrap();
        assert_eq!(credentials.check(&point("LD13"), "123456").unwrap(), PasswordCheck::Wrong, "no password");
        let first = register(&credentials, None, "LD13", "123456");
        assert_eq!(credentials.check(&first, "123456").unwrap(), PasswordCheck::Right);
        assert_eq!(credentials.check(&first, "123457").unwrap(), PasswordCheck::Wrong);
        // The same password again is the same credential (a duplicate entry).
        assert_eq!(register(&credentials, Some(&first), "LD13", "123456"), first);
        // Another password rotates: a new id, the old password no longer works.
        let second = register(&credentials, Some(&first), "LD13", "654321");
        assert_ne!(second.credential(), first.credential());
        assert_eq!(credentials.check(&second, "123456").unwrap(), PasswordCheck::Wrong);
        drop(credentials);
        let reopened = Credentials::open(dir.path(), None).unwrap();
        assert_eq!(reopened.check(&second, "654321").unwrap(), PasswordCheck::Right);
        // The secret is the service user's alone.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A legacy hash is still accepted, and said to be one.
        let legacy =
            point("LD13").with_credential(Credential::Legacy(PasswordHash::of("LD13", "123456").unwrap()));
        assert_eq!(reopened.check(&legacy, "123456").unwrap(), PasswordCheck::RightLegacy);
        assert_eq!(reopened.check(&legacy, "12345").unwrap(), PasswordCheck::Wrong);
    }

    #[test]
    fn ids_and_passwords_are_checked_and_never_printed() {
        let id = CredentialId([0xab; 16]);
        assert_eq!(CredentialId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(CredentialId::from_hex("zz").is_err());
        assert!(format!("{:?}", DevicePassword::new("s3cret").unwrap()).contains("redacted"));
        assert!(DevicePassword::new("").unwrap_err().to_string().starts_with("password: must be 1 to 32"));
        assert!(DevicePassword::new("a b").is_err());
    }
}
