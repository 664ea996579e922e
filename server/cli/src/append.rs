//! `ecocode append FILE`: records from a JSON Lines file, one per line,
//! sent with `Ingest.AppendRecords`.
//!
//! A province's year is millions of lines, so the file is never read whole:
//! a reader thread parses line by line into a small bounded queue, and the
//! records go out in chunks of `--chunk-records` (default 100 000), one
//! client stream per chunk, each below the server's `--max-stream-records`.
//! Memory is bounded by the chunk (one line number per record in flight),
//! not by the file. When a stream fails, or a line does not parse, the
//! error says which lines are certainly appended and how to resume
//! (`--skip-lines`); running the whole file again is also safe, since a
//! record already in the ledger comes back as a duplicate, never twice.

use std::fmt;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use ecocode_proto::v1 as pb;
use indicatif::{ProgressBar, ProgressStyle};
use scoring::Timestamp;
use server::convert::to_proto;
use tokio::sync::mpsc;

use crate::client::{Connection, authed, channel};

/// Records per `AppendRecords` stream unless `--chunk-records` says
/// otherwise: a tenth of the server's default `--max-stream-records`, so a
/// broken connection loses little and a stream never meets the limit.
pub const DEFAULT_CHUNK_RECORDS: u64 = 100_000;
/// Parsed records waiting for the sender: the reader runs this far ahead.
const READ_AHEAD: usize = 4_096;
/// Records queued inside one stream before the sender waits for the wire.
const STREAM_BUFFER: usize = 1_024;
/// Rejections kept in the summary (all are printed and counted).
const MAX_REJECTED_KEPT: usize = 1_000;

/// How to send a file.
#[derive(Clone, Debug)]
pub struct Options {
    /// Records per client stream (at least 1).
    pub chunk_records: u64,
    /// Lines at the start of the file not sent (already appended by an
    /// earlier run that stopped).
    pub skip_lines: u64,
    /// Print rejected lines as they come and draw a progress bar.
    pub report: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { chunk_records: DEFAULT_CHUNK_RECORDS, skip_lines: 0, report: false }
    }
}

/// What an append did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendSummary {
    /// Records sent (blank and skipped lines are not records).
    pub records: u64,
    pub appended: u64,
    /// Records already in the ledger with the same content (a re-run).
    pub duplicates: u64,
    pub rejected_count: u64,
    /// The first rejections: (line, code, message).
    pub rejected: Vec<(u64, String, String)>,
    /// Client streams used, one per chunk.
    pub streams: u64,
    /// Every line up to this one has been answered by the server.
    pub lines_done: u64,
    /// The ledger's size in the last stream's checkpoint.
    pub tree_size: Option<u64>,
}

impl fmt::Display for AppendSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records: {} appended, {} already present, {} rejected ({} stream{})",
            self.records,
            self.appended,
            self.duplicates,
            self.rejected_count,
            self.streams,
            if self.streams == 1 { "" } else { "s" }
        )
    }
}

/// The error of an append that stopped part-way: what is certainly in the
/// ledger, and how to go on. Callers that need the numbers downcast to it.
#[derive(Debug)]
pub struct Stopped {
    pub file: PathBuf,
    /// What went wrong, and where.
    pub reason: String,
    pub summary: AppendSummary,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let done = self.summary.lines_done;
        let file = self.file.display();
        writeln!(f, "{}", self.reason)?;
        if done == 0 {
            write!(f, "no line of {file} was appended; fix the cause and run the same command again")
        } else {
            write!(
                f,
                "lines 1..={done} of {file} were appended ({} new, {} already present, {} rejected); \
                 resume with `ecocode append --skip-lines {done} {file}`, or run the whole file again: \
                 records already appended come back as already present, never twice",
                self.summary.appended, self.summary.duplicates, self.summary.rejected_count
            )
        }
    }
}

impl std::error::Error for Stopped {}

/// One line of an `append` file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    source: String,
    source_record_id: String,
    uscc: String,
    kind: String,
    occurred_at: String,
    #[serde(default)]
    amount_yuan: i64,
    #[serde(default)]
    refers_to_seq: u64,
    #[serde(default)]
    description: String,
    #[serde(default)]
    attributes: std::collections::BTreeMap<String, String>,
}

