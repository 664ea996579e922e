//! The ledger's PostgreSQL schema: its versioned migrations, applied in
//! one transaction under an advisory lock when a node opens the store.

use super::db;
use crate::error::{Error, Result};

/// The schema, one transaction per version. A database at a version
/// beyond this list is refused: a newer binary migrated it.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the ledger.
    "CREATE TABLE ledger_entries (
        seq             bigint PRIMARY KEY,
        recorded_at_ns  bigint NOT NULL,
        chain_hash      bytea  NOT NULL,
        subject         bytea  NOT NULL,
        idempotency_key bytea,
        fingerprint     bytea,
        payload         bytea  NOT NULL
    );
    CREATE TABLE ledger_subjects (
        subject bytea  NOT NULL,
        seq     bigint NOT NULL,
        PRIMARY KEY (subject, seq)
    );
    CREATE TABLE ledger_idempotency (
        key         bytea  PRIMARY KEY,
        seq         bigint NOT NULL,
        fingerprint bytea  NOT NULL
    );
    CREATE TABLE ledger_nodes (
        level smallint NOT NULL,
        index bigint   NOT NULL,
        hash  bytea    NOT NULL,
        PRIMARY KEY (level, index)
    );
    CREATE TABLE ledger_head (
        one                 boolean PRIMARY KEY DEFAULT true CHECK (one),
        size                bigint NOT NULL,
        root                bytea  NOT NULL,
        chain               bytea  NOT NULL,
        last_recorded_at_ns bigint NOT NULL
    );
    INSERT INTO ledger_head VALUES (true, 0, '', '', 0);
    CREATE TABLE ledger_checkpoints (
        tree_size    bigint PRIMARY KEY,
        note         text   NOT NULL,
        signed_at_ns bigint NOT NULL
    );",
    // 2: small named documents the service keeps beside the ledger
    // (principals), each write taking a new version so nodes notice.
    "CREATE SEQUENCE documents_version;
    CREATE TABLE documents (
        kind    text   NOT NULL,
        name    text   NOT NULL,
        body    text   NOT NULL,
        version bigint NOT NULL DEFAULT nextval('documents_version'),
        PRIMARY KEY (kind, name)
    );",
    // 3 to 5 created the inquiry log's table (3, 5) and `kv_state` (4);
    // those crates now create and migrate their own tables
    // (`kv::pg::migrate`), so on a new database these versions do nothing.
    "SELECT 1;",
    "SELECT 1;",
    "SELECT 1;",
    // 6: a committed record's details (salt and whole record), stored
    // beside the entry and not hashed; empty for every other entry.
    "ALTER TABLE ledger_entries ADD COLUMN details bytea NOT NULL DEFAULT '';",
    // 7: one row per entry. The leaf moves into the entry's row, the
    // subject and idempotency tables become partial indexes on it, and
    // node rows stay only for tile levels above the leaves (binary levels
    // 8, 16, …); the levels in between are hashed up when asked for. A
    // leaf the old table lacked stays NULL, which verification names.
    "ALTER TABLE ledger_entries ADD COLUMN leaf bytea;
    UPDATE ledger_entries e SET leaf = n.hash FROM ledger_nodes n WHERE n.level = 0 AND n.index = e.seq;
    DELETE FROM ledger_nodes WHERE level % 8 <> 0 OR level = 0;
    CREATE INDEX ledger_entries_subject ON ledger_entries (subject, seq) WHERE subject <> '';
    CREATE INDEX ledger_entries_idempotency ON ledger_entries (idempotency_key) WHERE idempotency_key IS NOT NULL;
    DROP TABLE ledger_subjects;
    DROP TABLE ledger_idempotency;",
];

/// Brings the schema to the newest version (`migrate`), or checks that it
/// is there already (offline verification, which writes nothing).
pub(super) async fn migrate_schema(pool: &kv::pg::Pool, migrate: bool) -> Result<usize> {
    let mut client = pool.get().await.map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    if migrate {
        // Nodes starting together migrate one at a time.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7262611); CREATE TABLE IF NOT EXISTS ecocode_schema (version integer NOT NULL)",
        )
        .await
        .map_err(db)?;
    }
    let exists: bool =
        tx.query_one("SELECT to_regclass('ecocode_schema') IS NOT NULL", &[]).await.map_err(db)?.get(0);
    if !exists {
        return Err(Error::InvalidArgument(
            "the database holds no ecocode ledger (no ecocode_schema table)".into(),
        ));
    }
    let version: i32 = tx
        .query_opt("SELECT version FROM ecocode_schema", &[])
        .await
        .map_err(db)?
        .map_or(0, |row| row.get(0));
    let version = version as usize;
    if version > MIGRATIONS.len() {
        return Err(Error::InvalidArgument(format!(
            "the database schema is at version {version}, newer than this ecocode's {}; run a newer ecocode",
            MIGRATIONS.len()
        )));
    }
    if version < MIGRATIONS.len() && !migrate {
        return Err(Error::InvalidArgument(format!(
            "the database schema is at version {version}, older than this ecocode's {}; start `ecocode serve` on it once to migrate",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).await.map_err(db)?;
        tracing::info!(version = i + 1, "PostgreSQL schema migrated");
    }
    if version < MIGRATIONS.len() {
        tx.batch_execute(&format!(
            "DELETE FROM ecocode_schema; INSERT INTO ecocode_schema VALUES ({})",
            MIGRATIONS.len()
        ))
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(MIGRATIONS.len())
}
