//! Operator and regulator batch views: `score-all` (every registered
//! enterprise re-scored by the polars batch scorer, exported as Parquet or
//! CSV) and `report` (grade and colour distributions by region and industry,
//! and the enterprises whose colour changed between two instants).
//!
//! The client reads the ledger itself through `Ledger.ListEntries` and scores
//! it locally with `scoring::score_all`, so a regulator's nightly run costs
//! the server one sequential scan instead of one online evaluation per
//! enterprise, and its answer can be checked against the online scorer's
//! (`tests/it/batch.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ecocode_proto::v1 as pb;
use indicatif::ProgressBar;
use polars::prelude::{
    Column, CsvWriter, DataFrame, DataType, Expr, IntoLazy, ParquetWriter, PolarsResult, SerWriter,
    SortMultipleOptions, UnionArgs, col, concat, len, lit,
};
use scoring::{Code, Enterprise, Evaluation, Grade, LedgerRecord, MeeLevel, Model, Seq, Timestamp};

use server::events::Event;

use crate::client::{Connection, authed, channel, progress_bar, status_error};

/// The part of the ledger that scoring needs, as one reader saw it.
#[derive(Clone, Debug, Default)]
pub struct LedgerSnapshot {
    /// The latest registration of each USCC, by USCC.
    pub enterprises: BTreeMap<String, Enterprise>,
    /// Every record entry (scored records and workflow steps), in seq order.
    pub records: Vec<LedgerRecord>,
    /// The ledger prefix the snapshot covers: entries with `seq < tree_size`.
    pub tree_size: u64,
}

/// One enterprise's batch score: one row of the `score-all` export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScoreRow {
    pub uscc: String,
    pub name: String,
    pub region_code: String,
    pub industry_code: String,
    pub points: i32,
    pub grade: Grade,
    pub code: Code,
    pub mee_level: MeeLevel,
    pub veto: bool,
    pub disputed: bool,
    pub as_of: Timestamp,
    pub tree_size: u64,
    pub model_version: String,
}

/// An enterprise whose colour differs between the report's two instants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColourChange {
    pub uscc: String,
    pub name: String,
    pub region_code: String,
    pub industry_code: String,
    pub previous_code: Code,
    pub current_code: Code,
    pub previous_grade: Grade,
    pub current_grade: Grade,
    pub previous_points: i32,
    pub current_points: i32,
}

/// What `ecocode report` computed.
#[derive(Clone, Debug)]
pub struct Report {
    pub from: Option<Timestamp>,
    pub to: Timestamp,
    pub tree_size: u64,
    pub model_version: String,
    /// The scores at `to` the distribution is computed from.
    pub scores: Vec<ScoreRow>,
    /// One row per group (see [`distribution`]).
    pub distribution: DataFrame,
    /// Sorted by USCC; empty without `from`.
    pub changes: Vec<ColourChange>,
}

/// Grouping levels of the report: the `dimension` column's values.
pub const DIMENSIONS: [&str; 3] = ["region", "city", "industry"];

/// Every entry of the ledger via `Ledger.ListEntries` (progress bar by
/// entries), decoded into enterprises (latest registration per USCC) and
/// records.
///
/// An enterprise principal receives only its own entries; the snapshot then
/// holds just that enterprise, which still scores exactly as online.
pub async fn fetch_ledger(conn: &Connection) -> anyhow::Result<LedgerSnapshot> {
    let mut client = pb::ledger_client::LedgerClient::new(channel(conn).await?);
    // The signed size only sizes the progress bar; the stream below runs to
    // the head as of its start, which may be ahead of the last signature.
    let checkpoint =
        client.get_checkpoint(authed(conn, pb::GetCheckpointRequest {})?).await.map_err(status_error)?;
    let signed_size = checkpoint.into_inner().tree_size;
    let bar = progress_bar("fetching ledger", "entries");
    bar.set_length(signed_size);
    let request = authed(conn, pb::ListEntriesRequest { from_seq: 0, to_seq: 0 })?;
    let mut stream = client.list_entries(request).await.map_err(status_error)?.into_inner();
    let mut snapshot = LedgerSnapshot { tree_size: signed_size, ..LedgerSnapshot::default() };
    while let Some(entry) = stream.message().await.map_err(status_error)? {
        snapshot.tree_size = snapshot.tree_size.max(entry.seq + 1);
        bar.set_length(snapshot.tree_size);
        bar.set_position(entry.seq + 1);
        snapshot.add(&entry)?;
    }
    bar.finish_and_clear();
    Ok(snapshot)
}

