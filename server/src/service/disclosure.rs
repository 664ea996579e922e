//! Disclosure: what of an enterprise's records the public and lenders
//! receive once a record's publicity ended (its window under 令第36号, a
//! granted repair or a void), decided by [`auth::record_disclosure`] and
//! applied to every read that returns records or reasons.

use super::*;
use std::collections::BTreeSet;

use crate::views::{KeptDisclosure, Withheld};

pub use crate::views::WITHHELD_KIND;

impl Service {
    /// The scored records of `enterprise` among `records` that `who`
    /// receives only as withheld at `now` (the service's clock: publicity
    /// is decided now, whatever instant a score is of), ascending by seq.
    /// `hashes`: the entry hash of each record (from
    /// [`Self::records_and_hashes`], in the same order), so that inclusion
    /// still verifies without the payload; `None`: zeros (the page's
    /// count). Empty for readers held to no publicity
    /// ([`auth::publicity_applies`]).
    pub(crate) fn withheld_records(
        &self,
        who: &Principal,
        enterprise: &Enterprise,
        records: &[LedgerRecord],
        only: Option<&BTreeSet<Seq>>,
        hashes: Option<&[Hash]>,
    ) -> Result<Vec<Withheld>> {
        if !auth::publicity_applies(who) {
            return Ok(Vec::new());
        }
        let disclosable = self.disclosable(records, hashes, only, self.ledger.head().size);
        self.withheld_among(who, enterprise, &disclosable)
    }

    /// What deciding disclosure needs of each scored record among
    /// `records` (those in `only`, if given) over the ledger prefix
    /// `tree_size`, ascending by seq.
    fn disclosable(
        &self,
        records: &[LedgerRecord],
        hashes: Option<&[Hash]>,
        only: Option<&BTreeSet<Seq>>,
        tree_size: u64,
    ) -> Vec<Disclosable> {
        let mut out = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if only.is_some_and(|only| !only.contains(&record.seq)) {
                continue;
            }
            let class = self.model.kind_class(&record.record.kind);
            if !matches!(class, Some(KindClass::Scored { .. })) {
                continue;
            }
            out.push(Disclosable {
                seq: record.seq,
                class,
                plan: self.model.publicity_plan(record, records, tree_size),
                entry_hash: hashes.and_then(|h| h.get(i)).copied().unwrap_or_default(),
            });
        }
        out
    }

    /// Those of `disclosable` that `who` receives only as withheld now.
    fn withheld_among<'a>(
        &self,
        who: &Principal,
        enterprise: &Enterprise,
        disclosable: impl IntoIterator<Item = &'a Disclosable>,
    ) -> Result<Vec<Withheld>> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for d in disclosable {
            let publicity = d.plan.at(now);
            if auth::record_disclosure(who, enterprise, d.class, &publicity)? == auth::Disclosure::Whole {
                continue;
            }
            let scoring::Publicity::NotPublished { class, since, why } = publicity else { continue };
            out.push(Withheld { seq: d.seq, class, why, since, entry_hash: d.entry_hash });
        }
        Ok(out)
    }

    /// `view` as `who` receives it: each reason line whose record `who`
    /// receives only as withheld keeps its seq and points (the lines still
    /// add up to the public points) and loses its kind, description and
    /// expiry; `view.withheld` says why, with the entry hash. A view from
    /// the kept scores carries the decision ([`ScoreView::disclosure`]) and
    /// reads nothing while it holds; any other reads the enterprise's
    /// entries once.
    pub(crate) fn disclosed(&self, who: &Principal, mut view: ScoreView) -> Result<ScoreView> {
        let kept = view.disclosure.take();
        if !auth::publicity_applies(who) {
            return Ok(view);
        }
        let seqs = record_seqs(&view.evaluation);
        if seqs.is_empty() {
            return Ok(view);
        }
        let withheld = match kept.filter(|kept| kept.holds_at(self.clock.now())) {
            Some(kept) => {
                // As `auth::record_disclosure` asks first: may `who` see
                // each record at all (its class, from the line's kind).
                for reason in view.evaluation.reasons.iter().filter(|r| r.expires_at.is_some()) {
                    auth::may_see_record(who, &view.enterprise, self.model.kind_class(&reason.kind))?;
                }
                kept.withheld.iter().filter(|w| seqs.contains(&w.seq)).cloned().collect()
            }
            None => {
                let (records, hashes) = self.records_and_hashes(view.enterprise.uscc.as_str())?;
                self.withheld_records(who, &view.enterprise, &records, Some(&seqs), Some(&hashes))?
            }
        };
        redact(&mut view, withheld);
        Ok(view)
    }

    /// Whether [`Self::disclosed`] answers `view` from memory now.
    pub(crate) fn discloses_from_memory(&self, view: &ScoreView) -> bool {
        view.disclosure.as_ref().is_some_and(|kept| kept.holds_at(self.clock.now()))
    }

    /// What the kept scores hold with an evaluation over the ledger prefix
    /// `tree_size`: its reasons' records withheld from the public and
    /// lenders now, and until when that holds.
    pub(crate) fn kept_disclosure(
        &self,
        evaluation: &scoring::Evaluation,
        records: &[LedgerRecord],
        hashes: &[Hash],
        tree_size: u64,
    ) -> KeptDisclosure {
        let now = self.clock.now();
        let seqs = record_seqs(evaluation);
        let mut kept = KeptDisclosure { from: now, until: None, withheld: Vec::new() };
        if seqs.is_empty() {
            return kept;
        }
        for d in self.disclosable(records, Some(hashes), Some(&seqs), tree_size) {
            if let Some(change) = d.plan.next_change(now) {
                kept.until = Some(kept.until.map_or(change, |until| until.min(change)));
            }
            if let scoring::Publicity::NotPublished { class, since, why } = d.plan.at(now) {
                kept.withheld.push(Withheld { seq: d.seq, class, why, since, entry_hash: d.entry_hash });
            }
        }
        kept
    }
}

