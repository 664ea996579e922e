//! Publicity windows (令第36号): a record is published inside its class's
//! window, and no longer once the window ends, repair is granted or it is
//! voided, whichever comes first.

use scoring::{Error, Model, NotPublishedWhy, Publicity, PublicityClass, Seq};

use crate::support::{day, entries};

const BUILTIN: &str = include_str!("../../../fixtures/model/ecocode-2026.2.toml");

fn publicity(model: &Model, ledger: &str, seq: u64, at: i64) -> Publicity {
    let all = entries(ledger);
    let record = all.iter().find(|e| e.seq == Seq(seq)).expect("record");
    model.publicity(record, &all, day(at), u64::MAX)
}

#[test]
fn every_kind_of_the_builtin_model_names_its_class() {
    let model = Model::builtin();
    let classes: Vec<(&str, PublicityClass)> =
        model.kinds().filter_map(|k| model.publicity_class(k).map(|c| (k, c))).collect();
    assert_eq!(classes.len(), 29, "every scored kind has a class");
    for (kind, class) in &classes {
        assert!(BUILTIN.contains(&format!("[kinds.\"{kind}\"]\npublicity = \"{class}\"")), "{kind}");
    }
    assert_eq!(model.publicity_class("monitoring.excused_day"), Some(PublicityClass::None));
    assert_eq!(model.publicity_class("penalty.warning"), Some(PublicityClass::Minor));
    assert_eq!(model.publicity_class("veto.data_fraud"), Some(PublicityClass::Serious));
    assert_eq!(model.publicity_class("repair.granted"), None);
    let days: Vec<i64> = PublicityClass::ALL.iter().map(|c| model.publicity_days(*c)).collect();
    assert_eq!(days, [0, 90, 365, 1095]);
}

#[test]
fn a_record_is_published_inside_its_window_only() {
    let model = Model::builtin();
    // A warning (minor, 90 days) counts 180 days but is public for 90.
    let ledger = "1 10 penalty.warning";
    let until = day(100);
    assert_eq!(
        publicity(&model, ledger, 1, 10),
        Publicity::Published { class: PublicityClass::Minor, until }
    );
    assert!(publicity(&model, ledger, 1, 99).is_published());
    assert_eq!(
        publicity(&model, ledger, 1, 100),
        Publicity::NotPublished {
            class: PublicityClass::Minor,
            since: until,
            why: NotPublishedWhy::WindowEnded
        }
    );
    // A suspension (serious) is public for three years.
    assert!(publicity(&model, "1 0 enforcement.suspend", 1, 1094).is_published());
    assert!(!publicity(&model, "1 0 enforcement.suspend", 1, 1095).is_published());
}

#[test]
fn repair_or_a_void_ends_publication_before_the_window() {
    let model = Model::builtin();
    let ledger = "1 0 enforcement.suspend; 2 100 rectification.verified ref=1; 3 400 repair.granted ref=1";
    assert!(publicity(&model, ledger, 1, 399).is_published());
    assert_eq!(
        publicity(&model, ledger, 1, 400),
        Publicity::NotPublished {
            class: PublicityClass::Serious,
            since: day(400),
            why: NotPublishedWhy::Repaired(Seq(3)),
        }
    );
    let voided = "1 0 penalty.fine amount=1000; 2 30 record.voided ref=1";
    let ended = publicity(&model, voided, 1, 30);
    assert!(
        matches!(ended, Publicity::NotPublished { why: NotPublishedWhy::Voided(Seq(2)), .. }),
        "{ended:?}"
    );
    let upheld =
        "1 0 penalty.fine amount=1000; 2 5 dispute.opened ref=1; 3 30 dispute.resolved ref=1 outcome=upheld";
    assert!(!publicity(&model, upheld, 1, 31).is_published());
    let rejected = "1 0 penalty.fine amount=1000; 2 30 dispute.resolved ref=1 outcome=rejected";
    assert!(publicity(&model, rejected, 1, 31).is_published());
    // A step beyond the ledger prefix or after `now` does not count yet.
    let all = entries(ledger);
    assert!(model.publicity(&all[0], &all, day(500), 3).is_published());
}