impl LedgerSnapshot {
    /// Adds one streamed entry, decoded exactly as the server decodes its own
    /// ledger at start.
    pub fn add(&mut self, entry: &pb::Entry) -> anyhow::Result<()> {
        let hash = |bytes: &[u8], what: &str| -> anyhow::Result<ledger::Hash> {
            bytes.try_into().with_context(|| format!("entry {}: {what} is not 32 bytes", entry.seq))
        };
        let recorded_at = entry.recorded_at.as_ref().and_then(|t| Timestamp::from_unix(t.seconds, t.nanos));
        // `Event::decode` reads only the seq and the payload; the subject is
        // not on the wire and not needed to decode.
        let stored = ledger::Entry {
            seq: entry.seq,
            recorded_at_ns: recorded_at.map_or(0, Timestamp::unix_nanos),
            payload: entry.payload.clone(),
            subject: Vec::new(),
            entry_hash: hash(&entry.entry_hash, "entry_hash")?,
            chain_hash: hash(&entry.chain_hash, "chain_hash")?,
            details: entry.details.clone(),
        };
        match Event::decode(&stored)? {
            // A later registration supersedes, as in the server's directory.
            Event::Registration(e) => {
                self.enterprises.insert(e.uscc.to_string(), e);
            }
            Event::Record(record) => self.records.push(LedgerRecord { seq: Seq(entry.seq), record }),
            // Later details supersede, as in the server's directory.
            Event::EnterpriseUpdate { update, .. } => {
                self.enterprises.insert(update.enterprise.uscc.to_string(), update.enterprise);
            }
            Event::MonitoringPoint(_)
            | Event::PlatformOutage(_)
            | Event::Index(_)
            | Event::ScoringModel { .. }
            | Event::AccessGrant(_)
            | Event::AccessRevocation { .. } => {}
        }
        Ok(())
    }
}

/// Scores every registered enterprise of `snapshot` (whose region code
/// starts with `region_prefix`, if given) at `at` with the polars batch
/// scorer, sorted by USCC. Enterprises without records get the model's
/// answer for no records (100, INTEGRITY, GREEN).
pub fn score_snapshot(
    model: &Model,
    snapshot: &LedgerSnapshot,
    at: Timestamp,
    region_prefix: Option<&str>,
) -> anyhow::Result<Vec<ScoreRow>> {
    let prefix = region_prefix.unwrap_or_default();
    let enterprises: Vec<&Enterprise> =
        snapshot.enterprises.values().filter(|e| e.region_code.starts_with(prefix)).collect();
    // Filtering the records first keeps a regional run proportional to its
    // region, not to the whole ledger.
    let filtered: Vec<LedgerRecord>;
    let records = if prefix.is_empty() {
        &snapshot.records
    } else {
        let wanted: std::collections::HashSet<&str> = enterprises.iter().map(|e| e.uscc.as_str()).collect();
        filtered =
            snapshot.records.iter().filter(|r| wanted.contains(r.record.uscc.as_str())).cloned().collect();
        &filtered
    };
    let mut scored: HashMap<String, Evaluation> = scoring::score_all(model, records, at, snapshot.tree_size)
        .context("batch scoring failed")?
        .into_iter()
        .map(|(uscc, evaluation)| (uscc.to_string(), evaluation))
        .collect();
    let unrecorded = model.score(&[], at, snapshot.tree_size);
    Ok(enterprises
        .into_iter()
        .map(|e| {
            let evaluation = scored.remove(e.uscc.as_str()).unwrap_or_else(|| unrecorded.clone());
            ScoreRow {
                uscc: e.uscc.to_string(),
                name: e.name.clone(),
                region_code: e.region_code.clone(),
                industry_code: e.industry_code.clone(),
                points: evaluation.points,
                grade: evaluation.grade,
                code: evaluation.code,
                mee_level: evaluation.mee_level,
                veto: evaluation.veto,
                disputed: evaluation.disputed,
                as_of: at,
                tree_size: snapshot.tree_size,
                model_version: evaluation.model_version,
            }
        })
        .collect())
}

