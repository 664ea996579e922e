//! The PostgreSQL engine: the same [`Engine`] as the embedded one, on
//! tables that several ecocode nodes share.
//!
//! Everything PostgreSQL-specific lives in this file and its submodules
//! (`schema.rs`: the migrations; `rows.rs`: a group commit's statement;
//! `documents.rs`: the small named documents beside the ledger).
//! Layout (schema version 7, see `schema::MIGRATIONS`):
//!
//! | table                | rows |
//! |----------------------|------|
//! | `ledger_entries`     | one per entry: seq, recorded_at, chain hash, subject, idempotency key and fingerprint, payload, details, leaf (its entry hash); partial indexes on (subject, seq) and on the idempotency key |
//! | `ledger_nodes`       | the complete Merkle subtrees of tile levels above the leaves (binary levels 8, 16, …): (level, index) → hash; other levels are hashed up from the stored level below |
//! | `ledger_head`        | exactly one row: size, root, chain, last recorded_at |
//! | `ledger_checkpoints` | every signed checkpoint note by tree size |
//! | `documents`          | small named documents beside the ledger (principals) |
//! | `ecocode_schema`     | the version of this schema (the ledger's) the database is at |
//!
//! Beside it, other crates keep their own tables, each created and migrated
//! by the crate itself (`kv::pg::migrate`, versions in `ecocode_components`):
//! `inquiries` (the `inquiries` crate) and `kv_state` (`kv::pg::Table`).
//!
//! **Sequencing.** A group commit is one transaction that first locks the
//! head row (`SELECT … FOR UPDATE`, [`PgStore::begin_locked`]); the writer
//! then takes in what other nodes appended, stages its group on top and
//! writes it in the same transaction ([`PgStore::commit_in`]). So every
//! node extends one chain, each still commits whole groups, and a receipt
//! is answered only after `COMMIT` returned. Each commit sends
//! `NOTIFY ecocode_ledger`, on which the other nodes catch up
//! ([`PgStore::follow_commits`]).
//!
//! **Blocking.** The ledger's engine is synchronous (its writer is a
//! thread). This engine runs tokio-postgres on a runtime of its own and
//! blocks the caller on the answer (through a plain channel), which is
//! what a sled read does too.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use kv::pg::Postgres;
use kv::pg::tokio_postgres::{self, NoTls};

mod documents;
mod rows;
mod schema;

pub use documents::Documents;

use super::engine::{
    CATCH_UP_BATCH, Commit, Committed, Engine, HeadLock, LockedHead, NodeIter, StoredEntry, StoredHead,
};
use super::error::{Error, Result};
use super::hash::Hash;
use super::tree::NodeSource;

/// The channel every commit notifies.
const CHANNEL: &str = "ecocode_ledger";
/// Rows per page when iterating a whole table.
const PAGE: i64 = 4096;
/// Connections per node (the writer holds one for each group commit;
/// reads take one per query).
const POOL_SIZE: usize = 16;
/// How often a follower checks the head when no notification came (a
/// notification is lost while its connection is down).
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// The PostgreSQL engine; see the module documentation.
pub(crate) struct PgStore {
    pg: Postgres,
    /// While verification runs: the head it verifies, so rows other nodes
    /// commit meanwhile are not mistaken for extra entries.
    pinned: Mutex<Option<Option<StoredHead>>>,
}

/// Errors of the database: unreachable is [`Error::Unavailable`] (the call
/// may be retried, the node recovers by itself once the database is back),
/// anything else [`Error::Storage`].
fn db(e: impl Into<kv::pg::Failure>) -> Error {
    let failure = e.into();
    if failure.unreachable {
        Error::Unavailable(format!(
            "PostgreSQL is unreachable ({failure}); calls succeed again once it is back"
        ))
    } else {
        Error::Storage(format!("PostgreSQL: {failure}"))
    }
}

