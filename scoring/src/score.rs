//! Online evaluation: one enterprise's entries, an instant `T` and a ledger
//! prefix `N` in, points, grade, colour code and their explanation out.

use std::fmt;
use std::str::FromStr;

use crate::model::{KindRule, Rules, WorkflowKind};
use crate::{Model, Record, Seq, Timestamp, ValidationError, quoted};

/// One ledger entry that is a record (registrations are not scored).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LedgerRecord {
    pub seq: Seq,
    pub record: Record,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Grade {
    /// 环保诚信
    Integrity,
    /// 良好
    Good,
    /// 警示
    Warning,
    /// 不良
    Poor,
}

impl Grade {
    pub const ALL: [Grade; 4] = [Grade::Integrity, Grade::Good, Grade::Warning, Grade::Poor];

    pub fn as_str(&self) -> &'static str {
        match self {
            Grade::Integrity => "INTEGRITY",
            Grade::Good => "GOOD",
            Grade::Warning => "WARNING",
            Grade::Poor => "POOR",
        }
    }

    /// The colour banks act on.
    pub fn code(&self) -> Code {
        match self {
            Grade::Integrity | Grade::Good => Code::Green,
            Grade::Warning => Code::Yellow,
            Grade::Poor => Code::Red,
        }
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Grade {
    type Err = ValidationError;

    /// The name [`Grade::as_str`] gives, as exports and pages carry it.
    fn from_str(text: &str) -> Result<Grade, ValidationError> {
        Grade::ALL.into_iter().find(|g| g.as_str() == text).ok_or_else(|| {
            ValidationError::new(
                "grade",
                format!("must be INTEGRITY, GOOD, WARNING or POOR, got {}", quoted(text)),
            )
        })
    }
}

/// The three-colour code (环保码).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Code {
    Green,
    Yellow,
    Red,
}

impl Code {
    pub const ALL: [Code; 3] = [Code::Green, Code::Yellow, Code::Red];

    pub fn as_str(&self) -> &'static str {
        match self {
            Code::Green => "GREEN",
            Code::Yellow => "YELLOW",
            Code::Red => "RED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Code {
    type Err = ValidationError;

    /// The name [`Code::as_str`] gives, as exports and pages carry it.
    fn from_str(text: &str) -> Result<Code, ValidationError> {
        Code::ALL.into_iter().find(|c| c.as_str() == text).ok_or_else(|| {
            ValidationError::new("code", format!("must be GREEN, YELLOW or RED, got {}", quoted(text)))
        })
    }
}

/// The four-level colour of the MEE's 2013 企业环境信用评价办法 (green
/// 环保诚信, blue 良好, yellow 警示, red 不良), which provincial practice
/// speaks of beside the three-colour code. The model maps each grade to one
/// ([`Model::mee_level`]); by default in that order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum MeeLevel {
    Green,
    Blue,
    Yellow,
    Red,
}

impl MeeLevel {
    pub const ALL: [MeeLevel; 4] = [MeeLevel::Green, MeeLevel::Blue, MeeLevel::Yellow, MeeLevel::Red];

    /// The name in model files and exports; the `ecocode.v1` enum value is
    /// `MEE_LEVEL_<name>`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MeeLevel::Green => "GREEN",
            MeeLevel::Blue => "BLUE",
            MeeLevel::Yellow => "YELLOW",
            MeeLevel::Red => "RED",
        }
    }
}

impl fmt::Display for MeeLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MeeLevel {
    type Err = ValidationError;

    /// The name [`MeeLevel::as_str`] gives, as model files and exports carry it.
    fn from_str(text: &str) -> Result<MeeLevel, ValidationError> {
        MeeLevel::ALL.into_iter().find(|l| l.as_str() == text).ok_or_else(|| {
            ValidationError::new(
                "mee_level",
                format!("must be GREEN, BLUE, YELLOW or RED, got {}", quoted(text)),
            )
        })
    }
}

/// One line of the explanation. Record lines carry the record's kind, its
/// signed points after halving, its seq and when it expires; correction
/// lines (`cap:<kind>`, `cap:bonus`, `clamp`) carry seq 0 and no expiry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Reason {
    pub kind: String,
    pub points: i32,
    pub seq: Seq,
    pub description: String,
    pub expires_at: Option<Timestamp>,
}

