//! Score reads: one, many, a list, history, watches and attestations.

use super::*;

impl Service {
    /// The score of `uscc` at `at` (default now) over the ledger prefix
    /// `tree_size` (0 = the current size), if `who` may see it. A lender's
    /// or regulator's read is recorded in the inquiry log, with `purpose`,
    /// before it is answered.
    pub async fn score(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<ScoreView> {
        let view = self.read_score(who, uscc, at, tree_size).await?;
        let view = self.with_commitments(view).await?;
        let view = self.disclose(who, view).await?;
        self.inquire(who, purpose, "GetScore", &[&view.enterprise]).await?;
        Ok(view)
    }

    /// [`Self::score`] without the inquiry, for reads that record their own.
    pub(super) async fn read_score(
        self: &Arc<Self>,
        who: &Principal,
        uscc: &Uscc,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<ScoreView> {
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        // A kept score is a memory read, answered here; anything else
        // reads the ledger, off the async workers.
        let view = match self.kept_view(uscc.as_str(), at, tree_size) {
            Some(view) => view?,
            None => {
                let (service, key) = (self.clone(), uscc.clone());
                blocking(move || service.evaluate(key.as_str(), at, tree_size)).await?
            }
        };
        auth::may_read_score(who, &view.enterprise)?;
        self.lender_grant_now(who, &view.enterprise, crate::consent::Cover::Details).await?;
        Ok(view)
    }

    /// Scores of many enterprises at one instant; unknown USCCs are listed
    /// in `not_found`, a USCC asked twice is answered once. Evaluation runs
    /// off the async workers and stops as soon as the caller goes away (its
    /// deadline passes or it disconnects) or the service shuts down.
    pub async fn batch_scores(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        usccs: Vec<Uscc>,
        at: Option<Timestamp>,
    ) -> Result<BatchScores> {
        check_batch_len("uscc", usccs.len(), 0)?;
        for uscc in &usccs {
            auth::may_read_scores_at_all(who, uscc.as_str())?;
        }
        let mut seen = std::collections::HashSet::with_capacity(usccs.len());
        let usccs: Vec<Uscc> = usccs.into_iter().filter(|u| seen.insert(u.clone())).collect();
        let at = at.unwrap_or_else(|| self.clock.now());
        self.catch_up_grants(who).await?;
        let (service, reader) = (self.clone(), who.clone());
        let cancel = CancelOnDrop::default();
        let cancelled = cancel.flag();
        let stopping = self.stopping();
        let answer = blocking(move || {
            let mut answer = BatchScores::default();
            for uscc in usccs {
                if cancelled.load(Ordering::Relaxed) || *stopping.borrow() {
                    return Err(Error::Unavailable(
                        "the call was cancelled or the service is stopping".into(),
                    ));
                }
                match service.evaluate(uscc.as_str(), Some(at), 0) {
                    Ok(view) => {
                        auth::may_read_score(&reader, &view.enterprise)?;
                        service.lender_grant(&reader, &view.enterprise, crate::consent::Cover::Details)?;
                        answer.scores.push(service.disclosed(&reader, view)?);
                    }
                    Err(Error::NotFound(_)) => answer.not_found.push(uscc),
                    Err(e) => return Err(e),
                }
            }
            Ok(answer)
        })
        .await?;
        drop(cancel);
        let read: Vec<&Enterprise> = answer.scores.iter().map(|v| &v.enterprise).collect();
        self.inquire(who, purpose, "BatchGetScores", &read).await?;
        Ok(answer)
    }

    /// A page of current scores in USCC order, filtered by region, industry
    /// and colour; a regulator's region is narrowed to its scope.
    pub async fn list_scores(self: &Arc<Self>, who: &Principal, query: ListQuery) -> Result<ScorePage> {
        let region = auth::list_scope(who, &query.region_prefix)?;
        let page_size = page_size(query.page_size);
        let at = self.clock.now();
        let service = self.clone();
        blocking(move || {
            // Candidates come in chunks, so a page costs its own size (plus
            // what the colour filter skips), not the directory's.
            let mut page = ScorePage::default();
            let mut after = query.after;
            loop {
                let chunk = service.directory.enterprises_after(
                    &after,
                    &region,
                    &query.industry_prefix,
                    query.include_closed,
                    page_size,
                );
                let Some(last) = chunk.last() else { return Ok(page) };
                let exhausted = chunk.len() < page_size;
                after = last.uscc.to_string();
                for (i, e) in chunk.iter().enumerate() {
                    let view = service.evaluate(e.uscc.as_str(), Some(at), 0)?;
                    let score = &view.evaluation;
                    if (query.codes.is_empty() || query.codes.contains(&score.code))
                        && (query.mee_levels.is_empty() || query.mee_levels.contains(&score.mee_level))
                    {
                        page.scores.push(view);
                    }
                    if page.scores.len() == page_size {
                        let more = i + 1 < chunk.len()
                            || !exhausted
                                && !service
                                    .directory
                                    .enterprises_after(
                                        e.uscc.as_str(),
                                        &region,
                                        &query.industry_prefix,
                                        query.include_closed,
                                        1,
                                    )
                                    .is_empty();
                        if more {
                            page.next_after = Some(e.uscc.to_string());
                        }
                        return Ok(page);
                    }
                }
                if exhausted {
                    return Ok(page);
                }
            }
        })
        .await
    }

    /// The score at `from` (default a year before `to`) and every later
    /// change of points, grade or colour up to `to` (default now).
    pub async fn score_history(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<ScoreView>> {
        let to = to.unwrap_or_else(|| self.clock.now());
        let from = from.unwrap_or(to.plus_days(-365));
        if from > to {
            return Err(Error::InvalidArgument(format!("from: {from} is after to ({to})")));
        }
        let first = self.read_score(who, uscc, Some(from), 0).await?;
        self.lender_grant_now(who, &first.enterprise, crate::consent::Cover::History).await?;
        let enterprise = first.enterprise.clone();
        let (service, reader) = (self.clone(), who.clone());
        let points = blocking(move || {
            let (records, hashes) = service.records_and_hashes(first.enterprise.uscc.as_str())?;
            let tree_size = first.tree_size;
            // The instants where points, grade or colour change come from
            // one sweep; only those are evaluated in full (with reasons).
            let changes = service.model.timeline(&records, from, to, tree_size);
            if changes.len() > MAX_HISTORY_POINTS {
                return Err(Error::InvalidArgument(format!(
                    "from/to: the score changes {} times in the period, more than {MAX_HISTORY_POINTS}; \
                     ask for a shorter period",
                    changes.len() - 1
                )));
            }
            let mut points = vec![first.clone()];
            for step in changes.into_iter().skip(1) {
                let evaluation = service.model.score(&records, step.at, tree_size);
                points.push(ScoreView { evaluation, ..first.clone() });
            }
            // What a lender or the public receives of the reasons: decided
            // once for every record named by any point.
            let named: std::collections::BTreeSet<Seq> = points
                .iter()
                .flat_map(|p| p.evaluation.reasons.iter().filter(|r| r.expires_at.is_some()).map(|r| r.seq))
                .collect();
            let withheld = service.withheld_records(
                &reader,
                &first.enterprise,
                &records,
                Some(&named),
                Some(&hashes),
            )?;
            for point in &mut points {
                let mine: Vec<Withheld> = withheld
                    .iter()
                    .filter(|w| {
                        point.evaluation.reasons.iter().any(|r| r.seq == w.seq && r.expires_at.is_some())
                    })
                    .cloned()
                    .collect();
                disclosure::redact(point, mine);
            }
            Ok(points)
        })
        .await?;
        self.inquire(who, purpose, "GetScoreHistory", &[&enterprise]).await?;
        Ok(points)
    }

    /// Watches the colours of `usccs`: first each current code, then every
    /// change, until the receiver is dropped or the service shuts down.
    pub async fn watch(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        usccs: &[Uscc],
    ) -> Result<mpsc::Receiver<Result<CodeChange>>> {
        check_batch_len("uscc", usccs.len(), 1)?;
        for uscc in usccs {
            auth::may_read_scores_at_all(who, uscc.as_str())?;
        }
        self.catch_up_grants(who).await?;
        // Subscribe before the first evaluation so no change falls between.
        let changes = self.subscribe_changes();
        let (service, reader, usccs) = (self.clone(), who.clone(), usccs.to_vec());
        let current = blocking(move || {
            let mut current = HashMap::with_capacity(usccs.len());
            for uscc in usccs {
                let (view, next_change) = service.evaluate_for_watch(uscc.as_str())?;
                auth::may_read_score(&reader, &view.enterprise)?;
                service.lender_grant(&reader, &view.enterprise, crate::consent::Cover::Details)?;
                let view = service.disclosed(&reader, view)?;
                current.insert(uscc.to_string(), (view, next_change));
            }
            Ok(current)
        })
        .await?;
        let watched: Vec<&Enterprise> = current.values().map(|(v, _)| &v.enterprise).collect();
        self.inquire(who, purpose, "WatchCodes", &watched).await?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(watch::run(self.clone(), who.clone(), current, changes, tx));
        Ok(rx)
    }

    /// A score and its attestation: a signed note anyone can check offline
    /// with the service's verifier key.
    pub async fn attestation(
        self: &Arc<Self>,
        who: &Principal,
        purpose: &str,
        uscc: &Uscc,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<(ScoreView, String)> {
        let view = self.read_score(who, uscc, at, tree_size).await?;
        let view = self.with_commitments(view).await?;
        let view = self.disclose(who, view).await?;
        let note = self.sign_attestation(&view)?;
        self.inquire(who, purpose, "GetAttestation", &[&view.enterprise]).await?;
        Ok((view, note))
    }

    /// [`Self::disclosed`] off the async workers.
    async fn disclose(self: &Arc<Self>, who: &Principal, view: ScoreView) -> Result<ScoreView> {
        if !auth::publicity_applies(who) {
            return Ok(view);
        }
        if self.discloses_from_memory(&view) {
            return self.disclosed(who, view);
        }
        let (service, who) = (self.clone(), who.clone());
        blocking(move || service.disclosed(&who, view)).await
    }

    /// The signed note stating `view`.
    pub(super) fn sign_attestation(&self, view: &ScoreView) -> Result<String> {
        let statement = tlog::attestation::Attestation {
            origin: self.origin.clone(),
            uscc: view.enterprise.uscc.to_string(),
            points: i64::from(view.evaluation.points),
            grade: view.evaluation.grade.as_str().to_owned(),
            code: view.evaluation.code.as_str().to_owned(),
            veto: view.evaluation.veto,
            disputed: view.evaluation.disputed,
            model: view.evaluation.model_version.clone(),
            model_entry: view.model_entry,
            as_of: view.evaluation.as_of.to_string(),
            tree_size: view.tree_size,
            root: view.root,
        };
        Ok(self.ledger.sign_note(&statement.body())?)
    }
}
