//! Writes: registrations, monitoring points and records through the one
//! append pipeline (validate, authorize, preconditions, one group commit).

use super::*;

impl Service {
    /// Registers an enterprise; re-sending the same registration returns the
    /// original receipt as a duplicate.
    pub async fn register(&self, who: &Principal, enterprise: Enterprise) -> Result<Receipt> {
        auth::may_register(who, &enterprise)?;
        let uscc = enterprise.uscc.clone();
        self.append_enterprise_event(who, uscc.clone(), Event::Registration(enterprise), |seq| {
            format!("enterprise {uscc} is already registered (seq {seq}) with different details")
        })
        .await
    }

    /// Appends an enterprise's registration or change; a new entry updates
    /// the directory and tells the watchers of that enterprise.
    pub(super) async fn append_enterprise_event(
        &self,
        who: &Principal,
        uscc: Uscc,
        event: Event,
        conflict: impl FnOnce(u64) -> String,
    ) -> Result<Receipt> {
        let receipt = self
            .append_event(who, &event)
            .await?
            .map_err(|c| Error::AlreadyExists(conflict(c.existing.seq)))?;
        if !receipt.duplicate {
            self.directory.apply(receipt.seq, self.clock.now(), &event);
            let _ = self.changes.send(uscc);
        }
        Ok(receipt)
    }

