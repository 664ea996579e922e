//! Small named documents beside the ledger in the shared PostgreSQL store
//! (the `documents` table, schema version 2).

use super::{Param, PgStore};
use crate::error::{Error, Result};

/// Small named documents of one kind (e.g. principals) in the shared
/// PostgreSQL store, so that every node sees what any node or an
/// operator's CLI wrote, without a restart.
pub struct Documents {
    store: PgStore,
    kind: String,
}

impl std::fmt::Debug for Documents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Documents").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Documents {
    /// Connects to `url` (creating or migrating the schema) for documents
    /// of `kind`.
    pub fn open(url: &str, kind: &str) -> Result<Documents> {
        Ok(Documents { store: PgStore::open(url, true)?, kind: kind.to_string() })
    }

    /// Stores a new document; `false` (and nothing written) if `name` is taken.
    pub fn insert_new(&self, name: &str, body: &str) -> Result<bool> {
        self.write(
            "INSERT INTO documents (kind, name, body) VALUES ($1, $2, $3)
             ON CONFLICT (kind, name) DO NOTHING RETURNING 1",
            name,
            body,
        )
    }

    /// Replaces document `name`; `false` if there is none.
    pub fn replace(&self, name: &str, body: &str) -> Result<bool> {
        self.write(
            "UPDATE documents SET body = $3, version = nextval('documents_version')
             WHERE kind = $1 AND name = $2 RETURNING 1",
            name,
            body,
        )
    }

    /// Runs `sql` (parameters: kind, name, body; `RETURNING 1` when it
    /// wrote): whether a row was written.
    fn write(&self, sql: &'static str, name: &str, body: &str) -> Result<bool> {
        let params = vec![
            Param::Text(self.kind.clone()),
            Param::Text(name.to_string()),
            Param::Text(body.to_string()),
        ];
        Ok(!self.store.query(sql, params)?.is_empty())
    }

    pub fn get(&self, name: &str) -> Result<Option<String>> {
        let rows = self.store.query(
            "SELECT body FROM documents WHERE kind = $1 AND name = $2",
            vec![Param::Text(self.kind.clone()), Param::Text(name.to_string())],
        )?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    /// Every document of this kind, by name.
    pub fn list(&self) -> Result<Vec<(String, String)>> {
        let rows = self.store.query(
            "SELECT name, body FROM documents WHERE kind = $1 ORDER BY name",
            vec![Param::Text(self.kind.clone())],
        )?;
        Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Changes whenever a document of this kind is added or replaced.
    pub fn version(&self) -> Result<(i64, i64)> {
        let rows = self.store.query(
            "SELECT count(*), coalesce(max(version), 0) FROM documents WHERE kind = $1",
            vec![Param::Text(self.kind.clone())],
        )?;
        let row = rows.first().ok_or_else(|| Error::Storage("no answer to a count".into()))?;
        Ok((row.get(0), row.get(1)))
    }
}
