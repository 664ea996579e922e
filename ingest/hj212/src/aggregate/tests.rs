//! Daily judgement tests: flags, statistics, re-sent packets, restarts.

use scoring::Uscc;

use super::*;
use crate::{frame, parse_packet};

const MN: &str = "Z13401000010301";
const USCC: &str = "91330421739237858X";

fn point() -> MonitoringPoint {
    MonitoringPoint::new(
        MN,
        Uscc::parse(USCC).unwrap(),
        "DW001",
        vec![
            PollutantLimit::new("w01018", 50.0, "mg/L", Statistic::Avg).unwrap(),
            PollutantLimit::new("a21026", 35.0, "mg/m3", Statistic::ZsAvg).unwrap(),
            PollutantLimit::new("w21003", 5.0, "mg/L", Statistic::Avg).unwrap(),
        ],
    )
    .unwrap()
}

/// The tests of statistics, re-sends and restarts use a handful of hours;
/// a day's minimum of valid hours has tests of its own.
const ANY_HOUR: MonitoringRules = MonitoringRules { gas: 1, water: 1, other: 1 };

fn day(d: u32) -> LocalDay {
    LocalDay::from_ymd(2026, 3, d).unwrap()
}

/// A checked packet with `cp` after `DataTime`, e.g. `w01018-Avg=35,w01018-Flag=N`.
fn packet(cn: &str, data_time: &str, cp: &str) -> Packet {
    let data =
        format!("QN={data_time}000;ST=32;CN={cn};PW=123456;MN={MN};Flag=5;CP=&&DataTime={data_time};{cp}&&");
    parse_packet(&frame(data.as_bytes())).unwrap()
}

fn hourly(day: u32, hour: u32, cp: &str) -> Packet {
    packet(command::HOURLY, &format!("202603{day:02}{hour:02}0000"), cp)
}

/// Received on 16 March 2026, noon local time.
fn received() -> Timestamp {
    day(16).start().plus_nanos(12 * 3600 * scoring::NANOS_PER_SECOND)
}

fn open(dir: &tempfile::TempDir) -> DailyAggregator {
    DailyAggregator::open(dir.path()).unwrap()
}

fn accept_all(agg: &mut DailyAggregator, packets: &[Packet]) {
    for p in packets {
        agg.accept(&point(), p, received()).unwrap();
    }
}

/// (source_record_id, kind, value attribute) of each record, sorted.
fn summary(closing: &DayClosing) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<_> = closing
        .records()
        .iter()
        .map(|r| (r.source_record_id.clone(), r.kind.clone(), r.attributes.get("value").cloned()))
        .collect();
    out.sort();
    out
}

fn s(id: &str, kind: &str, value: Option<&str>) -> (String, String, Option<String>) {
    (id.to_owned(), kind.to_owned(), value.map(str::to_owned))
}

fn day_15_packets() -> Vec<Packet> {
    vec![
        hourly(15, 0, "w01018-Avg=40,w01018-Flag=N;a21026-Avg=50,a21026-ZsAvg=30,a21026-Flag=N"),
        hourly(15, 1, "w01018-Avg=60,w01018-Flag=N;a21026-Avg=52,a21026-ZsAvg=34,a21026-Flag=N"),
        // Maintenance and fault values do not count, however high.
        hourly(15, 2, "w01018-Avg=200,w01018-Flag=M"),
        hourly(15, 3, "w01018-Avg=80,w01018-Flag=D"),
        // No flag at all: an old device, taken as valid.
        hourly(15, 4, "w01018-Avg=55"),
    ]
}

#[test]
fn hourly_values_give_exceedance_and_missing_days() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    accept_all(&mut agg, &day_15_packets());

    assert!(agg.close_days_before(day(15), |_| Some(point()), &[], ANY_HOUR).unwrap().is_empty());
    let closing = agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap();
    assert_eq!(
        summary(&closing),
        vec![
            s("hj212:Z13401000010301:a21026:20260316:missing_day", KIND_MISSING_DAY, None),
            s("hj212:Z13401000010301:w01018:20260315:exceedance", KIND_EXCEEDANCE, Some("51.6667")),
            s("hj212:Z13401000010301:w01018:20260316:missing_day", KIND_MISSING_DAY, None),
            s("hj212:Z13401000010301:w21003:20260315:missing_day", KIND_MISSING_DAY, None),
            s("hj212:Z13401000010301:w21003:20260316:missing_day", KIND_MISSING_DAY, None),
        ]
    );
    let exceedance = closing.records().iter().find(|r| r.kind == KIND_EXCEEDANCE).unwrap();
    assert_eq!(exceedance.source, "hj212");
    assert_eq!(exceedance.uscc.as_str(), USCC);
    assert_eq!(exceedance.occurred_at.to_string(), "2026-03-15T15:59:59.999999999Z");
    let attributes: Vec<(&str, &str)> =
        exceedance.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        attributes,
        vec![
            ("day", "2026-03-15"),
            ("limit", "50"),
            ("mn", MN),
            ("outlet", "DW001"),
            ("pollutant", "w01018"),
            ("statistic", "Avg"),
            ("unit", "mg/L"),
            ("value", "51.6667"),
        ]
    );
}