/// The score of one enterprise at `as_of`. Always `100 + Σ reasons.points
/// == points`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Evaluation {
    pub points: i32,
    pub grade: Grade,
    pub code: Code,
    /// The grade's MEE four-level colour under this model.
    pub mee_level: MeeLevel,
    pub veto: bool,
    pub disputed: bool,
    /// Ordered by `|points|` descending, then seq ascending, then kind.
    /// Shared: an evaluation kept by the server is copied per read, its
    /// reasons are not.
    pub reasons: std::sync::Arc<[Reason]>,
    /// Active records with a rectification submitted but not yet verified,
    /// ascending.
    pub rectification_pending: Vec<Seq>,
    pub as_of: Timestamp,
    pub model_version: String,
}

/// Points every enterprise starts from.
pub const BASE_POINTS: i32 = 100;

/// What the workflow steps visible at `(T, N)` have done to one record.
#[derive(Clone, Copy, Default)]
struct Effects {
    voided: bool,
    repaired: bool,
    verified: bool,
    submitted: bool,
    /// The latest dispute step in effect order `(occurred_at, seq)`, and
    /// whether it opened a dispute: a resolution closes every dispute opened
    /// before it takes effect, and a later one opens anew.
    last_dispute: Option<(Timestamp, Seq, bool)>,
}

