//! The files kept next to the store: the signing key and the last signed
//! checkpoint, both written atomically (tmp + fsync + rename + fsync dir).
//!
//! The checkpoint file lives outside sled on purpose: sled can silently
//! truncate the tail of its log after damage and come up self-consistent,
//! and only state it does not own reveals that.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::error::{Error, Result};
use super::note;

pub(crate) const KEY_FILE: &str = "ledger.key";
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
pub(crate) const STORE_DIR: &str = "ledger";

/// The service's Ed25519 signing key.
pub(crate) struct ServiceKey {
    pub name: String,
    pub seed: [u8; 32],
    pub public: [u8; 32],
}

impl std::fmt::Debug for ServiceKey {
    // Never print the seed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKey").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Loads the key from `key_file`, or from `dir/ledger.key`, creating the
/// latter (mode 0600) with a fresh random seed if it does not exist.
pub(crate) fn load_or_create_key(dir: &Path, key_file: Option<&Path>, key_name: &str) -> Result<ServiceKey> {
    let path = match key_file {
        Some(path) => path.to_path_buf(),
        None => {
            let path = dir.join(KEY_FILE);
            if !path.exists() {
                create_key(&path, key_name)?;
            }
            path
        }
    };
    let (name, seed) = read_signer_key(&path)?;
    if name != key_name {
        return Err(Error::Key(format!(
            "{} holds a key named {name:?} but the configured key name is {key_name:?}",
            path.display()
        )));
    }
    Ok(ServiceKey { public: note::public_key(&seed), name, seed })
}

fn create_key(path: &Path, key_name: &str) -> Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Key(format!("no randomness for a new key: {e}")))?;
    let text = note::encode_signer_key(key_name, &seed) + "\n";
    write_atomic(path, text.as_bytes(), 0o600)?;
    tracing::info!(path = %path.display(), key_name, "created a new ledger signing key");
    Ok(())
}

fn read_signer_key(path: &Path) -> Result<(String, [u8; 32])> {
    let text =
        fs::read_to_string(path).map_err(|e| Error::Key(format!("cannot read {}: {e}", path.display())))?;
    warn_if_readable_by_others(path);
    note::decode_signer_key(&text).map_err(|e| Error::Key(format!("{}: {e}", path.display())))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "ledger key file is accessible to others");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// The public key in `dir_or_key_file`: a data directory (its
/// `ledger.key`), a signer key file or a verifier key file.
pub fn read_public_key(dir_or_key_file: &Path) -> Result<[u8; 32]> {
    let path =
        if dir_or_key_file.is_dir() { dir_or_key_file.join(KEY_FILE) } else { dir_or_key_file.to_path_buf() };
    let text =
        fs::read_to_string(&path).map_err(|e| Error::Key(format!("cannot read {}: {e}", path.display())))?;
    if text.trim_start().starts_with("PRIVATE+KEY+") {
        let (_, seed) = note::decode_signer_key(&text)?;
        Ok(note::public_key(&seed))
    } else {
        Ok(note::decode_verifier_key(&text)?.1)
    }
}

/// The checkpoint note and the time it was written (the file's mtime: the
/// note format has no place for it, and it is informational only).
pub(crate) fn read_checkpoint(dir: &Path) -> Result<Option<(String, i64)>> {
    let path = dir.join(CHECKPOINT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let written_ns = fs::metadata(&path)?
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    Ok(Some((text, written_ns)))
}

/// The body of the signed note `text` (what its signatures sign), its
/// signatures not checked.
pub(crate) fn unsigned_body(text: &str) -> Result<&str> {
    match text.rfind("\n\n") {
        Some(split) => Ok(&text[..split + 1]),
        None => Err(Error::tampered(None, "the last checkpoint is not a signed note")),
    }
}

/// The tree size of the last signed checkpoint in `dir` (0 if there is
/// none), its signature not checked: verification does that.
pub(crate) fn checkpoint_size(dir: &Path) -> Result<u64> {
    let Some((text, _)) = read_checkpoint(dir)? else { return Ok(0) };
    let (_, size, _, _) = note::parse_checkpoint(unsigned_body(&text)?)
        .map_err(|e| Error::tampered(None, format!("the last checkpoint is malformed: {e}")))?;
    Ok(size)
}

pub(crate) fn write_checkpoint(dir: &Path, note: &str) -> Result<()> {
    write_atomic(&dir.join(CHECKPOINT_FILE), note.as_bytes(), 0o600)
}

/// Replaces `path` so that a crash leaves either the old or the new file.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp: PathBuf = dir.join(tmp_name);
    // A leftover tmp file would keep its old mode; start afresh.
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_: &Path) -> Result<()> {
    Ok(())
}