fn parse_line(line: &str) -> Result<pb::Record, String> {
    let r: JsonRecord = serde_json::from_str(line).map_err(|e| format!("not a record: {e}"))?;
    let occurred_at = Timestamp::parse_rfc3339(&r.occurred_at)
        .ok_or_else(|| format!("occurred_at {:?} is not RFC 3339", r.occurred_at))?;
    Ok(pb::Record {
        source: r.source,
        source_record_id: r.source_record_id,
        uscc: r.uscc,
        kind: r.kind,
        occurred_at: Some(to_proto::timestamp(occurred_at)),
        amount_yuan: r.amount_yuan,
        refers_to_seq: r.refers_to_seq,
        description: r.description,
        attributes: r.attributes,
    })
}

/// What the reader thread hands the sender.
enum Read {
    Record {
        line: u64,
        record: pb::Record,
    },
    /// A line that is not a record, or the file could not be read.
    Broken {
        line: u64,
        error: String,
    },
}

/// How far the reader is, for the progress bar.
#[derive(Default)]
struct ReadProgress {
    bytes: AtomicU64,
    lines: AtomicU64,
}

/// Reads `file` line by line on a thread of its own, parsing each line,
/// into a queue of [`READ_AHEAD`]; stops at the first broken line.
fn spawn_reader(file: std::fs::File, skip_lines: u64, progress: Arc<ReadProgress>) -> mpsc::Receiver<Read> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut text = String::new();
        let mut line = 0u64;
        loop {
            text.clear();
            let read = match reader.read_line(&mut text) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    let _ =
                        tx.blocking_send(Read::Broken { line: line + 1, error: format!("cannot read: {e}") });
                    return;
                }
            };
            line += 1;
            progress.bytes.fetch_add(read as u64, Ordering::Relaxed);
            progress.lines.store(line, Ordering::Relaxed);
            if line <= skip_lines || text.trim().is_empty() {
                continue;
            }
            let item = match parse_line(text.trim_end_matches(['\n', '\r'])) {
                Ok(record) => Read::Record { line, record },
                Err(error) => Read::Broken { line, error },
            };
            let broken = matches!(item, Read::Broken { .. });
            // The sender went away (it stopped): so does the reader.
            if tx.blocking_send(item).is_err() || broken {
                return;
            }
        }
    });
    rx
}