impl Model {
    /// `score(enterprise, T = at, N = tree_size)`. `entries` are the
    /// enterprise's records, normally ascending by seq; entries with
    /// `seq >= tree_size` or `occurred_at > at` are ignored, and so are
    /// records of kinds this model does not know.
    pub fn score(&self, entries: &[LedgerRecord], at: Timestamp, tree_size: u64) -> Evaluation {
        let rules = &*self.inner;
        let effects = effects(rules, entries, at, tree_size);

        let mut reasons = Vec::new();
        let mut pending = Vec::new();
        let mut veto = false;
        let mut disputed = false;
        // Sum of active points per kind, indexed like `rules.kinds`.
        let mut kind_sums = vec![0i64; rules.kinds.len()];
        for (entry, effect) in entries.iter().zip(&effects) {
            let Some(k) = active_rule(rules, entry, effect, at, tree_size) else {
                continue;
            };
            let rule = &rules.kinds[k];
            let tier = rule.tier(entry.record.amount_yuan);
            // Rectification rewards repair of harm: a veto stays whole by
            // the spec, and a bonus has nothing to rectify.
            let halved = effect.verified && !rule.veto && !rule.bonus;
            let points = if halved { halve(tier.points) } else { tier.points };
            kind_sums[k] += i64::from(points);
            veto |= rule.veto;
            disputed |= effect.last_dispute.is_some_and(|(_, _, open)| open);
            if effect.submitted && !effect.verified {
                pending.push(entry.seq);
            }
            reasons.push(Reason {
                kind: entry.record.kind.clone(),
                points,
                seq: entry.seq,
                description: describe(rule, &entry.record, halved),
                expires_at: Some(entry.record.occurred_at.plus_days(tier.window_days)),
            });
        }

        let mut total = i64::from(BASE_POINTS);
        let mut bonus = 0i64;
        for (rule, &sum) in rules.kinds.iter().zip(&kind_sums) {
            let capped = match rule.cap.map(i64::from) {
                Some(cap) if (rule.bonus && sum > cap) || (!rule.bonus && sum < cap) => {
                    reasons.push(correction(
                        format!("cap:{}", rule.name),
                        cap - sum,
                        format!("{} limited to {cap} points together", rule.name),
                    ));
                    cap
                }
                _ => sum,
            };
            if rule.bonus {
                bonus += capped;
            } else {
                total += capped;
            }
        }
        let bonus_cap = i64::from(rules.bonus_cap);
        if bonus > bonus_cap {
            reasons.push(correction(
                "cap:bonus".to_owned(),
                bonus_cap - bonus,
                format!("bonuses limited to {bonus_cap} points together"),
            ));
            bonus = bonus_cap;
        }
        total += bonus;
        let points = total.clamp(0, i64::from(BASE_POINTS));
        if points != total {
            reasons.push(correction(
                "clamp".to_owned(),
                points - total,
                format!("points kept within 0..={BASE_POINTS}"),
            ));
        }
        reasons.sort_by(|a, b| {
            b.points
                .unsigned_abs()
                .cmp(&a.points.unsigned_abs())
                .then(a.seq.cmp(&b.seq))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        pending.sort_unstable();

        // The clamp keeps `points` in 0..=100.
        let points = points as i32;
        let grade = self.grade(points, veto);
        Evaluation {
            points,
            grade,
            code: grade.code(),
            mee_level: self.mee_level(grade),
            veto,
            disputed,
            reasons: reasons.into(),
            rectification_pending: pending,
            as_of: at,
            model_version: rules.version.clone(),
        }
    }

    /// The records with a dispute open at `(at, tree_size)`, ascending: the
    /// per-record view of [`Evaluation::disputed`], for pages that mark each
    /// reason.
    pub fn open_disputes(&self, entries: &[LedgerRecord], at: Timestamp, tree_size: u64) -> Vec<Seq> {
        let effects = effects(&self.inner, entries, at, tree_size);
        entries
            .iter()
            .zip(&effects)
            .filter(|(_, e)| e.last_dispute.is_some_and(|(_, _, open)| open))
            .map(|(entry, _)| entry.seq)
            .collect()
    }

    /// The MEE four-level colour of `grade` under this model's
    /// `[mee_levels]` mapping.
    pub fn mee_level(&self, grade: Grade) -> MeeLevel {
        let m = &self.inner.mee_levels;
        match grade {
            Grade::Integrity => m[0],
            Grade::Good => m[1],
            Grade::Warning => m[2],
            Grade::Poor => m[3],
        }
    }

    /// The grade of `points` under this model's thresholds; a veto forces
    /// POOR whatever the points.
    pub fn grade(&self, points: i32, veto: bool) -> Grade {
        let g = self.inner.grades;
        match points {
            _ if veto => Grade::Poor,
            p if p >= g.integrity => Grade::Integrity,
            p if p >= g.good => Grade::Good,
            p if p >= g.warning => Grade::Warning,
            _ => Grade::Poor,
        }
    }

    /// Every instant in `(from, to]` at which the evaluation can change: a
    /// record starts or expires, or a workflow step takes effect. Ascending,
    /// without duplicates. The evaluation is constant from one change point
    /// up to (not including) the next.
    pub fn change_points(
        &self,
        entries: &[LedgerRecord],
        from: Timestamp,
        to: Timestamp,
        tree_size: u64,
    ) -> Vec<Timestamp> {
        let mut points: Vec<Timestamp> =
            candidates(&self.inner, entries, tree_size).filter(|&t| from < t && t <= to).collect();
        points.sort_unstable();
        points.dedup();
        points
    }

    /// The first instant strictly after `t` at which the evaluation can
    /// change, e.g. when the record that keeps a code RED expires.
    pub fn next_change_after(
        &self,
        entries: &[LedgerRecord],
        t: Timestamp,
        tree_size: u64,
    ) -> Option<Timestamp> {
        candidates(&self.inner, entries, tree_size).filter(|&c| c > t).min()
    }

    /// The instants `[from, until)` around `at` over which the evaluation
    /// stays what it is at `at`: `from` is the last change point at or
    /// before `at` (`None`: none, the evaluation has been the same since the
    /// beginning of time), `until` the first after it (`None`: it never
    /// changes without a new entry). A materialized view keeps an
    /// evaluation for exactly this interval.
    pub fn stable_interval(
        &self,
        entries: &[LedgerRecord],
        at: Timestamp,
        tree_size: u64,
    ) -> (Option<Timestamp>, Option<Timestamp>) {
        let (mut from, mut until) = (None, None);
        for c in candidates(&self.inner, entries, tree_size) {
            if c <= at {
                from = from.max(Some(c));
            } else if until.is_none_or(|u| c < u) {
                until = Some(c);
            }
        }
        (from, until)
    }
}

/// Starts and expiries of scored records, and the instants workflow steps
/// take effect, for entries below `tree_size`.
fn candidates<'a>(
    rules: &'a Rules,
    entries: &'a [LedgerRecord],
    tree_size: u64,
) -> impl Iterator<Item = Timestamp> + 'a {
    entries.iter().filter(move |e| e.seq.0 < tree_size).flat_map(move |e| {
        let start = e.record.occurred_at;
        let end = rules
            .rule(&e.record.kind)
            .map(|rule| start.plus_days(rule.tier(e.record.amount_yuan).window_days));
        [Some(start), end].into_iter().flatten()
    })
}

