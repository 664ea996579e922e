//! The inquiry log in the shared PostgreSQL store, so that every node
//! records into, and lists from, one log, and losing a node loses none of
//! it. The table, created and migrated by this crate ([`MIGRATIONS`],
//! component `inquiries` of `kv::pg::migrate`):
//!
//! `inquiries (id bigserial, at_ns, uscc, region_code, principal, role,
//! method, purpose, grant_seq)`, indexed newest first overall, by
//! enterprise and by inquirer, so a page is one index range scan whatever
//! the scope.
//!
//! `record` is one multi-row `INSERT` in its own transaction: acknowledged
//! once PostgreSQL committed it (concurrent commits share WAL flushes in
//! PostgreSQL itself). Page cursors carry the scope's digest, the instant
//! and the id of the last inquiry shown, so a cursor of another listing is
//! refused.

use kv::pg::Postgres;
use kv::pg::tokio_postgres::types::ToSql;

use super::{Error, Inquiry, Page, Query, Result, Scope};

/// The inquiry log's own schema, one SQL text per version. Databases whose
/// ledger created the table (ledger schema 3 and 5, before each crate
/// owned its tables) already have it: hence `IF NOT EXISTS`.
const MIGRATIONS: &[&str] = &[
    // 1: who read whose score, newest first by time, enterprise and inquirer.
    "CREATE TABLE IF NOT EXISTS inquiries (
        id          bigserial PRIMARY KEY,
        at_ns       bigint NOT NULL,
        uscc        text   NOT NULL,
        region_code text   NOT NULL,
        principal   text   NOT NULL,
        role        text   NOT NULL,
        method      text   NOT NULL,
        purpose     text   NOT NULL
    );
    CREATE INDEX IF NOT EXISTS inquiries_newest ON inquiries (at_ns DESC, id DESC);
    CREATE INDEX IF NOT EXISTS inquiries_by_uscc ON inquiries (uscc, at_ns DESC, id DESC);
    CREATE INDEX IF NOT EXISTS inquiries_by_principal ON inquiries (principal, at_ns DESC, id DESC);",
    // 2: the lender access grant an inquiry was made under (its ledger seq).
    "ALTER TABLE inquiries ADD COLUMN IF NOT EXISTS grant_seq bigint;",
];

/// Connections for the inquiry log (records and listings are short).
const POOL_SIZE: usize = 8;

pub(crate) struct SharedLog {
    pg: Postgres,
}

/// Unreachable is [`Error::Unavailable`] (the read is refused, and
/// answered again once the database is back); anything else a storage error.
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

type Param = Box<dyn ToSql + Sync + Send>;

/// A batch of inquiries as column arrays, for one `unnest` insert.
#[derive(Default)]
struct Columns {
    at: Vec<i64>,
    uscc: Vec<String>,
    region: Vec<String>,
    principal: Vec<String>,
    role: Vec<String>,
    method: Vec<String>,
    purpose: Vec<String>,
    grant_seq: Vec<Option<i64>>,
}

impl SharedLog {
    pub(crate) fn open(url: &str) -> Result<SharedLog> {
        let pg = Postgres::connect(url, POOL_SIZE, "inquiries-postgres")
            .map_err(|e| Error::Storage(e.to_string()))?;
        let pool = pg.pool().clone();
        pg.run(async move { kv::pg::migrate(&pool, "inquiries", MIGRATIONS).await.map_err(db) })
            .unwrap_or_else(|| {
                Err(Error::Storage("the inquiry log's task ended without an answer".into()))
            })?;
        Ok(SharedLog { pg })
    }

