//! Bulk import: behaviour records from CSV and Parquet spreadsheets, read with
//! polars and mapped row by row to [`Record`]s. Pure reading and mapping;
//! the `import` module sends the result.
//!
//! # Column mapping
//!
//! The first row of a CSV file is the header; a Parquet file's column names
//! play the same part. Each data row becomes one record.
//!
//! | column             | required | record field       | accepted values |
//! |--------------------|----------|--------------------|-----------------|
//! | `source`           | yes      | `source`           | issuing system, e.g. `beilun-epb` |
//! | `source_record_id` | yes      | `source_record_id` | idempotency key within `source` |
//! | `uscc`             | yes      | `uscc`             | 18-character unified social credit code |
//! | `kind`             | yes      | `kind`             | a kind of the scoring model, e.g. `penalty.fine` |
//! | `occurred_at`      | yes      | `occurred_at`      | see below |
//! | `amount_yuan`      | no       | `amount_yuan`      | whole yuan; empty = 0 |
//! | `refers_to_seq`    | no       | `refers_to_seq`    | ledger seq for workflow kinds; empty or 0 = none |
//! | `description`      | no       | `description`      | free text, kept verbatim |
//! | `attr.<key>`       | no       | `attributes[<key>]`| free text; an empty cell adds no attribute |
//!
//! * **`occurred_at`** accepts RFC 3339 with an offset (`2026-03-02T08:00:00Z`,
//!   `2026-03-02T16:00:00+08:00`; a space may replace the `T`). Without an
//!   offset it is read as **China time (UTC+8)**, the time on the regulator's
//!   paper: a date `2026-03-02` (also `2026/3/2`, as Excel writes it) is
//!   00:00 China time, i.e. `2026-03-01T16:00:00Z`; `2026-03-02 08:30` or
//!   `2026-03-02 08:30:00` is 08:30 China time. In Parquet a `Date` column is
//!   read the same way, a `Datetime` column with a time zone is the instant
//!   it stores, and a `Datetime` column without one (what pandas writes for
//!   naive timestamps) is China wall-clock time, like the strings.
//! * **Numbers** (`amount_yuan`, `refers_to_seq`) may be integers, floats with
//!   an integral value (`30000.0`, as spreadsheets export them) or such text.
//!   Fractions (`30000.5`), thousands separators (`30,000`) and anything else
//!   reject the row; so does a negative amount.
//! * **Text**: cells of `source`, `source_record_id`, `uscc`, `kind` and of
//!   the number and date columns are trimmed of surrounding spaces (spreadsheet
//!   cells often carry them); `description` and attribute values are kept
//!   exactly. An empty cell and a missing (null) cell mean the same.
//! * **Headers** must match exactly. A missing required column, an unknown
//!   column (a typo such as `amount` must not silently drop data) or an
//!   `attr.` column whose key is not a valid attribute key fails the whole
//!   file before any row is read.
//! * **Rows** are numbered as a spreadsheet shows them: in CSV the header is
//!   row 1 and the first data row is row 2; in Parquet the first row is row 1.
//!   A row whose cells are all empty (Excel leaves such rows at the end of an
//!   export) is skipped. Every other row is validated on its own and is either
//!   a whole [`Record`] or one error naming the field; nothing is half
//!   imported. Rules that depend on the kind (amount tiers, `refers_to_seq`,
//!   future dates) and on the ledger (registered enterprise, duplicates) are
//!   the server's to check.
//! * **Encoding**: CSV must be UTF-8 (Excel: "CSV UTF-8"); a byte-order mark
//!   is ignored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use polars::prelude::*;
use scoring::{NANOS_PER_DAY, NANOS_PER_SECOND, Record, RecordFields, Seq, Timestamp, ValidationError};

/// The columns every file must have.
pub const REQUIRED_COLUMNS: [&str; 5] = ["source", "source_record_id", "uscc", "kind", "occurred_at"];
/// The columns a file may have besides the required ones and `attr.<key>`.
pub const OPTIONAL_COLUMNS: [&str; 3] = ["amount_yuan", "refers_to_seq", "description"];
/// The prefix that makes a column an attribute.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

