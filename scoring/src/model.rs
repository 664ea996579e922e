//! `Model`: a versioned scoring model loaded from TOML and validated, plus
//! the record rules that depend on a record's kind.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::{Error, MeeLevel, NANOS_PER_SECOND, PublicityClass, Record, Result, Timestamp, ValidationError};

/// The model every build ships with; a regulator may publish newer ones.
const BUILTIN: &str = include_str!("../../fixtures/model/ecocode-2026.2.toml");

/// Bounds that keep every sum far from `i32` overflow and every instant in
/// range; no real rule comes near them.
const MAX_POINTS: i32 = 100;
const MAX_WINDOW_DAYS: i64 = 36_500;
const MAX_TOLERANCE_SECONDS: i64 = 86_400;

/// A validated scoring model. Cheap to clone: the rules are shared.
#[derive(Clone, Debug)]
pub struct Model {
    pub(crate) inner: Arc<Rules>,
    /// The model file exactly as read: the service publishes these bytes in
    /// the ledger, and a verifier rebuilds the model from them.
    source: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) version: String,
    pub(crate) future_tolerance_nanos: i64,
    pub(crate) bonus_cap: i32,
    pub(crate) grades: Thresholds,
    /// The MEE four-level colour of INTEGRITY, GOOD, WARNING and POOR.
    pub(crate) mee_levels: [MeeLevel; 4],
    /// Ascending by `window_up_to_days`; the last tier is unbounded.
    pub(crate) publicity: Vec<PublicityTier>,
    /// The publicity window in days of each [`PublicityClass`], in the
    /// order of [`PublicityClass::ALL`] (`none` is always 0).
    pub(crate) windows: [i64; 4],
    /// Sorted by name.
    pub(crate) kinds: Vec<KindRule>,
    pub(crate) index: HashMap<String, usize>,
    pub(crate) monitoring: MonitoringRules,
}

/// How many valid hourly values make a valid daily mean, by pollutant class
/// (HJ 75-2017 and HJ 356-2019; see docs/hj212.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitoringRules {
    /// Flue-gas pollutants (2017 codes `a...`).
    pub gas: u32,
    /// Wastewater pollutants (2017 codes `w...`).
    pub water: u32,
    /// 2005 and vendor codes, whose class the code does not say.
    pub other: u32,
}

impl MonitoringRules {
    /// The standards' 20 hours for every class; what a model file without a
    /// `[monitoring]` table gets.
    pub const STANDARD: MonitoringRules = MonitoringRules { gas: 20, water: 20, other: 20 };

    /// The valid hours a daily mean of `pollutant` needs.
    pub fn min_valid_hours(&self, pollutant: &str) -> u32 {
        match pollutant.as_bytes().first() {
            Some(b'a') => self.gas,
            Some(b'w') => self.water,
            _ => self.other,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub(crate) integrity: i32,
    pub(crate) good: i32,
    pub(crate) warning: i32,
}

#[derive(Debug)]
pub(crate) struct PublicityTier {
    pub(crate) window_up_to_days: Option<i64>,
    pub(crate) days: i64,
}

/// One scored kind.
#[derive(Debug)]
pub(crate) struct KindRule {
    pub(crate) name: String,
    /// Whether the tier depends on `amount_yuan` (and so requires one).
    pub(crate) amount_tiered: bool,
    /// Ascending by `up_to_yuan`; the last tier is unbounded. A kind without
    /// tiers in the file has exactly one.
    pub(crate) tiers: Vec<Tier>,
    pub(crate) cap: Option<i32>,
    pub(crate) veto: bool,
    pub(crate) bonus: bool,
    /// How long its records are published (令第36号).
    pub(crate) publicity: PublicityClass,
}

#[derive(Debug)]
pub(crate) struct Tier {
    pub(crate) up_to_yuan: Option<i64>,
    pub(crate) points: i32,
    pub(crate) window_days: i64,
}

impl KindRule {
    /// The tier for an amount; tiers are validated to end unbounded.
    pub(crate) fn tier(&self, amount_yuan: i64) -> &Tier {
        self.tiers
            .iter()
            .find(|t| t.up_to_yuan.is_none_or(|up_to| amount_yuan <= up_to))
            .unwrap_or(&self.tiers[self.tiers.len() - 1])
    }
}

/// What a kind is to the model.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KindClass {
    Scored { veto: bool, bonus: bool },
    Workflow(WorkflowKind),
}

/// The workflow steps, whose meaning is code rather than model data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WorkflowKind {
    DisputeOpened,
    DisputeResolved,
    RecordVoided,
    RectificationSubmitted,
    RectificationVerified,
    RepairGranted,
}

