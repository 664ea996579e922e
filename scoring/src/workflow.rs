//! Whether a workflow step (dispute, void, rectification, repair) may be
//! appended, given the enterprise's entries already in the ledger.

use std::fmt;

use crate::model::WorkflowKind;
use crate::{KindClass, LedgerRecord, Model, Record};

/// A workflow step that may not be appended now; the message is for a
/// human and says what is missing (and, for repair, from when it is allowed).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ineligible {
    pub message: String,
}

impl Ineligible {
    fn new(message: impl Into<String>) -> Ineligible {
        Ineligible { message: message.into() }
    }
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Ineligible {}

impl Model {
    /// Can `step` be appended after `history`, every entry already in the
    /// ledger for the same enterprise (ascending seq)? Scored records have
    /// no such precondition and are always eligible; field rules are
    /// `check_record`'s business.
    pub fn check_workflow(&self, step: &Record, history: &[LedgerRecord]) -> Result<(), Ineligible> {
        let workflow = match self.kind_class(&step.kind) {
            Some(KindClass::Workflow(w)) => w,
            Some(KindClass::Scored { .. }) => return Ok(()),
            None => return Err(Ineligible::new(format!("unknown kind {:?}", step.kind))),
        };
        let Some(target) = step.refers_to else {
            return Err(Ineligible::new(format!("{} must name a record", step.kind)));
        };
        let referred = find(history, target).ok_or_else(|| {
            Ineligible::new(format!("record {target} does not exist for enterprise {}", step.uscc))
        })?;
        let record = &referred.record;
        if record.uscc != step.uscc {
            return Err(Ineligible::new(format!(
                "record {target} belongs to enterprise {}, not {}",
                record.uscc, step.uscc
            )));
        }
        let Some(rule) = self.record_rule(&record.kind, record.amount_yuan) else {
            return Err(Ineligible::new(format!(
                "record {target} is a {}, not a scored record",
                record.kind
            )));
        };
        if step.occurred_at < record.occurred_at {
            return Err(Ineligible::new(format!(
                "{} at {} is before record {target}, which occurred at {}",
                step.kind, step.occurred_at, record.occurred_at
            )));
        }
        if workflow != WorkflowKind::RepairGranted {
            return Ok(());
        }

        // 信用修复 needs the harm rectified and the record public for the
        // minimum publicity period, whichever comes later.
        let publicity_days = self.minimum_publicity_days(rule.window_days);
        let public_enough = record.occurred_at.plus_days(publicity_days);
        let verified = WorkflowKind::RectificationVerified.name();
        let first_verified = history
            .iter()
            .filter(|e| e.record.kind == verified && e.record.refers_to == Some(target))
            .map(|e| e.record.occurred_at)
            .min();
        let Some(first_verified) = first_verified else {
            return Err(Ineligible::new(format!(
                "repair of record {target} needs a rectification.verified for it first, \
                 and is eligible from {public_enough} at the earliest \
                 ({publicity_days} days of publicity)"
            )));
        };
        let eligible_from = public_enough.max(first_verified);
        if step.occurred_at < eligible_from {
            return Err(Ineligible::new(format!(
                "repair of record {target} is eligible from {eligible_from} \
                 ({publicity_days} days of publicity after {}, rectification verified at \
                 {first_verified}), not at {}",
                record.occurred_at, step.occurred_at
            )));
        }
        Ok(())
    }
}

/// The entry with `seq`: by binary search when `history` is ascending as
/// documented, by a scan otherwise.
fn find(history: &[LedgerRecord], seq: crate::Seq) -> Option<&LedgerRecord> {
    match history.binary_search_by_key(&seq, |e| e.seq) {
        Ok(i) => Some(&history[i]),
        Err(_) => history.iter().find(|e| e.seq == seq),
    }
}