/// The `score-all` export: columns `uscc`, `name`, `region_code`,
/// `industry_code`, `points` (i32), `grade`, `code`, `mee_level`, `veto`,
/// `disputed`,
/// `as_of` (RFC 3339 text), `tree_size` (u64) and `model_version`.
pub fn scores_frame(rows: &[ScoreRow]) -> PolarsResult<DataFrame> {
    let text = |f: fn(&ScoreRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    DataFrame::new(
        rows.len(),
        vec![
            Column::new("uscc".into(), text(|r| &r.uscc)),
            Column::new("name".into(), text(|r| &r.name)),
            Column::new("region_code".into(), text(|r| &r.region_code)),
            Column::new("industry_code".into(), text(|r| &r.industry_code)),
            Column::new("points".into(), rows.iter().map(|r| r.points).collect::<Vec<_>>()),
            Column::new("grade".into(), text(|r| r.grade.as_str())),
            Column::new("code".into(), text(|r| r.code.as_str())),
            Column::new("mee_level".into(), text(|r| r.mee_level.as_str())),
            Column::new("veto".into(), rows.iter().map(|r| r.veto).collect::<Vec<_>>()),
            Column::new("disputed".into(), rows.iter().map(|r| r.disputed).collect::<Vec<_>>()),
            Column::new("as_of".into(), rows.iter().map(|r| r.as_of.to_string()).collect::<Vec<_>>()),
            Column::new("tree_size".into(), rows.iter().map(|r| r.tree_size).collect::<Vec<_>>()),
            Column::new("model_version".into(), text(|r| &r.model_version)),
        ],
    )
}

/// Counts and shares of each colour and grade per group, one row per
/// `(dimension, group)`: `dimension` is `region` (6-digit region code),
/// `city` (its 4-digit prefix) or `industry` (industry code, possibly
/// empty); then `enterprises`, a count column per colour, grade and MEE
/// level (`green` .. `poor`, `mee_green` .. `mee_red`, u32) and a
/// `<name>_share` column for each (f64; the colour shares, the grade shares
/// and the MEE level shares each sum to 1 per group). Sorted by
/// dimension in that order, then group.
pub fn distribution(scores: &DataFrame) -> PolarsResult<DataFrame> {
    // The city is the region code's first four digits (GB/T 2260); computed
    // here because polars' string functions need a feature we do not build.
    let city: Vec<String> = scores
        .column("region_code")?
        .str()?
        .iter()
        .map(|r| r.unwrap_or_default().chars().take(4).collect())
        .collect();
    let scores = scores.hstack(&[Column::new("city".into(), city)])?.lazy();
    // (column, value, output name); the MEE colours are prefixed so they do
    // not collide with the three-colour code's.
    let values: Vec<(&str, &str, String)> = Code::ALL
        .iter()
        .map(|c| ("code", c.as_str(), c.as_str().to_ascii_lowercase()))
        .chain(Grade::ALL.iter().map(|g| ("grade", g.as_str(), g.as_str().to_ascii_lowercase())))
        .chain(
            MeeLevel::ALL
                .iter()
                .map(|l| ("mee_level", l.as_str(), format!("mee_{}", l.as_str().to_ascii_lowercase()))),
        )
        .collect();
    let mut counts = vec![len().cast(DataType::UInt32).alias("enterprises")];
    counts.extend(values.iter().map(|(column, value, name)| {
        col(*column).eq(lit(*value)).cast(DataType::UInt32).sum().cast(DataType::UInt32).alias(name.as_str())
    }));
    let shares = values.iter().map(|(_, _, name)| {
        (col(name.as_str()).cast(DataType::Float64) / col("enterprises").cast(DataType::Float64))
            .alias(format!("{name}_share"))
    });
    let shares: Vec<Expr> = shares.collect();
    let per = |dimension: &str, key: &str| {
        scores
            .clone()
            .group_by([col(key).alias("group")])
            .agg(counts.clone())
            .with_columns(shares.clone())
            .with_column(lit(dimension).alias("dimension"))
            .sort(["group"], SortMultipleOptions::default())
    };
    let mut order = vec![col("dimension"), col("group"), col("enterprises")];
    order.extend(values.iter().map(|(_, _, name)| col(name.as_str())));
    order.extend(values.iter().map(|(_, _, name)| col(format!("{name}_share"))));
    concat(
        [per(DIMENSIONS[0], "region_code"), per(DIMENSIONS[1], "city"), per(DIMENSIONS[2], "industry_code")],
        // The default union keeps the inputs' order: region, city, industry.
        UnionArgs::default(),
    )?
    .select(order)
    .collect()
}

/// The enterprises whose colour differs between `before` and `after` (two
/// [`scores_frame`]s), joined on USCC: `uscc`, `name`, `region_code`,
/// `industry_code`, `previous_code`, `current_code`, `previous_grade`,
/// `current_grade`, `previous_points`, `current_points`, sorted by USCC.
/// Enterprises in only one of the two are left out.
pub fn colour_changes(before: &DataFrame, after: &DataFrame) -> PolarsResult<DataFrame> {
    let previous = before.clone().lazy().select([
        col("uscc").alias("previous_uscc"),
        col("code").alias("previous_code"),
        col("grade").alias("previous_grade"),
        col("points").alias("previous_points"),
    ]);
    after
        .clone()
        .lazy()
        .inner_join(previous, col("uscc"), col("previous_uscc"))
        .filter(col("code").neq(col("previous_code")))
        .select([
            col("uscc"),
            col("name"),
            col("region_code"),
            col("industry_code"),
            col("previous_code"),
            col("code").alias("current_code"),
            col("previous_grade"),
            col("grade").alias("current_grade"),
            col("previous_points"),
            col("points").alias("current_points"),
        ])
        .sort(["uscc"], SortMultipleOptions::default())
        .collect()
}

/// `ecocode score-all --as-of T --out FILE.parquet|.csv`: re-scores every
/// registered enterprise with the batch scorer and writes one row per
/// enterprise ([`scores_frame`]). `as_of` defaults to now.
pub async fn score_all(
    conn: &Connection,
    model: &Model,
    as_of: Option<Timestamp>,
    out: &Path,
) -> anyhow::Result<Vec<ScoreRow>> {
    // Fail before a long fetch, not after it.
    let format = Format::of(out)?;
    let at = as_of.unwrap_or_else(now);
    let snapshot = fetch_ledger(conn).await?;
    let (model, path) = (model.clone(), out.to_owned());
    let rows = off_runtime(snapshot.enterprises.len(), move || {
        let rows = score_snapshot(&model, &snapshot, at, None)?;
        write_frame(&mut scores_frame(&rows)?, &path, format)?;
        Ok(rows)
    })
    .await?;
    let count = |code: Code| rows.iter().filter(|r| r.code == code).count();
    println!(
        "{} enterprises at {at}: {} green, {} yellow, {} red -> {}",
        rows.len(),
        count(Code::Green),
        count(Code::Yellow),
        count(Code::Red),
        out.display()
    );
    Ok(rows)
}

/// `ecocode report [--from T1] --to T2 [--region PREFIX] [--out FILE]
/// [--changes-out FILE]`: the [`distribution`] of grades and colours at `to`
/// (default now) and, with `from`, the [`colour_changes`] from `from` to
/// `to`, both over the same ledger snapshot and only for enterprises whose
/// region code starts with `region_prefix`. Prints them as tables and writes
/// them to `out` and `changes_out` (`.csv` or `.parquet`).
pub async fn report(
    conn: &Connection,
    model: &Model,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    region_prefix: Option<&str>,
    out: Option<&Path>,
    changes_out: Option<&Path>,
) -> anyhow::Result<Report> {
    let target = |path: Option<&Path>| path.map(|p| Format::of(p).map(|f| (p.to_owned(), f))).transpose();
    let (out, changes_out) = (target(out)?, target(changes_out)?);
    if changes_out.is_some() && from.is_none() {
        bail!("--changes-out needs --from: the colour changes are between --from and --to");
    }
    let to = to.unwrap_or_else(now);
    if from.is_some_and(|from| from > to) {
        bail!("--from must not be after --to");
    }
    let snapshot = fetch_ledger(conn).await?;
    let model = model.clone();
    let prefix = region_prefix.map(str::to_owned);
    let written: Vec<PathBuf> = out.iter().chain(&changes_out).map(|(p, _)| p.clone()).collect();
    let report = off_runtime(snapshot.enterprises.len(), move || {
        let prefix = prefix.as_deref();
        let before = from.map(|from| score_snapshot(&model, &snapshot, from, prefix)).transpose()?;
        let after = score_snapshot(&model, &snapshot, to, prefix)?;
        let after_frame = scores_frame(&after)?;
        let mut distribution = distribution(&after_frame)?;
        let mut changes_frame = match &before {
            Some(before) => Some(colour_changes(&scores_frame(before)?, &after_frame)?),
            None => None,
        };
        if let Some((path, format)) = &out {
            write_frame(&mut distribution, path, *format)?;
        }
        if let (Some((path, format)), Some(frame)) = (&changes_out, changes_frame.as_mut()) {
            write_frame(frame, path, *format)?;
        }
        let changes = changes_frame.as_ref().map(changes_of).transpose()?.unwrap_or_default();
        Ok(Report {
            from,
            to,
            tree_size: snapshot.tree_size,
            model_version: model.version().to_owned(),
            scores: after,
            distribution,
            changes,
        })
    })
    .await?;
    print_report(&report)?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(report)
}

/// Runs batch work (scoring, frames, exports) on a blocking thread, with a
/// spinner: it is CPU-bound, and parts of polars call tokio's
/// `block_in_place`, which panics on a current-thread runtime's own thread.
async fn off_runtime<T: Send + 'static>(
    enterprises: usize,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("scoring {enterprises} enterprises"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = tokio::task::spawn_blocking(work).await.context("the batch task panicked");
    spinner.finish_and_clear();
    result?
}

/// The export formats, chosen by file extension.
#[derive(Clone, Copy, Debug)]
enum Format {
    Parquet,
    Csv,
}

impl Format {
    fn of(path: &Path) -> anyhow::Result<Format> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet") => Ok(Format::Parquet),
            Some("csv") => Ok(Format::Csv),
            _ => bail!("{}: the output file must end in .parquet or .csv", path.display()),
        }
    }
}