    pub(crate) async fn record(&self, inquiries: &[Inquiry]) -> Result<()> {
        if inquiries.is_empty() {
            return Ok(());
        }
        let mut columns = Columns::default();
        for i in inquiries {
            columns.at.push(i.at_ns);
            columns.uscc.push(i.uscc.clone());
            columns.region.push(i.region_code.clone());
            columns.principal.push(i.principal.clone());
            columns.role.push(i.role.clone());
            columns.method.push(i.method.clone());
            columns.purpose.push(i.purpose.clone());
            columns.grant_seq.push(i.grant_seq.map(|s| s as i64));
        }
        let pool = self.pg.pool().clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        // On the store's runtime; this caller awaits without blocking.
        self.pg.spawn(async move {
            let written = async {
                let client = pool.get().await.map_err(db)?;
                let c = &columns;
                client
                    .execute(
                        "INSERT INTO inquiries (at_ns, uscc, region_code, principal, role, method, purpose, grant_seq)
                         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[])",
                        &[&c.at, &c.uscc, &c.region, &c.principal, &c.role, &c.method, &c.purpose, &c.grant_seq],
                    )
                    .await
                    .map_err(db)?;
                Ok(())
            }
            .await;
            let _ = answer.send(written);
        });
        answered.await.map_err(|_| Error::Storage("the inquiry log is closing".into()))?
    }

    pub(crate) fn list(&self, query: &Query) -> Result<Page> {
        let (scope_sql, mut params): (&str, Vec<Param>) = match &query.scope {
            Scope::Enterprise(uscc) => ("uscc = $1", vec![Box::new(uscc.clone())]),
            Scope::Inquirer { principal, uscc: None } => {
                ("principal = $1", vec![Box::new(principal.clone())])
            }
            Scope::Inquirer { principal, uscc: Some(uscc) } => {
                ("principal = $1 AND uscc = $2", vec![Box::new(principal.clone()), Box::new(uscc.clone())])
            }
            Scope::Region(prefix) => ("starts_with(region_code, $1)", vec![Box::new(prefix.clone())]),
            Scope::All => ("true", Vec::new()),
        };
        let digest = scope_digest(&query.scope);
        let mut sql = format!(
            "SELECT id, at_ns, uscc, region_code, principal, role, method, purpose, grant_seq FROM inquiries WHERE {scope_sql}"
        );
        if let Some(from) = query.from_ns {
            params.push(Box::new(from));
            sql += &format!(" AND at_ns >= ${}", params.len());
        }
        if let Some(to) = query.to_ns {
            params.push(Box::new(to));
            sql += &format!(" AND at_ns < ${}", params.len());
        }
        if let Some(after) = &query.after {
            let (at, id) = decode_cursor(after, &digest)?;
            params.push(Box::new(at));
            params.push(Box::new(id));
            sql += &format!(" AND (at_ns, id) < (${}, ${})", params.len() - 1, params.len());
        }
        let page_size = query.page_size.max(1);
        // One more than a page says whether another page follows.
        params.push(Box::new(page_size as i64 + 1));
        sql += &format!(" ORDER BY at_ns DESC, id DESC LIMIT ${}", params.len());

        let pool = self.pg.pool().clone();
        let rows = self
            .pg
            .run(async move {
                let client = pool.get().await.map_err(db)?;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
                client.query(&sql, &refs).await.map_err(db)
            })
            .unwrap_or_else(|| {
                Err(Error::Storage("the inquiry log's task ended without an answer".into()))
            })?;
        let mut page = Page::default();
        for row in rows.iter().take(page_size) {
            page.inquiries.push(Inquiry {
                at_ns: row.get(1),
                uscc: row.get(2),
                region_code: row.get(3),
                principal: row.get(4),
                role: row.get(5),
                method: row.get(6),
                purpose: row.get(7),
                grant_seq: row.get::<_, Option<i64>>(8).map(|s| s as u64),
            });
        }
        if rows.len() > page_size {
            let last = &rows[page_size - 1];
            page.next = Some(encode_cursor(&digest, last.get(1), last.get(0)));
        }
        Ok(page)
    }
}

/// What a cursor is bound to: the scope it was handed out for.
fn scope_digest(scope: &Scope) -> [u8; 8] {
    let text = format!("{scope:?}");
    let hash = blake3::hash(text.as_bytes());
    hash.as_bytes()[..8].try_into().expect("8 bytes")
}

const CURSOR_TAG: u8 = b'q';

fn encode_cursor(digest: &[u8; 8], at_ns: i64, id: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(CURSOR_TAG);
    out.extend_from_slice(digest);
    out.extend_from_slice(&at_ns.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out
}

fn decode_cursor(cursor: &[u8], digest: &[u8; 8]) -> Result<(i64, i64)> {
    if cursor.len() != 25 || cursor[0] != CURSOR_TAG || &cursor[1..9] != digest {
        return Err(Error::BadCursor);
    }
    let at = i64::from_be_bytes(cursor[9..17].try_into().expect("8 bytes"));
    let id = i64::from_be_bytes(cursor[17..25].try_into().expect("8 bytes"));
    Ok((at, id))
}