    /// Registers (or updates the limits of) a monitoring point. The same
    /// content again is a duplicate; new content supersedes, since limits
    /// change when a discharge permit is renewed.
    pub async fn register_point(&self, who: &Principal, registration: PointRegistration) -> Result<Receipt> {
        let point = &registration.point;
        let enterprise = self.registered(point.uscc().as_str()).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "enterprise {} is not registered; register it before its monitoring points",
                point.uscc()
            ))
        })?;
        auth::may_manage_points(who, &enterprise)?;
        // Moving a device to another enterprise touches the one it leaves
        // as well: the caller must be entitled to both.
        if let Some(current) = self.directory.point(point.mn())
            && current.uscc() != point.uscc()
        {
            let leaving = self.registered(current.uscc().as_str()).await?.ok_or_else(|| {
                Error::Internal(format!(
                    "monitoring point {} names unregistered {}",
                    point.mn(),
                    current.uscc()
                ))
            })?;
            auth::may_manage_points(who, &leaving)?;
        }
        // The password's keyed verifier goes to server-side state first, so
        // the entry (which names only its random id) never points at a
        // verifier that is not there; the same password again is the same id.
        let credentials = self.device_credentials()?.clone();
        let current = self.directory.point(point.mn());
        let point =
            tokio::task::spawn_blocking(move || credentials.credential_for(current.as_ref(), registration))
                .await
                .map_err(|e| Error::Internal(format!("device credential task: {e}")))?
                .map_err(|e| Error::Unavailable(format!("device credentials not stored: {e}")))?;
        let event = Event::MonitoringPoint(point);
        let receipt = self.append_event(who, &event).await?.map_err(|c| {
            Error::Internal(format!("monitoring point key collided at seq {}", c.existing.seq))
        })?;
        if !receipt.duplicate {
            self.directory.apply(receipt.seq, self.clock.now(), &event);
        }
        Ok(receipt)
    }

    /// Appends one record.
    pub async fn append_record(&self, who: &Principal, record: Record) -> Result<Receipt> {
        self.append_records(who, vec![record])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("no result for one record".into())))
    }

    /// Appends records in order, one result per record. Valid records are
    /// kept even when others fail. Records go to the ledger in as few group
    /// commits as possible; a workflow step is checked against everything
    /// appended before it, including earlier records of the same call.
    pub async fn append_records(&self, who: &Principal, records: Vec<Record>) -> Vec<Result<Receipt>> {
        let mut results: Vec<Option<Result<Receipt>>> = (0..records.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, Record)> = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            let is_workflow = matches!(self.model.kind_class(&record.kind), Some(KindClass::Workflow(_)));
            if is_workflow && !pending.is_empty() {
                self.commit(who, std::mem::take(&mut pending), &mut results).await;
            }
            match self.admit(who, &record).await {
                Ok(()) => pending.push((i, record)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        self.commit(who, pending, &mut results).await;
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Internal("record was neither appended nor rejected".into())))
            })
            .collect()
    }

    /// Steps 1 to 3 of the pipeline for one record. What reads the ledger
    /// (a workflow step's history, a registration another node made) runs
    /// on the blocking pool.
    pub(super) async fn admit(&self, who: &Principal, record: &Record) -> Result<()> {
        self.model.check_record(record, self.clock.now())?;
        let class = self.model.kind_class(&record.kind).ok_or_else(|| {
            Error::Internal(format!("kind {} passed check_record but has no class", record.kind))
        })?;
        auth::may_append_kind(who, &record.kind, class, &record.source)?;
        let enterprise = self.registered(record.uscc.as_str()).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "enterprise {} is not registered; register it with Registry.RegisterEnterprise first",
                record.uscc
            ))
        })?;
        auth::may_append_for(who, &enterprise)?;
        if let KindClass::Workflow(_) = class {
            if let Role::Enterprise { .. } = who.role {
                self.count_filing(&record.uscc)?;
            }
            let (ledger, model, step) = (self.ledger.clone(), self.model.clone(), record.clone());
            blocking(move || {
                let history = records_in(&ledger, step.uscc.as_str())?;
                model.check_workflow(&step, &history).map_err(|e| Error::FailedPrecondition(e.to_string()))
            })
            .await?;
        }
        Ok(())
    }

    /// Counts an enterprise's workflow filing against
    /// [`MAX_FILINGS_PER_DAY`] (kept in memory: a rate limit, not a rule of
    /// the ledger).
    pub(super) fn count_filing(&self, uscc: &Uscc) -> Result<()> {
        let now = self.clock.now();
        let day_ago = now.plus_days(-1);
        let mut filings = self.filings.lock().unwrap_or_else(|p| p.into_inner());
        let recent = filings.entry(uscc.to_string()).or_default();
        while recent.front().is_some_and(|t| *t <= day_ago) {
            recent.pop_front();
        }
        if recent.len() >= MAX_FILINGS_PER_DAY {
            let again = recent.front().map_or(now, |t| t.plus_days(1));
            return Err(Error::ResourceExhausted(format!(
                "enterprise {uscc} filed {MAX_FILINGS_PER_DAY} disputes or rectifications in the last 24 hours; \
                 file again after {again}"
            )));
        }
        recent.push_back(now);
        Ok(())
    }

    pub(super) async fn commit(
        &self,
        who: &Principal,
        batch: Vec<(usize, Record)>,
        results: &mut [Option<Result<Receipt>>],
    ) {
        if batch.is_empty() {
            return;
        }
        let entries = batch.iter().map(|(_, record)| Event::encode_record(record, &who.name)).collect();
        match self.ledger.append(entries).await {
            Ok(outcomes) => {
                for ((slot, record), outcome) in batch.into_iter().zip(outcomes) {
                    results[slot] = Some(match outcome {
                        Ok(receipt) => {
                            if !receipt.duplicate {
                                let _ = self.changes.send(record.uscc);
                            }
                            Ok(receipt)
                        }
                        Err(conflict) => Err(Error::AlreadyExists(format!(
                            "source {:?} already recorded source_record_id {:?} (seq {}) with different content",
                            record.source, record.source_record_id, conflict.existing.seq
                        ))),
                    });
                }
            }
            Err(e) => {
                // The whole group commit failed: nothing of it is in the
                // ledger. The status table decides what each caller sees.
                for (slot, _) in batch {
                    results[slot] = Some(Err(Error::Ledger(e.clone())));
                }
            }
        }
    }

    pub(super) async fn append_event(&self, who: &Principal, event: &Event) -> Result<ledger::AppendResult> {
        self.ledger.append(vec![event.encode(&who.name)]).await?.pop().ok_or_else(|| {
            Error::Internal("the ledger answered an append of one entry with no result".into())
        })
    }
}
