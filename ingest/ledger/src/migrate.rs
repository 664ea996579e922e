//! `ecocode migrate`: a stopped server's sled ledger copied into an empty
//! PostgreSQL database, proved equal. The one place that names both
//! engines: it reads one and writes the other through the [`Engine`]
//! trait.

use std::path::Path;

use super::engine::{Commit, Committed, Engine, StoredHead};
use super::error::{Error, Result};
use super::files;
use super::hash::{self, Hash};
use super::pg::PgStore;
use super::store::SledStore;
use super::tree::Frontier;
use super::verify::{VerifyReport, copy_dir, parse_anchor, verify, verify_store};

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
    let copy = tempfile::tempdir()?;
    copy_dir(&dir.join(files::STORE_DIR), copy.path())?;
    let from = SledStore::open(copy.path(), crate::DEFAULT_CACHE_BYTES)?;
    let to = PgStore::open(url, true)?;
    if let Some(head) = to.head()? {
        return Err(Error::InvalidArgument(format!(
            "the database already holds a ledger of {} entries; migrate into an empty database",
            head.size
        )));
    }
    let mut frontier = Frontier::default();
    let mut commit = Commit::default();
    let mut last_recorded_at_ns = 0;
    let mut chain = hash::ZERO;
    progress("copy", 0, source.entries);
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
                    "another process appended to the database during the migration (its head moved to {size})"
                )));
            }
        }
        *commit = Commit { base: frontier.size(), ..Default::default() };
        Ok(())
    };
    for item in from.entries() {
        let (seq, entry) = item?;
        if seq >= source.entries {
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
            progress("copy", frontier.size(), source.entries);
        }
    }
    flush(&mut commit, &frontier, chain, last_recorded_at_ns)?;
    progress("copy", frontier.size(), source.entries);
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