/// The kind index of an entry's rule if the entry is a scored record active
/// at `(at, tree_size)`.
fn active_rule(
    rules: &Rules,
    entry: &LedgerRecord,
    effect: &Effects,
    at: Timestamp,
    tree_size: u64,
) -> Option<usize> {
    let record = &entry.record;
    if entry.seq.0 >= tree_size || record.occurred_at > at || effect.voided || effect.repaired {
        return None;
    }
    let k = *rules.index.get(record.kind.as_str())?;
    let window = rules.kinds[k].tier(record.amount_yuan).window_days;
    (at < record.occurred_at.plus_days(window)).then_some(k)
}

/// Applies every workflow step visible at `(at, tree_size)` to the record it
/// names. Steps that name no scored record of the same enterprise earlier in
/// the ledger are ignored; the append checks keep them out anyway.
fn effects(rules: &Rules, entries: &[LedgerRecord], at: Timestamp, tree_size: u64) -> Vec<Effects> {
    let mut effects = vec![Effects::default(); entries.len()];
    // Pre-indexed by seq so that each step finds its record in O(log n);
    // already-sorted input makes the sort linear.
    let mut by_seq: Vec<(Seq, usize)> = entries.iter().enumerate().map(|(i, e)| (e.seq, i)).collect();
    by_seq.sort_unstable();
    for step in entries {
        if step.seq.0 >= tree_size || step.record.occurred_at > at {
            continue;
        }
        let Some(kind) = WorkflowKind::from_name(&step.record.kind) else {
            continue;
        };
        let Some(target) = step.record.refers_to else {
            continue;
        };
        let Ok(pos) = by_seq.binary_search_by_key(&target, |&(seq, _)| seq) else {
            continue;
        };
        let i = by_seq[pos].1;
        let referred = &entries[i];
        if referred.seq >= step.seq
            || referred.record.uscc != step.record.uscc
            || rules.rule(&referred.record.kind).is_none()
        {
            continue;
        }
        let effect = &mut effects[i];
        let when = (step.record.occurred_at, step.seq);
        let mut dispute = |open: bool| {
            if effect.last_dispute.is_none_or(|(t, s, _)| (t, s) < when) {
                effect.last_dispute = Some((when.0, when.1, open));
            }
        };
        match kind {
            WorkflowKind::DisputeOpened => dispute(true),
            WorkflowKind::DisputeResolved => {
                dispute(false);
                if step.record.attributes.get("outcome").is_some_and(|o| o == "upheld") {
                    effect.voided = true;
                }
            }
            WorkflowKind::RecordVoided => effect.voided = true,
            WorkflowKind::RectificationSubmitted => effect.submitted = true,
            WorkflowKind::RectificationVerified => effect.verified = true,
            WorkflowKind::RepairGranted => effect.repaired = true,
        }
    }
    effects
}

/// Remaining points after a verified rectification: magnitude − ⌊magnitude/2⌋.
pub(crate) fn halve(points: i32) -> i32 {
    let magnitude = points.abs();
    (magnitude - magnitude / 2) * points.signum()
}

/// The record's own description, or its kind (and amount, for tiered kinds)
/// when it has none; "(rectified, halved)" marks halved points.
pub(crate) fn describe(rule: &KindRule, record: &Record, halved: bool) -> String {
    let mut text = if !record.description.trim().is_empty() {
        record.description.clone()
    } else if rule.amount_tiered {
        format!("{} {} yuan", record.kind, record.amount_yuan)
    } else {
        record.kind.clone()
    };
    if halved {
        text.push_str(" (rectified, halved)");
    }
    text
}

fn correction(kind: String, points: i64, description: String) -> Reason {
    // Corrections never exceed the sum they correct, which stays far inside
    // i32 for any ledger that fits in memory.
    let points = i32::try_from(points).unwrap_or(if points < 0 { i32::MIN } else { i32::MAX });
    Reason { kind, points, seq: Seq(0), description, expires_at: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_parse_back_and_unknown_names_name_the_field() {
        for g in Grade::ALL {
            assert_eq!(g.to_string().parse::<Grade>(), Ok(g));
        }
        for c in Code::ALL {
            assert_eq!(c.to_string().parse::<Code>(), Ok(c));
        }
        for l in MeeLevel::ALL {
            assert_eq!(l.to_string().parse::<MeeLevel>(), Ok(l));
        }
        // Names are exact: pages and exports write them upper case.
        let e = "green".parse::<Code>().unwrap_err();
        assert_eq!(e.to_string(), "code: must be GREEN, YELLOW or RED, got \"green\"");
        assert_eq!("BLUE".parse::<Grade>().unwrap_err().field, "grade");
        assert_eq!("".parse::<MeeLevel>().unwrap_err().field, "mee_level");
    }
}