fn hash_of(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

fn seq_of(v: i64) -> u64 {
    v as u64
}

fn entry_of(row: &tokio_postgres::Row) -> (u64, Option<StoredEntry>) {
    let seq = seq_of(row.get(0));
    let chain: &[u8] = row.get(2);
    let key: Option<Vec<u8>> = row.get(4);
    let fingerprint: Option<&[u8]> = row.get(5);
    let idempotency = match (key, fingerprint) {
        (None, None) => Some(None),
        (Some(key), Some(fp)) => hash_of(fp).map(|fp| Some((key, fp))),
        _ => None,
    };
    let entry = match (hash_of(chain), idempotency) {
        (Some(chain_hash), Some(idempotency)) => Some(StoredEntry {
            seq,
            recorded_at_ns: row.get(1),
            chain_hash,
            subject: row.get(3),
            idempotency,
            payload: row.get(6),
            details: row.get(7),
        }),
        _ => None,
    };
    (seq, entry)
}

/// Entries `[from, to)` from `rows` (in seq order, columns as
/// [`entry_of`] reads them), each present and well-formed, none beyond.
fn contiguous(rows: &[tokio_postgres::Row], from: u64, to: u64) -> Result<Vec<StoredEntry>> {
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let (seq, entry) = entry_of(row);
        let expected = from + i as u64;
        if seq != expected || seq >= to {
            return Err(Error::tampered(expected.min(to), "entry is missing from the store"));
        }
        out.push(entry.ok_or_else(|| Error::tampered(seq, "entry record is malformed"))?);
    }
    if (out.len() as u64) < to - from {
        return Err(Error::tampered(from + out.len() as u64, "entry is missing from the store"));
    }
    Ok(out)
}

/// The head row (`size, root, chain, last_recorded_at_ns`); `None` when empty.
fn head_of(row: &tokio_postgres::Row) -> Result<Option<StoredHead>> {
    let size: i64 = row.get(0);
    if size == 0 {
        return Ok(None);
    }
    match (hash_of(row.get(1)), hash_of(row.get(2))) {
        (Some(root), Some(chain)) if size > 0 => {
            Ok(Some(StoredHead { size: size as u64, root, chain, last_recorded_at_ns: row.get(3) }))
        }
        _ => Err(Error::tampered(None, "stored head record is malformed")),
    }
}

impl PgStore {
    /// Connects to `url`, creating or migrating the schema when `migrate`;
    /// otherwise (offline verification) a database without the schema is
    /// an error and nothing is written.
    pub(crate) fn open(url: &str, migrate: bool) -> Result<PgStore> {
        let pg = Postgres::connect(url, POOL_SIZE, "ledger-postgres").map_err(|e| match e {
            kv::pg::ConnectError::Url(what) => Error::InvalidArgument(what),
            kv::pg::ConnectError::Setup(what) => Error::Storage(what),
        })?;
        let store = PgStore { pg, pinned: Mutex::new(None) };
        let pool = store.pg.pool().clone();
        let version = store.run(async move { schema::migrate_schema(&pool, migrate).await })?;
        tracing::info!(store = %kv::pg::redact(url), schema_version = version, "PostgreSQL store open");
        Ok(store)
    }

