//! Table-driven evaluation cases: entries, `T`, `N` and the expected
//! summary (see `support::summary`), plus the spec's kind table checked
//! against the builtin model.

use scoring::{Model, Seq};

use crate::support::{day, entries, entry, instant, record, summary};

const ALL: u64 = u64::MAX;

/// Evaluates `entries` at `at` with prefix `n` and compares the summary;
/// every case also checks that the reasons add up to the points.
fn check(entries_text: &str, at: &str, n: u64, expect: &str) {
    let model = Model::builtin();
    let evaluation = model.score(&entries(entries_text), instant(at), n);
    let sum: i32 = evaluation.reasons.iter().map(|r| r.points).sum();
    assert_eq!(100 + sum, evaluation.points, "reasons do not add up: {evaluation:#?}");
    assert_eq!(evaluation.as_of, instant(at));
    assert_eq!(evaluation.model_version, "ecocode-2026.2");
    let got = summary(&evaluation);
    assert_eq!(got, expect, "\nentries: {entries_text}\nat: {at}, N: {n}");
}

#[test]
fn no_records_score_full_marks() {
    check("", "0", ALL, "100 INTEGRITY GREEN");
}

#[test]
fn every_scored_kind_counts() {
    let cases = [
        ("exceedance.daily", "99 INTEGRITY GREEN | exceedance.daily -1 #1"),
        ("monitoring.missing_day", "99 INTEGRITY GREEN | monitoring.missing_day -1 #1"),
        ("monitoring.insufficient_day", "99 INTEGRITY GREEN | monitoring.insufficient_day -1 #1"),
        ("monitoring.excused_day", "100 INTEGRITY GREEN | monitoring.excused_day +0 #1"),
        ("penalty.warning", "97 INTEGRITY GREEN | penalty.warning -3 #1"),
        ("penalty.daily_continuous", "80 GOOD GREEN | penalty.daily_continuous -20 #1"),
        ("enforcement.seal", "76 WARNING YELLOW | enforcement.seal -24 #1"),
        ("enforcement.limit_production", "76 WARNING YELLOW | enforcement.limit_production -24 #1"),
        ("enforcement.suspend", "76 WARNING YELLOW | enforcement.suspend -24 #1"),
        ("incident.general", "85 GOOD GREEN | incident.general -15 #1"),
        ("complaint.verified", "98 INTEGRITY GREEN | complaint.verified -2 #1"),
        ("complaint.repeated", "95 INTEGRITY GREEN | complaint.repeated -5 #1"),
        ("inspection.finding", "98 INTEGRITY GREEN | inspection.finding -2 #1"),
        ("rectification.overdue", "95 INTEGRITY GREEN | rectification.overdue -5 #1"),
        ("permit.report_late", "97 INTEGRITY GREEN | permit.report_late -3 #1"),
        ("disclosure.annual_late", "97 INTEGRITY GREEN | disclosure.annual_late -3 #1"),
        ("disclosure.temporary_late", "98 INTEGRITY GREEN | disclosure.temporary_late -2 #1"),
        ("disclosure.false", "90 INTEGRITY GREEN | disclosure.false -10 #1"),
        ("veto.crime", "60 POOR RED veto | veto.crime -40 #1"),
        ("veto.license_revoked", "60 POOR RED veto | veto.license_revoked -40 #1"),
        ("veto.bypass", "60 POOR RED veto | veto.bypass -40 #1"),
        ("veto.illegal_hazardous_waste", "60 POOR RED veto | veto.illegal_hazardous_waste -40 #1"),
        ("veto.no_eia", "60 POOR RED veto | veto.no_eia -40 #1"),
        ("veto.data_fraud", "60 POOR RED veto | veto.data_fraud -40 #1"),
        ("incident.major", "60 POOR RED veto | incident.major -40 #1"),
    ];
    for (kind, expect) in cases {
        check(&format!("1 0 {kind}"), "1", ALL, expect);
    }
    // Bonuses, next to a deduction so the clamp does not hide them.
    check(
        "1 0 penalty.warning; 2 0 commitment.clean_year",
        "1",
        ALL,
        "99 INTEGRITY GREEN | penalty.warning -3 #1, commitment.clean_year +2 #2",
    );
    check(
        "1 0 penalty.warning; 2 0 certification.iso14001",
        "1",
        ALL,
        "99 INTEGRITY GREEN | penalty.warning -3 #1, certification.iso14001 +2 #2",
    );
    check(
        "1 0 penalty.daily_continuous; 2 0 award.environmental",
        "1",
        ALL,
        "85 GOOD GREEN | penalty.daily_continuous -20 #1, award.environmental +5 #2",
    );
    // Records of kinds the model does not know are not scored.
    check("1 0 noise.unknown", "1", ALL, "100 INTEGRITY GREEN");
}