/// China Standard Time, the zone of dates and times written without an offset.
const CHINA_OFFSET_NANOS: i64 = 8 * 3_600 * NANOS_PER_SECOND;
/// Report progress this often while mapping rows.
const PROGRESS_EVERY: usize = 10_000;
/// Floats are exact integers only up to 2^53; beyond it a "whole" amount may
/// already have been rounded by whoever wrote the file.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: unsupported file type; use a .csv or .parquet file")]
    UnsupportedFormat(String),
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is not UTF-8 (first bad byte on line {line}); save it as \"CSV UTF-8\"")]
    NotUtf8 { path: String, line: usize },
    #[error("missing required column {0:?}; the required columns are {columns}", columns = REQUIRED_COLUMNS.join(", "))]
    MissingColumn(String),
    #[error(
        "unknown columns {}; the columns are {}, {} and attr.<key>",
        quoted(.0),
        REQUIRED_COLUMNS.join(", "),
        OPTIONAL_COLUMNS.join(", ")
    )]
    UnknownColumns(Vec<String>),
    #[error("column {0:?} appears more than once")]
    DuplicateColumn(String),
    #[error("column {0:?}: an attribute key must be 1 to 64 ASCII letters, digits and . _ - :")]
    AttributeColumn(String),
    #[error("column {column:?} has type {dtype}, which cannot be read as text")]
    ColumnType { column: String, dtype: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// One data row of the file: a record, or why the row is not one.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportRow {
    /// 1-based, as a spreadsheet shows it: CSV data starts at row 2 (the
    /// header is row 1), Parquet at row 1.
    pub row: usize,
    pub record: std::result::Result<Record, ValidationError>,
}

/// Reads a `.csv` or `.parquet` file (by extension) and maps every row;
/// `progress(done, total)` is called as rows are mapped.
pub fn read_records(path: &Path, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<ImportRow>> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let (frame, first_row) = match extension.as_deref() {
        Some("csv") => (read_csv(path)?, 2),
        Some("parquet") => (read_parquet(path)?, 1),
        _ => return Err(Error::UnsupportedFormat(path.display().to_string())),
    };
    map_rows(&frame, first_row, progress)
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Read { path: path.display().to_string(), message: e.to_string() }
}

fn read_csv(path: &Path) -> Result<DataFrame> {
    // Read into memory first: to drop Excel's byte-order mark (polars would
    // make it part of the first column's name) and to tell a GBK export from
    // a broken file with a message the user can act on.
    let mut bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    if let Err(e) = std::str::from_utf8(&bytes) {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        return Err(Error::NotUtf8 { path: path.display().to_string(), line });
    }
    // Every column as text (no schema inference): one parser for every cell,
    // and an identifier such as `00123` keeps its leading zeros.
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .into_reader_with_file_handle(Cursor::new(bytes))
        .finish()
        .map_err(|e| read_error(path, e))
}

fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| read_error(path, e))?;
    ParquetReader::new(file).finish().map_err(|e| read_error(path, e))
}

/// A column as the mapping reads it.
enum Cells {
    Text(StringChunked),
    Float(Float64Chunked),
    /// Nanoseconds since the epoch, either an instant (UTC) or China
    /// wall-clock time to be shifted.
    Nanos {
        values: Int64Chunked,
        per_unit: i64,
        naive: bool,
    },
    Days(Int32Chunked),
}

/// One cell, borrowed from its column.
enum Cell<'a> {
    Empty,
    Text(&'a str),
    Float(f64),
    Instant(Timestamp),
}