    /// Runs `f` on the engine's runtime and waits for it; callable from any
    /// thread, a tokio worker included.
    fn run<T: Send + 'static>(&self, f: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        self.pg
            .run(f)
            .unwrap_or_else(|| Err(Error::Storage("a PostgreSQL task ended without an answer".into())))
    }

    fn query(&self, sql: &'static str, params: Vec<Param>) -> Result<Vec<tokio_postgres::Row>> {
        let pool = self.pg.pool().clone();
        self.run(async move {
            let client = pool.get().await.map_err(db)?;
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(Param::as_sql).collect();
            client.query(sql, &refs).await.map_err(db)
        })
    }

    /// The bound of the pinned head (verification), else none.
    fn bound(&self) -> i64 {
        match *crate::lock(&self.pinned) {
            Some(Some(head)) => head.size as i64,
            Some(None) => 0,
            None => i64::MAX,
        }
    }

    /// Entries `[from, to)`, in seq order.
    fn entries_in(&self, from: u64, to: u64) -> Result<Vec<StoredEntry>> {
        let rows = self.query(
            "SELECT seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload, details
             FROM ledger_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
            vec![Param::I64(from as i64), Param::I64(to as i64)],
        )?;
        contiguous(&rows, from, to)
    }

    /// Begins a sequenced commit: a transaction holding the lock on the
    /// head row, the stored head, and the first entries beyond `held` that
    /// other nodes appended (at most [`CATCH_UP_BATCH`]). Until the lock is
    /// committed ([`PgStore::commit_in`]) or dropped (rolled back), no
    /// other node commits. `BEGIN`, the lock and the catch-up read travel
    /// in one round trip: the read runs once the lock is granted, so it
    /// sees exactly what the locked head covers.
    fn begin_locked(&self, held: u64) -> Result<(Locked, Option<StoredHead>, Vec<StoredEntry>)> {
        let pool = self.pg.pool().clone();
        let (client, row, rows) = self.run(async move {
            let client = pool.get().await.map_err(db)?;
            let locked = async {
                let lock = client
                    .prepare_cached("SELECT size, root, chain, last_recorded_at_ns FROM ledger_head FOR UPDATE")
                    .await
                    .map_err(db)?;
                let appended = client
                    .prepare_cached(
                        "SELECT seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload, details
                         FROM ledger_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
                    )
                    .await
                    .map_err(db)?;
                let (from, to) = (held as i64, (held + CATCH_UP_BATCH) as i64);
                let range: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&from, &to];
                let (begun, head, rows) = tokio::join!(
                    client.batch_execute("BEGIN"),
                    client.query_one(&lock, &[]),
                    client.query(&appended, &range),
                );
                begun.map_err(db)?;
                Ok::<_, Error>((head.map_err(db)?, rows.map_err(db)?))
            }
            .await;
            match locked {
                Ok((row, rows)) => Ok((client, row, rows)),
                Err(e) => {
                    // Never hand a connection in an unknown transaction
                    // state back to the pool.
                    drop(kv::pg::Object::take(client));
                    Err(e)
                }
            }
        })?;
        let runtime = self.pg.handle().ok_or(Error::ShuttingDown)?;
        let locked = Locked { client: Some(client), runtime };
        let head = head_of(&row)?;
        let size = head.map_or(0, |h| h.size);
        let appended = contiguous(&rows, held, size.min(held + CATCH_UP_BATCH).max(held))?;
        Ok((locked, head, appended))
    }

    /// Writes `commit` (entries, index rows, nodes, head) in the locked
    /// transaction, notifies the other nodes and commits: one round trip
    /// (the statements are pipelined). Any failure discards the connection.
    fn commit_in(&self, mut head_lock: Locked, commit: &Commit) -> Result<()> {
        let rows = rows::CommitRows::of(commit);
        let client =
            head_lock.client.take().ok_or_else(|| Error::Storage("the head lock was already used".into()))?;
        self.run(async move {
            let head = rows.head.ok_or_else(|| Error::Storage("a commit without a head".into()))?;
            let written = async {
                // Prepared (once per connection) before anything is sent,
                // so the pipelined messages below keep their order: a
                // statement still being prepared would let COMMIT overtake it.
                let write = client.prepare_cached(rows::WRITE_COMMIT).await.map_err(db)?;
                let notify = client.prepare_cached("SELECT pg_notify($1, $2)").await.map_err(db)?;
                let size = head.size.to_string();
                let (head_size, root, chain) = (head.size as i64, &head.root[..], &head.chain[..]);
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = [
                    &rows.seq,
                    &rows.recorded_at,
                    &rows.chain,
                    &rows.subject,
                    &rows.key,
                    &rows.fingerprint,
                    &rows.payload,
                    &rows.details,
                    &rows.leaf,
                    &rows.node_level,
                    &rows.node_index,
                    &rows.node_hash,
                    &head_size,
                    &root,
                    &chain,
                    &head.last_recorded_at_ns,
                ];
                let notice: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&CHANNEL, &size];
                let (written, notified, committed) = tokio::join!(
                    client.execute(&write, &params),
                    client.execute(&notify, &notice),
                    client.batch_execute("COMMIT"),
                );
                // After a failed statement, COMMIT only rolls back: the
                // statements' own errors decide.
                written.map_err(db)?;
                notified.map_err(db)?;
                committed.map_err(db)?;
                Ok::<(), Error>(())
            }
            .await;
            if written.is_err() {
                drop(kv::pg::Object::take(client));
            }
            written
        })
    }

    /// Calls `poke` whenever another node may have moved the head: on every
    /// commit notification, and every [`FOLLOW_POLL`] in case one was
    /// missed. Runs until the store is dropped.
    fn follow_commits(&self, poke: Box<dyn Fn() + Send + Sync>) {
        let config = self.pg.config().clone();
        self.pg.spawn(async move {
            loop {
                match listen(&config, &*poke).await {
                    Ok(()) => {}
                    Err(e) => tracing::warn!(error = %e, "ledger follower lost its PostgreSQL connection; reconnecting"),
                }
                poke();
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        });
    }

    /// Reads the latest signed checkpoint note and when it was signed.
    fn latest_checkpoint(&self) -> Result<Option<(String, i64)>> {
        let rows = self.query(
            "SELECT note, signed_at_ns FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1",
            Vec::new(),
        )?;
        Ok(rows.first().map(|row| (row.get(0), row.get(1))))
    }

    /// Stores a signed checkpoint note; a second note for the same size
    /// (another node signed the same head) keeps the first.
    fn insert_checkpoint(&self, tree_size: u64, note: &str, signed_at_ns: i64) -> Result<()> {
        self.query(
            "INSERT INTO ledger_checkpoints (tree_size, note, signed_at_ns) VALUES ($1, $2, $3)
             ON CONFLICT (tree_size) DO NOTHING",
            vec![Param::I64(tree_size as i64), Param::Text(note.to_string()), Param::I64(signed_at_ns)],
        )?;
        Ok(())
    }

    /// Runs raw SQL, so tests can damage a live store the way an operator
    /// with database access could.
    #[cfg(test)]
    pub(crate) fn execute_raw(&self, sql: &str) -> Result<()> {
        let pool = self.pg.pool().clone();
        let sql = sql.to_string();
        self.run(async move {
            let client = pool.get().await.map_err(db)?;
            client.batch_execute(&sql).await.map_err(db)
        })
    }
}

