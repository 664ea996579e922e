//! `check_record` and `check_workflow`: one case per rule, asserting the
//! field named or the message given.

use scoring::{LedgerRecord, Model, Record, Timestamp};

use crate::support::{OTHER_USCC, day, entries, record};

/// `Ok` or the `field: rule` message, which must start with `expect`.
fn check_record(record: Record, now: Timestamp, expect: &str) {
    let got = Model::builtin().check_record(&record, now).map_err(|e| e.to_string());
    match got {
        Ok(()) => assert_eq!(expect, "ok", "{record:?} accepted"),
        Err(msg) => assert!(msg.starts_with(expect), "{msg:?} does not start with {expect:?}"),
    }
}

/// What broke: texts that come back to terminals and pages could carry
/// bidirectional overrides (and line breaks outside a description).
#[test]
fn new_records_carry_no_text_that_acts_on_a_terminal_or_a_page() {
    let now = day(10);
    let with = |edit: fn(&mut Record)| {
        let mut r = record("penalty.warning", day(1), 0, None);
        edit(&mut r);
        r
    };
    check_record(with(|r| r.description = "two\nlines\tand a tab".into()), now, "ok");
    check_record(
        with(|r| r.description = "invoice \u{202e}fdp.exe".into()),
        now,
        "description: must not contain control characters or bidirectional overrides, found U+202E",
    );
    check_record(with(|r| r.source_record_id = "A\nB".into()), now, "source_record_id: must not contain");
    check_record(
        with(|r| {
            r.attributes.insert("evidence".into(), "ref\u{2066}".into());
        }),
        now,
        "attributes value: must not contain",
    );
}

#[test]
fn record_rules_that_depend_on_the_kind() {
    let now = day(10);
    check_record(record("penalty.warning", day(1), 0, None), now, "ok");
    check_record(
        record("no.such", day(1), 0, None),
        now,
        "kind: unknown kind \"no.such\" in model ecocode-2026.2",
    );
    check_record(record("penalty.fine", day(1), 80_000, None), now, "ok");
    check_record(
        record("penalty.fine", day(1), 0, None),
        now,
        "amount_yuan: must be greater than 0 for penalty.fine",
    );
    check_record(
        record("penalty.warning", day(1), 1, None),
        now,
        "amount_yuan: must be 0 for penalty.warning, got 1",
    );
    check_record(record("rectification.verified", day(1), 5, Some(1)), now, "amount_yuan: must be 0");
    // Five minutes of clock skew are tolerated, not one nanosecond more.
    let tolerance = 300 * 1_000_000_000;
    check_record(record("penalty.warning", now.plus_nanos(tolerance), 0, None), now, "ok");
    check_record(
        record("penalty.warning", now.plus_nanos(tolerance + 1), 0, None),
        now,
        "occurred_at: 2025-01-11T00:05:00.000000001Z is more than 300 s after now",
    );
    check_record(
        record("dispute.opened", day(1), 0, None),
        now,
        "refers_to_seq: is required for dispute.opened",
    );
    check_record(record("dispute.opened", day(1), 0, Some(1)), now, "ok");
    check_record(record("penalty.warning", day(1), 0, Some(1)), now, "refers_to_seq: must be empty");
    let mut resolved = record("dispute.resolved", day(1), 0, Some(1));
    check_record(resolved.clone(), now, "ok");
    resolved.attributes.insert("outcome".into(), "upheld".into());
    check_record(resolved.clone(), now, "ok");
    resolved.attributes.insert("outcome".into(), "maybe".into());
    check_record(resolved.clone(), now, "attributes.outcome: must be \"upheld\" or \"rejected\"");
    resolved.attributes.remove("outcome");
    check_record(resolved, now, "attributes.outcome: must be");
    let mut voided = record("record.voided", day(1), 0, Some(1));
    check_record(voided.clone(), now, "ok");
    voided.attributes.insert("reason".into(), "  ".into());
    check_record(voided.clone(), now, "attributes.reason: is required");
    voided.attributes.remove("reason");
    check_record(voided, now, "attributes.reason: is required");
}

/// `Ok` or an `Ineligible` whose message contains `expect`.
fn check_workflow(step: Record, history: &[LedgerRecord], expect: &str) {
    let got = Model::builtin().check_workflow(&step, history).map_err(|e| e.to_string());
    match got {
        Ok(()) => assert_eq!(expect, "ok", "{step:?} accepted"),
        Err(msg) => assert!(msg.contains(expect), "{msg:?} lacks {expect:?}"),
    }
}

#[test]
fn workflow_steps_need_an_earlier_scored_record() {
    let history = entries("3 10 enforcement.suspend; 5 11 dispute.opened ref=3");
    check_workflow(record("dispute.opened", day(10), 0, Some(3)), &history, "ok");
    check_workflow(record("penalty.warning", day(10), 0, None), &history, "ok");
    check_workflow(record("dispute.opened", day(10), 0, Some(4)), &history, "record 4 does not exist");
    check_workflow(
        record("dispute.opened", day(12), 0, Some(5)),
        &history,
        "record 5 is a dispute.opened, not a scored record",
    );
    check_workflow(
        record("record.voided", day(9), 0, Some(3)),
        &history,
        "record.voided at 2025-01-10T00:00:00Z is before record 3, which occurred at 2025-01-11T00:00:00Z",
    );
    let mut foreign = record("dispute.opened", day(10), 0, Some(3));
    foreign.uscc = scoring::Uscc::parse(OTHER_USCC).expect("valid uscc");
    check_workflow(
        foreign,
        &history,
        "record 3 belongs to enterprise 91330421739237858X, not 91110000600037341L",
    );
    check_workflow(record("dispute.opened", day(10), 0, None), &history, "dispute.opened must name a record");
}

#[test]
fn repair_needs_verified_rectification_and_publicity() {
    // A 730-day window needs 365 days of publicity: eligible from day 375.
    let suspend = "3 10 enforcement.suspend; 4 20 rectification.submitted ref=3";
    check_workflow(
        record("repair.granted", day(400), 0, Some(3)),
        &entries(suspend),
        "repair of record 3 needs a rectification.verified for it first, and is eligible from \
         2026-01-11T00:00:00Z at the earliest (365 days of publicity)",
    );
    let verified = entries(&format!("{suspend}; 6 30 rectification.verified ref=3"));
    check_workflow(
        record("repair.granted", day(375).plus_nanos(-1), 0, Some(3)),
        &verified,
        "repair of record 3 is eligible from 2026-01-11T00:00:00Z",
    );
    check_workflow(record("repair.granted", day(375), 0, Some(3)), &verified, "ok");
    // A verification dated after the repair does not count yet.
    let late = entries(&format!("{suspend}; 6 500 rectification.verified ref=3"));
    check_workflow(
        record("repair.granted", day(400), 0, Some(3)),
        &late,
        "is eligible from 2026-05-16T00:00:00Z",
    );
    // A 365-day window needs 90 days: eligible from day 100.
    let fine = entries("3 10 penalty.fine amount=80000; 4 11 rectification.verified ref=3");
    check_workflow(
        record("repair.granted", day(99), 0, Some(3)),
        &fine,
        "is eligible from 2025-04-11T00:00:00Z (90 days of publicity",
    );
    check_workflow(record("repair.granted", day(100), 0, Some(3)), &fine, "ok");
    // The fine's tier sets the window: above 200 000 it is 730 days.
    let big = entries("3 10 penalty.fine amount=200001; 4 11 rectification.verified ref=3");
    check_workflow(record("repair.granted", day(100), 0, Some(3)), &big, "365 days of publicity");
}