impl Cells {
    fn new(column: &Column) -> Result<Cells> {
        let type_error =
            || Error::ColumnType { column: column.name().to_string(), dtype: column.dtype().to_string() };
        let series = column.as_materialized_series().rechunk();
        let cells = match series.dtype() {
            DataType::Float32 | DataType::Float64 => Cells::Float(
                series
                    .cast(&DataType::Float64)
                    .map_err(|_| type_error())?
                    .f64()
                    .map_err(|_| type_error())?
                    .clone(),
            ),
            DataType::Datetime(unit, zone) => {
                let per_unit = match unit {
                    TimeUnit::Nanoseconds => 1,
                    TimeUnit::Microseconds => 1_000,
                    TimeUnit::Milliseconds => 1_000_000,
                };
                let values = series.datetime().map_err(|_| type_error())?.physical().clone();
                Cells::Nanos { values, per_unit, naive: zone.is_none() }
            }
            DataType::Date => Cells::Days(series.date().map_err(|_| type_error())?.physical().clone()),
            // Integers, booleans, categoricals: their text is what a user typed.
            _ => Cells::Text(
                series
                    .cast(&DataType::String)
                    .map_err(|_| type_error())?
                    .str()
                    .map_err(|_| type_error())?
                    .clone(),
            ),
        };
        Ok(cells)
    }

    fn get(&self, i: usize) -> Cell<'_> {
        let cell = match self {
            Cells::Text(c) => c.get(i).map(Cell::Text),
            Cells::Float(c) => c.get(i).map(Cell::Float),
            Cells::Nanos { values, per_unit, naive } => values.get(i).map(|v| {
                let nanos = v.saturating_mul(*per_unit);
                Cell::Instant(Timestamp::from_unix_nanos(if *naive {
                    nanos.saturating_sub(CHINA_OFFSET_NANOS)
                } else {
                    nanos
                }))
            }),
            Cells::Days(c) => c.get(i).map(|d| {
                Cell::Instant(Timestamp::from_unix_nanos(
                    i64::from(d).saturating_mul(NANOS_PER_DAY).saturating_sub(CHINA_OFFSET_NANOS),
                ))
            }),
        };
        match cell {
            Some(Cell::Text("")) | None => Cell::Empty,
            Some(c) => c,
        }
    }
}

/// The columns of a file, checked against the mapping.
struct Layout {
    source: Cells,
    source_record_id: Cells,
    uscc: Cells,
    kind: Cells,
    occurred_at: Cells,
    amount_yuan: Option<Cells>,
    refers_to_seq: Option<Cells>,
    description: Option<Cells>,
    attributes: Vec<(String, Cells)>,
    /// Every column, to recognise rows left blank.
    all: Vec<Cells>,
}

impl Layout {
    fn new(frame: &DataFrame) -> Result<Layout> {
        let mut seen = std::collections::BTreeSet::new();
        let mut unknown = Vec::new();
        for name in frame.get_column_names() {
            let name = name.as_str();
            if !seen.insert(name) {
                return Err(Error::DuplicateColumn(name.to_owned()));
            }
            if let Some(key) = name.strip_prefix(ATTRIBUTE_PREFIX) {
                if !is_attribute_key(key) {
                    return Err(Error::AttributeColumn(name.to_owned()));
                }
            } else if !REQUIRED_COLUMNS.contains(&name) && !OPTIONAL_COLUMNS.contains(&name) {
                unknown.push(name.to_owned());
            }
        }
        if let Some(missing) = REQUIRED_COLUMNS.iter().find(|c| !seen.contains(*c)) {
            return Err(Error::MissingColumn((*missing).to_owned()));
        }
        if !unknown.is_empty() {
            return Err(Error::UnknownColumns(unknown));
        }
        let required = |name: &str| Cells::new(frame.column(name).expect("checked above"));
        let optional = |name: &str| frame.column(name).ok().map(Cells::new).transpose();
        let mut attributes = Vec::new();
        for column in frame.columns() {
            if let Some(key) = column.name().strip_prefix(ATTRIBUTE_PREFIX) {
                attributes.push((key.to_owned(), Cells::new(column)?));
            }
        }
        Ok(Layout {
            source: required("source")?,
            source_record_id: required("source_record_id")?,
            uscc: required("uscc")?,
            kind: required("kind")?,
            occurred_at: required("occurred_at")?,
            amount_yuan: optional("amount_yuan")?,
            refers_to_seq: optional("refers_to_seq")?,
            description: optional("description")?,
            attributes,
            all: frame.columns().iter().map(Cells::new).collect::<Result<_>>()?,
        })
    }

