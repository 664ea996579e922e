//! The inquiry log: every score read by a lender or a regulator, recorded
//! durably before the answer is sent, so an enterprise can see who looked
//! at its code and why (as credit bureaus tell a subject who queried its
//! file).
//!
//! The log lives beside the ledger (`DATA/inquiries`, its own sled database
//! opened through `kv`) and is not part of the hash chain: it records
//! reads, not facts about enterprises. Who may list which inquiries is the
//! service's decision; this crate answers a [`Scope`].
//!
//! Layout (one sled tree; every index holds the whole inquiry, so a page is
//! one range scan):
//! * `a ‖ rev(at) ‖ id`: every inquiry, newest first;
//! * `u ‖ USCC ‖ rev(at) ‖ id`: by enterprise;
//! * `p ‖ len(principal) ‖ principal ‖ rev(at) ‖ id`: by inquirer;
//!
//! where `rev(at) = u64::MAX - at_ns` (big-endian) sorts newest first and
//! `id` (sled's persistent id generator, also reversed) makes keys unique
//! and orders one instant's inquiries newest first too.

#![forbid(unsafe_code)]

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One read of one enterprise's score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inquiry {
    pub uscc: String,
    /// The enterprise's region when it was read, so a regulator's listing
    /// filters without a second lookup.
    pub region_code: String,
    pub principal: String,
    pub role: String,
    /// The short gRPC method name, e.g. `GetScore`.
    pub method: String,
    /// The caller's `x-ecocode-purpose`, e.g. a loan application number.
    pub purpose: String,
    /// Unix nanoseconds.
    pub at_ns: i64,
}

/// Which inquiries a listing may show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every inquiry on one enterprise.
    Enterprise(String),
    /// One inquirer's own inquiries, optionally on one enterprise only.
    Inquirer { principal: String, uscc: Option<String> },
    /// Inquiries on enterprises whose region starts with the prefix.
    Region(String),
    /// Everything.
    All,
}

/// A listing request.
#[derive(Clone, Debug)]
pub struct Query {
    pub scope: Scope,
    /// Only inquiries at or after this instant (unix ns).
    pub from_ns: Option<i64>,
    /// Only inquiries before this instant (unix ns).
    pub to_ns: Option<i64>,
    pub page_size: usize,
    /// Continue after this cursor, from a previous [`Page::next`].
    pub after: Option<Vec<u8>>,
}

/// One page, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub inquiries: Vec<Inquiry>,
    /// Where the next page starts; `None` at the end.
    pub next: Option<Vec<u8>>,
}

/// Most entries one listing examines, so a sparse filter (a region among
/// many) costs a bounded amount per call; the caller continues with
/// [`Page::next`].
pub const MAX_EXAMINED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage engine failed; the message is the engine's.
    #[error("inquiry log storage: {0}")]
    Storage(String),
    /// A stored inquiry does not decode: only this crate writes the log.
    #[error("inquiry log corrupt at key {key}: {what}")]
    Corruption { key: String, what: String },
    /// A cursor that this log did not hand out for this scope.
    #[error("page_token: not a token returned by ListInquiries for this query")]
    BadCursor,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::Storage(e.to_string())
    }
}

pub struct InquiryLog {
    // Fields drop in order: the flusher thread (and its tree handle) and the
    // tree go before the database, whose drop then releases the lock.
    flusher: Flusher,
    tree: sled::Tree,
    db: kv::Db,
}