#[test]
fn converted_values_are_judged_when_the_limit_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    // ZsAvg mean 36 > 35 while Avg mean 30 is not: the ZsAvg limit decides.
    accept_all(
        &mut agg,
        &[
            hourly(15, 0, "a21026-Avg=30,a21026-ZsAvg=36,a21026-Flag=N"),
            // A device without converted values: the ZsAvg limit falls back to Avg.
            hourly(14, 0, "a21026-Avg=40,a21026-Flag=N"),
        ],
    );
    let closing = agg.close_days_before(day(16), |_| Some(point()), &[], ANY_HOUR).unwrap();
    let judged: Vec<_> = closing
        .records()
        .iter()
        .filter(|r| r.kind == KIND_EXCEEDANCE)
        .map(|r| {
            (r.attributes["day"].as_str(), r.attributes["statistic"].as_str(), r.attributes["value"].as_str())
        })
        .collect();
    assert_eq!(judged, vec![("2026-03-14", "Avg", "40"), ("2026-03-15", "ZsAvg", "36")]);
}

#[test]
fn a_valid_daily_value_wins_over_the_hourly_mean() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    accept_all(
        &mut agg,
        &[
            hourly(14, 0, "w01018-Avg=60,w01018-Flag=N"),
            packet(command::DAILY, "20260314000000", "w01018-Avg=45,w01018-Flag=N"),
            hourly(15, 0, "w01018-Avg=60,w01018-Flag=N"),
            // An invalid daily value does not hide the hourly ones.
            packet(command::DAILY, "20260315000000", "w01018-Avg=45,w01018-Flag=C"),
        ],
    );
    let closing = agg.close_days_before(day(16), |_| Some(point()), &[], ANY_HOUR).unwrap();
    let exceeded: Vec<_> = closing
        .records()
        .iter()
        .filter(|r| r.kind == KIND_EXCEEDANCE)
        .map(|r| r.attributes["day"].as_str())
        .collect();
    assert_eq!(exceeded, vec!["2026-03-15"]);
}

#[test]
fn re_sent_packets_change_nothing() {
    let once = tempfile::tempdir().unwrap();
    let mut agg = open(&once);
    accept_all(&mut agg, &day_15_packets());
    let expected = summary(&agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap());

    let twice = tempfile::tempdir().unwrap();
    let mut agg = open(&twice);
    let mut packets = day_15_packets();
    packets.extend(day_15_packets());
    packets.reverse();
    accept_all(&mut agg, &packets);
    assert_eq!(summary(&agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap()), expected);
}

#[test]
fn a_corrected_re_send_replaces_the_earlier_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    accept_all(
        &mut agg,
        &[hourly(15, 0, "w01018-Avg=90,w01018-Flag=N"), hourly(15, 0, "w01018-Avg=20,w01018-Flag=N")],
    );
    let closing = agg.close_days_before(day(16), |_| Some(point()), &[], ANY_HOUR).unwrap();
    assert!(closing.records().iter().all(|r| r.kind == KIND_MISSING_DAY), "{:?}", summary(&closing));
}

