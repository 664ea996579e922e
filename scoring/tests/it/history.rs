//! Snapshot of the full explanation for one realistic enterprise: it goes
//! RED after a suspension order, verifies its rectification, is repaired a
//! year later and returns to GREEN.

use std::fmt::Write as _;

use expect_test::expect;
use scoring::{LedgerRecord, Model, Record, RecordFields, Seq, Timestamp};

use crate::support::USCC;

fn at(rfc3339: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc3339).expect("valid instant")
}

/// `(seq, occurred_at, kind, amount, refers_to, description, outcome)`
type Row = (u64, &'static str, &'static str, i64, Option<u64>, &'static str);

const HISTORY: &[Row] = &[
    (101, "2025-03-01T08:00:00+08:00", "exceedance.daily", 0, None, "COD daily mean 68 mg/L over 50 mg/L"),
    (117, "2025-03-02T08:00:00+08:00", "exceedance.daily", 0, None, "COD daily mean 71 mg/L over 50 mg/L"),
    (130, "2025-03-03T08:00:00+08:00", "monitoring.missing_day", 0, None, ""),
    (152, "2025-03-10T10:00:00+08:00", "penalty.fine", 250_000, None, ""),
    (160, "2025-03-20T09:30:00+08:00", "enforcement.suspend", 0, None, "停产整治: untreated discharge"),
    (161, "2025-03-22T09:00:00+08:00", "dispute.opened", 0, Some(152), "fine amount contested"),
    (175, "2025-04-01T09:00:00+08:00", "rectification.submitted", 0, Some(160), "new treatment line"),
    (176, "2025-04-01T09:00:00+08:00", "rectification.submitted", 0, Some(152), ""),
    (190, "2025-04-20T15:00:00+08:00", "dispute.resolved", 0, Some(152), "fine upheld on review"),
    (204, "2025-05-15T10:00:00+08:00", "rectification.verified", 0, Some(160), "site inspection passed"),
    (205, "2025-05-15T10:00:00+08:00", "rectification.verified", 0, Some(152), ""),
    (260, "2025-10-01T00:00:00+08:00", "certification.iso14001", 0, None, "ISO 14001 certificate"),
    (301, "2026-03-21T10:00:00+08:00", "repair.granted", 0, Some(160), "信用修复"),
    (302, "2026-03-21T10:00:00+08:00", "repair.granted", 0, Some(152), "信用修复"),
];

fn ledger() -> Vec<LedgerRecord> {
    let model = Model::builtin();
    let mut ledger: Vec<LedgerRecord> = Vec::new();
    for &(seq, when, kind, amount, refers_to, description) in HISTORY {
        let mut attributes = std::collections::BTreeMap::new();
        if kind == "dispute.resolved" {
            attributes.insert("outcome".to_owned(), "rejected".to_owned());
        }
        let record = Record::new(RecordFields {
            source: "beilun-epb",
            source_record_id: "case",
            uscc: USCC,
            kind,
            occurred_at: Some(at(when)),
            amount_yuan: amount,
            refers_to: refers_to.map(Seq),
            description,
            attributes,
        })
        .expect("well-formed record");
        // Each entry passes the append checks as the server would run them.
        model.check_record(&record, record.occurred_at).expect("valid for the model");
        model.check_workflow(&record, &ledger).expect("eligible step");
        ledger.push(LedgerRecord { seq: Seq(seq), record });
    }
    ledger
}

fn explain(model: &Model, ledger: &[LedgerRecord], when: &str) -> String {
    let e = model.score(ledger, at(when), u64::MAX);
    let mut out = format!("{when}: {} {} {}", e.points, e.grade.as_str(), e.code.as_str());
    if e.veto {
        out.push_str(" veto");
    }
    if e.disputed {
        out.push_str(" disputed");
    }
    if !e.rectification_pending.is_empty() {
        let _ = write!(out, " pending {:?}", e.rectification_pending.iter().map(|s| s.0).collect::<Vec<_>>());
    }
    out.push('\n');
    for r in e.reasons.iter() {
        let expires = r.expires_at.map(|t| format!(" until {t}")).unwrap_or_default();
        let _ = writeln!(out, "  {:+4} {:<24} #{:<4} {}{expires}", r.points, r.kind, r.seq.0, r.description);
    }
    out
}

#[test]
fn suspension_rectification_and_repair() {
    let model = Model::builtin();
    let ledger = ledger();
    let instants = [
        "2025-03-05T00:00:00Z",
        "2025-03-15T00:00:00Z",
        "2025-03-25T00:00:00Z",
        "2025-04-05T00:00:00Z",
        "2025-05-20T00:00:00Z",
        "2025-06-05T00:00:00Z",
        "2025-10-02T00:00:00Z",
        "2026-03-22T00:00:00Z",
    ];
    let text: String = instants.iter().map(|t| explain(&model, &ledger, t)).collect();
    expect![[r#"
        2025-03-05T00:00:00Z: 97 INTEGRITY GREEN
            -1 exceedance.daily         #101  COD daily mean 68 mg/L over 50 mg/L until 2025-05-30T00:00:00Z
            -1 exceedance.daily         #117  COD daily mean 71 mg/L over 50 mg/L until 2025-05-31T00:00:00Z
            -1 monitoring.missing_day   #130  monitoring.missing_day until 2025-06-01T00:00:00Z
        2025-03-15T00:00:00Z: 77 WARNING YELLOW
           -20 penalty.fine             #152  penalty.fine 250000 yuan until 2027-03-10T02:00:00Z
            -1 exceedance.daily         #101  COD daily mean 68 mg/L over 50 mg/L until 2025-05-30T00:00:00Z
            -1 exceedance.daily         #117  COD daily mean 71 mg/L over 50 mg/L until 2025-05-31T00:00:00Z
            -1 monitoring.missing_day   #130  monitoring.missing_day until 2025-06-01T00:00:00Z
        2025-03-25T00:00:00Z: 53 POOR RED disputed
           -24 enforcement.suspend      #160  停产整治: untreated discharge until 2027-03-20T01:30:00Z
           -20 penalty.fine             #152  penalty.fine 250000 yuan until 2027-03-10T02:00:00Z
            -1 exceedance.daily         #101  COD daily mean 68 mg/L over 50 mg/L until 2025-05-30T00:00:00Z
            -1 exceedance.daily         #117  COD daily mean 71 mg/L over 50 mg/L until 2025-05-31T00:00:00Z
            -1 monitoring.missing_day   #130  monitoring.missing_day until 2025-06-01T00:00:00Z
        2025-04-05T00:00:00Z: 53 POOR RED disputed pending [152, 160]
           -24 enforcement.suspend      #160  停产整治: untreated discharge until 2027-03-20T01:30:00Z
           -20 penalty.fine             #152  penalty.fine 250000 yuan until 2027-03-10T02:00:00Z
            -1 exceedance.daily         #101  COD daily mean 68 mg/L over 50 mg/L until 2025-05-30T00:00:00Z
            -1 exceedance.daily         #117  COD daily mean 71 mg/L over 50 mg/L until 2025-05-31T00:00:00Z
            -1 monitoring.missing_day   #130  monitoring.missing_day until 2025-06-01T00:00:00Z
        2025-05-20T00:00:00Z: 75 WARNING YELLOW
           -12 enforcement.suspend      #160  停产整治: untreated discharge (rectified, halved) until 2027-03-20T01:30:00Z
           -10 penalty.fine             #152  penalty.fine 250000 yuan (rectified, halved) until 2027-03-10T02:00:00Z
            -1 exceedance.daily         #101  COD daily mean 68 mg/L over 50 mg/L until 2025-05-30T00:00:00Z
            -1 exceedance.daily         #117  COD daily mean 71 mg/L over 50 mg/L until 2025-05-31T00:00:00Z
            -1 monitoring.missing_day   #130  monitoring.missing_day until 2025-06-01T00:00:00Z
        2025-06-05T00:00:00Z: 78 WARNING YELLOW
           -12 enforcement.suspend      #160  停产整治: untreated discharge (rectified, halved) until 2027-03-20T01:30:00Z
           -10 penalty.fine             #152  penalty.fine 250000 yuan (rectified, halved) until 2027-03-10T02:00:00Z
        2025-10-02T00:00:00Z: 80 GOOD GREEN
           -12 enforcement.suspend      #160  停产整治: untreated discharge (rectified, halved) until 2027-03-20T01:30:00Z
           -10 penalty.fine             #152  penalty.fine 250000 yuan (rectified, halved) until 2027-03-10T02:00:00Z
            +2 certification.iso14001   #260  ISO 14001 certificate until 2028-09-29T16:00:00Z
        2026-03-22T00:00:00Z: 100 INTEGRITY GREEN
            -2 clamp                    #0    points kept within 0..=100
            +2 certification.iso14001   #260  ISO 14001 certificate until 2028-09-29T16:00:00Z
    "#]]
    .assert_eq(&text);

    // The repair could not have come earlier: a 730-day window needs 365
    // days of publicity after the suspension.
    let mut early = ledger[12].record.clone();
    early.occurred_at = at("2026-03-01T00:00:00Z");
    let err = model.check_workflow(&early, &ledger[..12]).expect_err("too early");
    expect!["repair of record 160 is eligible from 2026-03-20T01:30:00Z (365 days of publicity after 2025-03-20T01:30:00Z, rectification verified at 2025-05-15T02:00:00Z), not at 2026-03-01T00:00:00Z"].assert_eq(&err.message);

    // Every change point; the expiries after the repair change nothing visible.
    let colours: Vec<String> = model
        .change_points(&ledger, at("2025-01-01T00:00:00Z"), at("2028-12-31T00:00:00Z"), u64::MAX)
        .into_iter()
        .map(|t| {
            let e = model.score(&ledger, t, u64::MAX);
            format!("{t} {} {}", e.points, e.code.as_str())
        })
        .collect();
    expect![[r#"
        2025-03-01T00:00:00Z 99 GREEN
        2025-03-02T00:00:00Z 98 GREEN
        2025-03-03T00:00:00Z 97 GREEN
        2025-03-10T02:00:00Z 77 YELLOW
        2025-03-20T01:30:00Z 53 RED
        2025-03-22T01:00:00Z 53 RED
        2025-04-01T01:00:00Z 53 RED
        2025-04-20T07:00:00Z 53 RED
        2025-05-15T02:00:00Z 75 YELLOW
        2025-05-30T00:00:00Z 76 YELLOW
        2025-05-31T00:00:00Z 77 YELLOW
        2025-06-01T00:00:00Z 78 YELLOW
        2025-09-30T16:00:00Z 80 GREEN
        2026-03-21T02:00:00Z 100 GREEN
        2027-03-10T02:00:00Z 100 GREEN
        2027-03-20T01:30:00Z 100 GREEN
        2028-09-29T16:00:00Z 100 GREEN"#]]
    .assert_eq(&colours.join("\n"));
}
