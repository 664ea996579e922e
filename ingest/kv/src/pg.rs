//! The one way ecocode connects to PostgreSQL: a pool of tokio-postgres
//! connections on a small runtime of its own, usable from synchronous code
//! (the ledger's writer thread) and from async code alike.
//!
//! The stores built on it (the ledger, the inquiry log) are synchronous or
//! run their own threads; [`Postgres::run`] runs a future on this runtime
//! and blocks the caller on the answer through a plain channel. (Polling a
//! tokio `JoinHandle` with another executor from inside a tokio task spins
//! once that task's cooperative budget is spent; a channel does not.)

use std::future::Future;
use std::str::FromStr as _;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::NoTls;

pub use deadpool_postgres::{Object, Pool, PoolError};
pub use tokio_postgres;

/// How long a call waits for a connection before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of connections to one database, with the runtime that drives
/// them. Dropping it closes the connections (from any thread).
pub struct Postgres {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Why [`Postgres::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The URL does not parse.
    Url(String),
    /// The runtime or the pool could not be built.
    Setup(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Url(what) | ConnectError::Setup(what) => f.write_str(what),
        }
    }
}

impl Postgres {
    /// A pool of at most `size` connections to `url` (connections are made
    /// when first needed), named `ecocode` in `pg_stat_activity`.
    pub fn connect(url: &str, size: usize, thread_name: &str) -> Result<Postgres, ConnectError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| ConnectError::Url(format!("store URL {}: {e}", redact(url))))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("ecocode");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map_err(|e| ConnectError::Setup(format!("PostgreSQL runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = {
            let _entered = runtime.enter();
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(CONNECT_TIMEOUT))
                .create_timeout(Some(CONNECT_TIMEOUT))
                .build()
                .map_err(|e| ConnectError::Setup(format!("PostgreSQL pool: {e}")))?
        };
        Ok(Postgres { runtime: Some(runtime), pool, config })
    }

    /// Runs `f` on this runtime and waits for its output; `None` if the
    /// task could not answer (it panicked). Callable from any thread but
    /// this runtime's own.
    pub fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let runtime = self.runtime.as_ref()?;
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = answer.send(f.await);
        });
        answered.recv().ok()
    }

    /// Starts `f` on this runtime without waiting for it; it ends when the
    /// pool is dropped, if not before.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(f);
        }
    }

    /// The runtime, for work that must outlive a call (a rollback on drop).
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// The pool (cheap to clone into a future).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection settings, for a connection outside the pool (LISTEN).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Allowed anywhere, a tokio worker included.
            runtime.shutdown_background();
        }
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One key space of the shared `kv_state` table (created by the ledger's
/// migrations): what a component kept in its own sled database, for a
/// component whose state every node must share (the HJ 212 gateway's open
/// days). Keys order bytewise, as in sled; every write is one committed
/// transaction, so a returned write is durable.
#[derive(Debug)]
pub struct Table {
    pg: Postgres,
    space: String,
}

/// A claim from [`Table::try_claim`]; dropping it releases it.
pub struct Claim {
    client: Option<Object>,
    key: i64,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let key = self.key;
            self.runtime.spawn(async move {
                // A connection that cannot say so is closed, which releases it too.
                if client.execute("SELECT pg_advisory_unlock($1)", &[&key]).await.is_err() {
                    drop(Object::take(client));
                }
            });
        }
    }
}

/// The advisory lock key of `name` in `space` (FNV-1a, 64 bits).
fn lock_key(space: &str, name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in space.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// A failed database call: PostgreSQL's (or the pool's) message, and
/// whether the database could not be reached (worth retrying: the pool
/// reconnects by itself) rather than refusing the statement. Each store
/// turns it into its own error type.
#[derive(Debug)]
pub struct Failure {
    pub unreachable: bool,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        Failure { unreachable: is_unreachable(&e), what: e.to_string() }
    }
}

impl From<PoolError> for Failure {
    fn from(e: PoolError) -> Failure {
        match e {
            PoolError::Backend(e) => e.into(),
            other => Failure { unreachable: true, what: format!("no connection: {other}") },
        }
    }
}

/// Applies a component's own schema migrations (one SQL text per version)
/// in one transaction, recording its version in `ecocode_components`, so
/// each crate creates and evolves its own tables. Every component migrates
/// under one advisory lock: nodes starting together, and components
/// creating the version table, take turns. A database at a newer version
/// of the component than `migrations` is refused: a newer binary migrated
/// it. Answers the version the database is now at.
pub async fn migrate(pool: &Pool, component: &str, migrations: &[&str]) -> Result<usize, Failure> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7262612);
         CREATE TABLE IF NOT EXISTS ecocode_components (component text PRIMARY KEY, version integer NOT NULL)",
    )
    .await?;
    let version = tx
        .query_opt("SELECT version FROM ecocode_components WHERE component = $1", &[&component])
        .await?
        .map_or(0, |row| row.get::<_, i32>(0)) as usize;
    if version > migrations.len() {
        return Err(Failure {
            unreachable: false,
            what: format!(
                "the {component} tables are at schema version {version}, newer than this ecocode's {}; run a newer ecocode",
                migrations.len()
            ),
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        tx.batch_execute(sql).await?;
        tracing::info!(component, version = i + 1, "PostgreSQL schema migrated");
    }
    let now = migrations.len() as i32;
    tx.execute(
        "INSERT INTO ecocode_components (component, version) VALUES ($1, $2)
         ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        &[&component, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(migrations.len())
}

/// The `kv_state` table's own migrations ([`migrate`], component
/// `kv_state`). Databases whose ledger created it (ledger schema 4, before
/// each crate owned its tables) already have it: hence `IF NOT EXISTS`.
const MIGRATIONS: &[&str] = &[
    // 1: key spaces of state every node shares (the HJ 212 gateway's open
    // days, its device credentials).
    "CREATE TABLE IF NOT EXISTS kv_state (
        space text  NOT NULL,
        key   bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (space, key)
    );",
];

impl Table {
    /// The key space `space` of the `kv_state` table at `url`, creating
    /// or migrating the table first.
    pub fn open(url: &str, space: &str) -> Result<Table, Failure> {
        let pg = Postgres::connect(url, 4, "state-postgres")
            .map_err(|e| Failure { unreachable: false, what: e.to_string() })?;
        let table = Table { pg, space: space.to_string() };
        let pool = table.pg.pool().clone();
        table.call(async move { migrate(&pool, "kv_state", MIGRATIONS).await })?;
        Ok(table)
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, Failure>> + Send + 'static,
    ) -> Result<T, Failure> {
        self.pg
            .run(f)
            .unwrap_or_else(|| Err(Failure { unreachable: false, what: "a PostgreSQL task ended".into() }))
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Failure> {
        let (pool, space, key) = (self.pg.pool().clone(), self.space.clone(), key.to_vec());
        self.call(async move {
            let client = pool.get().await.map_err(Failure::from)?;
            let row = client
                .query_opt("SELECT value FROM kv_state WHERE space = $1 AND key = $2", &[&space, &key])
                .await
                .map_err(Failure::from)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, Failure> {
        let (pool, space, prefix) = (self.pg.pool().clone(), self.space.clone(), prefix.to_vec());
        self.call(async move {
            let client = pool.get().await.map_err(Failure::from)?;
            let rows = client
                .query(
                    "SELECT key, value FROM kv_state
                     WHERE space = $1 AND key >= $2 AND substring(key from 1 for length($2)) = $2
                     ORDER BY key",
                    &[&space, &prefix],
                )
                .await
                .map_err(Failure::from)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Claims `name` in this key space for this process alone, across every
    /// node on the database, until the claim is dropped; `None` if another
    /// process holds it now. (A session advisory lock on a connection the
    /// claim keeps; a process that dies releases it with its connection.)
    pub fn try_claim(&self, name: &str) -> Result<Option<Claim>, Failure> {
        self.lock(name, "SELECT pg_try_advisory_lock($1)")
    }

    /// [`Table::try_claim`], waiting while another process holds `name`.
    pub fn claim(&self, name: &str) -> Result<Claim, Failure> {
        self.lock(name, "SELECT true FROM pg_advisory_lock($1)")?
            .ok_or(Failure { unreachable: false, what: "the advisory lock was not granted".into() })
    }

    /// Runs `query` (which answers true when the lock is held) and keeps
    /// its connection in the claim.
    fn lock(&self, name: &str, query: &'static str) -> Result<Option<Claim>, Failure> {
        let key = lock_key(&self.space, name);
        let pool = self.pg.pool().clone();
        let client = self.call(async move {
            let client = pool.get().await.map_err(Failure::from)?;
            let row = client.query_one(query, &[&key]).await.map_err(Failure::from)?;
            Ok(row.get::<_, bool>(0).then_some(client))
        })?;
        let runtime =
            self.pg.handle().ok_or(Failure { unreachable: false, what: "the store is closing".into() })?;
        Ok(client.map(|client| Claim { client: Some(client), key, runtime }))
    }

    /// Stores `puts` and removes `removes` in one transaction.
    pub fn apply(&self, puts: Vec<KeyValue>, removes: Vec<Vec<u8>>) -> Result<(), Failure> {
        let (pool, space) = (self.pg.pool().clone(), self.space.clone());
        self.call(async move {
            let mut client = pool.get().await.map_err(Failure::from)?;
            let tx = client.transaction().await.map_err(Failure::from)?;
            if !removes.is_empty() {
                tx.execute("DELETE FROM kv_state WHERE space = $1 AND key = ANY($2)", &[&space, &removes])
                    .await
                    .map_err(Failure::from)?;
            }
            if !puts.is_empty() {
                let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = puts.into_iter().unzip();
                tx.execute(
                    "INSERT INTO kv_state (space, key, value) SELECT $1, * FROM unnest($2::bytea[], $3::bytea[])
                     ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
                    &[&space, &keys, &values],
                )
                .await
                .map_err(Failure::from)?;
            }
            tx.commit().await.map_err(Failure::from)
        })
    }
}

/// Whether `e` means the database cannot be reached now (retry later),
/// as opposed to a statement it refused.
pub fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || match e.code() {
            None => true,
            // connection exceptions, and the server shutting down
            Some(code) => code.code().starts_with("08") || code.code().starts_with("57P"),
        }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "postgres://{}@{}/{}",
                config.get_user().unwrap_or(""),
                hosts.join(","),
                config.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "(an unparsable PostgreSQL URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        let shown = redact("postgres://ecocode:s3cret@db.example/ledger");
        assert_eq!(shown, "postgres://ecocode@db.example/ledger");
        let err = Postgres::connect("postgres://a:s3cret@x/y?bogus=1", 1, "t").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