#[test]
fn fine_tiers_at_their_boundaries() {
    check("1 0 penalty.fine amount=1", "1", ALL, "95 INTEGRITY GREEN | penalty.fine -5 #1");
    check("1 0 penalty.fine amount=50000", "1", ALL, "95 INTEGRITY GREEN | penalty.fine -5 #1");
    check("1 0 penalty.fine amount=50001", "1", ALL, "90 INTEGRITY GREEN | penalty.fine -10 #1");
    check("1 0 penalty.fine amount=200000", "1", ALL, "90 INTEGRITY GREEN | penalty.fine -10 #1");
    check("1 0 penalty.fine amount=200001", "1", ALL, "80 GOOD GREEN | penalty.fine -20 #1");
    // The tier also sets the window: 365 days up to 200 000, 730 above.
    check("1 0 penalty.fine amount=200000", "365-", ALL, "90 INTEGRITY GREEN | penalty.fine -10 #1");
    check("1 0 penalty.fine amount=200000", "365", ALL, "100 INTEGRITY GREEN");
    check("1 0 penalty.fine amount=200001", "365", ALL, "80 GOOD GREEN | penalty.fine -20 #1");
    check("1 0 penalty.fine amount=200001", "730-", ALL, "80 GOOD GREEN | penalty.fine -20 #1");
    check("1 0 penalty.fine amount=200001", "730", ALL, "100 INTEGRITY GREEN");
}

#[test]
fn per_kind_caps_bite_and_release() {
    let six_complaints = "1 0 complaint.verified; 2 1 complaint.verified; 3 2 complaint.verified; \
                          4 3 complaint.verified; 5 4 complaint.verified; 6 5 complaint.verified";
    check(
        six_complaints,
        "10",
        ALL,
        "90 INTEGRITY GREEN | cap:complaint.verified +2 #0, complaint.verified -2 #1, \
         complaint.verified -2 #2, complaint.verified -2 #3, complaint.verified -2 #4, \
         complaint.verified -2 #5, complaint.verified -2 #6",
    );
    // Five complaints sum exactly to the cap: nothing to correct.
    check(
        six_complaints,
        "10",
        6,
        "90 INTEGRITY GREEN | complaint.verified -2 #1, complaint.verified -2 #2, \
         complaint.verified -2 #3, complaint.verified -2 #4, complaint.verified -2 #5",
    );
    // The first complaint expires on day 365: the cap no longer bites.
    check(
        six_complaints,
        "365",
        ALL,
        "90 INTEGRITY GREEN | complaint.verified -2 #2, complaint.verified -2 #3, \
         complaint.verified -2 #4, complaint.verified -2 #5, complaint.verified -2 #6",
    );
    // The cap applies to points after halving: three of six halved sum to -9.
    check(
        &format!(
            "{six_complaints}; 7 6 rectification.verified ref=1; 8 6 rectification.verified ref=2; \
             9 6 rectification.verified ref=3"
        ),
        "10",
        ALL,
        "91 INTEGRITY GREEN | complaint.verified -2 #4, complaint.verified -2 #5, \
         complaint.verified -2 #6, complaint.verified -1 #1, complaint.verified -1 #2, \
         complaint.verified -1 #3",
    );
    let eleven_exceedances =
        (1..=11).map(|i| format!("{i} {} exceedance.daily", i - 1)).collect::<Vec<_>>().join(";");
    let lines = (1..=11).map(|i| format!("exceedance.daily -1 #{i}")).collect::<Vec<_>>().join(", ");
    check(
        &eleven_exceedances,
        "11",
        ALL,
        &format!("90 INTEGRITY GREEN | cap:exceedance.daily +1 #0, {lines}"),
    );
    check(
        "1 0 monitoring.missing_day; 2 0 monitoring.missing_day; 3 0 monitoring.missing_day; \
         4 0 monitoring.missing_day; 5 0 monitoring.missing_day; 6 0 monitoring.missing_day",
        "1",
        ALL,
        "95 INTEGRITY GREEN | cap:monitoring.missing_day +1 #0, monitoring.missing_day -1 #1, \
         monitoring.missing_day -1 #2, monitoring.missing_day -1 #3, monitoring.missing_day -1 #4, \
         monitoring.missing_day -1 #5, monitoring.missing_day -1 #6",
    );
}

