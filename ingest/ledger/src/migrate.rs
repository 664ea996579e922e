//! Moving a ledger between engines, proved equal: `ecocode migrate` (a
//! stopped server's embedded ledger into an empty PostgreSQL database) and
//! the one-time move of an older release's sled store into the file
//! engine. The one place that names several engines: it reads one and
//! writes the other through the [`Engine`] trait.

use std::path::Path;

use super::engine::{Commit, Committed, Engine, StoredHead};
use super::error::{Error, Result};
use super::files;
use super::hash::{self, Hash};
use super::log_store::{LOG_DIR, LogStore};
use super::pg::PgStore;
use super::store::SledStore;
use super::tree::Frontier;
use super::verify::{VerifyReport, open_offline, parse_anchor, verify, verify_store};

/// Entries per transaction while migrating.
const MIGRATE_BATCH: usize = 4096;

/// Copies the sled ledger in `dir` (the server stopped) into the empty
/// PostgreSQL database at `url`: verifies the source, writes every entry,
/// index and tree node and the last signed checkpoint, then verifies the
/// copy and checks that its root and chain hash equal the source's.
/// `progress(phase, done, total)` reports `"verify"`, `"copy"` and
/// `"check"`.
pub fn migrate_to_postgres(
    dir: &Path,
    url: &str,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<VerifyReport> {
    let source = verify(dir, &mut |done, total| progress("verify", done, total))?;
    let checkpoint = files::read_checkpoint(dir)?;
    let (from, _copy) = open_offline(dir)?;
    let to = PgStore::open(url, true)?;
    if let Some(head) = to.head()? {
        return Err(Error::InvalidArgument(format!(
            "the database already holds a ledger of {} entries; migrate into an empty database",
            head.size
        )));
    }
    copy_entries(&*from, &to, source.entries, progress)?;
    if let Some((note, written_ns)) = checkpoint
        && let Some((anchor, ..)) = parse_anchor(Some((note.clone(), written_ns)), None)?
    {
        to.write_checkpoint(anchor.size, &note, written_ns)?;
    }
    let anchor = parse_anchor(to.read_checkpoint()?, None)?;
    let copied = verify_store(
        &to,
        anchor.as_ref().map(|a| a.0),
        &mut |done, total| progress("check", done, total),
        &mut |_| {},
    )?;
    let report = VerifyReport::of(&copied, anchor.map(|a| a.0), false);
    if report.entries != source.entries || report.root != source.root || report.chain != source.chain {
        return Err(Error::Storage(format!(
            "the copy differs from the source: {} entries, root {}, chain {} against {} entries, root {}, chain {}",
            report.entries,
            hash::to_hex(&report.root),
            hash::to_hex(&report.chain),
            source.entries,
            hash::to_hex(&source.root),
            hash::to_hex(&source.chain)
        )));
    }
    Ok(report)
}

/// Copies entries `[0, total)` of `from` into the empty `to` in
/// transactions of [`MIGRATE_BATCH`] entries, with their tree nodes and
/// heads; `progress("copy", done, total)`.
pub(crate) fn copy_entries(
    from: &dyn Engine,
    to: &dyn Engine,
    total: u64,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    let mut frontier = Frontier::default();
    let mut commit = Commit::default();
    let mut last_recorded_at_ns = 0;
    let mut chain = hash::ZERO;
    progress("copy", 0, total);
    let flush = |commit: &mut Commit, frontier: &Frontier, chain: Hash, last: i64| -> Result<()> {
        if commit.entries.is_empty() {
            return Ok(());
        }
        commit.head = Some(StoredHead {
            size: frontier.size(),
            root: frontier.root(),
            chain,
            last_recorded_at_ns: last,
        });
        match to.commit(commit)? {
            Committed::Done => {}
            Committed::HeadMoved(size) => {
                return Err(Error::InvalidArgument(format!(
                    "another process appended to the target during the migration (its head moved to {size})"
                )));
            }
        }
        *commit = Commit { base: frontier.size(), ..Default::default() };
        Ok(())
    };
    for item in from.entries() {
        let (seq, entry) = item?;
        if seq >= total {
            break;
        }
        let entry = entry.ok_or_else(|| Error::tampered(seq, "entry record is malformed"))?;
        let leaf = hash::entry_hash(seq, entry.recorded_at_ns, &entry.payload);
        chain = entry.chain_hash;
        last_recorded_at_ns = entry.recorded_at_ns;
        let nodes = &mut commit.nodes;
        frontier.push(leaf, |level, index, hash| nodes.push((level, index, hash)));
        commit.entries.push(entry);
        if commit.entries.len() == MIGRATE_BATCH {
            flush(&mut commit, &frontier, chain, last_recorded_at_ns)?;
            progress("copy", frontier.size(), total);
        }
    }
    flush(&mut commit, &frontier, chain, last_recorded_at_ns)?;
    progress("copy", frontier.size(), total);
    Ok(())
}

/// Where a migrated sled store is kept (the operator removes it).
pub(crate) const SLED_KEPT: &str = "ledger.before-log";

/// Moves the sled store of a release before the file engine into `log/`:
/// verifies it whole, copies every entry into a new file store beside it,
/// verifies the copy against the same checkpoint and checks that its size,
/// root and chain equal the source's, then renames: `log.migrating/` to
/// `log/`, and `ledger/` to [`SLED_KEPT`]. An interrupted migration leaves
/// `ledger/` as it was and starts over. `progress(phase, done, total)`.
pub(crate) fn sled_to_log(
    dir: &Path,
    cache_bytes: u64,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    tracing::info!(dir = %dir.display(), "migrating the sled ledger into the file engine");
    let source = verify(dir, &mut |done, total| progress("verify", done, total))?;
    let from = SledStore::open(&dir.join(files::STORE_DIR), cache_bytes)?;
    let staging = dir.join("log.migrating");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    let checkpoint = files::read_checkpoint(dir)?;
    {
        let to = LogStore::open(&staging, true)?;
        copy_entries(&from, &to, source.entries, progress)?;
        if let Some((note, _)) = &checkpoint {
            // The copy's tiles are synced as a checkpoint's must be.
            to.write_checkpoint(source.entries, note, 0)?;
        }
    }
    drop(from);
    let (to, _) = open_offline(&staging)?;
    let anchor = parse_anchor(files::read_checkpoint(&staging)?, None)?;
    let copied =
        verify_store(&*to, anchor.as_ref().map(|a| a.0), &mut |d, t| progress("check", d, t), &mut |_| {})?;
    drop(to);
    if copied.frontier.size() != source.entries
        || copied.frontier.root() != source.root
        || copied.chain != source.chain
    {
        return Err(Error::Storage(format!(
            "the migrated copy in {} differs from the sled store; the sled store is unchanged",
            staging.display()
        )));
    }
    std::fs::rename(staging.join(LOG_DIR), dir.join(LOG_DIR))?;
    std::fs::rename(dir.join(files::STORE_DIR), dir.join(SLED_KEPT))?;
    std::fs::remove_dir_all(&staging)?;
    files::sync_dir(dir)?;
    tracing::info!(
        entries = source.entries,
        kept = %dir.join(SLED_KEPT).display(),
        "migrated the ledger into the file engine; the old sled store is kept and may be removed"
    );
    Ok(())
}
