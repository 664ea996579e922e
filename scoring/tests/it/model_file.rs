//! Loading model files: the builtin one is valid, broken ones are rejected
//! with a message naming the problem.

use scoring::{Error, KindClass, Model, WorkflowKind};

const BUILTIN: &str = include_str!("../../../fixtures/model/ecocode-2026.2.toml");

/// Applies `edit` (old, new) to the builtin text and expects the load to
/// fail with a message containing `fragment`.
fn check_rejected(old: &str, new: &str, fragment: &str) {
    assert!(BUILTIN.contains(old), "fixture lacks {old:?}");
    let text = BUILTIN.replacen(old, new, 1);
    match Model::from_toml(&text) {
        Ok(_) => panic!("accepted a model with {new:?} for {old:?}"),
        Err(Error::Model(msg)) => {
            assert!(msg.contains(fragment), "{msg:?} lacks {fragment:?}");
            assert!(!msg.ends_with('.'), "{msg:?} ends with a period");
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn builtin_model_loads_with_every_kind() {
    let model = Model::builtin();
    assert_eq!(model.version(), "ecocode-2026.2");
    assert_eq!(Model::from_toml(BUILTIN).expect("valid").version(), "ecocode-2026.2");
    assert_eq!(model.kind_class("veto.crime"), Some(KindClass::Scored { veto: true, bonus: false }));
    assert_eq!(model.kind_class("award.environmental"), Some(KindClass::Scored { veto: false, bonus: true }));
    assert_eq!(model.kind_class("penalty.fine"), Some(KindClass::Scored { veto: false, bonus: false }));
    assert_eq!(model.kind_class("no.such"), None);
    for w in WorkflowKind::ALL {
        assert_eq!(model.kind_class(w.name()), Some(KindClass::Workflow(w)));
        assert!(model.kinds().any(|k| k == w.name()));
    }
    assert_eq!(model.kind_cap("complaint.verified"), Some(-10));
    assert_eq!(model.bonus_cap(), 10);
    assert_eq!(model.monitoring(), scoring::MonitoringRules::STANDARD);
}

#[test]
fn broken_models_are_rejected() {
    check_rejected("version = \"ecocode-2026.2\"\n", "", "missing field `version`");
    check_rejected("bonus_cap = 10", "bonus_cap = 10\ncolour = \"red\"", "unknown field `colour`");
    check_rejected(
        "points = -3\nwindow_days = 180",
        "points = -3\nwindow_days = 180\nnote = 1",
        "unknown field `note`",
    );
    check_rejected(
        "window_days = 90\ncap = -10",
        "window_days = -90\ncap = -10",
        "window_days must be in 1..=36500, got -90",
    );
    check_rejected("window_days = 90\ncap = -10", "window_days = 0\ncap = -10", "got 0");
    check_rejected("gas = 20", "gas = 25", "monitoring.min_valid_hours.gas must be in 1..=24, got 25");
    check_rejected("water = 20", "water = 0", "monitoring.min_valid_hours.water must be in 1..=24, got 0");
    check_rejected(
        "points = 5\nwindow_days = 365\nbonus = true",
        "points = -5\nwindow_days = 365\nbonus = true",
        "bonus kind must be in 1..=100, got -5",
    );
    check_rejected(
        "points = -3\nwindow_days = 180",
        "points = 3\nwindow_days = 180",
        "kinds.\"penalty.warning\".points must be in -100..=0",
    );
    check_rejected(
        "window_days = 90\ncap = -10",
        "window_days = 90\ncap = 10",
        "kinds.\"exceedance.daily\".cap",
    );
    check_rejected(
        "window_days = 1095\nveto = true",
        "window_days = 1095\nveto = true\nbonus = true",
        "cannot be both veto and bonus",
    );
    check_rejected(
        "{ points = -20, window_days = 730 }",
        "{ up_to_yuan = 900_000, points = -20, window_days = 730 }",
        "must end with a tier without up_to_yuan",
    );
    check_rejected(
        "up_to_yuan = 200_000",
        "up_to_yuan = 40_000",
        "up_to_yuan must be above the previous tier's 50000, got 40000",
    );
    check_rejected(
        "points = -3\nwindow_days = 180",
        "points = -3",
        "needs either points and window_days, or tiers",
    );
    check_rejected("integrity = 90", "integrity = 70", "grades must satisfy");
    check_rejected("bonus_cap = 10", "bonus_cap = -1", "bonus_cap must be in 0..=100");
    check_rejected(
        "future_tolerance_seconds = 300",
        "future_tolerance_seconds = -300",
        "future_tolerance_seconds",
    );
    check_rejected(
        "[[repair.publicity]]\ndays = 365",
        "[[repair.publicity]]\nwindow_up_to_days = 730\ndays = 365",
        "repair.publicity must end with a tier without window_up_to_days",
    );
    check_rejected("[kinds.\"exceedance.daily\"]", "[kinds.\"repair.granted\"]", "is a workflow kind");
    check_rejected("[kinds.\"exceedance.daily\"]", "[kinds.\"exceedance daily\"]", "a kind must be");
    check_rejected("bonus_cap = 10", "bonus_cap = \"ten\"", "line 38: invalid type");
    check_rejected("\n[grades]\n", "\n[grades\n", "line 40: ");
}
