//! The log on sled in a local directory (the default).
//!
//! Layout (one sled tree). Each inquiry is stored once, under its primary
//! key; the other indexes hold empty-valued pointers whose key ends with
//! the primary key's suffix:
//! * `a ‖ rev(at) ‖ rev(id)` → the inquiry's JSON: every inquiry, newest
//!   first (the primary key);
//! * `u ‖ USCC ‖ rev(at) ‖ rev(id)` → empty: by enterprise;
//! * `p ‖ len(principal) ‖ principal ‖ rev(at) ‖ rev(id)` → empty: by
//!   inquirer;
//!
//! where `rev(at) = u64::MAX - at_ns` (big-endian) sorts newest first and
//! `id` (sled's persistent id generator, reversed as `u64::MAX - id`)
//! makes keys unique and orders one instant's inquiries newest first too.
//! A pointer's primary key is `a ‖` the pointer's last 16 bytes, so a
//! listing by enterprise or inquirer is one range scan plus one point read
//! per inquiry shown.
//!
//! Logs written before pointers (up to commit 006cd44) hold the whole
//! inquiry under every index key. A listing reads a non-empty value under
//! an index key as the inquiry itself and an empty one as a pointer, so
//! both layouts list, mixed in one tree; nothing is rewritten.
//!
//! Durability is the write-ahead log's (`wal.rs`): `record` only appends
//! to it, and the WAL's indexer thread writes these keys after the
//! acknowledgment; `list` first waits for the indexer to catch up.

use std::path::Path;

use crate::wal::{ID_BYTES, MAX_RECORD, Options, Wal, create_wal, encode_record, replay};
use crate::{Error, Inquiry, MAX_EXAMINED, Page, Query, Result, Scope, io_error};

/// sled's page cache for the log.
const CACHE_BYTES: u64 = 64 << 20;

/// The log on sled in a local directory (the default).
pub(crate) struct LocalLog {
    // Fields drop in order: the WAL's threads (and their tree handles) and
    // the tree go before the database, whose drop then releases the lock.
    pub(crate) wal: Wal,
    tree: sled::Tree,
    db: kv::Db,
}

/// Bytes of `rev(at) ‖ rev(id)` at the end of every key.
const SUFFIX_BYTES: usize = 16;

/// The keys of one inquiry, primary first: a function of `(id, inquiry)`,
/// so replaying a WAL record writes exactly what the indexer wrote.
fn index_keys(id: u64, inquiry: &Inquiry) -> [Vec<u8>; 3] {
    let suffix = suffix(inquiry.at_ns, id);
    [
        key(&[b"a"], &suffix),
        key(&[b"u", inquiry.uscc.as_bytes()], &suffix),
        key(&[&principal_prefix(&inquiry.principal)], &suffix),
    ]
}

/// Writes one acknowledged WAL record (`id` and the inquiry's JSON) into
/// the indexes: the inquiry under its primary key, then the pointers, so a
/// listing that finds a pointer finds its primary. Plain inserts, not a
/// `sled::Batch` (see `wal.rs`); the WAL record is what makes the three
/// keys durable together.
pub(crate) fn index(tree: &sled::Tree, id: u64, value: &[u8]) -> Result<()> {
    // The WAL's checksum matched, so only this crate wrote the value.
    let inquiry: Inquiry = serde_json::from_slice(value)
        .map_err(|e| Error::Corruption { key: format!("WAL record {id}"), what: e.to_string() })?;
    let [primary, by_uscc, by_principal] = index_keys(id, &inquiry);
    tree.insert(primary, value)?;
    tree.insert(by_uscc, b"".as_slice())?;
    tree.insert(by_principal, b"".as_slice())?;
    Ok(())
}

impl LocalLog {
    /// Opens (creating if new) the log in `dir`, first replaying any WAL
    /// files a crash left (see `wal.rs`).
    pub(crate) fn open(dir: &Path) -> Result<LocalLog> {
        LocalLog::open_with(dir, Options::default())
    }

    pub(crate) fn open_with(dir: &Path, options: Options) -> Result<LocalLog> {
        // sled's lock on `dir` also keeps two processes from replaying.
        // Listings read recent pages; a small cache is enough.
        let db = kv::open(sled::Config::new().cache_capacity(CACHE_BYTES), dir)?;
        let tree = db.open_tree("inquiries")?;
        let (replayed, last) = replay(dir, &tree)?;
        if !replayed.is_empty() {
            tree.flush()?;
            for path in &replayed {
                std::fs::remove_file(path).map_err(|e| io_error("deleting a replayed inquiry WAL", e))?;
            }
        }
        // A fresh generation: a replayed file is never appended to, so a
        // torn tail is never followed by acknowledged records.
        let current = create_wal(dir, last + 1).map_err(|e| io_error("creating the inquiry WAL", e))?;
        let wal = Wal::start(dir, current, tree.clone(), options)
            .map_err(|e| Error::Storage(format!("inquiry log threads: {e}")))?;
        Ok(LocalLog { wal, tree, db })
    }

