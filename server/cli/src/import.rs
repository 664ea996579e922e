//! `ecocode import FILE`: a regulator's CSV or Parquet spreadsheet sent to
//! the server with `Ingest.AppendRecords`, with a row-level error report.
//!
//! Reading and the column mapping live in [`crate::rows`]; this module
//! only sends the valid rows in chunks and maps every rejection back to the
//! row a spreadsheet user sees.

use std::fmt;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use ecocode_proto::v1 as pb;
use server::convert::to_proto;

use crate::client::{Connection, authed, channel, progress_bar};
use crate::rows::ImportRow;

/// Rows per `AppendRecords` stream: large enough to amortise a call, small
/// enough that a broken connection loses little progress and that the
/// response (one entry per rejected row) stays far below message limits.
pub const CHUNK_ROWS: usize = 1_000;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Data rows read (rows left blank are not counted).
    pub rows: usize,
    pub appended: u64,
    /// Rows already in the ledger with the same content (a re-run).
    pub duplicates: u64,
    /// Sorted by row.
    pub rejected: Vec<RowError>,
}

/// Why one row was not imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// As the spreadsheet shows it (CSV: the header is row 1).
    pub row: usize,
    /// The field that breaks a rule (`uscc`, `occurred_at`, ...) or, when the
    /// server refused the row for another reason, its status code
    /// (`FailedPrecondition` for an unregistered enterprise,
    /// `AlreadyExists` for a changed record under a used id).
    pub field_or_code: String,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: {}: {}", self.row, self.field_or_code, self.message)
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows: {} appended, {} already present, {} rejected",
            self.rows,
            self.appended,
            self.duplicates,
            self.rejected.len()
        )
    }
}

/// The error `run` returns when some rows were rejected: the valid rows are
/// in the ledger, and the summary says which rows were not. Callers that
/// need the numbers (tests, scripts) downcast to it.
#[derive(Debug)]
pub struct RowsRejected(pub ImportSummary);

impl fmt::Display for RowsRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} rows were rejected (listed above); the other rows were kept. \
             Fix the listed rows and import the same file again: rows already imported \
             count as already present, never twice",
            self.0.rejected.len(),
            self.0.rows
        )
    }
}

impl std::error::Error for RowsRejected {}

/// Imports `file`, prints the row-level error report and the summary line,
/// and fails with [`RowsRejected`] when any row was rejected.
pub async fn run(conn: &Connection, file: &Path) -> anyhow::Result<ImportSummary> {
    let rows = read(file).await?;
    let summary = send(conn, rows).await?;
    let mut stdout = std::io::stdout().lock();
    for e in &summary.rejected {
        writeln!(stdout, "{e}")?;
    }
    writeln!(stdout, "{summary}")?;
    if summary.rejected.is_empty() { Ok(summary) } else { Err(RowsRejected(summary).into()) }
}

/// Reads on a blocking thread: polars parses in one call, and a large file
/// must not stall the runtime.
async fn read(file: &Path) -> anyhow::Result<Vec<ImportRow>> {
    let bar = progress_bar("reading", "rows");
    let path = file.to_owned();
    let reading_bar = bar.clone();
    let rows = tokio::task::spawn_blocking(move || {
        crate::rows::read_records(&path, &mut |done, total| {
            reading_bar.set_length(total as u64);
            reading_bar.set_position(done as u64);
        })
    })
    .await
    .context("the reader thread failed")?;
    bar.finish_and_clear();
    Ok(rows?)
}

async fn send(conn: &Connection, rows: Vec<ImportRow>) -> anyhow::Result<ImportSummary> {
    let mut summary = ImportSummary { rows: rows.len(), ..ImportSummary::default() };
    // Local validation errors are reported with the server's; valid rows are
    // sent in file order, so a workflow row after the row it refers to works.
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        match r.record {
            Ok(record) => valid.push((r.row, to_proto::record(&record))),
            Err(e) => summary.rejected.push(RowError { row: r.row, field_or_code: e.field, message: e.rule }),
        }
    }
    if !valid.is_empty() {
        let mut client = pb::ingest_client::IngestClient::new(channel(conn).await?);
        let bar = progress_bar("importing", "rows");
        bar.set_length(valid.len() as u64);
        for chunk in valid.chunks(CHUNK_ROWS) {
            let records: Vec<pb::Record> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let response = client
                .append_records(authed(conn, tokio_stream::iter(records))?)
                .await
                .map_err(|status| {
                    anyhow::anyhow!(
                        "{:?}: {} (at the chunk starting with row {}; the rows before it were imported, \
                         so importing the file again resumes where this stopped)",
                        status.code(),
                        status.message(),
                        chunk[0].0
                    )
                })?
                .into_inner();
            summary.appended += response.accepted;
            summary.duplicates += response.duplicates;
            for e in response.rejected {
                let row = usize::try_from(e.index).ok().and_then(|i| chunk.get(i)).map_or(0, |(row, _)| *row);
                summary.rejected.push(row_error(row, e.code, e.message));
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    summary.rejected.sort_by_key(|e| e.row);
    Ok(summary)
}

/// The server's `InvalidArgument` messages start with `field: rule`; split
/// them so that the report reads the same as for rows rejected locally.
fn row_error(row: usize, code: String, message: String) -> RowError {
    if code == "InvalidArgument"
        && let Some((field, rule)) = message.split_once(": ")
        && !field.is_empty()
        && !field.contains(' ')
    {
        return RowError { row, field_or_code: field.to_owned(), message: rule.to_owned() };
    }
    RowError { row, field_or_code: code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_split_into_field_and_rule() {
        let e = row_error(3, "InvalidArgument".into(), "kind: unknown kind \"x\" in model m".into());
        assert_eq!((e.field_or_code.as_str(), e.message.as_str()), ("kind", "unknown kind \"x\" in model m"));
        let e = row_error(4, "FailedPrecondition".into(), "enterprise X: not registered".into());
        assert_eq!(e.field_or_code, "FailedPrecondition");
        let e = row_error(5, "InvalidArgument".into(), "bad request: x".into());
        assert_eq!((e.field_or_code.as_str(), e.message.as_str()), ("InvalidArgument", "bad request: x"));
    }

    #[test]
    fn summary_line() {
        let summary = ImportSummary {
            rows: 4,
            appended: 2,
            duplicates: 1,
            rejected: vec![RowError { row: 3, field_or_code: "uscc".into(), message: "bad".into() }],
        };
        assert_eq!(summary.to_string(), "4 rows: 2 appended, 1 already present, 1 rejected");
        assert_eq!(summary.rejected[0].to_string(), "row 3: uscc: bad");
    }
}
