//! Builders for records and ledger entries, and a one-line rendering of an
//! evaluation that the table-driven tests compare against.

use std::collections::BTreeMap;

use scoring::{Evaluation, LedgerRecord, NANOS_PER_DAY, Record, RecordFields, Seq, Timestamp};

pub const USCC: &str = "91330421739237858X";
pub const OTHER_USCC: &str = "91110000600037341L";

/// Day 0 of the tests: 2025-01-01T00:00:00Z.
pub const DAY0_UNIX: i64 = 1_735_689_600;

pub fn day(d: i64) -> Timestamp {
    Timestamp::from_unix_nanos(DAY0_UNIX * 1_000_000_000 + d * NANOS_PER_DAY)
}

pub fn record(kind: &str, at: Timestamp, amount_yuan: i64, refers_to: Option<u64>) -> Record {
    let mut attributes = BTreeMap::new();
    match kind {
        "dispute.resolved" => {
            attributes.insert("outcome".to_owned(), "rejected".to_owned());
        }
        "record.voided" => {
            attributes.insert("reason".to_owned(), "annulled on review".to_owned());
        }
        _ => {}
    }
    Record::new(RecordFields {
        source: "beilun-epb",
        source_record_id: "test",
        uscc: USCC,
        kind,
        occurred_at: Some(at),
        amount_yuan,
        refers_to: refers_to.map(Seq),
        description: "",
        attributes,
    })
    .expect("test records are well-formed")
}

pub fn entry(seq: u64, record: Record) -> LedgerRecord {
    LedgerRecord { seq: Seq(seq), record }
}

/// Entries from a compact text, one per `;`: `seq day kind [key=value]...`
/// where `day` is a day number, optionally `+Nh`, and keys are `amount`,
/// `ref` and any attribute (e.g. `outcome=upheld`).
pub fn entries(text: &str) -> Vec<LedgerRecord> {
    text.split(';')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().unwrap_or_else(|| panic!("short entry {line:?}"));
            let seq: u64 = next().parse().expect("seq");
            let at = instant(next());
            let kind = next().to_owned();
            let mut amount = 0;
            let mut refers_to = None;
            let mut attributes = Vec::new();
            for word in words {
                let (key, value) = word.split_once('=').expect("key=value");
                match key {
                    "amount" => amount = value.parse().expect("amount"),
                    "ref" => refers_to = Some(value.parse().expect("ref")),
                    _ => attributes.push((key.to_owned(), value.to_owned())),
                }
            }
            let mut record = record(&kind, at, amount, refers_to);
            record.attributes.extend(attributes);
            entry(seq, record)
        })
        .collect()
}

/// `D` is day D; `D-` is one nanosecond before; `D+Nh` is N hours after.
pub fn instant(text: &str) -> Timestamp {
    if let Some(d) = text.strip_suffix('-') {
        return day(d.parse().expect("day")).plus_nanos(-1);
    }
    match text.split_once('+') {
        Some((d, h)) => {
            let hours: i64 = h.strip_suffix('h').expect("hours").parse().expect("hours");
            day(d.parse().expect("day")).plus_nanos(hours * 3_600 * 1_000_000_000)
        }
        None => day(text.parse().expect("day")),
    }
}

/// `points GRADE CODE [veto] [disputed] [pending=a,b] | kind points #seq, ...`
pub fn summary(e: &Evaluation) -> String {
    let mut s = format!("{} {} {}", e.points, e.grade.as_str(), e.code.as_str());
    if e.veto {
        s.push_str(" veto");
    }
    if e.disputed {
        s.push_str(" disputed");
    }
    if !e.rectification_pending.is_empty() {
        let seqs: Vec<String> = e.rectification_pending.iter().map(|s| s.0.to_string()).collect();
        s.push_str(&format!(" pending={}", seqs.join(",")));
    }
    if !e.reasons.is_empty() {
        let lines: Vec<String> =
            e.reasons.iter().map(|r| format!("{} {:+} #{}", r.kind, r.points, r.seq.0)).collect();
        s.push_str(&format!(" | {}", lines.join(", ")));
    }
    s
}