/// Group commit for the log: callers write their batch, then wait until one
/// flush that began after their write has finished. One thread flushes, so
/// concurrent readers share fsyncs (and sled's own small thread pool is
/// never filled with flushes waiting on each other).
struct Flusher {
    shared: std::sync::Arc<FlushShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct FlushShared {
    /// Writes asking for a flush, counted.
    requested: std::sync::Mutex<u64>,
    wake: std::sync::Condvar,
    /// The last request a finished flush covers, and that flush's error.
    done: tokio::sync::watch::Sender<(u64, Option<String>)>,
    stop: std::sync::atomic::AtomicBool,
}

impl Flusher {
    fn start(tree: sled::Tree) -> std::io::Result<Flusher> {
        let shared = std::sync::Arc::new(FlushShared {
            requested: std::sync::Mutex::new(0),
            wake: std::sync::Condvar::new(),
            done: tokio::sync::watch::Sender::new((0, None)),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new().name("inquiry-flush".into()).spawn(move || {
            let mut flushed = 0;
            loop {
                let target = {
                    let mut requested = worker.requested.lock().unwrap_or_else(|p| p.into_inner());
                    while *requested == flushed && !worker.stop.load(std::sync::atomic::Ordering::Relaxed) {
                        requested = worker.wake.wait(requested).unwrap_or_else(|p| p.into_inner());
                    }
                    if *requested == flushed {
                        return; // stopping, nothing left to flush
                    }
                    *requested
                };
                let error = tree.flush().err().map(|e| e.to_string());
                flushed = target;
                worker.done.send_replace((target, error));
            }
        })?;
        Ok(Flusher { shared, thread: Some(thread) })
    }

    /// Waits until a flush that began after this call has finished.
    async fn flush(&self) -> Result<()> {
        let ticket = {
            let mut requested = self.shared.requested.lock().unwrap_or_else(|p| p.into_inner());
            *requested += 1;
            *requested
        };
        self.shared.wake.notify_one();
        let mut done = self.shared.done.subscribe();
        let (_, error) = done
            .wait_for(|(covered, _)| *covered >= ticket)
            .await
            .map_err(|_| Error::Storage("the inquiry log's flusher stopped".into()))?
            .clone();
        match error {
            None => Ok(()),
            Some(e) => Err(Error::Storage(e)),
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for InquiryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InquiryLog").finish_non_exhaustive()
    }
}

impl InquiryLog {
    /// Opens (creating if new) the log in `dir`.
    pub fn open(dir: &Path) -> Result<InquiryLog> {
        let db = kv::open(sled::Config::new(), dir)?;
        let tree = db.open_tree("inquiries")?;
        let flusher =
            Flusher::start(tree.clone()).map_err(|e| Error::Storage(format!("flusher thread: {e}")))?;
        Ok(InquiryLog { flusher, tree, db })
    }

    /// Records `inquiries` durably: when this returns `Ok`, they survive a
    /// crash. Concurrent callers share flushes (group commit).
    pub async fn record(&self, inquiries: &[Inquiry]) -> Result<()> {
        if inquiries.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for inquiry in inquiries {
            let id = self.db.generate_id()?;
            let value = serde_json::to_vec(inquiry).map_err(|e| Error::Corruption {
                key: String::new(),
                what: format!("cannot encode an inquiry: {e}"),
            })?;
            let suffix = suffix(inquiry.at_ns, id);
            batch.insert(key(&[b"a"], &suffix), value.as_slice());
            batch.insert(key(&[b"u", inquiry.uscc.as_bytes()], &suffix), value.as_slice());
            batch.insert(key(&[&principal_prefix(&inquiry.principal)], &suffix), value.as_slice());
        }
        self.tree.apply_batch(batch)?;
        self.flusher.flush().await
    }

    /// A page of the inquiries `query` asks for, newest first.
    pub fn list(&self, query: &Query) -> Result<Page> {
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
}

fn rev(at_ns: i64) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inquiry(uscc: &str, region: &str, principal: &str, at_ns: i64) -> Inquiry {
        Inquiry {
            uscc: uscc.into(),
            region_code: region.into(),
            principal: principal.into(),
            role: "lender".into(),
            method: "GetScore".into(),
            purpose: format!("loan {at_ns}"),
            at_ns,
        }
    }

    fn query(scope: Scope, page_size: usize) -> Query {
        Query { scope, from_ns: None, to_ns: None, page_size, after: None }
    }

    fn ats(page: &Page) -> Vec<i64> {
        page.inquiries.iter().map(|i| i.at_ns).collect()
    }

    #[tokio::test]
    async fn listings_are_newest_first_per_scope_and_page_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = InquiryLog::open(dir.path()).unwrap();
        log.record(&[inquiry("A", "330206", "bank-a", 10), inquiry("B", "110105", "bank-a", 20)])
            .await
            .unwrap();
        log.record(&[inquiry("A", "330206", "bank-b", 30), inquiry("A", "330206", "bank-ab", 40)])
            .await
            .unwrap();

        assert_eq!(ats(&log.list(&query(Scope::All, 10)).unwrap()), vec![40, 30, 20, 10]);
        assert_eq!(ats(&log.list(&query(Scope::Enterprise("A".into()), 10)).unwrap()), vec![40, 30, 10]);
        let own = Scope::Inquirer { principal: "bank-a".into(), uscc: None };
        assert_eq!(ats(&log.list(&query(own.clone(), 10)).unwrap()), vec![20, 10], "bank-ab is not bank-a");
        let own_on_a = Scope::Inquirer { principal: "bank-a".into(), uscc: Some("A".into()) };
        assert_eq!(ats(&log.list(&query(own_on_a, 10)).unwrap()), vec![10]);
        assert_eq!(ats(&log.list(&query(Scope::Region("3302".into()), 10)).unwrap()), vec![40, 30, 10]);

        // Pages of one, following the cursor, see everything once.
        let mut seen = Vec::new();
        let mut q = query(Scope::All, 1);
        loop {
            let page = log.list(&q).unwrap();
            seen.extend(ats(&page));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, vec![40, 30, 20, 10]);

        // A time window, and a cursor from another scope is refused.
        let window = Query { from_ns: Some(15), to_ns: Some(40), ..query(Scope::All, 10) };
        assert_eq!(ats(&log.list(&window).unwrap()), vec![30, 20]);
        let first = log.list(&query(Scope::All, 1)).unwrap().next.unwrap();
        let foreign = Query { after: Some(first), ..query(own, 10) };
        assert!(matches!(log.list(&foreign), Err(Error::BadCursor)));
    }

    // Regression: 32 concurrent reads, each awaiting sled's `flush_async`,
    // filled sled's thread pool with flushes waiting on each other and hung.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_concurrent_records_share_flushes_and_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(InquiryLog::open(dir.path()).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..256 {
            let log = log.clone();
            tasks.spawn(async move { log.record(&[inquiry("A", "330206", "bank-a", i)]).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(log.list(&query(Scope::All, 1_000)).unwrap().inquiries.len(), 256);
    }

    #[tokio::test]
    async fn inquiries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = InquiryLog::open(dir.path()).unwrap();
        log.record(&[inquiry("A", "330206", "bank-a", 10)]).await.unwrap();
        drop(log);
        let log = InquiryLog::open(dir.path()).unwrap();
        log.record(&[inquiry("A", "330206", "bank-a", 20)]).await.unwrap();
        assert_eq!(ats(&log.list(&query(Scope::All, 10)).unwrap()), vec![20, 10]);
    }
}