#[test]
fn bonus_cap_and_clamp() {
    check(
        "1 0 penalty.daily_continuous; 2 0 award.environmental; 3 1 award.environmental; \
         4 2 certification.iso14001",
        "3",
        ALL,
        "90 INTEGRITY GREEN | penalty.daily_continuous -20 #1, award.environmental +5 #2, \
         award.environmental +5 #3, cap:bonus -2 #0, certification.iso14001 +2 #4",
    );
    // Bonuses alone cannot lift the score above 100.
    check(
        "1 0 award.environmental",
        "1",
        ALL,
        "100 INTEGRITY GREEN | clamp -5 #0, award.environmental +5 #1",
    );
    check(
        "1 0 award.environmental; 2 0 award.environmental; 3 0 award.environmental",
        "1",
        ALL,
        "100 INTEGRITY GREEN | clamp -10 #0, cap:bonus -5 #0, award.environmental +5 #1, \
         award.environmental +5 #2, award.environmental +5 #3",
    );
    // Clamp at 0, with and without veto.
    check(
        "1 0 veto.crime; 2 0 veto.bypass; 3 0 incident.major",
        "1",
        ALL,
        "0 POOR RED veto | veto.crime -40 #1, veto.bypass -40 #2, incident.major -40 #3, clamp +20 #0",
    );
    check(
        "1 0 enforcement.seal; 2 0 enforcement.limit_production; 3 0 enforcement.suspend; \
         4 1 enforcement.seal; 5 1 enforcement.suspend",
        "1",
        ALL,
        "0 POOR RED | enforcement.seal -24 #1, enforcement.limit_production -24 #2, \
         enforcement.suspend -24 #3, enforcement.seal -24 #4, enforcement.suspend -24 #5, \
         clamp +20 #0",
    );
}

#[test]
fn veto_forces_poor_whatever_the_points() {
    check(
        "1 0 veto.no_eia; 2 0 award.environmental; 3 0 award.environmental",
        "1",
        ALL,
        "70 POOR RED veto | veto.no_eia -40 #1, award.environmental +5 #2, award.environmental +5 #3",
    );
}

#[test]
fn grade_boundaries() {
    check("1 0 disclosure.false", "1", ALL, "90 INTEGRITY GREEN | disclosure.false -10 #1");
    check(
        "1 0 disclosure.false; 2 0 exceedance.daily",
        "1",
        ALL,
        "89 GOOD GREEN | disclosure.false -10 #1, exceedance.daily -1 #2",
    );
    check("1 0 penalty.daily_continuous", "1", ALL, "80 GOOD GREEN | penalty.daily_continuous -20 #1");
    check(
        "1 0 penalty.daily_continuous; 2 0 exceedance.daily",
        "1",
        ALL,
        "79 WARNING YELLOW | penalty.daily_continuous -20 #1, exceedance.daily -1 #2",
    );
    check(
        "1 0 penalty.daily_continuous; 2 0 penalty.daily_continuous",
        "1",
        ALL,
        "60 WARNING YELLOW | penalty.daily_continuous -20 #1, penalty.daily_continuous -20 #2",
    );
    check(
        "1 0 penalty.daily_continuous; 2 0 penalty.daily_continuous; 3 0 exceedance.daily",
        "1",
        ALL,
        "59 POOR RED | penalty.daily_continuous -20 #1, penalty.daily_continuous -20 #2, \
         exceedance.daily -1 #3",
    );
}

