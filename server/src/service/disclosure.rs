//! Disclosure: what of an enterprise's records the public and lenders
//! receive once a record's publicity ended (its window under 令第36号, a
//! granted repair or a void), decided by [`auth::record_disclosure`] and
//! applied to every read that returns records or reasons.

use super::*;
use crate::views::Withheld;

pub use crate::views::WITHHELD_KIND;

impl Service {
    /// The scored records of `enterprise` among `records` that `who`
    /// receives only as withheld at `now` (the service's clock: publicity
    /// is decided now, whatever instant a score is of), ascending by seq.
    /// `hashes`: the entry hashes by seq (from
    /// [`Self::records_and_hashes`]), so that inclusion still verifies
    /// without the payload; `None`: zeros (the page's count). Empty for readers held to no
    /// publicity ([`auth::publicity_applies`]).
    pub(crate) fn withheld_records(
        &self,
        who: &Principal,
        enterprise: &Enterprise,
        records: &[LedgerRecord],
        only: Option<&std::collections::BTreeSet<Seq>>,
        hashes: Option<&HashMap<u64, Hash>>,
    ) -> Result<Vec<Withheld>> {
        if !auth::publicity_applies(who) {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let size = self.ledger.head().size;
        let mut out = Vec::new();
        for record in records {
            if only.is_some_and(|only| !only.contains(&record.seq)) {
                continue;
            }
            let class = self.model.kind_class(&record.record.kind);
            if !matches!(class, Some(KindClass::Scored { .. })) {
                continue;
            }
            let publicity = self.model.publicity(record, records, now, size);
            if auth::record_disclosure(who, enterprise, class, &publicity)? == auth::Disclosure::Whole {
                continue;
            }
            let scoring::Publicity::NotPublished { class, since, why } = publicity else { continue };
            let entry_hash = match hashes.map(|h| h.get(&record.seq.0)) {
                None => Hash::default(),
                Some(Some(hash)) => *hash,
                Some(None) => self.ledger.entry(record.seq.0)?.entry_hash,
            };
            out.push(Withheld { seq: record.seq, class, why, since, entry_hash });
        }
        Ok(out)
    }

    /// `view` as `who` receives it: each reason line whose record `who`
    /// receives only as withheld keeps its seq and points (the lines still
    /// add up to the public points) and loses its kind, description and
    /// expiry; `view.withheld` says why, with the entry hash.
    pub(crate) fn disclosed(&self, who: &Principal, mut view: ScoreView) -> Result<ScoreView> {
        if !auth::publicity_applies(who) {
            return Ok(view);
        }
        let seqs: std::collections::BTreeSet<Seq> =
            view.evaluation.reasons.iter().filter(|r| r.expires_at.is_some()).map(|r| r.seq).collect();
        if seqs.is_empty() {
            return Ok(view);
        }
        let (records, hashes) = self.records_and_hashes(view.enterprise.uscc.as_str())?;
        let withheld = self.withheld_records(who, &view.enterprise, &records, Some(&seqs), Some(&hashes))?;
        redact(&mut view, withheld);
        Ok(view)
    }
}

impl Service {
    /// The enterprise's records and the entry hash of each, from one read
    /// of its entries (the hashes come with them, no entry is read twice).
    pub(crate) fn records_and_hashes(&self, uscc: &str) -> Result<(Vec<LedgerRecord>, HashMap<u64, Hash>)> {
        let mut records = Vec::new();
        let mut hashes = HashMap::new();
        for entry in self.ledger.entries_for_subject(uscc.as_bytes())? {
            if let Event::Record(record) = Event::decode(&entry)? {
                hashes.insert(entry.seq, entry.entry_hash);
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
