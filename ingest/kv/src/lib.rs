//! The one way ecocode opens its stores: a sled database whose close is
//! deterministic (this file), and a PostgreSQL pool usable from synchronous
//! code ([`pg`]).
//!
//! sled takes an exclusive `flock` on `<dir>/db` when it opens a directory
//! and releases it when its last internal handle goes away, which happens on
//! sled's own I/O threads a moment *after* the `sled::Db` is dropped.
//! Reopening the same directory in that moment fails with "could not acquire
//! lock ... WouldBlock": an in-process restart (the composition root's
//! shutdown, a store's reopen, a test) would then fail now and then.
//!
//! [`Db`] closes that gap in one place: dropping it drops sled's handle and
//! then waits, a bounded time, until the lock can be taken, so that when the
//! drop returns the directory can be reopened. Both stores of the service
//! (the ledger and the HJ 212 aggregation state) open sled only through
//! [`open`].

#![forbid(unsafe_code)]

pub mod pg;

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Locks `mutex`, going on after a panic elsewhere left it poisoned: the
/// stores' in-memory state (queues, caches, counters, slots) is plain data
/// that every update changes whole, and the durable state is on disk, so a
/// panicked holder leaves nothing half-done to protect. The one such helper
/// of the crates below the server (the ledger, the inquiry log, the HJ 212
/// gateway), here because `kv` is the lowest crate they all use.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a close waits for sled's threads to let go of the lock.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// An open sled database; see the crate documentation. Trees opened from
/// it must be dropped before it (declare them before it in a struct).
pub struct Db {
    // Fields drop in order: sled's handle first, then the wait.
    db: sled::Db,
    _release: WaitForRelease,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self._release.dir).finish_non_exhaustive()
    }
}

/// Opens the sled database in directory `dir` with `config`'s settings.
/// A directory held by another process is an error that says so.
pub fn open(config: sled::Config, dir: &Path) -> sled::Result<Db> {
    let db = config.path(dir).open().map_err(|e| match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            sled::Error::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another process (it holds the lock); stop that process or use another data directory",
                    dir.display()
                ),
            ))
        }
        other => other,
    })?;
    Ok(Db { db, _release: WaitForRelease { dir: dir.to_owned() } })
}

impl std::ops::Deref for Db {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

struct WaitForRelease {
    dir: PathBuf,
}

impl Drop for WaitForRelease {
    fn drop(&mut self) {
        if let Err(e) = wait_until_released(&self.dir, RELEASE_TIMEOUT) {
            tracing::error!(dir = %self.dir.display(), error = %e, "sled did not release its lock");
        }
    }
}

/// Waits until nobody holds sled's lock on `dir`: returns at once if the
/// directory holds no database.
pub fn wait_until_released(dir: &Path, timeout: Duration) -> std::io::Result<()> {
    let lock_file = match File::open(dir.join("db")) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let start = Instant::now();
    loop {
        match lock_file.try_lock() {
            // Ours now, and released again when `lock_file` is dropped.
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the lock on {} was still held after {timeout:?}", dir.display()),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression: reopening right after a drop failed about one time in ten
    // with "could not acquire lock" while sled's threads still held it.
    #[test]
    fn reopening_right_after_a_drop_always_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200u32 {
            let db = open(sled::Config::new(), dir.path()).expect("the previous drop released the lock");
            db.insert(i.to_be_bytes(), &[1]).unwrap();
            drop(db);
        }
        let db = open(sled::Config::new(), dir.path()).unwrap();
        assert_eq!(db.len(), 200);
    }

    #[test]
    fn a_held_lock_is_reported_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(sled::Config::new(), dir.path()).unwrap();
        let second = open(sled::Config::new(), dir.path()).unwrap_err();
        assert!(second.to_string().contains("in use by another process"), "{second}");
        let err = wait_until_released(dir.path(), Duration::from_millis(20)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(db);
        wait_until_released(dir.path(), Duration::from_millis(20)).unwrap();
    }
}
