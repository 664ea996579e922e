//! Publicity (公示): whether a scored record's details may be shown to the
//! public and shared with lenders at an instant, under the model's
//! publicity windows (《信用修复管理办法》, 国家发展改革委令第36号) and the
//! enterprise's workflow steps (credit repair, voiding).
//!
//! Pure like the rest of the crate: the caller passes `now` and the ledger
//! prefix; who may see what is decided by the server's `auth` module from
//! this answer.

use std::fmt;
use std::str::FromStr;

use crate::{KindClass, LedgerRecord, Model, Seq, Timestamp, ValidationError, WorkflowKind};

/// How long a kind's records are published, by severity under 令第36号.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum PublicityClass {
    /// Never published (facts that are not 失信 information, such as a
    /// monitoring day the platform itself excused).
    None,
    /// 轻微失信: not published, or at most 3 months.
    Minor,
    /// 一般失信: 3 months to 1 year.
    General,
    /// 严重失信: 1 to 3 years.
    Serious,
}

impl PublicityClass {
    pub const ALL: [PublicityClass; 4] =
        [PublicityClass::None, PublicityClass::Minor, PublicityClass::General, PublicityClass::Serious];

    pub fn as_str(self) -> &'static str {
        match self {
            PublicityClass::None => "none",
            PublicityClass::Minor => "minor",
            PublicityClass::General => "general",
            PublicityClass::Serious => "serious",
        }
    }

    /// The window 令第36号 allows, in days: the shortest and the longest.
    /// A deployment's model may choose within it (shorten, never lengthen).
    pub fn allowed_days(self) -> std::ops::RangeInclusive<i64> {
        match self {
            PublicityClass::None => 0..=0,
            PublicityClass::Minor => 0..=90,
            PublicityClass::General => 90..=365,
            PublicityClass::Serious => 365..=1095,
        }
    }

    /// The class a kind gets in a model file that names none (models before
    /// `ecocode-2026.2`): by its longest scoring window.
    pub(crate) fn by_window(window_days: i64) -> PublicityClass {
        match window_days {
            ..=90 => PublicityClass::Minor,
            91..=365 => PublicityClass::General,
            _ => PublicityClass::Serious,
        }
    }
}

impl fmt::Display for PublicityClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PublicityClass {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<PublicityClass, ValidationError> {
        PublicityClass::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            ValidationError::new(
                "publicity",
                format!("must be none, minor, general or serious, got {}", crate::quoted(s)),
            )
        })
    }
}

/// Why a record's details are not published.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NotPublishedWhy {
    /// Its class is never published (`none`, or a window of 0 days).
    NeverPublished,
    /// Its publicity window ended (公示期届满).
    WindowEnded,
    /// Credit repair was granted for it (信用修复: 终止公示, 停止共享): the
    /// `repair.granted` entry.
    Repaired(Seq),
    /// It was voided (`record.voided`, or a dispute upheld): the entry.
    Voided(Seq),
}

impl NotPublishedWhy {
    /// The word the API and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            NotPublishedWhy::NeverPublished => "never_published",
            NotPublishedWhy::WindowEnded => "window_ended",
            NotPublishedWhy::Repaired(_) => "repaired",
            NotPublishedWhy::Voided(_) => "voided",
        }
    }
}

/// A record's publicity at an instant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Publicity {
    /// Published until `until` (exclusive) unless repaired or voided first.
    Published { class: PublicityClass, until: Timestamp },
    /// Not published since `since` (the record's own instant when it never was).
    NotPublished { class: PublicityClass, since: Timestamp, why: NotPublishedWhy },
}

impl Publicity {
    pub fn is_published(&self) -> bool {
        matches!(self, Publicity::Published { .. })
    }

    pub fn class(&self) -> PublicityClass {
        match self {
            Publicity::Published { class, .. } | Publicity::NotPublished { class, .. } => *class,
        }
    }
}

impl Model {
    /// The publicity class of a scored kind; `None` for workflow and
    /// unknown kinds (never published as records of their own).
    pub fn publicity_class(&self, kind: &str) -> Option<PublicityClass> {
        self.inner.rule(kind).map(|r| r.publicity)
    }

