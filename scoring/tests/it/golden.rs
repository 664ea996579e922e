//! Golden tests: realistic enterprise histories kept as data in
//! `fixtures/histories/*.jsonl`, each scored at its listed instants and
//! compared with the explanation in the sibling `.expected` file.
//!
//! `UPDATE_EXPECT=1 cargo test -p scoring golden` rewrites the snapshots;
//! the format is described in `fixtures/histories/README.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use expect_test::expect_file;
use scoring::{BASE_POINTS, Evaluation, LedgerRecord, Model, Record, RecordFields, Seq, Timestamp};
use serde::Deserialize;

/// The first line of a history file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    uscc: String,
    /// One sentence saying who the enterprise is and what happens to it.
    about: String,
    evaluate_at: Vec<String>,
}

/// Every later line: one ledger entry of the header's enterprise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    kind: String,
    occurred_at: String,
    #[serde(default)]
    amount_yuan: i64,
    refers_to_seq: Option<u64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/histories")
}

fn at(rfc3339: &str, context: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).unwrap_or_else(|| panic!("{context}: {rfc3339:?} is not RFC 3339"))
}

/// Parses one history and checks each entry as an append would, against the
/// entries before it.
fn load(path: &Path, model: &Model) -> (Header, Vec<LedgerRecord>) {
    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines.next().unwrap_or_else(|| panic!("{name}: empty file"));
    let header: Header = serde_json::from_str(first).unwrap_or_else(|e| panic!("{name}:1: header: {e}"));
    let mut ledger: Vec<LedgerRecord> = Vec::new();
    for (i, raw) in lines {
        let context = format!("{name}:{}", i + 1);
        let line: Line = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{context}: {e}"));
        if let Some(last) = ledger.last() {
            assert!(line.seq > last.seq.0, "{context}: seq {} does not follow {}", line.seq, last.seq);
        }
        let record = Record::new(RecordFields {
            source: "golden",
            source_record_id: &line.seq.to_string(),
            uscc: &header.uscc,
            kind: &line.kind,
            occurred_at: Some(at(&line.occurred_at, &context)),
            amount_yuan: line.amount_yuan,
            refers_to: line.refers_to_seq.map(Seq),
            description: &line.description,
            attributes: line.attributes,
        })
        .unwrap_or_else(|e| panic!("{context}: {e}"));
        model.check_record(&record, record.occurred_at).unwrap_or_else(|e| panic!("{context}: {e}"));
        model.check_workflow(&record, &ledger).unwrap_or_else(|e| panic!("{context}: {}", e.message));
        ledger.push(LedgerRecord { seq: Seq(line.seq), record });
    }
    (header, ledger)
}

/// One evaluation as a headline and one line per reason.
fn explain(out: &mut String, when: &str, e: &Evaluation) {
    let _ = write!(out, "{when}: {} {} {}", e.points, e.grade.as_str(), e.code.as_str());
    if e.veto {
        out.push_str(" veto");
    }
    if e.disputed {
        out.push_str(" disputed");
    }
    if !e.rectification_pending.is_empty() {
        let pending: Vec<u64> = e.rectification_pending.iter().map(|s| s.0).collect();
        let _ = write!(out, " pending {pending:?}");
    }
    out.push('\n');
    for r in e.reasons.iter() {
        let expires = r.expires_at.map(|t| format!("until {t}")).unwrap_or_default();
        let _ =
            writeln!(out, "  {:+4} {:<28} #{:<3} {expires:<26} {}", r.points, r.kind, r.seq.0, r.description);
    }
}

#[test]
fn histories_match_their_snapshots() {
    let model = Model::builtin();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(histories_dir())
        .expect("fixtures/histories exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no histories in {}", histories_dir().display());
    for path in &paths {
        let (header, ledger) = load(path, &model);
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let mut text = format!("# {name}: {}\n# {} under {}\n", header.about, header.uscc, model.version());
        for when in &header.evaluate_at {
            let e = model.score(&ledger, at(when, &name), u64::MAX);
            let sum: i32 = e.reasons.iter().map(|r| r.points).sum();
            assert_eq!(BASE_POINTS + sum, e.points, "{name} at {when}: reasons do not add up");
            text.push('\n');
            explain(&mut text, when, &e);
        }
        expect_file![path.with_extension("expected")].assert_eq(&text);
    }
}