#[test]
fn time_and_prefix_select_entries() {
    // A window ends exactly at occurred_at + window days.
    check("1 0 exceedance.daily", "90-", ALL, "99 INTEGRITY GREEN | exceedance.daily -1 #1");
    check("1 0 exceedance.daily", "90", ALL, "100 INTEGRITY GREEN");
    check("1 0 veto.crime", "1095-", ALL, "60 POOR RED veto | veto.crime -40 #1");
    check("1 0 veto.crime", "1095", ALL, "100 INTEGRITY GREEN");
    // A record counts from its own instant, not before.
    check("1 10 penalty.warning", "5", ALL, "100 INTEGRITY GREEN");
    check("1 10 penalty.warning", "10-", ALL, "100 INTEGRITY GREEN");
    check("1 10 penalty.warning", "10", ALL, "97 INTEGRITY GREEN | penalty.warning -3 #1");
    // N = tree size: entries with seq >= N are not yet in the ledger.
    let two = "1 0 penalty.warning; 2 0 disclosure.false";
    check(two, "1", 1, "100 INTEGRITY GREEN");
    check(two, "1", 2, "97 INTEGRITY GREEN | penalty.warning -3 #1");
    check(two, "1", 3, "87 GOOD GREEN | disclosure.false -10 #2, penalty.warning -3 #1");
}

#[test]
fn disputes() {
    let suspend = "1 0 enforcement.suspend";
    let opened = format!("{suspend}; 2 1 dispute.opened ref=1");
    check(&opened, "2", ALL, "76 WARNING YELLOW disputed | enforcement.suspend -24 #1");
    // Not before the dispute occurred, nor before it is in the ledger.
    check(&opened, "0+12h", ALL, "76 WARNING YELLOW | enforcement.suspend -24 #1");
    check(&opened, "2", 2, "76 WARNING YELLOW | enforcement.suspend -24 #1");
    // Rejected: the record stays, the dispute closes.
    let rejected = format!("{opened}; 3 2 dispute.resolved ref=1 outcome=rejected");
    check(&rejected, "1+12h", ALL, "76 WARNING YELLOW disputed | enforcement.suspend -24 #1");
    check(&rejected, "3", ALL, "76 WARNING YELLOW | enforcement.suspend -24 #1");
    // Upheld: the record is voided.
    let upheld = format!("{opened}; 3 2 dispute.resolved ref=1 outcome=upheld");
    check(&upheld, "1+12h", ALL, "76 WARNING YELLOW disputed | enforcement.suspend -24 #1");
    check(&upheld, "3", ALL, "100 INTEGRITY GREEN");
    check(&upheld, "3", 3, "76 WARNING YELLOW disputed | enforcement.suspend -24 #1");
    // One resolution closes every dispute opened before it; a later one reopens.
    let twice = format!("{opened}; 3 1 dispute.opened ref=1; 4 2 dispute.resolved ref=1");
    check(&twice, "3", ALL, "76 WARNING YELLOW | enforcement.suspend -24 #1");
    let reopened = format!("{twice}; 5 4 dispute.opened ref=1");
    check(&reopened, "4", ALL, "76 WARNING YELLOW disputed | enforcement.suspend -24 #1");
    // A dispute on an expired record flags nothing.
    check("1 0 exceedance.daily; 2 1 dispute.opened ref=1", "90", ALL, "100 INTEGRITY GREEN");
}