#[test]
fn restart_loses_nothing_and_closed_days_stay_closed() {
    let reference = tempfile::tempdir().unwrap();
    let mut agg = open(&reference);
    accept_all(&mut agg, &day_15_packets());
    let expected = summary(&agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let packets = day_15_packets();
    let (first, second) = packets.split_at(2);
    let mut agg = open(&dir);
    accept_all(&mut agg, first);
    drop(agg);
    let mut agg = open(&dir);
    accept_all(&mut agg, second);
    drop(agg);
    let agg = open(&dir);
    let closing = agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap();
    assert_eq!(summary(&closing), expected);

    // Not committed yet (the ledger append "failed"): a restart yields the same records.
    drop(agg);
    let mut agg = open(&dir);
    let closing = agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap();
    assert_eq!(summary(&closing), expected);
    agg.commit(closing).unwrap();
    drop(agg);

    let mut agg = open(&dir);
    assert!(agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap().is_empty());
    let late = hourly(15, 5, "w01018-Avg=1000,w01018-Flag=N");
    assert_eq!(agg.accept(&point(), &late, received()).unwrap(), AcceptOutcome::Late(day(15)));
    assert!(agg.close_days_before(day(17), |_| Some(point()), &[], ANY_HOUR).unwrap().is_empty());
    // Later days go on from where closing stopped.
    let closing = agg.close_days_before(day(18), |_| Some(point()), &[], ANY_HOUR).unwrap();
    assert_eq!(closing.records().len(), 3);
    assert!(closing.records().iter().all(|r| r.attributes["day"] == "2026-03-17"));
}

#[test]
fn what_is_not_aggregated_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    let p = point();
    let check = |agg: &mut DailyAggregator, packet: Packet, expect: AcceptOutcome| {
        assert_eq!(agg.accept(&p, &packet, received()).unwrap(), expect);
    };
    check(
        &mut agg,
        packet(command::REALTIME, "20260316100000", "w01018-Rtd=35"),
        AcceptOutcome::NotAggregated,
    );
    check(&mut agg, hourly(16, 1, "w99999-Avg=35"), AcceptOutcome::NotAggregated);
    let no_time = frame(format!("ST=32;CN=2061;PW=1;MN={MN};CP=&&w01018-Avg=35&&").as_bytes());
    check(&mut agg, parse_packet(&no_time).unwrap(), AcceptOutcome::OutOfWindow);
    let answer = frame(format!("ST=91;CN=9011;PW=1;MN={MN};Flag=4;CP=&&QnRtn=1&&").as_bytes());
    check(&mut agg, parse_packet(&answer).unwrap(), AcceptOutcome::NotAggregated);
    check(&mut agg, packet(command::HOURLY, "20260213100000", "w01018-Avg=35"), AcceptOutcome::OutOfWindow);
    check(&mut agg, packet(command::HOURLY, "20260318000000", "w01018-Avg=35"), AcceptOutcome::OutOfWindow);
    check(&mut agg, packet(command::HOURLY, "20260317230000", "w01018-Avg=35"), AcceptOutcome::Stored(1));
    // Earlier data moves the first tracked day back while nothing is closed.
    check(&mut agg, hourly(10, 1, "w01018-Avg=35;w21003-Avg=1"), AcceptOutcome::Stored(2));
    let closing = agg.close_days_before(day(11), |_| Some(point()), &[], ANY_HOUR).unwrap();
    assert_eq!(
        summary(&closing),
        vec![s("hj212:Z13401000010301:a21026:20260310:missing_day", KIND_MISSING_DAY, None)]
    );
    // A device whose registration is gone gets its days closed without records.
    let closing = agg.close_days_before(day(12), |_| None, &[], ANY_HOUR).unwrap();
    assert!(!closing.is_empty() && closing.records().is_empty());
    let other = MonitoringPoint::new("OTHER", Uscc::parse(USCC).unwrap(), "DW002", vec![]).unwrap();
    assert!(matches!(agg.accept(&other, &hourly(16, 1, ""), received()), Err(Error::WrongPoint { .. })));
}

/// Every hour of day 15 from 00:00 in order, `valid` of them flagged `N`
/// and the rest with `flag`.
fn hours_of_day_15(valid: u32, flag: &str, value: f64) -> Vec<Packet> {
    (0..24)
        .map(|h| {
            let f = if h < valid { "N" } else { flag };
            hourly(15, h, &format!("w01018-Avg={value},w01018-Flag={f}"))
        })
        .collect()
}

fn w01018_on_day_15(packets: &[Packet]) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    accept_all(&mut agg, packets);
    let closing = agg.close_days_before(day(16), |_| Some(point()), &[], MonitoringRules::STANDARD).unwrap();
    closing.records().iter().filter(|r| r.attributes["pollutant"] == "w01018").cloned().collect()
}

#[test]
fn a_day_with_20_valid_hours_is_judged_on_its_mean() {
    let records = w01018_on_day_15(&hours_of_day_15(20, "M", 60.0));
    let kinds: Vec<_> = records.iter().map(|r| (r.kind.as_str(), r.attributes["value"].as_str())).collect();
    assert_eq!(kinds, vec![(KIND_EXCEEDANCE, "60")]);
}