async fn listen(config: &tokio_postgres::Config, poke: &(dyn Fn() + Send + Sync)) -> Result<()> {
    use futures::StreamExt as _;
    let (client, mut connection) = config.connect(NoTls).await.map_err(db)?;
    let (notes, mut received) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                    if notes.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(db(e)),
            }
        }
        Ok(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(db)?;
    // Whatever was committed before LISTEN took effect.
    poke();
    let mut tick = tokio::time::interval(FOLLOW_POLL);
    loop {
        tokio::select! {
            note = received.recv() => match note {
                Some(()) => poke(),
                None => break,
            },
            _ = tick.tick() => poke(),
        }
    }
    drop(client);
    driver.await.map_err(|e| Error::Storage(format!("PostgreSQL listener: {e}")))?
}

/// An owned query parameter, so a query can move to the engine's runtime.
enum Param {
    I64(i64),
    I16(i16),
    Bytes(Vec<u8>),
    Text(String),
}

impl Param {
    fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Param::I64(v) => v,
            Param::I16(v) => v,
            Param::Bytes(v) => v,
            Param::Text(v) => v,
        }
    }
}

/// Pages through a table in key order, one query per [`PAGE`] rows.
struct Pages<'a, K, T> {
    store: &'a PgStore,
    after: Option<K>,
    buffer: std::vec::IntoIter<T>,
    done: bool,
    #[allow(clippy::type_complexity)]
    fetch: Box<dyn Fn(&PgStore, Option<&K>) -> Result<(Vec<T>, Option<K>)> + 'a>,
}