impl WorkflowKind {
    pub const ALL: [WorkflowKind; 6] = [
        WorkflowKind::DisputeOpened,
        WorkflowKind::DisputeResolved,
        WorkflowKind::RecordVoided,
        WorkflowKind::RectificationSubmitted,
        WorkflowKind::RectificationVerified,
        WorkflowKind::RepairGranted,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            WorkflowKind::DisputeOpened => "dispute.opened",
            WorkflowKind::DisputeResolved => "dispute.resolved",
            WorkflowKind::RecordVoided => "record.voided",
            WorkflowKind::RectificationSubmitted => "rectification.submitted",
            WorkflowKind::RectificationVerified => "rectification.verified",
            WorkflowKind::RepairGranted => "repair.granted",
        }
    }

    pub fn from_name(name: &str) -> Option<WorkflowKind> {
        WorkflowKind::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Points and window of one scored record under a model.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordRule {
    pub points: i32,
    pub window_days: i64,
    pub veto: bool,
    pub bonus: bool,
}

// The file's shape. Kept apart from `Rules` so that the file format can
// change without touching the evaluation code.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    version: String,
    future_tolerance_seconds: i64,
    bonus_cap: i32,
    grades: GradesFile,
    mee_levels: Option<MeeLevelsFile>,
    repair: RepairFile,
    publicity: Option<PublicityWindowsFile>,
    kinds: BTreeMap<String, KindFile>,
    monitoring: Option<MonitoringFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitoringFile {
    min_valid_hours: MinValidHoursFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinValidHoursFile {
    gas: u32,
    water: u32,
    other: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GradesFile {
    integrity: i32,
    good: i32,
    warning: i32,
}

/// `[mee_levels]`: the MEE colour name of each grade.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeeLevelsFile {
    integrity: String,
    good: String,
    warning: String,
    poor: String,
}

/// The 2013 办法's order: 环保诚信 green, 良好 blue, 警示 yellow, 不良 red;
/// what a model file without `[mee_levels]` gets.
pub(crate) const DEFAULT_MEE_LEVELS: [MeeLevel; 4] =
    [MeeLevel::Green, MeeLevel::Blue, MeeLevel::Yellow, MeeLevel::Red];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepairFile {
    publicity: Vec<PublicityFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicityFile {
    window_up_to_days: Option<i64>,
    days: i64,
}

/// `[publicity]`: the window of each class in days; absent, 令第36号's
/// longest (`minor = 90`, `general = 365`, `serious = 1095`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicityWindowsFile {
    minor: i64,
    general: i64,
    serious: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindFile {
    publicity: Option<String>,
    points: Option<i32>,
    window_days: Option<i64>,
    tiers: Option<Vec<TierFile>>,
    cap: Option<i32>,
    #[serde(default)]
    veto: bool,
    #[serde(default)]
    bonus: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierFile {
    up_to_yuan: Option<i64>,
    points: i32,
    window_days: i64,
}

impl Model {
    /// Parses and validates a model; any rule broken is `Error::Model`
    /// naming the offending key.
    pub fn from_toml(text: &str) -> Result<Model> {
        let file: ModelFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(line) => Error::Model(format!("line {line}: {}", e.message())),
                None => Error::Model(e.message().to_owned()),
            }
        })?;
        let rules = validate(file).map_err(Error::Model)?;
        Ok(Model { inner: Arc::new(rules), source: text.into() })
    }

    /// The model in `fixtures/model/ecocode-2026.2.toml`, compiled in.
    pub fn builtin() -> Model {
        // A unit test loads the same text, so this cannot fail in a build
        // whose tests pass.
        Model::from_toml(BUILTIN).unwrap_or_else(|e| panic!("builtin model: {e}"))
    }

    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The model file's exact text, as given to [`Model::from_toml`].
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn kind_class(&self, kind: &str) -> Option<KindClass> {
        if let Some(rule) = self.inner.rule(kind) {
            return Some(KindClass::Scored { veto: rule.veto, bonus: rule.bonus });
        }
        WorkflowKind::from_name(kind).map(KindClass::Workflow)
    }

    /// Every kind the model knows: scored kinds by name, then workflow kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.inner.kinds.iter().map(|k| k.name.as_str()).chain(WorkflowKind::ALL.iter().map(|w| w.name()))
    }

    /// Points and window of a scored record of `kind` with `amount_yuan`
    /// (before halving, caps and clamp); `None` for other kinds.
    pub fn record_rule(&self, kind: &str, amount_yuan: i64) -> Option<RecordRule> {
        let rule = self.inner.rule(kind)?;
        let tier = rule.tier(amount_yuan);
        Some(RecordRule {
            points: tier.points,
            window_days: tier.window_days,
            veto: rule.veto,
            bonus: rule.bonus,
        })
    }

    /// The limit on the sum of a kind's active points, if it has one.
    pub fn kind_cap(&self, kind: &str) -> Option<i32> {
        self.inner.rule(kind).and_then(|r| r.cap)
    }

    /// The most that bonus kinds may add together.
    pub fn bonus_cap(&self) -> i32 {
        self.inner.bonus_cap
    }

    /// Days a record with this window must have been public before repair.
    pub fn minimum_publicity_days(&self, window_days: i64) -> i64 {
        self.inner.minimum_publicity_days(window_days)
    }

    /// The valid-day rules of online monitoring.
    pub fn monitoring(&self) -> MonitoringRules {
        self.inner.monitoring
    }

    /// Field rules that depend on the record's kind; `now` is the caller's
    /// clock, since this crate reads none.
    pub fn check_record(&self, record: &Record, now: Timestamp) -> Result<(), ValidationError> {
        let class = self.kind_class(&record.kind).ok_or_else(|| {
            ValidationError::new(
                "kind",
                format!("unknown kind {} in model {}", crate::quoted(&record.kind), self.version()),
            )
        })?;
        // Texts come back to terminals and pages: a new record carries
        // nothing that acts on them.
        crate::check_new_text("source_record_id", &record.source_record_id, false)?;
        crate::check_new_text("description", &record.description, true)?;
        for value in record.attributes.values() {
            crate::check_new_text("attributes value", value, false)?;
        }
        let amount_tiered = self.inner.rule(&record.kind).is_some_and(|r| r.amount_tiered);
        if amount_tiered && record.amount_yuan <= 0 {
            return Err(ValidationError::new(
                "amount_yuan",
                format!("must be greater than 0 for {}", record.kind),
            ));
        }
        if !amount_tiered && record.amount_yuan != 0 {
            return Err(ValidationError::new(
                "amount_yuan",
                format!("must be 0 for {}, got {}", record.kind, record.amount_yuan),
            ));
        }
        let latest = now.plus_nanos(self.inner.future_tolerance_nanos);
        if record.occurred_at > latest {
            return Err(ValidationError::new(
                "occurred_at",
                format!(
                    "{} is more than {} s after now ({now})",
                    record.occurred_at,
                    self.inner.future_tolerance_nanos / NANOS_PER_SECOND
                ),
            ));
        }
        match (class, record.refers_to) {
            (KindClass::Workflow(_), None) => {
                return Err(ValidationError::new(
                    "refers_to_seq",
                    format!("is required for {}", record.kind),
                ));
            }
            (KindClass::Scored { .. }, Some(seq)) => {
                return Err(ValidationError::new(
                    "refers_to_seq",
                    format!("must be empty for scored kind {}, got {seq}", record.kind),
                ));
            }
            _ => {}
        }
        match class {
            KindClass::Workflow(WorkflowKind::DisputeResolved) => {
                let outcome = record.attributes.get("outcome").map(String::as_str);
                if !matches!(outcome, Some("upheld" | "rejected")) {
                    return Err(ValidationError::new(
                        "attributes.outcome",
                        format!(
                            "must be \"upheld\" or \"rejected\", got {}",
                            outcome.map_or("nothing".into(), crate::quoted)
                        ),
                    ));
                }
            }
            KindClass::Workflow(WorkflowKind::RecordVoided) => {
                let reason = record.attributes.get("reason").map(|r| r.trim());
                if reason.is_none_or(str::is_empty) {
                    return Err(ValidationError::new("attributes.reason", "is required"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Rules {
    pub(crate) fn rule(&self, kind: &str) -> Option<&KindRule> {
        self.index.get(kind).map(|&i| &self.kinds[i])
    }

    pub(crate) fn publicity_days(&self, class: PublicityClass) -> i64 {
        let i = PublicityClass::ALL.iter().position(|c| *c == class).unwrap_or(0);
        self.windows[i]
    }

    pub(crate) fn minimum_publicity_days(&self, window_days: i64) -> i64 {
        self.publicity
            .iter()
            .find(|t| t.window_up_to_days.is_none_or(|up_to| window_days <= up_to))
            .or(self.publicity.last())
            .map_or(0, |t| t.days)
    }
}

fn validate(file: ModelFile) -> Result<Rules, String> {
    let version = file.version;
    if version.trim().is_empty() || version.len() > 64 {
        return Err(format!("version must be 1 to 64 characters, got {version:?}"));
    }
    let tolerance = file.future_tolerance_seconds;
    if !(0..=MAX_TOLERANCE_SECONDS).contains(&tolerance) {
        return Err(format!(
            "future_tolerance_seconds must be in 0..={MAX_TOLERANCE_SECONDS}, got {tolerance}"
        ));
    }
    if !(0..=MAX_POINTS).contains(&file.bonus_cap) {
        return Err(format!("bonus_cap must be in 0..={MAX_POINTS}, got {}", file.bonus_cap));
    }
    let g = &file.grades;
    if !(0 < g.warning && g.warning < g.good && g.good < g.integrity && g.integrity <= 100) {
        return Err(format!(
            "grades must satisfy 0 < warning < good < integrity <= 100, got {} {} {}",
            g.warning, g.good, g.integrity
        ));
    }
    let mee_levels = match file.mee_levels {
        None => DEFAULT_MEE_LEVELS,
        Some(m) => {
            let mut out = DEFAULT_MEE_LEVELS;
            let given =
                [("integrity", m.integrity), ("good", m.good), ("warning", m.warning), ("poor", m.poor)];
            for (slot, (key, name)) in out.iter_mut().zip(given) {
                *slot = name.parse::<MeeLevel>().map_err(|e| format!("mee_levels.{key} {}", e.rule))?;
            }
            out
        }
    };
    let publicity = validate_publicity(file.repair.publicity)?;
    let windows = validate_windows(file.publicity)?;
    let mut kinds = Vec::with_capacity(file.kinds.len());
    for (name, kind) in file.kinds {
        kinds.push(validate_kind(name, kind)?);
    }
    if kinds.is_empty() {
        return Err("kinds must not be empty".to_owned());
    }
    let index = kinds.iter().enumerate().map(|(i, k)| (k.name.clone(), i)).collect();
    let monitoring = match file.monitoring {
        None => MonitoringRules::STANDARD,
        Some(MonitoringFile { min_valid_hours: h }) => {
            for (class, hours) in [("gas", h.gas), ("water", h.water), ("other", h.other)] {
                if !(1..=24).contains(&hours) {
                    return Err(format!("monitoring.min_valid_hours.{class} must be in 1..=24, got {hours}"));
                }
            }
            MonitoringRules { gas: h.gas, water: h.water, other: h.other }
        }
    };
    Ok(Rules {
        version,
        future_tolerance_nanos: tolerance * NANOS_PER_SECOND,
        bonus_cap: file.bonus_cap,
        grades: Thresholds { integrity: g.integrity, good: g.good, warning: g.warning },
        mee_levels,
        publicity,
        windows,
        kinds,
        index,
        monitoring,
    })
}

fn validate_publicity(tiers: Vec<PublicityFile>) -> Result<Vec<PublicityTier>, String> {
    let mut out: Vec<PublicityTier> = Vec::with_capacity(tiers.len());
    for (i, t) in tiers.into_iter().enumerate() {
        let at = format!("repair.publicity[{i}]");
        if !(0..=MAX_WINDOW_DAYS).contains(&t.days) {
            return Err(format!("{at}.days must be in 0..={MAX_WINDOW_DAYS}, got {}", t.days));
        }
        if let Some(prev) = out.last() {
            match (prev.window_up_to_days, t.window_up_to_days) {
                (None, _) => return Err(format!("{at} follows the unbounded tier")),
                (Some(p), Some(w)) if w <= p => {
                    return Err(format!(
                        "{at}.window_up_to_days must be above the previous tier's {p}, got {w}"
                    ));
                }
                _ => {}
            }
        }
        if let Some(w) = t.window_up_to_days
            && w <= 0
        {
            return Err(format!("{at}.window_up_to_days must be positive, got {w}"));
        }
        out.push(PublicityTier { window_up_to_days: t.window_up_to_days, days: t.days });
    }
    match out.last() {
        Some(last) if last.window_up_to_days.is_none() => Ok(out),
        _ => Err("repair.publicity must end with a tier without window_up_to_days".to_owned()),
    }
}

/// The publicity windows: 令第36号 lets a deployment shorten a class's
/// window to its shortest, never lengthen it; a window outside is refused,
/// naming the class.
fn validate_windows(file: Option<PublicityWindowsFile>) -> Result<[i64; 4], String> {
    let Some(f) = file else {
        return Ok(PublicityClass::ALL.map(|c| *c.allowed_days().end()));
    };
    let given = [
        (PublicityClass::Minor, f.minor),
        (PublicityClass::General, f.general),
        (PublicityClass::Serious, f.serious),
    ];
    let mut out = [0; 4];
    for (i, (class, days)) in given.into_iter().enumerate() {
        let allowed = class.allowed_days();
        if !allowed.contains(&days) {
            return Err(format!(
                "publicity.{class} must be in {}..={} days (令第36号 allows a {class} window of {} to {} days; \
                 a deployment may shorten it, not lengthen it), got {days}",
                allowed.start(),
                allowed.end(),
                allowed.start(),
                allowed.end(),
            ));
        }
        out[i + 1] = days;
    }
    Ok(out)
}

fn validate_kind(name: String, kind: KindFile) -> Result<KindRule, String> {
    let at = format!("kinds.{name:?}");
    let well_formed = !name.is_empty()
        && name.len() <= crate::limits::KIND
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
    if !well_formed {
        return Err(format!("{at}: a kind must be 1 to 64 ASCII letters, digits and . _ - :"));
    }
    if WorkflowKind::from_name(&name).is_some() {
        return Err(format!("{at}: is a workflow kind, whose meaning is fixed by the code"));
    }
    if kind.veto && kind.bonus {
        return Err(format!("{at}: cannot be both veto and bonus"));
    }
    let (amount_tiered, files) = match (kind.points, kind.window_days, kind.tiers) {
        (Some(points), Some(window_days), None) => {
            (false, vec![TierFile { up_to_yuan: None, points, window_days }])
        }
        (None, None, Some(tiers)) => (true, tiers),
        _ => {
            return Err(format!("{at}: needs either points and window_days, or tiers"));
        }
    };
    if files.is_empty() {
        return Err(format!("{at}.tiers must not be empty"));
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(files.len());
    for (i, t) in files.into_iter().enumerate() {
        let at = if amount_tiered { format!("{at}.tiers[{i}]") } else { at.clone() };
        check_points(&at, "points", t.points, kind.bonus)?;
        if !(1..=MAX_WINDOW_DAYS).contains(&t.window_days) {
            return Err(format!("{at}.window_days must be in 1..={MAX_WINDOW_DAYS}, got {}", t.window_days));
        }
        if let Some(prev) = tiers.last() {
            match (prev.up_to_yuan, t.up_to_yuan) {
                (None, _) => return Err(format!("{at} follows the unbounded tier")),
                (Some(p), Some(u)) if u <= p => {
                    return Err(format!("{at}.up_to_yuan must be above the previous tier's {p}, got {u}"));
                }
                _ => {}
            }
        }
        if let Some(u) = t.up_to_yuan
            && u <= 0
        {
            return Err(format!("{at}.up_to_yuan must be positive, got {u}"));
        }
        tiers.push(Tier { up_to_yuan: t.up_to_yuan, points: t.points, window_days: t.window_days });
    }
    if tiers.last().is_some_and(|t| t.up_to_yuan.is_some()) {
        return Err(format!("{at}.tiers must end with a tier without up_to_yuan"));
    }
    if let Some(cap) = kind.cap {
        check_points(&at, "cap", cap, kind.bonus)?;
    }
    let publicity = match kind.publicity {
        Some(text) => text.parse::<PublicityClass>().map_err(|e| format!("{at}.publicity {}", e.rule))?,
        None => PublicityClass::by_window(tiers.iter().map(|t| t.window_days).max().unwrap_or(0)),
    };
    Ok(KindRule { name, amount_tiered, tiers, cap: kind.cap, veto: kind.veto, bonus: kind.bonus, publicity })
}

/// Bonus kinds add points and all others deduct, so the sign is fixed by
/// `bonus`. A deduction of zero is an explained fact that costs nothing
/// (e.g. a monitoring day excused by a platform outage); a zero cap or bonus
/// would be a kind that never matters.
fn check_points(at: &str, key: &str, points: i32, bonus: bool) -> Result<(), String> {
    let most = if key == "points" { 0 } else { -1 };
    let ok = if bonus { (1..=MAX_POINTS).contains(&points) } else { (-MAX_POINTS..=most).contains(&points) };
    if ok {
        Ok(())
    } else if bonus {
        Err(format!("{at}.{key} of a bonus kind must be in 1..={MAX_POINTS}, got {points}"))
    } else {
        Err(format!(
            "{at}.{key} must be in -{MAX_POINTS}..={most} (bonus kinds set bonus = true), got {points}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Grade;

    #[test]
    fn builtin_model_is_valid() {
        let model = Model::builtin();
        assert_eq!(model.version(), "ecocode-2026.2");
        // 19 deductions, 7 veto kinds, 3 bonuses and 6 workflow kinds.
        assert_eq!(model.kinds().count(), 19 + 7 + 3 + 6);
        assert_eq!(model.inner.future_tolerance_nanos, 300 * NANOS_PER_SECOND);
        assert_eq!(model.minimum_publicity_days(365), 90);
        assert_eq!(model.minimum_publicity_days(366), 365);
        assert_eq!(model.minimum_publicity_days(1095), 365);
        assert_eq!(model.monitoring().min_valid_hours("a21026"), 20);
        assert_eq!(model.monitoring().min_valid_hours("w01018"), 20);
    }

    #[test]
    fn each_grade_has_its_mee_colour_by_default() {
        // The 2013 办法's order, in the builtin model and in a file without
        // a [mee_levels] table.
        let without = BUILTIN
            .replace("[mee_levels]", "[unused]")
            .replace("integrity = \"GREEN\"\ngood = \"BLUE\"\nwarning = \"YELLOW\"\npoor = \"RED\"\n", "");
        assert!(!without.contains("mee_levels"), "the fixture's table moved; update this test");
        let without = without.replace("[unused]\n", "");
        for model in [Model::builtin(), Model::from_toml(&without).unwrap()] {
            let levels: Vec<MeeLevel> = [Grade::Integrity, Grade::Good, Grade::Warning, Grade::Poor]
                .map(|g| model.mee_level(g))
                .into();
            assert_eq!(levels, [MeeLevel::Green, MeeLevel::Blue, MeeLevel::Yellow, MeeLevel::Red]);
        }
    }

    #[test]
    fn a_model_file_may_map_grades_to_other_mee_colours() {
        let text = BUILTIN.replace("good = \"BLUE\"", "good = \"GREEN\"");
        let model = Model::from_toml(&text).unwrap();
        assert_eq!(model.mee_level(Grade::Good), MeeLevel::Green);
        assert_eq!(model.mee_level(Grade::Warning), MeeLevel::Yellow);
    }

    #[test]
    fn a_bad_mee_mapping_is_a_load_error_naming_the_key() {
        let bad = BUILTIN.replace("warning = \"YELLOW\"", "warning = \"ORANGE\"");
        let e = Model::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("mee_levels.warning") && e.contains("ORANGE"), "{e}");
        let missing = BUILTIN.replace("poor = \"RED\"\n", "");
        let e = Model::from_toml(&missing).unwrap_err().to_string();
        assert!(e.contains("poor"), "{e}");
        let unknown = BUILTIN.replace("poor = \"RED\"", "poor = \"RED\"\nclosed = \"RED\"");
        let e = Model::from_toml(&unknown).unwrap_err().to_string();
        assert!(e.contains("closed"), "{e}");
    }

    #[test]
    fn model_can_be_shared_across_threads() {
        fn shareable<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
        shareable::<Model>();
    }
}
