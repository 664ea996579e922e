//! What a web page shows, in one call at the latest published checkpoint,
//! and who reads it.

use super::*;

impl Service {
    /// What the web page of `uscc` shows to the visitor `signed` in (or
    /// not), in one call and all of the tree of the latest published
    /// checkpoint: who reads ([`auth::page_reader`]), the score, the records
    /// behind it as far as the reader may see them
    /// ([`auth::may_see_record`]), the open disputes, whether credit repair
    /// may be granted for each reason shown, the summarized history of the
    /// last 24 months, the signed attestation and the reasons' inclusion
    /// proofs. It signs no checkpoint and stores nothing but a lender's or
    /// regulator's inquiry (one, as `GetScore`). Its cost is bounded by the
    /// enterprise's records, not by how often its score changed.
    pub async fn page(
        self: &Arc<Self>,
        signed: Option<&Principal>,
        purpose: &str,
        uscc: &Uscc,
    ) -> Result<PageView> {
        let reader = self.page_reader(signed, uscc).await?;
        let who = &reader;
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        auth::may_read_ledger(who)?;
        // The latest published checkpoint, never one signed for this read:
        // a page view writes nothing (a crawler causes no disk writes).
        let checkpoint = self.published_checkpoint()?;
        let at = self.clock.now();
        let (service, reader, uscc) = (self.clone(), who.clone(), uscc.clone());
        let page = blocking(move || {
            let size = checkpoint.tree_size;
            let enterprise = service
                .directory
                .enterprise_at(uscc.as_str(), size)
                .ok_or_else(|| not_registered(uscc.as_str(), size, service.ledger.head().size))?
                .enterprise;
            auth::may_read_score(&reader, &enterprise)?;
            // One read of the records; the score, history, disputes and
            // repair all come from it.
            let (all, hashes) = service.records_and_hashes(uscc.as_str())?;
            let evaluation = service.model.score(&all, at, size);
            let mut score = ScoreView {
                enterprise,
                evaluation,
                tree_size: size,
                root: checkpoint.root,
                model_entry: None,
                index: None,
                withheld: Vec::new(),
                disclosure: None,
            };
            // Publicity (auth::record_disclosure): what the reader receives
            // only as withheld, among the reasons (with their entry hashes)
            // and among all its records (counted on the page).
            let withheld = service.withheld_records(&reader, &score.enterprise, &all, None, None)?;
            let named: std::collections::BTreeSet<Seq> = score
                .evaluation
                .reasons
                .iter()
                .filter(|r| r.expires_at.is_some() && withheld.iter().any(|w| w.seq == r.seq))
                .map(|r| r.seq)
                .collect();
            let in_reasons =
                service.withheld_records(&reader, &score.enterprise, &all, Some(&named), Some(&hashes))?;
            disclosure::redact(&mut score, in_reasons);
            let hidden = |seq: Seq| withheld.iter().any(|w| w.seq == seq);
            let open_disputes = service.model.open_disputes(&all, at, size);
            let shown = || score.evaluation.reasons.iter().take(MAX_PAGE_REASONS);
            let repair = shown()
                // Record lines have an expiry; caps and the clamp do not.
                .filter(|r| r.expires_at.is_some() && !hidden(r.seq))
                .map(|r| {
                    let step = Record {
                        source: reader.writes_as().to_owned(),
                        source_record_id: String::new(),
                        uscc: score.enterprise.uscc.clone(),
                        kind: scoring::WorkflowKind::RepairGranted.name().to_owned(),
                        occurred_at: at,
                        amount_yuan: 0,
                        refers_to: Some(r.seq),
                        description: String::new(),
                        attributes: Default::default(),
                    };
                    (r.seq, service.model.check_workflow(&step, &all).map_err(|e| e.message))
                })
                .collect();
            let proofs = shown()
                .filter(|r| r.expires_at.is_some() && r.seq.0 < size && !hidden(r.seq))
                .map(|r| Ok((r.seq, service.ledger.inclusion_proof(r.seq.0, size)?)))
                .collect::<Result<Vec<_>>>()?;
            let timeline = service.model.timeline(&all, at.plus_days(-PAGE_HISTORY_DAYS), at, size);
            let (history, history_complete) = scoring::summarize(&timeline, MAX_PAGE_HISTORY);
            // The subject index of the checkpoint: the score counts every
            // entry it lists (a score proof shows it).
            let complete = match service.ledger.subject_index(uscc.as_str().as_bytes(), size) {
                Ok(index) => {
                    // A monitoring point of the enterprise (registered at
                    // any time: the check errs toward "sign in") is hidden too.
                    let hidden = proof_hides_records(&service.model, &all, size)
                        || service.directory.points().iter().any(|p| p.uscc() == &uscc);
                    let refused = auth::may_prove_score(&reader, &score.enterprise, hidden).is_err();
                    Some((index.seqs.len() as u64, refused))
                }
                Err(ledger::Error::InvalidArgument(_)) => None,
                Err(e) => return Err(e.into()),
            };
            let records = all
                .into_iter()
                .filter(|r| {
                    let class = service.model.kind_class(&r.record.kind);
                    auth::may_see_record(&reader, &score.enterprise, class).is_ok() && !hidden(r.seq)
                })
                .collect();
            let note = service.sign_attestation(&score)?;
            let detailed = auth::may_see_filings(&reader, &score.enterprise);
            let own = auth::is_itself(&reader, &score.enterprise);
            let witnessed =
                service.witnessing.get().map(|w| w.witnessed_line(&checkpoint.note)).unwrap_or_default();
            Ok(PageView {
                reader,
                own,
                detailed,
                score,
                records,
                withheld,
                open_disputes,
                repair,
                history,
                history_complete,
                note,
                checkpoint,
                witnessed,
                proofs,
                complete,
            })
        })
        .await?;
        self.inquire(who, purpose, "GetScore", &[&page.score.enterprise]).await?;
        Ok(page)
    }