#[test]
fn voids_rectification_and_repair() {
    let suspend = "1 0 enforcement.suspend";
    let voided = format!("{suspend}; 2 5 record.voided ref=1");
    check(&voided, "5-", ALL, "76 WARNING YELLOW | enforcement.suspend -24 #1");
    check(&voided, "5", ALL, "100 INTEGRITY GREEN");
    check(&voided, "5", 2, "76 WARNING YELLOW | enforcement.suspend -24 #1");

    let submitted = format!("{suspend}; 2 5 rectification.submitted ref=1");
    check(&submitted, "5", ALL, "76 WARNING YELLOW pending=1 | enforcement.suspend -24 #1");
    let verified = format!("{submitted}; 3 10 rectification.verified ref=1");
    check(&verified, "10-", ALL, "76 WARNING YELLOW pending=1 | enforcement.suspend -24 #1");
    check(&verified, "10", ALL, "88 GOOD GREEN | enforcement.suspend -12 #1");
    check(&verified, "10", 3, "76 WARNING YELLOW pending=1 | enforcement.suspend -24 #1");
    // Pending only while the record is active.
    check("1 0 exceedance.daily; 2 1 rectification.submitted ref=1", "90", ALL, "100 INTEGRITY GREEN");

    // remaining = magnitude - floor(magnitude / 2)
    check(
        "1 0 penalty.fine amount=1000; 2 1 rectification.verified ref=1",
        "1",
        ALL,
        "97 INTEGRITY GREEN | penalty.fine -3 #1",
    );
    check(
        "1 0 penalty.warning; 2 1 rectification.verified ref=1",
        "1",
        ALL,
        "98 INTEGRITY GREEN | penalty.warning -2 #1",
    );
    check(
        "1 0 exceedance.daily; 2 1 rectification.verified ref=1",
        "1",
        ALL,
        "99 INTEGRITY GREEN | exceedance.daily -1 #1",
    );
    // Veto records and bonuses are not halved.
    check(
        "1 0 veto.crime; 2 1 rectification.verified ref=1",
        "1",
        ALL,
        "60 POOR RED veto | veto.crime -40 #1",
    );
    check(
        "1 0 penalty.daily_continuous; 2 0 award.environmental; 3 1 rectification.verified ref=2",
        "1",
        ALL,
        "85 GOOD GREEN | penalty.daily_continuous -20 #1, award.environmental +5 #2",
    );

    let repaired = format!("{verified}; 4 400 repair.granted ref=1");
    check(&repaired, "400-", ALL, "88 GOOD GREEN | enforcement.suspend -12 #1");
    check(&repaired, "400", ALL, "100 INTEGRITY GREEN");
    check(&repaired, "400", 4, "88 GOOD GREEN | enforcement.suspend -12 #1");
}

#[test]
fn repeated_steps_have_no_further_effect() {
    let suspend = "1 0 enforcement.suspend";
    let base = "88 GOOD GREEN | enforcement.suspend -12 #1";
    check(
        &format!("{suspend}; 2 1 rectification.verified ref=1; 3 2 rectification.verified ref=1"),
        "3",
        ALL,
        base,
    );
    check(
        &format!("{suspend}; 2 1 rectification.submitted ref=1; 3 2 rectification.submitted ref=1"),
        "3",
        ALL,
        "76 WARNING YELLOW pending=1 | enforcement.suspend -24 #1",
    );
    check(
        &format!("{suspend}; 2 1 record.voided ref=1; 3 2 record.voided ref=1"),
        "3",
        ALL,
        "100 INTEGRITY GREEN",
    );
    check(
        &format!("{suspend}; 2 1 dispute.opened ref=1; 3 2 dispute.opened ref=1"),
        "3",
        ALL,
        "76 WARNING YELLOW disputed | enforcement.suspend -24 #1",
    );
    check(
        &format!(
            "{suspend}; 2 1 rectification.verified ref=1; 3 400 repair.granted ref=1; \
             4 401 repair.granted ref=1"
        ),
        "401",
        ALL,
        "100 INTEGRITY GREEN",
    );
    check(
        &format!(
            "{suspend}; 2 1 dispute.opened ref=1; 3 2 dispute.resolved ref=1 outcome=upheld; \
             4 3 dispute.resolved ref=1 outcome=upheld"
        ),
        "3",
        ALL,
        "100 INTEGRITY GREEN",
    );
}