impl<K, T> Iterator for Pages<'_, K, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(item) = self.buffer.next() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match (self.fetch)(self.store, self.after.as_ref()) {
                Ok((items, last)) => {
                    self.done = (items.len() as i64) < PAGE;
                    self.after = last;
                    self.buffer = items.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn pages<'a, K: 'a, T: 'a>(
    store: &'a PgStore,
    fetch: impl Fn(&PgStore, Option<&K>) -> Result<(Vec<T>, Option<K>)> + 'a,
) -> Box<dyn Iterator<Item = Result<T>> + 'a> {
    Box::new(Pages {
        store,
        after: None,
        buffer: Vec::new().into_iter(),
        done: false,
        fetch: Box::new(fetch),
    })
}

impl NodeSource for PgStore {
    fn node(&self, level: u8, index: u64) -> Result<Hash> {
        self.node_opt(level, index)?.ok_or_else(|| {
            Error::corruption(
                index << level,
                format!("merkle node (level {level}, index {index}) is missing"),
            )
        })
    }
}

impl Engine for PgStore {
    fn entry(&self, seq: u64) -> Result<Option<StoredEntry>> {
        let rows = self.query(
            "SELECT seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload, details
             FROM ledger_entries WHERE seq = $1",
            vec![Param::I64(seq as i64)],
        )?;
        match rows.first() {
            None => Ok(None),
            Some(row) => {
                entry_of(row).1.map(Some).ok_or_else(|| Error::corruption(seq, "entry record is malformed"))
            }
        }
    }