    /// Entry `seq`, a record of `uscc`, if `who` may see that record: what
    /// the page's proofs are built from (the public reads the entries of
    /// scored records, nothing else; see [`auth::may_see_record`]).
    pub async fn record_entry(self: &Arc<Self>, who: &Principal, uscc: &Uscc, seq: u64) -> Result<Entry> {
        let enterprise = self.enterprise(who, uscc).await?;
        let entry = self.on_ledger(move |ledger| ledger.entry(seq)).await?;
        let class = match Event::decode(&entry)? {
            Event::Record(record) if record.uscc == *uscc => self.model.kind_class(&record.kind),
            _ => return Err(Error::NotFound(format!("entry {seq} is not a record of {uscc}"))),
        };
        auth::may_see_record(who, &enterprise, class)?;
        // A record no longer published is no longer downloaded whole.
        let (entry, withheld) = self.entry(who, seq).await?;
        if let Some(w) = withheld {
            return Err(Error::PermissionDenied(format!(
                "record {seq} of {uscc} is not published since {} ({}); Ledger.GetEntry gives its entry \
                 hash, which its inclusion proof verifies without its details",
                w.since,
                w.why.as_str()
            )));
        }
        Ok(entry)
    }

    /// The verifier key of checkpoints and attestations, as `ecocode key
    /// show` prints it: public by nature.
    pub fn verifier_key(&self) -> String {
        self.ledger.verifier_key()
    }

    /// The Ed25519 public key behind [`Self::verifier_key`]: public by nature.
    pub fn public_key(&self) -> [u8; 32] {
        self.ledger.public_key()
    }

    /// Who reads the web page of `uscc`, `signed` in or not: the decision
    /// is [`auth::page_reader`]'s.
    pub async fn page_reader(&self, signed: Option<&Principal>, uscc: &Uscc) -> Result<Principal> {
        let enterprise = match signed {
            Some(_) => self.registered(uscc.as_str()).await?,
            None => None,
        };
        let refused = match (signed, &enterprise) {
            (Some(p), Some(e)) => self.lender_grant_now(p, e, crate::consent::Cover::Details).await.is_err(),
            _ => false,
        };
        Ok(auth::page_reader(signed, enterprise.as_ref(), refused))
    }
}

/// Whether a score proof over the tree `size` holds records the public may
/// not see (any record below it that is not a scored record): with
/// monitoring points, the rule `Service::score_proof` applies entry by entry.
pub(super) fn proof_hides_records(model: &scoring::Model, records: &[LedgerRecord], size: u64) -> bool {
    records
        .iter()
        .filter(|r| r.seq.0 < size)
        .any(|r| !matches!(model.kind_class(&r.record.kind), Some(scoring::KindClass::Scored { .. })))
}