    /// The publicity window of `class` under this model, in days.
    pub fn publicity_days(&self, class: PublicityClass) -> i64 {
        self.inner.publicity_days(class)
    }

    /// Whether `record`'s details are published at `now`, given `history`
    /// (the enterprise's entries, ascending seq; steps at or past
    /// `tree_size` or after `now` do not count). Publication ends at the
    /// first of: its window's end (`occurred_at + window`), a granted
    /// repair, a void; a record of a class never published, or a kind that
    /// is not scored, never is.
    pub fn publicity(
        &self,
        record: &LedgerRecord,
        history: &[LedgerRecord],
        now: Timestamp,
        tree_size: u64,
    ) -> Publicity {
        self.publicity_plan(record, history, tree_size).at(now)
    }

    /// `record`'s publicity at every instant over the ledger prefix
    /// `tree_size`, from one pass over `history`: what
    /// [`Model::publicity`] answers for any `now`, kept by readers that
    /// answer many instants from one read of the enterprise's entries.
    pub fn publicity_plan(
        &self,
        record: &LedgerRecord,
        history: &[LedgerRecord],
        tree_size: u64,
    ) -> PublicityPlan {
        let occurred = record.record.occurred_at;
        let Some(class) = self.publicity_class(&record.record.kind) else {
            return PublicityPlan {
                class: PublicityClass::None,
                occurred,
                window_end: None,
                steps: Vec::new(),
            };
        };
        let days = self.publicity_days(class);
        if days == 0 {
            return PublicityPlan { class, occurred, window_end: None, steps: Vec::new() };
        }
        let mut steps = Vec::new();
        for step in history {
            let s = &step.record;
            if step.seq.0 >= tree_size || s.refers_to != Some(record.seq) {
                continue;
            }
            let why = match self.kind_class(&s.kind) {
                Some(KindClass::Workflow(WorkflowKind::RepairGranted)) => NotPublishedWhy::Repaired(step.seq),
                Some(KindClass::Workflow(WorkflowKind::RecordVoided)) => NotPublishedWhy::Voided(step.seq),
                Some(KindClass::Workflow(WorkflowKind::DisputeResolved))
                    if s.attributes.get("outcome").map(String::as_str) == Some("upheld") =>
                {
                    NotPublishedWhy::Voided(step.seq)
                }
                _ => continue,
            };
            steps.push(EndingStep { filed: s.occurred_at, why });
        }
        PublicityPlan { class, occurred, window_end: Some(occurred.plus_days(days)), steps }
    }
}

/// A record's publicity as a function of the instant
/// ([`Model::publicity_plan`]): its class, its window and the workflow
/// steps that end it early, in seq order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicityPlan {
    class: PublicityClass,
    occurred: Timestamp,
    /// `None`: never published.
    window_end: Option<Timestamp>,
    steps: Vec<EndingStep>,
}

/// A repair granted or a void about the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EndingStep {
    /// The step's own instant: it does not count before it.
    filed: Timestamp,
    why: NotPublishedWhy,
}

impl PublicityPlan {
    /// The first instant after `now` at which [`PublicityPlan::at`] may
    /// answer otherwise (its window's end, a step taking effect); `None`:
    /// never.
    pub fn next_change(&self, now: Timestamp) -> Option<Timestamp> {
        let window_end = self.window_end?;
        let steps = self.steps.iter().flat_map(|s| [s.filed, s.filed.max(self.occurred)]);
        std::iter::once(window_end).chain(steps).filter(|t| *t > now).min()
    }

    /// The publicity at `now`.
    pub fn at(&self, now: Timestamp) -> Publicity {
        let (class, occurred) = (self.class, self.occurred);
        let Some(window_end) = self.window_end else {
            return Publicity::NotPublished { class, since: occurred, why: NotPublishedWhy::NeverPublished };
        };
        let mut end = (window_end, NotPublishedWhy::WindowEnded);
        for step in self.steps.iter().filter(|s| s.filed <= now) {
            // A step effective before the record's instant ends it there.
            let at = step.filed.max(occurred);
            if at < end.0 {
                end = (at, step.why);
            }
        }
        if now < end.0 {
            Publicity::Published { class, until: end.0 }
        } else {
            Publicity::NotPublished { class, since: end.0, why: end.1 }
        }
    }
}