#[test]
fn steps_that_name_no_scored_record_are_ignored() {
    // A step naming another step, or a later or missing seq.
    check(
        "1 0 enforcement.suspend; 2 1 dispute.opened ref=1; 3 2 record.voided ref=2; \
         4 2 record.voided ref=9",
        "3",
        ALL,
        "76 WARNING YELLOW disputed | enforcement.suspend -24 #1",
    );
    // A step about another enterprise's record, were one ever passed in.
    let model = Model::builtin();
    let mut foreign = record("record.voided", day(1), 0, Some(1));
    foreign.uscc = scoring::Uscc::parse(crate::support::OTHER_USCC).expect("valid uscc");
    let list = vec![entry(1, record("enforcement.suspend", day(0), 0, None)), entry(2, foreign)];
    assert_eq!(model.score(&list, day(2), ALL).points, 76);
}

#[test]
fn entries_need_not_arrive_sorted() {
    let model = Model::builtin();
    let mut list = entries("1 0 enforcement.suspend; 2 1 rectification.verified ref=1; 3 0 penalty.warning");
    let sorted = model.score(&list, day(2), ALL);
    list.reverse();
    assert_eq!(model.score(&list, day(2), ALL), sorted);
    assert_eq!(sorted.reasons[0].seq, Seq(1));
}

/// The spec's kind table, written out independently of the model file:
/// (kind, amount_yuan, points, window days).
const SPEC_KINDS: &[(&str, i64, i32, i64)] = &[
    ("exceedance.daily", 0, -1, 90),
    ("monitoring.missing_day", 0, -1, 90),
    ("monitoring.insufficient_day", 0, -1, 90),
    ("monitoring.excused_day", 0, 0, 90),
    ("penalty.warning", 0, -3, 180),
    ("penalty.fine", 50_000, -5, 365),
    ("penalty.fine", 200_000, -10, 365),
    ("penalty.fine", 200_001, -20, 730),
    ("penalty.daily_continuous", 0, -20, 730),
    ("enforcement.seal", 0, -24, 730),
    ("enforcement.limit_production", 0, -24, 730),
    ("enforcement.suspend", 0, -24, 730),
    ("incident.general", 0, -15, 365),
    ("complaint.verified", 0, -2, 365),
    ("complaint.repeated", 0, -5, 365),
    ("inspection.finding", 0, -2, 180),
    ("rectification.overdue", 0, -5, 180),
    ("permit.report_late", 0, -3, 365),
    ("disclosure.annual_late", 0, -3, 365),
    ("disclosure.temporary_late", 0, -2, 365),
    ("disclosure.false", 0, -10, 730),
    ("veto.crime", 0, -40, 1095),
    ("veto.license_revoked", 0, -40, 1095),
    ("veto.bypass", 0, -40, 1095),
    ("veto.illegal_hazardous_waste", 0, -40, 1095),
    ("veto.no_eia", 0, -40, 1095),
    ("veto.data_fraud", 0, -40, 1095),
    ("incident.major", 0, -40, 1095),
    ("commitment.clean_year", 0, 2, 365),
    ("certification.iso14001", 0, 2, 1095),
    ("award.environmental", 0, 5, 365),
];

#[test]
fn every_kind_has_the_spec_points_and_window() {
    let model = Model::builtin();
    for &(kind, amount, points, window) in SPEC_KINDS {
        // A -20 deduction beside it keeps bonuses from being clamped away.
        let list = vec![
            entry(1, record("penalty.daily_continuous", day(-1), 0, None)),
            entry(2, record(kind, day(0), amount, None)),
        ];
        let expiry = day(window);
        let inside = model.score(&list, expiry.plus_nanos(-1), ALL);
        let line = inside.reasons.iter().find(|r| r.seq == Seq(2));
        let line = line.unwrap_or_else(|| panic!("{kind}: no reason line"));
        assert_eq!((line.points, line.expires_at), (points, Some(expiry)), "{kind} {amount}");
        let after = model.score(&list, expiry, ALL);
        assert!(after.reasons.iter().all(|r| r.seq != Seq(2)), "{kind}: active after its window");
    }
    let scored: Vec<&str> = model
        .kinds()
        .filter(|k| matches!(model.kind_class(k), Some(scoring::KindClass::Scored { .. })))
        .collect();
    for kind in &scored {
        assert!(SPEC_KINDS.iter().any(|(k, ..)| k == kind), "{kind} is not in the spec table");
    }
    assert_eq!(scored.len(), 29);
}