    /// Records `inquiries` durably: when this returns `Ok`, they survive a
    /// crash. They are only appended to the WAL, where concurrent callers
    /// share one `fdatasync` (group commit); the indexer puts them into
    /// sled after the acknowledgment (see `wal.rs`).
    pub(crate) async fn record(&self, inquiries: &[Inquiry]) -> Result<()> {
        if inquiries.is_empty() {
            return Ok(());
        }
        // Fail-stop: no ids are spent once the WAL or the indexer failed.
        self.wal.check()?;
        let mut records = Vec::new();
        for inquiry in inquiries {
            // Unique across crashes (sled persists the generator ahead of
            // what it hands out), so replayed keys never collide with new
            // ones.
            let id = self.db.generate_id()?;
            let value = serde_json::to_vec(inquiry).map_err(|e| Error::Corruption {
                key: String::new(),
                what: format!("cannot encode an inquiry: {e}"),
            })?;
            if value.len() + ID_BYTES > MAX_RECORD {
                return Err(Error::Storage(format!(
                    "an inquiry of {} bytes exceeds the WAL's record limit",
                    value.len()
                )));
            }
            encode_record(&mut records, id, &value);
        }
        self.wal.append(records).await
    }

    /// How many `fdatasync`s of the WAL this log has done: the benchmark
    /// divides records by it for the group size. Not part of the API.
    pub(crate) fn wal_syncs(&self) -> u64 {
        self.wal.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A page of `query`, once every inquiry acknowledged before the call
    /// is indexed (read-your-writes; bounded, see `Wal::wait_indexed`).
    pub(crate) fn list(&self, query: &Query) -> Result<Page> {
        self.wal.wait_indexed()?;
        let (prefix, uscc_filter, region_filter): (Vec<u8>, Option<&str>, Option<&str>) = match &query.scope {
            Scope::Enterprise(uscc) => (key(&[b"u", uscc.as_bytes()], &[]), None, None),
            Scope::Inquirer { principal, uscc } => (principal_prefix(principal), uscc.as_deref(), None),
            Scope::Region(prefix) => (b"a".to_vec(), None, Some(prefix.as_str())),
            Scope::All => (b"a".to_vec(), None, None),
        };
        // Newest first: `to` bounds where the scan starts.
        let mut start = prefix.clone();
        if let Some(to) = query.to_ns {
            // Strictly before `to`: skip every key of instants >= to.
            start.extend_from_slice(&rev(to.saturating_sub(1)).to_be_bytes());
        }
        if let Some(after) = &query.after {
            if !after.starts_with(&prefix) {
                return Err(Error::BadCursor);
            }
            if *after >= start {
                start = after.clone();
                start.push(0); // strictly after the cursor
            }
        }
        let mut page = Page::default();
        let mut examined = 0;
        for item in self
            .tree
            .range(start..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
        {
            let (k, v) = item?;
            let v = if v.is_empty() { self.primary(&k)? } else { v };
            let inquiry: Inquiry = serde_json::from_slice(&v)
                .map_err(|e| Error::Corruption { key: format!("{k:?}"), what: e.to_string() })?;
            if query.from_ns.is_some_and(|from| inquiry.at_ns < from) {
                return Ok(page); // older ones follow: the listing is complete
            }
            examined += 1;
            let wanted = uscc_filter.is_none_or(|u| inquiry.uscc == u)
                && region_filter.is_none_or(|r| inquiry.region_code.starts_with(r));
            if wanted {
                page.inquiries.push(inquiry);
            }
            if page.inquiries.len() == query.page_size || examined == MAX_EXAMINED {
                // There may be more: continue after this key.
                page.next = Some(k.to_vec());
                return Ok(page);
            }
        }
        Ok(page)
    }

    /// The inquiry a pointer (an empty-valued index key) points to.
    fn primary(&self, pointer: &[u8]) -> Result<sled::IVec> {
        let missing = |what: &str| Error::Corruption { key: format!("{pointer:?}"), what: what.into() };
        let suffix_at = pointer.len().checked_sub(SUFFIX_BYTES).ok_or_else(|| missing("a key too short"))?;
        self.tree
            .get(key(&[b"a"], &pointer[suffix_at..]))?
            .ok_or_else(|| missing("an index pointer without its inquiry"))
    }
}

pub(crate) fn rev(at_ns: i64) -> u64 {
    u64::MAX - u64::try_from(at_ns).unwrap_or(0)
}

/// Newest first: by time, then (for one instant) by the order recorded.
fn suffix(at_ns: i64, id: u64) -> Vec<u8> {
    [rev(at_ns).to_be_bytes(), (u64::MAX - id).to_be_bytes()].concat()
}

fn key(parts: &[&[u8]], suffix: &[u8]) -> Vec<u8> {
    let mut out = parts.concat();
    out.extend_from_slice(suffix);
    out
}

fn principal_prefix(principal: &str) -> Vec<u8> {
    // Names are at most 64 bytes (principals.rs); the length keeps one name
    // from being a prefix of another's keys.
    let len = u8::try_from(principal.len()).unwrap_or(u8::MAX);
    [b"p".as_slice(), &[len], principal.as_bytes()].concat()
}