#[test]
fn a_class_never_published_is_withheld_from_the_start() {
    let model = Model::builtin();
    let excused = publicity(&model, "1 3 monitoring.excused_day", 1, 3);
    assert_eq!(
        excused,
        Publicity::NotPublished {
            class: PublicityClass::None,
            since: day(3),
            why: NotPublishedWhy::NeverPublished
        }
    );
    let quiet = Model::from_toml(&BUILTIN.replace("minor = 90", "minor = 0")).unwrap();
    let warning = publicity(&quiet, "1 3 penalty.warning", 1, 3);
    assert!(matches!(warning, Publicity::NotPublished { why: NotPublishedWhy::NeverPublished, .. }));
}

#[test]
fn a_deployment_may_shorten_a_window_but_not_lengthen_it() {
    let shorter = Model::from_toml(&BUILTIN.replace("general = 365", "general = 180")).unwrap();
    assert_eq!(shorter.publicity_days(PublicityClass::General), 180);
    assert!(!publicity(&shorter, "1 0 penalty.fine amount=1000", 1, 180).is_published());
    for (old, new, class) in [
        ("minor = 90", "minor = 91", "publicity.minor"),
        ("general = 365", "general = 366", "publicity.general"),
        ("serious = 1095", "serious = 1096", "publicity.serious"),
        ("serious = 1095", "serious = 300", "publicity.serious"),
    ] {
        match Model::from_toml(&BUILTIN.replace(old, new)) {
            Err(Error::Model(msg)) => assert!(msg.contains(class) && msg.contains("令第36号"), "{msg}"),
            other => panic!("{new}: {other:?}"),
        }
    }
    let bad = BUILTIN.replace("publicity = \"minor\"", "publicity = \"light\"");
    let msg = Model::from_toml(&bad).unwrap_err().to_string();
    assert!(msg.contains("publicity") && msg.contains("light"), "{msg}");
}

#[test]
fn a_model_file_without_classes_derives_them_from_the_windows() {
    // ecocode-2026.1 named no classes; its records stay public as long as
    // their windows suggest.
    let old = include_str!("../../../fixtures/model/ecocode-2026.1.toml");
    let model = Model::from_toml(old).unwrap();
    assert_eq!(model.publicity_class("exceedance.daily"), Some(PublicityClass::Minor));
    assert_eq!(model.publicity_class("penalty.warning"), Some(PublicityClass::General));
    assert_eq!(model.publicity_class("penalty.fine"), Some(PublicityClass::Serious));
    assert_eq!(model.publicity_days(PublicityClass::Serious), 1095);
}

/// `PublicityPlan::next_change` bounds how long an answer holds: at every
/// day up to it the plan answers as it did, and on that day (when it
/// changes at all) otherwise; the plan answers as `publicity` does.
#[test]
fn a_plans_answer_holds_until_its_next_change() {
    let model = Model::builtin();
    let ledgers = [
        "1 10 penalty.warning",
        "1 0 enforcement.suspend; 2 100 rectification.verified ref=1; 3 400 repair.granted ref=1",
        "1 0 penalty.fine amount=1000; 2 5 dispute.opened ref=1; 3 30 dispute.resolved ref=1 outcome=upheld",
        "1 50 penalty.fine amount=1000; 2 20 record.voided ref=1",
        "1 3 monitoring.excused_day",
    ];
    for ledger in ledgers {
        let all = entries(ledger);
        let plan = model.publicity_plan(&all[0], &all, u64::MAX);
        for now in -5..1200 {
            let answer = plan.at(day(now));
            assert_eq!(answer, model.publicity(&all[0], &all, day(now), u64::MAX), "{ledger} day {now}");
            let next = plan.next_change(day(now));
            assert!(next.is_none_or(|next| next > day(now)), "{ledger} day {now}");
            let mut later = now + 1;
            while later < 1300 && next.is_none_or(|next| day(later) < next) {
                assert_eq!(
                    plan.at(day(later)),
                    answer,
                    "{ledger}: day {later} before the change after {now}"
                );
                later += 37;
            }
        }
        // The first change of a published record is when it ends.
        if let Publicity::Published { until, .. } = plan.at(day(-5)) {
            assert!(plan.next_change(day(-5)).is_some_and(|next| next <= until), "{ledger}");
        }
    }
}
