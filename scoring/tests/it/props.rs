//! Property tests over random ledgers: the explanation always adds up, the
//! points stay in range, reasons are ordered, and the evaluation changes
//! only at the change points.

use proptest::prelude::*;
use scoring::{Evaluation, LedgerRecord, Model, Timestamp};

use crate::support::{day, entry, record};

const SCORED: &[&str] = &[
    "exceedance.daily",
    "monitoring.missing_day",
    "complaint.verified",
    "penalty.fine",
    "enforcement.suspend",
    "disclosure.false",
    "veto.crime",
    "incident.major",
    "commitment.clean_year",
    "award.environmental",
    "certification.iso14001",
];

const STEPS: &[&str] = &[
    "dispute.opened",
    "dispute.resolved",
    "record.voided",
    "rectification.submitted",
    "rectification.verified",
    "repair.granted",
];

/// One generated entry: a scored record, or a step naming an earlier entry
/// (by position), occurring some days after it.
#[derive(Clone, Debug)]
enum Gen {
    Scored { kind: usize, day: i64, amount: i64 },
    Step { kind: usize, target: usize, after_days: i64, upheld: bool },
}

fn gen_entry() -> impl Strategy<Value = Gen> {
    prop_oneof![
        3 => (0..SCORED.len(), 0i64..1200, prop_oneof![Just(50_000i64), Just(50_001), Just(200_001)])
            .prop_map(|(kind, day, amount)| Gen::Scored { kind, day, amount }),
        2 => (0..STEPS.len(), any::<prop::sample::Index>(), 0i64..500, any::<bool>())
            .prop_map(|(kind, target, after_days, upheld)| Gen::Step {
                kind,
                target: target.index(usize::MAX),
                after_days,
                upheld,
            }),
    ]
}

/// Builds ledger entries with seqs 1, 2, ... from generated ones.
fn build(gens: &[Gen]) -> Vec<LedgerRecord> {
    let mut out: Vec<LedgerRecord> = Vec::new();
    for g in gens {
        let seq = out.len() as u64 + 1;
        let record = match *g {
            Gen::Scored { kind, day: d, amount } => {
                let kind = SCORED[kind];
                let amount = if kind == "penalty.fine" { amount } else { 0 };
                record(kind, day(d), amount, None)
            }
            Gen::Step { kind, target, after_days, upheld } => {
                let Some(target) = out.get(target % out.len().max(1)) else {
                    continue;
                };
                let at = target.record.occurred_at.plus_days(after_days);
                let mut step = record(STEPS[kind], at, 0, Some(target.seq.0));
                if upheld && STEPS[kind] == "dispute.resolved" {
                    step.attributes.insert("outcome".into(), "upheld".into());
                }
                step
            }
        };
        out.push(entry(seq, record));
    }
    out
}

fn without_instant(mut e: Evaluation) -> Evaluation {
    e.as_of = Timestamp::default();
    e
}

fn check_invariants(e: &Evaluation) -> Result<(), TestCaseError> {
    let sum: i32 = e.reasons.iter().map(|r| r.points).sum();
    prop_assert_eq!(100 + sum, e.points);
    prop_assert!((0..=100).contains(&e.points));
    for pair in e.reasons.windows(2) {
        let key = |r: &scoring::Reason| (std::cmp::Reverse(r.points.unsigned_abs()), r.seq, r.kind.clone());
        prop_assert!(key(&pair[0]) <= key(&pair[1]), "unordered {:?}", pair);
    }
    prop_assert!(e.reasons.iter().all(|r| r.points != 0));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reasons_add_up_and_score_is_constant_between_change_points(
        gens in prop::collection::vec(gen_entry(), 0..40),
        prefix in 0u64..45,
        probes in prop::collection::vec(0i64..2000, 1..6),
    ) {
        let model = Model::builtin();
        let list = build(&gens);
        for &n in &[prefix, u64::MAX] {
            for &p in &probes {
                check_invariants(&model.score(&list, day(p), n))?;
            }
            let from = day(-1);
            let to = day(2500);
            let changes = model.change_points(&list, from, to, n);
            prop_assert!(changes.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(changes.iter().all(|&c| from < c && c <= to));
            let next = model.next_change_after(&list, from, n).filter(|&t| t <= to);
            prop_assert_eq!(next, changes.first().copied());
            // Constant on [from, first change) and on [c_i, c_{i+1}).
            let mut starts = vec![from];
            starts.extend(&changes);
            for (i, &start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).copied().unwrap_or(to);
                if let Some(&c) = changes.get(i) {
                    prop_assert_eq!(model.next_change_after(&list, start, n), Some(c));
                }
                let at_start = without_instant(model.score(&list, start, n));
                check_invariants(&at_start)?;
                let span = end.unix_nanos() - start.unix_nanos();
                for probe in [1, span / 2, span - 1] {
                    if probe <= 0 || probe >= span {
                        continue;
                    }
                    let inside = without_instant(model.score(&list, start.plus_nanos(probe), n));
                    prop_assert_eq!(&inside, &at_start, "changed between {:?} and {:?}", start, end);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What the server's materialized view relies on: the evaluation at any
    /// instant of `stable_interval(at)` is the evaluation at `at`, and the
    /// interval's ends are change points.
    #[test]
    fn the_stable_interval_holds_one_evaluation(
        gens in prop::collection::vec(gen_entry(), 0..40),
        prefix in 0u64..45,
        probe in -10i64..2000,
    ) {
        let model = Model::builtin();
        let list = build(&gens);
        for n in [prefix, u64::MAX] {
            let at = day(probe);
            let here = without_instant(model.score(&list, at, n));
            let (from, until) = model.stable_interval(&list, at, n);
            prop_assert_eq!(until, model.next_change_after(&list, at, n));
            if let Some(from) = from {
                prop_assert!(from <= at);
                prop_assert_eq!(&without_instant(model.score(&list, from, n)), &here);
                // Just before `from` is another interval: `from` is a change point.
                let before = from.plus_nanos(-1);
                prop_assert_eq!(model.next_change_after(&list, before, n), Some(from));
            }
            if let Some(until) = until {
                prop_assert!(at < until);
                prop_assert_eq!(&without_instant(model.score(&list, until.plus_nanos(-1), n)), &here);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The one-sweep timeline the page draws says at every instant what a
    /// full evaluation says: its steps are the instants where points, grade
    /// or code change, with their values, and nothing changes in between.
    #[test]
    fn the_timeline_agrees_with_the_evaluation_at_every_change_point(
        gens in prop::collection::vec(gen_entry(), 0..40),
        prefix in 0u64..45,
        from_day in -10i64..800,
        span in 0i64..1800,
    ) {
        let model = Model::builtin();
        let list = build(&gens);
        for n in [prefix, u64::MAX] {
            let (from, to) = (day(from_day), day(from_day + span));
            let key = |t| {
                let e = model.score(&list, t, n);
                (e.points, e.grade, e.code)
            };
            let mut expected = vec![(from, key(from))];
            for t in model.change_points(&list, from, to, n) {
                let here = key(t);
                if here != expected[expected.len() - 1].1 {
                    expected.push((t, here));
                }
            }
            let got: Vec<_> = model
                .timeline(&list, from, to, n)
                .into_iter()
                .map(|s| (s.at, (s.points, s.grade, s.code)))
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
