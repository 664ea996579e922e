//! The one writer's lock on a store.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

const LOCK: &str = "LOCK";

/// The one writer's hold on a store: a POSIX record lock on `log/LOCK`
/// against other processes (unlike `flock`, a child forked meanwhile does
/// not share it, so a store closed here can be reopened at once even while
/// the process spawns others), and this process's own list of the
/// directories it writes, since record locks do not exclude the process
/// holding them.
pub(super) struct WriterLock {
    file: File,
    dir: PathBuf,
}

static WRITERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

impl WriterLock {
    pub(super) fn take(dir: &Path) -> Result<WriterLock> {
        let in_use = || {
            Error::Storage(format!(
                "{} is in use by another ledger; stop the server using this data directory first",
                dir.display()
            ))
        };
        let dir = dir.canonicalize()?;
        let mut writers = WRITERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if writers.contains(&dir) {
            return Err(in_use());
        }
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(LOCK))?;
        match rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => return Err(in_use()),
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
        writers.push(dir.clone());
        Ok(WriterLock { file, dir })
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::NonBlockingUnlock);
        WRITERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|d| *d != self.dir);
    }
}