fn progress_bar(total_bytes: u64, report: bool) -> ProgressBar {
    if !report {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Appends `file`, prints rejected lines and the summary line, and fails
/// when a line was rejected or the append stopped part-way ([`Stopped`]).
pub async fn append(conn: &Connection, file: &Path, options: &Options) -> anyhow::Result<AppendSummary> {
    let summary = send_file(conn, file, &Options { report: true, ..options.clone() }).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{summary}")?;
    if let Some(size) = summary.tree_size {
        writeln!(stdout, "ledger now has {size} entries")?;
    }
    if summary.rejected_count > 0 {
        bail!(
            "{} records were rejected; fix the lines listed above and re-run (appended records are not duplicated)",
            summary.rejected_count
        );
    }
    Ok(summary)
}

/// Sends `file` in chunks of `options.chunk_records` records, one client
/// stream each. Fails with [`Stopped`] when a line does not parse or a
/// stream fails; the records before it stay appended.
pub async fn send_file(conn: &Connection, file: &Path, options: &Options) -> anyhow::Result<AppendSummary> {
    if options.chunk_records == 0 {
        bail!("--chunk-records must be at least 1");
    }
    let opened = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let total_bytes = opened.metadata().map(|m| m.len()).unwrap_or(0);
    let progress = Arc::new(ReadProgress::default());
    let mut reader = spawn_reader(opened, options.skip_lines, progress.clone());
    let client = pb::ingest_client::IngestClient::new(channel(conn).await?);
    let bar = progress_bar(total_bytes, options.report);
    let started = Instant::now();
    let mut summary = AppendSummary { lines_done: options.skip_lines, ..AppendSummary::default() };
    let stopped = |summary: AppendSummary, reason: String| -> anyhow::Error {
        Stopped { file: file.to_owned(), reason, summary }.into()
    };
    let show = |bar: &ProgressBar, summary: &AppendSummary, sent: u64| {
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        bar.set_position(progress.bytes.load(Ordering::Relaxed));
        bar.set_message(format!(
            "{} lines read, {} records sent ({:.0} records/s), stream {}",
            progress.lines.load(Ordering::Relaxed),
            summary.records + sent,
            (summary.records + sent) as f64 / seconds,
            summary.streams + 1
        ));
    };
    let mut next = reader.recv().await;
    while let Some(first) = next.take() {
        let (first_line, first_record) = match first {
            Read::Record { line, record } => (line, record),
            Read::Broken { line, error } => {
                bar.finish_and_clear();
                summary.lines_done = line - 1;
                return Err(stopped(summary, format!("{}:{line}: {error}", file.display())));
            }
        };
        // One stream per chunk: the call runs while the chunk is fed to it.
        let (records, stream) = mpsc::channel(STREAM_BUFFER);
        let call = {
            let mut client = client.clone();
            let request = authed(conn, tokio_stream::wrappers::ReceiverStream::new(stream))?;
            tokio::spawn(async move { client.append_records(request).await })
        };
        // The line of each record of this chunk, to map rejections back.
        let mut lines = Vec::with_capacity(options.chunk_records.min(1 << 20) as usize);
        let mut broken = None;
        let mut pending = Some((first_line, first_record));
        while let Some((line, record)) = pending.take() {
            // The call ended early (the server refused it): stop feeding.
            if records.send(record).await.is_err() {
                break;
            }
            lines.push(line);
            if lines.len() % 1_024 == 0 {
                show(&bar, &summary, lines.len() as u64);
            }
            if lines.len() as u64 == options.chunk_records {
                next = reader.recv().await;
                break;
            }
            match reader.recv().await {
                Some(Read::Record { line, record }) => pending = Some((line, record)),
                Some(Read::Broken { line, error }) => broken = Some((line, error)),
                None => {}
            }
        }
        drop(records);
        let last_line = lines.last().copied().unwrap_or(first_line);
        let answer = call.await.context("the sending task failed")?;
        let response = match answer {
            Ok(response) => response.into_inner(),
            Err(status) => {
                bar.finish_and_clear();
                let mut reason = format!(
                    "{:?}: {} (the stream of lines {first_line}..={last_line}; some of them may be appended)",
                    status.code(),
                    status.message()
                );
                if status.code() == tonic::Code::ResourceExhausted && status.message().contains("at most") {
                    reason.push_str(&format!(
                        "; the server's --max-stream-records is below --chunk-records {}: use a smaller --chunk-records",
                        options.chunk_records
                    ));
                }
                return Err(stopped(summary, reason));
            }
        };
        summary.streams += 1;
        summary.records += lines.len() as u64;
        summary.appended += response.accepted;
        summary.duplicates += response.duplicates;
        summary.rejected_count += response.rejected_count;
        for r in response.rejected {
            let line = usize::try_from(r.index).ok().and_then(|i| lines.get(i)).copied().unwrap_or(0);
            if options.report {
                bar.suspend(|| println!("  line {line}: {} {}", r.code, r.message));
            }
            if summary.rejected.len() < MAX_REJECTED_KEPT {
                summary.rejected.push((line, r.code, r.message));
            }
        }
        if let Some(c) = &response.checkpoint {
            summary.tree_size = Some(c.tree_size);
        }
        summary.lines_done = last_line;
        show(&bar, &summary, 0);
        if let Some((line, error)) = broken {
            bar.finish_and_clear();
            summary.lines_done = line - 1;
            return Err(stopped(summary, format!("{}:{line}: {error}", file.display())));
        }
    }
    bar.finish_and_clear();
    // Blank lines at the end are done too.
    summary.lines_done = summary.lines_done.max(progress.lines.load(Ordering::Relaxed));
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_names_the_lines_appended_and_how_to_resume() {
        let summary = AppendSummary { appended: 990, duplicates: 10, lines_done: 1000, ..Default::default() };
        let stop =
            Stopped { file: "year.jsonl".into(), reason: "year.jsonl:1001: not a record".into(), summary };
        let text = stop.to_string();
        assert!(text.contains("lines 1..=1000 of year.jsonl were appended"), "{text}");
        assert!(text.contains("--skip-lines 1000"), "{text}");
        let none =
            Stopped { file: "x".into(), reason: "x:1: not a record".into(), summary: Default::default() };
        assert!(none.to_string().contains("no line of x was appended"));
    }

    #[test]
    fn lines_parse_with_the_field_named() {
        assert!(parse_line("{").unwrap_err().starts_with("not a record"));
        let bad_time =
            r#"{"source":"s","source_record_id":"1","uscc":"u","kind":"k","occurred_at":"yesterday"}"#;
        assert!(parse_line(bad_time).unwrap_err().starts_with("occurred_at"));
    }
}