    fn entries(&self) -> Box<dyn Iterator<Item = Result<(u64, Option<StoredEntry>)>> + '_> {
        let bound = self.bound();
        pages(self, move |store, after: Option<&i64>| {
            let rows = store.query(
                "SELECT seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload, details
                 FROM ledger_entries WHERE seq > $1 AND seq < $2 ORDER BY seq LIMIT $3",
                vec![Param::I64(after.copied().unwrap_or(-1)), Param::I64(bound), Param::I64(PAGE)],
            )?;
            let last = rows.last().map(|row| row.get::<_, i64>(0));
            Ok((rows.iter().map(entry_of).collect(), last))
        })
    }

    fn node_opt(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        let below = level % 8;
        let base = level - below;
        let (first, count) = (index << below, 1u64 << below);
        let rows = if base == 0 {
            self.query(
                "SELECT seq, leaf FROM ledger_entries WHERE seq >= $1 AND seq < $2 AND leaf IS NOT NULL ORDER BY seq",
                vec![Param::I64(first as i64), Param::I64((first + count) as i64)],
            )?
        } else {
            self.query(
                "SELECT index, hash FROM ledger_nodes WHERE level = $1 AND index >= $2 AND index < $3 ORDER BY index",
                vec![Param::I16(base as i16), Param::I64(first as i64), Param::I64((first + count) as i64)],
            )?
        };
        if rows.len() as u64 != count {
            return Ok(None);
        }
        let mut hashes = Vec::with_capacity(rows.len());
        for row in &rows {
            hashes.push(hash_of(row.get(1)).ok_or_else(|| {
                Error::corruption(
                    first << base,
                    format!("merkle node (level {base}, index {first}) is malformed"),
                )
            })?);
        }
        while hashes.len() > 1 {
            hashes = hashes.chunks(2).map(|pair| crate::hash::node(&pair[0], &pair[1])).collect();
        }
        Ok(hashes.pop())
    }

    fn stores_level(&self, level: u8) -> bool {
        rows::is_stored_level(level)
    }

    fn indexes_are_derived(&self) -> bool {
        // The subject and idempotency key are columns of the entry's own
        // row: the indexes cannot disagree with the entries.
        true
    }

    fn nodes(&self, level: u8) -> NodeIter<'_> {
        if !rows::is_stored_level(level) {
            return Box::new(std::iter::empty());
        }
        let bound = self.bound();
        if level == 0 {
            return pages(self, move |store, after: Option<&i64>| {
                let rows = store.query(
                    "SELECT seq, leaf FROM ledger_entries
                     WHERE seq > $1 AND seq < $2 AND leaf IS NOT NULL ORDER BY seq LIMIT $3",
                    vec![Param::I64(after.copied().unwrap_or(-1)), Param::I64(bound), Param::I64(PAGE)],
                )?;
                let last = rows.last().map(|row| row.get::<_, i64>(0));
                Ok((rows.iter().map(|row| (seq_of(row.get(0)), hash_of(row.get(1)))).collect(), last))
            });
        }
        pages(self, move |store, after: Option<&i64>| {
            // A node belongs to the pinned tree if all its leaves do.
            let rows = store.query(
                "SELECT index, hash FROM ledger_nodes
                 WHERE level = $1 AND index > $2 AND ((index + 1) << level::integer) <= $3
                 ORDER BY index LIMIT $4",
                vec![
                    Param::I16(level as i16),
                    Param::I64(after.copied().unwrap_or(-1)),
                    Param::I64(bound),
                    Param::I64(PAGE),
                ],
            )?;
            let last = rows.last().map(|row| row.get::<_, i64>(0));
            Ok((rows.iter().map(|row| (seq_of(row.get(0)), hash_of(row.get(1)))).collect(), last))
        })
    }

    fn subject_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, u64)>> + '_> {
        let bound = self.bound();
        pages(self, move |store, after: Option<&(Vec<u8>, i64)>| {
            let (subject, seq) = after.cloned().unwrap_or((Vec::new(), -1));
            let rows = store.query(
                "SELECT subject, seq FROM ledger_entries
                 WHERE subject <> '' AND (subject, seq) > ($1, $2) AND seq < $3 ORDER BY subject, seq LIMIT $4",
                vec![Param::Bytes(subject), Param::I64(seq), Param::I64(bound), Param::I64(PAGE)],
            )?;
            let last = rows.last().map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, i64>(1)));
            Ok((rows.iter().map(|row| (row.get(0), seq_of(row.get(1)))).collect(), last))
        })
    }

    fn idempotency_index(&self) -> Box<dyn Iterator<Item = Result<(Vec<u8>, Option<(u64, Hash)>)>> + '_> {
        let bound = self.bound();
        pages(self, move |store, after: Option<&Vec<u8>>| {
            let rows = match after {
                None => store.query(
                    "SELECT idempotency_key, seq, fingerprint FROM ledger_entries
                     WHERE idempotency_key IS NOT NULL AND seq < $1 ORDER BY idempotency_key LIMIT $2",
                    vec![Param::I64(bound), Param::I64(PAGE)],
                )?,
                Some(key) => store.query(
                    "SELECT idempotency_key, seq, fingerprint FROM ledger_entries
                     WHERE idempotency_key > $1 AND seq < $2 ORDER BY idempotency_key LIMIT $3",
                    vec![Param::Bytes(key.clone()), Param::I64(bound), Param::I64(PAGE)],
                )?,
            };
            let last = rows.last().map(|row| row.get::<_, Vec<u8>>(0));
            let items = rows
                .iter()
                .map(|row| (row.get(0), hash_of(row.get(2)).map(|fp| (seq_of(row.get(1)), fp))))
                .collect();
            Ok((items, last))
        })
    }

    fn head(&self) -> Result<Option<StoredHead>> {
        if let Some(pinned) = *crate::lock(&self.pinned) {
            return Ok(pinned);
        }
        let rows =
            self.query("SELECT size, root, chain, last_recorded_at_ns FROM ledger_head", Vec::new())?;
        head_of(rows.first().ok_or_else(|| Error::tampered(None, "the head row is missing"))?)
    }

    fn subject_seqs(&self, subject: &[u8]) -> Result<Vec<u64>> {
        let rows = self.query(
            "SELECT seq FROM ledger_entries WHERE subject = $1 AND subject <> '' ORDER BY seq",
            vec![Param::Bytes(subject.to_vec())],
        )?;
        Ok(rows.iter().map(|row| seq_of(row.get(0))).collect())
    }

    fn subject_entries(
        &self,
        subject: &[u8],
        below: u64,
    ) -> Result<Vec<(u64, Option<StoredEntry>, Option<Hash>)>> {
        // One round trip for an enterprise's whole file, leaves included.
        let rows = self.query(
            "SELECT seq, recorded_at_ns, chain_hash, subject, idempotency_key, fingerprint, payload,
                    details, true, leaf
             FROM ledger_entries
             WHERE subject = $1 AND subject <> '' AND seq < $2
             ORDER BY seq",
            vec![Param::Bytes(subject.to_vec()), Param::I64(below as i64)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq = seq_of(row.get(0));
            let present: bool = row.get(8);
            let entry = if present {
                Some(entry_of(row).1.ok_or_else(|| Error::corruption(seq, "entry record is malformed"))?)
            } else {
                None
            };
            let leaf = row.get::<_, Option<&[u8]>>(9).map(|h| {
                hash_of(h).ok_or_else(|| Error::corruption(seq, "merkle node (level 0) is malformed"))
            });
            out.push((seq, entry, leaf.transpose()?));
        }
        Ok(out)
    }

    fn has_subject(&self, subject: &[u8], seq: u64) -> Result<bool> {
        let rows = self.query(
            "SELECT 1 FROM ledger_entries WHERE subject = $1 AND subject <> '' AND seq = $2",
            vec![Param::Bytes(subject.to_vec()), Param::I64(seq as i64)],
        )?;
        Ok(!rows.is_empty())
    }

    fn idempotency(&self, key: &[u8]) -> Result<Option<(u64, Hash)>> {
        let rows = self.query(
            "SELECT seq, fingerprint FROM ledger_entries WHERE idempotency_key = $1 ORDER BY seq LIMIT 1",
            vec![Param::Bytes(key.to_vec())],
        )?;
        match rows.first() {
            None => Ok(None),
            Some(row) => hash_of(row.get(1))
                .map(|fp| Some((seq_of(row.get(0)), fp)))
                .ok_or_else(|| Error::Storage("malformed idempotency index record".into())),
        }
    }

    fn commit(&self, commit: &Commit) -> Result<Committed> {
        // A commit staged without the lock (migration): checked under it.
        let (head_lock, head, _) = self.begin_locked(commit.base)?;
        let size = head.map_or(0, |h| h.size);
        if size != commit.base {
            return Ok(Committed::HeadMoved(size));
        }
        self.commit_in(head_lock, commit)?;
        Ok(Committed::Done)
    }

    fn pin(&self) -> Result<()> {
        *crate::lock(&self.pinned) = None;
        let head = self.head()?;
        *crate::lock(&self.pinned) = Some(head);
        Ok(())
    }

    fn unpin(&self) {
        *crate::lock(&self.pinned) = None;
    }

    fn read_checkpoint(&self) -> Result<Option<(String, i64)>> {
        self.latest_checkpoint()
    }

    fn write_checkpoint(&self, tree_size: u64, note: &str, signed_at_ns: i64) -> Result<()> {
        self.insert_checkpoint(tree_size, note, signed_at_ns)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn follow(&self, poke: Box<dyn Fn() + Send + Sync>) {
        self.follow_commits(poke);
    }

    fn entries_between(&self, from: u64, to: u64) -> Result<Vec<StoredEntry>> {
        self.entries_in(from, to)
    }

    fn lock_head(&self, held: u64) -> Result<Option<LockedHead>> {
        let (locked, head, appended) = self.begin_locked(held)?;
        Ok(Some(LockedHead { lock: HeadLock::new(locked), head, appended }))
    }

    fn commit_locked(&self, lock: HeadLock, commit: &Commit) -> Result<()> {
        let locked = lock
            .into_inner::<Locked>()
            .ok_or_else(|| Error::Storage("a head lock of another engine".into()))?;
        self.commit_in(locked, commit)
    }

    #[cfg(test)]
    fn put_raw(&self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Err(Error::Storage("raw sled keys mean nothing to PostgreSQL; use execute_raw".into()))
    }
}

/// An open transaction holding the lock on the head row; see
/// [`PgStore::begin_locked`]. Dropped unused, it is rolled back.
struct Locked {
    client: Option<kv::pg::Object>,
    runtime: tokio::runtime::Handle,
}

impl Drop for Locked {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.runtime.spawn(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(kv::pg::Object::take(client));
                }
            });
        }
    }
}