    fn is_blank(&self, i: usize) -> bool {
        self.all.iter().all(|c| match c.get(i) {
            Cell::Empty => true,
            Cell::Text(s) => s.trim().is_empty(),
            Cell::Float(_) | Cell::Instant(_) => false,
        })
    }

    fn record(&self, i: usize) -> std::result::Result<Record, ValidationError> {
        let amount_yuan = match &self.amount_yuan {
            Some(c) => integer("amount_yuan", c.get(i))?.unwrap_or(0),
            None => 0,
        };
        let refers_to = match &self.refers_to_seq {
            Some(c) => match integer("refers_to_seq", c.get(i))? {
                // 0 means "none", as in the gRPC contract.
                None | Some(0) => None,
                Some(seq) => Some(Seq(u64::try_from(seq).map_err(|_| {
                    ValidationError::new("refers_to_seq", format!("must be a ledger seq, got {seq}"))
                })?)),
            },
            None => None,
        };
        let mut attributes = BTreeMap::new();
        for (key, cells) in &self.attributes {
            if let Some(value) = display(cells.get(i)) {
                attributes.insert(key.clone(), value);
            }
        }
        let source = text("source", self.source.get(i))?;
        let source_record_id = text("source_record_id", self.source_record_id.get(i))?;
        let uscc = text("uscc", self.uscc.get(i))?;
        let kind = text("kind", self.kind.get(i))?;
        Record::new(RecordFields {
            source: &source,
            source_record_id: &source_record_id,
            uscc: &uscc,
            kind: &kind,
            occurred_at: instant(self.occurred_at.get(i))?,
            amount_yuan,
            refers_to,
            description: match &self.description {
                Some(c) => verbatim(c.get(i)),
                None => "",
            },
            attributes,
        })
    }
}