/// The seqs of the reason lines that name a record (caps and the clamp
/// have no expiry).
fn record_seqs(evaluation: &scoring::Evaluation) -> BTreeSet<Seq> {
    evaluation.reasons.iter().filter(|r| r.expires_at.is_some()).map(|r| r.seq).collect()
}

/// What deciding one scored record's disclosure needs: its class, when
/// its publicity ends ([`scoring::PublicityPlan`]) and its entry hash.
struct Disclosable {
    seq: Seq,
    class: Option<KindClass>,
    plan: scoring::PublicityPlan,
    entry_hash: Hash,
}

impl Service {
    /// The enterprise's records and the entry hash of each (in the same
    /// order), from one read of its entries.
    pub(crate) fn records_and_hashes(&self, uscc: &str) -> Result<(Vec<LedgerRecord>, Vec<Hash>)> {
        let mut records = Vec::new();
        let mut hashes = Vec::new();
        for entry in self.ledger.entries_for_subject(uscc.as_bytes())? {
            if let Event::Record(record) = Event::decode(&entry)? {
                hashes.push(entry.entry_hash);
                records.push(LedgerRecord { seq: Seq(entry.seq), record });
            }
        }
        Ok((records, hashes))
    }
}

/// Replaces the withheld records' reason lines (see [`Service::disclosed`]).
pub(crate) fn redact(view: &mut ScoreView, withheld: Vec<Withheld>) {
    if withheld.is_empty() {
        return;
    }
    let hidden = |seq: Seq| withheld.iter().any(|w| w.seq == seq);
    let reasons: Vec<scoring::Reason> = view
        .evaluation
        .reasons
        .iter()
        .map(|r| {
            if r.expires_at.is_some() && hidden(r.seq) {
                scoring::Reason {
                    kind: WITHHELD_KIND.to_owned(),
                    points: r.points,
                    seq: r.seq,
                    description: String::new(),
                    expires_at: None,
                }
            } else {
                r.clone()
            }
        })
        .collect();
    view.evaluation.reasons = reasons.into();
    view.withheld = withheld;
}
