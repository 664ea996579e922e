//! Enterprises that change: updates of details and status, their history.

use super::*;

impl Service {
    /// Changes an enterprise's details or status with a new ledger entry;
    /// the earlier state stays in the ledger and in the directory's history.
    /// A change that alters nothing answers with the entry that set the
    /// current state, as a duplicate.
    pub async fn update_enterprise(&self, who: &Principal, request: UpdateRequest) -> Result<Receipt> {
        let uscc = request.uscc.clone();
        let current = self
            .registration(uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        auth::may_register(who, &current.enterprise)?;
        let update = request.resolve(&current.enterprise, &current.status)?;
        auth::may_register(who, &update.enterprise)?;
        if let EnterpriseStatus::Merged(into) = &update.status
            && self.registered(into.as_str()).await?.is_none()
        {
            return Err(Error::FailedPrecondition(format!(
                "merged_into: enterprise {into} is not registered; register the successor first"
            )));
        }
        if update.enterprise == current.enterprise && update.status == current.status {
            let state_seq = current.state_seq;
            let entry = self.on_ledger(move |ledger| ledger.entry(state_seq)).await?;
            return Ok(Receipt {
                seq: entry.seq,
                entry_hash: entry.entry_hash,
                chain_hash: entry.chain_hash,
                recorded_at_ns: entry.recorded_at_ns,
                duplicate: true,
            });
        }
        let event = Event::EnterpriseUpdate { update, changes_seq: current.state_seq };
        let changed = uscc.clone();
        self.append_enterprise_event(who, uscc, event, |seq| {
            format!("enterprise {changed} was changed concurrently (seq {seq}); read it and try again")
        })
        .await
    }

    /// Every state of the enterprise, oldest first, if `who` may see it.
    pub async fn enterprise_history(
        &self,
        who: &Principal,
        uscc: &Uscc,
    ) -> Result<Vec<(u64, EnterpriseUpdate)>> {
        self.enterprise(who, uscc).await?;
        Ok(self.directory.enterprise(uscc.as_str()).map(|r| r.versions()).unwrap_or_default())
    }
}