fn map_rows(
    frame: &DataFrame,
    first_row: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ImportRow>> {
    let layout = Layout::new(frame)?;
    let total = frame.height();
    let mut rows = Vec::with_capacity(total);
    progress(0, total);
    for i in 0..total {
        if !layout.is_blank(i) {
            rows.push(ImportRow { row: first_row + i, record: layout.record(i) });
        }
        if (i + 1) % PROGRESS_EVERY == 0 {
            progress(i + 1, total);
        }
    }
    progress(total, total);
    Ok(rows)
}

/// The rule `Record::new` applies to attribute keys, checked once per column
/// here so that a bad header fails the file instead of every row.
fn is_attribute_key(key: &str) -> bool {
    (1..=scoring::limits::ATTRIBUTE_KEY).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
}

/// An identifier cell, trimmed. In Parquet an integer column (say a numeric
/// `source_record_id`) arrives as its digits already; a float column with
/// integral values is what pandas makes of such a column once it has a gap.
fn text<'a>(field: &'static str, cell: Cell<'a>) -> std::result::Result<Cow<'a, str>, ValidationError> {
    match cell {
        Cell::Empty => Ok(Cow::Borrowed("")),
        Cell::Text(s) => Ok(Cow::Borrowed(s.trim())),
        Cell::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT => {
            Ok(Cow::Owned(format!("{}", f as i64)))
        }
        Cell::Float(f) => Err(ValidationError::new(field, format!("must be text, got the number {f}"))),
        Cell::Instant(t) => Err(ValidationError::new(field, format!("must be text, got the time {t}"))),
    }
}

fn verbatim(cell: Cell<'_>) -> &str {
    match cell {
        Cell::Text(s) => s,
        _ => "",
    }
}

fn display(cell: Cell<'_>) -> Option<String> {
    match cell {
        Cell::Empty => None,
        Cell::Text(s) => Some(s.to_owned()),
        Cell::Float(f) => Some(f.to_string()),
        Cell::Instant(t) => Some(t.to_string()),
    }
}

/// A whole number from an integer, an integral float or their text.
fn integer(field: &'static str, cell: Cell<'_>) -> std::result::Result<Option<i64>, ValidationError> {
    let whole = |f: f64, shown: &dyn std::fmt::Display| {
        if !f.is_finite() || f.fract() != 0.0 {
            Err(ValidationError::new(field, format!("must be a whole number, got {shown}")))
        } else if f.abs() > MAX_EXACT_FLOAT {
            Err(ValidationError::new(field, format!("{shown} is too large to be exact")))
        } else {
            Ok(Some(f as i64))
        }
    };
    match cell {
        Cell::Empty => Ok(None),
        Cell::Float(f) => whole(f, &f),
        Cell::Text(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if let Ok(n) = s.parse::<i64>() {
                return Ok(Some(n));
            }
            // Only plain decimals: `f64::from_str` would also take "inf",
            // "NaN" and "1e4", none of which a person means as an amount.
            let plain = s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+');
            match s.parse::<f64>() {
                Ok(f) if plain => whole(f, &format_args!("{s:?}")),
                _ => Err(ValidationError::new(field, format!("must be a whole number, got {s:?}"))),
            }
        }
        Cell::Instant(t) => {
            Err(ValidationError::new(field, format!("must be a whole number, got the time {t}")))
        }
    }
}

fn instant(cell: Cell<'_>) -> std::result::Result<Option<Timestamp>, ValidationError> {
    match cell {
        Cell::Empty => Ok(None),
        Cell::Instant(t) => Ok(Some(t)),
        Cell::Text(s) if s.trim().is_empty() => Ok(None),
        Cell::Text(s) => parse_occurred_at(s.trim()).map(Some).ok_or_else(|| {
            ValidationError::new(
                "occurred_at",
                format!(
                    "must be RFC 3339 (2026-03-02T08:00:00+08:00) or a China-time date or time \
                     (2026-03-02, 2026-03-02 08:00), got {s:?}"
                ),
            )
        }),
        Cell::Float(f) => {
            Err(ValidationError::new("occurred_at", format!("must be a date or time, got the number {f}")))
        }
    }
}

/// RFC 3339 when there is an offset, otherwise a date or date and time in
/// China time (see the module docs).
fn parse_occurred_at(s: &str) -> Option<Timestamp> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Some(t);
    }
    let naive = ["%Y-%m-%d", "%Y/%m/%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .map(|d| d.and_time(chrono::NaiveTime::MIN))
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M",
                "%Y/%m/%d %H:%M:%S",
                "%Y/%m/%d %H:%M",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        })?;
    let nanos = naive.and_utc().timestamp_nanos_opt()?;
    Some(Timestamp::from_unix_nanos(nanos.checked_sub(CHINA_OFFSET_NANOS)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = "91330421739237858X";

    fn read(path: &Path) -> Result<Vec<ImportRow>> {
        read_records(path, &mut |_, _| {})
    }

    fn csv(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn read_csv_text(text: &str) -> Result<Vec<ImportRow>> {
        let (_dir, path) = csv(text);
        read(&path)
    }

    /// The outcome of each row, as `row: ok` or `row: field: rule`.
    fn outcomes(rows: &[ImportRow]) -> Vec<String> {
        rows.iter()
            .map(|r| match &r.record {
                Ok(_) => format!("{}: ok", r.row),
                Err(e) => format!("{}: {e}", r.row),
            })
            .collect()
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    const HEADER: &str =
        "source,source_record_id,uscc,kind,occurred_at,amount_yuan,refers_to_seq,description,attr.outlet\n";

    #[test]
    fn good_csv_rows_map_every_column() {
        let text = format!(
            "{HEADER}\
             beilun-epb,P-1,{ACME},penalty.fine,2026-03-02T08:00:00Z,30000,,\"late, \"\"again\"\"\",DW001\n\
             beilun-epb, P-2 ,{ACME},penalty.warning,2026-03-02,,,,\n\
             workflow,W-1,{ACME},rectification.submitted,2026-03-02T16:00:00+08:00,0.0,7,,\n"
        );
        let rows = read_csv_text(&text).unwrap();
        assert_eq!(outcomes(&rows), ["2: ok", "3: ok", "4: ok"]);
        let first = rows[0].record.as_ref().unwrap();
        assert_eq!(first.source, "beilun-epb");
        assert_eq!(first.uscc.as_str(), ACME);
        assert_eq!(first.occurred_at, ts("2026-03-02T08:00:00Z"));
        assert_eq!(first.amount_yuan, 30_000);
        assert_eq!(first.refers_to, None);
        assert_eq!(first.description, "late, \"again\"");
        assert_eq!(first.attributes, BTreeMap::from([("outlet".to_owned(), "DW001".to_owned())]));
        let second = rows[1].record.as_ref().unwrap();
        assert_eq!(second.source_record_id, "P-2", "identifiers are trimmed");
        assert_eq!(second.occurred_at, ts("2026-03-01T16:00:00Z"), "a date is 00:00 China time");
        assert_eq!(second.amount_yuan, 0);
        assert!(second.attributes.is_empty(), "empty attribute cells are skipped");
        let third = rows[2].record.as_ref().unwrap();
        assert_eq!(third.refers_to, Some(Seq(7)));
        assert_eq!(third.occurred_at, ts("2026-03-02T08:00:00Z"));
    }

    #[test]
    fn each_invalid_row_names_its_field_and_the_others_still_map() {
        let text = format!(
            "{HEADER}\
             beilun-epb,B-1,91330421739237858Y,penalty.fine,2026-03-02,30000,,,\n\
             beilun-epb,B-2,{ACME},penalty.fine,,30000,,,\n\
             beilun-epb,B-3,{ACME},penalty.fine,2026-03-02,-5,,,\n\
             beilun-epb,B-4,{ACME},penalty.fine,2026-03-02,30000.5,,,\n\
             beilun-epb,B-5,{ACME},penalty.fine,03/02/2026,30000,,,\n\
             beilun-epb,B-6,{ACME},penalty.fine,2026-02-30,30000,,,\n\
             beilun-epb,B-7,{ACME},penalty.fine,2026-03-02,\"30,000\",,,\n\
             beilun-epb,B-8,{ACME},record.voided,2026-03-02,,-3,,\n\
             ,B-9,{ACME},penalty.fine,2026-03-02,30000,,,\n\
             beilun-epb,G-1,{ACME},penalty.fine,2026-03-02,30000,,,\n"
        );
        let rows = read_csv_text(&text).unwrap();
        let got = outcomes(&rows);
        let expect = [
            "2: uscc:",
            "3: occurred_at: is required",
            "4: amount_yuan: must not be negative",
            "5: amount_yuan: must be a whole number, got \"30000.5\"",
            "6: occurred_at: must be RFC 3339",
            "7: occurred_at: must be RFC 3339",
            "8: amount_yuan: must be a whole number, got \"30,000\"",
            "9: refers_to_seq: must be a ledger seq",
            "10: source: is required",
            "11: ok",
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for (g, e) in got.iter().zip(expect) {
            assert!(g.starts_with(e), "{g:?} does not start with {e:?}");
        }
    }

    #[test]
    fn occurred_at_forms() {
        let cases = [
            ("2026-03-02T08:00:00Z", "2026-03-02T08:00:00Z"),
            ("2026-03-02T16:00:00+08:00", "2026-03-02T08:00:00Z"),
            ("2026-03-02 16:00:00+08:00", "2026-03-02T08:00:00Z"),
            ("2026-03-02", "2026-03-01T16:00:00Z"),
            ("2026/3/2", "2026-03-01T16:00:00Z"),
            ("2026-03-02 08:30", "2026-03-02T00:30:00Z"),
            ("2026-03-02T08:30:15", "2026-03-02T00:30:15Z"),
        ];
        for (input, expect) in cases {
            assert_eq!(parse_occurred_at(input), Some(ts(expect)), "{input}");
        }
        for bad in ["03/02/2026", "2026-13-01", "yesterday", "2026-03-02T25:00:00Z"] {
            assert_eq!(parse_occurred_at(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_problems_fail_the_file_and_name_the_column() {
        let err = |text: &str| read_csv_text(text).unwrap_err().to_string();
        let missing = err("source,source_record_id,uscc,kind\nbeilun-epb,P-1,x,penalty.fine\n");
        assert!(missing.starts_with("missing required column \"occurred_at\""), "{missing}");
        let unknown = err("source,source_record_id,uscc,kind,occurred_at,amount,Description\n");
        assert!(unknown.starts_with("unknown columns \"amount\", \"Description\""), "{unknown}");
        let attr = err("source,source_record_id,uscc,kind,occurred_at,attr.bad key\n");
        assert!(attr.starts_with("column \"attr.bad key\""), "{attr}");
        let empty_key = err("source,source_record_id,uscc,kind,occurred_at,attr.\n");
        assert!(empty_key.starts_with("column \"attr.\""), "{empty_key}");
    }

    #[test]
    fn file_level_errors() {
        let dir = tempfile::tempdir().unwrap();
        let xlsx = dir.path().join("records.xlsx");
        std::fs::write(&xlsx, "x").unwrap();
        assert!(matches!(read(&xlsx), Err(Error::UnsupportedFormat(_))));
        assert!(matches!(read(&dir.path().join("absent.csv")), Err(Error::Read { .. })));
        // "北仑" in GBK, as Excel's plain "CSV" writes it on a Chinese system.
        let gbk = dir.path().join("gbk.csv");
        std::fs::write(
            &gbk,
            b"source,source_record_id,uscc,kind,occurred_at\n\xB1\xB1\xC2\xD8,P,x,k,2026-03-02\n",
        )
        .unwrap();
        let e = read(&gbk).unwrap_err();
        assert!(matches!(e, Error::NotUtf8 { line: 2, .. }), "{e}");
    }

    #[test]
    fn excel_artifacts_bom_and_blank_rows_are_ignored() {
        let text = format!(
            "\u{feff}source,source_record_id,uscc,kind,occurred_at\n\
             beilun-epb,P-1,{ACME},penalty.warning,2026/3/2\n\
             ,,,,\n\
             beilun-epb,P-2,{ACME},penalty.warning,2026/3/3\n\
             ,,,,\n"
        );
        let rows = read_csv_text(&text).unwrap();
        assert_eq!(outcomes(&rows), ["2: ok", "4: ok"], "row numbers still count the blank row");
    }

    #[test]
    fn header_only_file_has_no_rows() {
        assert_eq!(read_csv_text(HEADER).unwrap(), []);
    }

    #[test]
    fn progress_reaches_the_total() {
        let (_dir, path) = csv(&format!("{HEADER}beilun-epb,P-1,{ACME},penalty.warning,2026-03-02,,,,\n"));
        let mut last = (0, 0);
        read_records(&path, &mut |done, total| last = (done, total)).unwrap();
        assert_eq!(last, (1, 1));
    }

    fn write_parquet(path: &Path, columns: Vec<Column>) {
        let height = columns[0].len();
        let mut frame = DataFrame::new(height, columns).unwrap();
        let file = std::fs::File::create(path).unwrap();
        ParquetWriter::new(file).finish(&mut frame).unwrap();
    }

    #[test]
    fn parquet_with_typed_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.parquet");
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let days = (day - epoch).num_days() as i32;
        // 2026-03-02T08:00:00Z in milliseconds.
        let ms = ts("2026-03-02T08:00:00Z").unix_nanos() / 1_000_000;
        let n = 5;
        write_parquet(
            &path,
            vec![
                Column::new("source".into(), vec!["beilun-epb"; n]),
                // Numeric identifiers are common in regulators' sheets.
                Column::new("source_record_id".into(), (1..=n as i64).collect::<Vec<_>>()),
                Column::new("uscc".into(), vec![ACME, ACME, ACME, "bad", ACME]),
                Column::new("kind".into(), vec!["penalty.fine"; n]),
                // Built from the physical values: without polars' `timezones`
                // feature a cast would drop the zone.
                Int64Chunked::new("occurred_at".into(), [Some(ms), Some(ms), Some(ms), Some(ms), None])
                    .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
                    .into_column(),
                Column::new(
                    "amount_yuan".into(),
                    vec![Some(30_000.0), Some(1e4), Some(2.5), Some(1.0), Some(1.0)],
                ),
                Column::new("attr.inspected_on".into(), vec![days; n]).cast(&DataType::Date).unwrap(),
            ],
        );
        let rows = read(&path).unwrap();
        let got = outcomes(&rows);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0..2], ["1: ok", "2: ok"]);
        assert!(got[2].starts_with("3: amount_yuan: must be a whole number, got 2.5"), "{got:?}");
        assert!(got[3].starts_with("4: uscc:"), "{got:?}");
        assert!(got[4].starts_with("5: occurred_at: is required"), "{got:?}");
        let first = rows[0].record.as_ref().unwrap();
        assert_eq!(first.source_record_id, "1");
        assert_eq!(first.occurred_at, ts("2026-03-02T08:00:00Z"));
        assert_eq!(first.amount_yuan, 30_000);
        assert_eq!(first.attributes["inspected_on"], "2026-03-01T16:00:00Z");
        assert_eq!(rows[1].record.as_ref().unwrap().amount_yuan, 10_000);
    }

    #[test]
    fn parquet_naive_datetimes_and_dates_are_china_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.parquet");
        // 2026-03-02 08:00 as wall-clock microseconds, no zone.
        let wall = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap().and_hms_opt(8, 0, 0).unwrap();
        let us = wall.and_utc().timestamp_micros();
        write_parquet(
            &path,
            vec![
                Column::new("source".into(), ["beilun-epb"]),
                Column::new("source_record_id".into(), ["P-1"]),
                Column::new("uscc".into(), [ACME]),
                Column::new("kind".into(), ["penalty.fine"]),
                Column::new("occurred_at".into(), [us])
                    .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                    .unwrap(),
                Column::new("amount_yuan".into(), [30_000i64]),
                Column::new("refers_to_seq".into(), [0u64]),
            ],
        );
        let rows = read(&path).unwrap();
        let record = rows[0].record.as_ref().unwrap();
        assert_eq!(record.occurred_at, ts("2026-03-02T00:00:00Z"));
        assert_eq!((record.amount_yuan, record.refers_to), (30_000, None));

        let dated = dir.path().join("dated.parquet");
        let days = (wall.date() - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32;
        write_parquet(
            &dated,
            vec![
                Column::new("source".into(), ["beilun-epb"]),
                Column::new("source_record_id".into(), ["P-1"]),
                Column::new("uscc".into(), [ACME]),
                Column::new("kind".into(), ["penalty.fine"]),
                Column::new("occurred_at".into(), [days]).cast(&DataType::Date).unwrap(),
            ],
        );
        let rows = read(&dated).unwrap();
        assert_eq!(rows[0].record.as_ref().unwrap().occurred_at, ts("2026-03-01T16:00:00Z"));
    }

    #[test]
    fn parquet_unknown_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.parquet");
        write_parquet(
            &path,
            vec![
                Column::new("source".into(), ["beilun-epb"]),
                Column::new("source_record_id".into(), ["P-1"]),
                Column::new("uscc".into(), [ACME]),
                Column::new("kind".into(), ["penalty.fine"]),
                Column::new("occured_at".into(), ["2026-03-02"]),
            ],
        );
        let err = read(&path).unwrap_err().to_string();
        assert!(err.starts_with("missing required column \"occurred_at\""), "{err}");
    }
}