/// Writes `frame` to `path` via a sibling temporary file, so an interrupted
/// run never leaves a truncated export where a previous good one was.
/// The CLI's "now" when the user gives no instant: the system time, read
/// here (scoring takes the time as an argument and reads no clock).
fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

fn write_frame(frame: &mut DataFrame, path: &Path, format: Format) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let written = match format {
        Format::Parquet => ParquetWriter::new(file).finish(frame).map(drop),
        Format::Csv => CsvWriter::new(file).include_header(true).finish(frame),
    };
    written.with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot move {} to {}", partial.display(), path.display()))
}

fn changes_of(frame: &DataFrame) -> anyhow::Result<Vec<ColourChange>> {
    let text = |name: &str| -> anyhow::Result<Vec<String>> {
        Ok(frame.column(name)?.str()?.iter().map(|s| s.unwrap_or_default().to_owned()).collect())
    };
    let points = |name: &str| -> anyhow::Result<Vec<i32>> {
        Ok(frame.column(name)?.i32()?.iter().map(Option::unwrap_or_default).collect())
    };
    let (uscc, name, region, industry) =
        (text("uscc")?, text("name")?, text("region_code")?, text("industry_code")?);
    let (previous_code, current_code) = (text("previous_code")?, text("current_code")?);
    let (previous_grade, current_grade) = (text("previous_grade")?, text("current_grade")?);
    let (previous_points, current_points) = (points("previous_points")?, points("current_points")?);
    (0..frame.height())
        .map(|i| {
            Ok(ColourChange {
                uscc: uscc[i].clone(),
                name: name[i].clone(),
                region_code: region[i].clone(),
                industry_code: industry[i].clone(),
                previous_code: previous_code[i].parse()?,
                current_code: current_code[i].parse()?,
                previous_grade: previous_grade[i].parse()?,
                current_grade: current_grade[i].parse()?,
                previous_points: previous_points[i],
                current_points: current_points[i],
            })
        })
        .collect()
}