#[test]
fn a_day_with_19_valid_hours_is_a_data_quality_event_not_an_exceedance() {
    // Regression for judging exceedance on a partial mean.
    let records = w01018_on_day_15(&hours_of_day_15(19, "N", 60.0)[..19]);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r.kind, KIND_INSUFFICIENT_DAY);
    assert_eq!(r.source_record_id, "hj212:Z13401000010301:w01018:20260315:insufficient_day");
    assert_eq!(r.attributes["valid_hours"], "19");
    assert_eq!(r.attributes["required_hours"], "20");
    assert!(r.description.contains("only 19 valid hours"), "{}", r.description);
}

#[test]
fn maintenance_calibration_and_fault_hours_are_not_valid_hours() {
    for flag in ["M", "C", "D", "F", "S", "B", "T", "m", "X"] {
        // 23 hours, 4 of them flagged: 19 valid hours are not enough.
        let packets = &hours_of_day_15(19, flag, 60.0)[..23];
        let kinds: Vec<_> = w01018_on_day_15(packets).into_iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![KIND_INSUFFICIENT_DAY.to_owned()], "flag {flag}");
        // Flagged throughout: no valid hour, a missing day.
        let packets = hours_of_day_15(0, flag, 60.0);
        let kinds: Vec<_> = w01018_on_day_15(&packets).into_iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec![KIND_MISSING_DAY.to_owned()], "flag {flag}");
    }
    // A lower-case n is N.
    let kinds: Vec<_> =
        w01018_on_day_15(&hours_of_day_15(0, "n", 60.0)).into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![KIND_EXCEEDANCE.to_owned()]);
}

#[test]
fn a_device_that_never_connects_has_missing_days_from_the_day_after_its_registration() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    // Registered at 15:00 on 14 March; it never sends anything.
    let registered = point().registered_at(day(14).start().plus_nanos(15 * 3600 * scoring::NANOS_PER_SECOND));
    let close = |agg: &DailyAggregator, before| {
        let registered = [registered.clone()];
        agg.close_days_before(before, |_| Some(registered[0].clone()), &registered, ANY_HOUR).unwrap()
    };
    assert!(close(&agg, day(15)).is_empty(), "its registration day is not owed");
    let closing = close(&agg, day(17));
    let ids: Vec<String> = summary(&closing).into_iter().map(|(id, ..)| id).collect();
    assert_eq!(
        ids,
        [
            "a21026:20260315",
            "a21026:20260316",
            "w01018:20260315",
            "w01018:20260316",
            "w21003:20260315",
            "w21003:20260316",
        ]
        .map(|d| format!("hj212:{MN}:{d}:missing_day"))
    );
    agg.commit(closing).unwrap();
    assert!(close(&agg, day(17)).is_empty(), "closed days stay closed");
    assert_eq!(close(&agg, day(18)).records().len(), 3);
}

#[test]
fn a_gap_since_the_last_sign_of_health_is_an_outage_once_long_enough() {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = open(&dir);
    let minutes = |m: i64| received().plus_nanos(m * 60 * scoring::NANOS_PER_SECOND);
    let min = std::time::Duration::from_secs(15 * 60);
    assert_eq!(agg.note_start(minutes(0), min).unwrap(), None, "the first start has no past");
    agg.note_alive(minutes(5)).unwrap();
    assert_eq!(agg.note_start(minutes(19), min).unwrap(), None, "a quick restart is no outage");
    let outage = agg.note_start(minutes(19 + 3 * 24 * 60), min).unwrap().unwrap();
    assert_eq!((outage.from, outage.to), (minutes(19), minutes(19 + 3 * 24 * 60)));
    assert_eq!(agg.pending_outages().unwrap(), vec![outage]);
    agg.outage_recorded(outage).unwrap();
    assert!(agg.pending_outages().unwrap().is_empty());
    drop(agg);
    // Kept across restarts: the days it touches are excused, however few
    // hours arrived; an exceedance on valid data would still count.
    let mut agg = open(&dir);
    accept_all(&mut agg, &[hourly(16, 1, "w01018-Avg=10,w01018-Flag=N")]);
    let closing = agg.close_days_before(day(18), |_| Some(point()), &[], MonitoringRules::STANDARD).unwrap();
    let kinds: Vec<&str> = closing.records().iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, vec![KIND_EXCUSED_DAY; 6]);
}