fn print_report(report: &Report) -> anyhow::Result<()> {
    let d = &report.distribution;
    println!(
        "{} enterprises at {} (ledger size {}, model {})",
        report.scores.len(),
        report.to,
        report.tree_size,
        report.model_version
    );
    let dimension = d.column("dimension")?.str()?;
    let group = d.column("group")?.str()?;
    let enterprises = d.column("enterprises")?.u32()?;
    let names: Vec<String> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(Grade::ALL.iter().map(|g| g.as_str()))
        .map(str::to_owned)
        .collect();
    let counts = names
        .iter()
        .map(|n| Ok(d.column(&n.to_ascii_lowercase())?.u32()?.clone()))
        .collect::<PolarsResult<Vec<_>>>()?;
    let shares = names
        .iter()
        .map(|n| Ok(d.column(&format!("{}_share", n.to_ascii_lowercase()))?.f64()?.clone()))
        .collect::<PolarsResult<Vec<_>>>()?;
    let headings = ["region (region_code)", "city (4-digit prefix)", "industry (industry_code)"];
    for (title, heading) in DIMENSIONS.iter().zip(headings) {
        println!();
        print!("{:<28} {:>5}", format!("by {heading}"), "total");
        for name in &names {
            print!("  {name:>14}");
        }
        println!();
        for i in (0..d.height()).filter(|&i| dimension.get(i) == Some(*title)) {
            let group = match group.get(i).unwrap_or_default() {
                "" => "(none)",
                g => g,
            };
            print!("{:<28} {:>5}", group, enterprises.get(i).unwrap_or_default());
            for (count, share) in counts.iter().zip(&shares) {
                let cell = format!(
                    "{} ({:.1}%)",
                    count.get(i).unwrap_or_default(),
                    100.0 * share.get(i).unwrap_or_default()
                );
                print!("  {cell:>14}");
            }
            println!();
        }
    }
    if let Some(from) = report.from {
        println!();
        println!("colour changes from {from} to {}: {} enterprises", report.to, report.changes.len());
        for c in &report.changes {
            println!(
                "  {} {:<24} {} {:<6} {:>3} -> {:<6} {:>3}",
                c.uscc,
                c.name,
                c.region_code,
                c.previous_code.as_str(),
                c.previous_points,
                c.current_code.as_str(),
                c.current_points
            );
        }
    }
    Ok(())
}
