//! Evaluation: the view of current scores, prefixes, recomputation.

use super::*;

impl Service {
    /// Evaluates without authorization, for callers that authorized already.
    /// At the head (`tree_size` 0 or the current size) the answer comes
    /// from the view of current scores when it holds; an older prefix is
    /// computed from the enterprise's entries.
    pub(crate) fn evaluate(&self, uscc: &str, at: Option<Timestamp>, tree_size: u64) -> Result<ScoreView> {
        let head = self.ledger.head();
        let at = at.unwrap_or_else(|| self.clock.now());
        if tree_size != 0 && tree_size != head.size {
            return self.evaluate_prefix(uscc, at, tree_size, head.size);
        }
        let (view, _) = self.evaluate_at_head(uscc, at, head)?;
        Ok(view)
    }

    /// The score at the head if the view holds it (no I/O); `None` when it
    /// must be computed.
    pub(super) fn kept_view(
        &self,
        uscc: &str,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Option<Result<ScoreView>> {
        let head = self.ledger.head();
        if tree_size != 0 && tree_size != head.size {
            return None;
        }
        let at = at.unwrap_or_else(|| self.clock.now());
        let kept = self.current.get(uscc, at, head.size)?;
        Some(self.view_of(uscc, at, head, kept))
    }

    pub(super) fn view_of(
        &self,
        uscc: &str,
        at: Timestamp,
        head: ledger::Head,
        kept: Kept,
    ) -> Result<ScoreView> {
        let registered = self
            .directory
            .enterprise_at(uscc, head.size)
            .ok_or_else(|| not_registered(uscc, head.size, head.size))?;
        let mut evaluation = Arc::unwrap_or_clone(kept.evaluation);
        evaluation.as_of = at;
        Ok(ScoreView {
            enterprise: registered.enterprise,
            evaluation,
            tree_size: head.size,
            root: head.root,
            model_entry: None,
            index: None,
            withheld: Vec::new(),
            disclosure: Some(kept.disclosure),
        })
    }

    /// The score at the head, and when it can next change with no new entry.
    pub(super) fn evaluate_at_head(
        &self,
        uscc: &str,
        at: Timestamp,
        head: ledger::Head,
    ) -> Result<(ScoreView, Option<Timestamp>)> {
        let kept = match self.current.get(uscc, at, head.size) {
            Some(kept) => kept,
            None => self.compute_kept(uscc, at, head)?,
        };
        let until = kept.until;
        Ok((self.view_of(uscc, at, head, kept)?, until))
    }

    /// The score at `at` over the head, computed from the entries and
    /// kept, with its disclosure decided now.
    fn compute_kept(&self, uscc: &str, at: Timestamp, head: ledger::Head) -> Result<Kept> {
        if self.directory.enterprise_at(uscc, head.size).is_none() {
            return Err(not_registered(uscc, head.size, head.size));
        }
        // Entries past the head are read too but not counted: the
        // evaluation is exactly that of the prefix `head.size`.
        let (records, hashes) = self.records_and_hashes(uscc)?;
        let (from, until) = self.model.stable_interval(&records, at, head.size);
        let evaluation = Arc::new(self.model.score(&records, at, head.size));
        let disclosure = Arc::new(self.kept_disclosure(&evaluation, &records, &hashes, head.size));
        let kept = Kept { covers: head.size, evaluation, from, until, disclosure };
        self.current.put(uscc, kept.clone());
        Ok(kept)
    }

    /// The score over the first `tree_size` entries, computed.
    pub(super) fn evaluate_prefix(
        &self,
        uscc: &str,
        at: Timestamp,
        tree_size: u64,
        current: u64,
    ) -> Result<ScoreView> {
        let root = self.ledger.root_at(tree_size)?;
        // The details (name, region, ...) as of the prefix: a later change
        // of name does not rewrite what was known then.
        let registered = self
            .directory
            .enterprise_at(uscc, tree_size)
            .ok_or_else(|| not_registered(uscc, tree_size, current))?;
        let records = self.records_of(uscc)?;
        let evaluation = self.model.score(&records, at, tree_size);
        Ok(ScoreView {
            enterprise: registered.enterprise,
            evaluation,
            tree_size,
            root,
            model_entry: None,
            index: None,
            withheld: Vec::new(),
            disclosure: None,
        })
    }

    /// Re-evaluates up to `max` enterprises whose kept score is stale (new
    /// entries, never evaluated since start-up, or ended by time) into the
    /// view; returns how many it took. The composition root calls it in the background.
    pub fn refresh_view(&self, max: usize) -> Result<usize> {
        let now = self.clock.now();
        let mut stale = self.current.take_stale(max);
        stale.extend(self.current.take_due(now, max.saturating_sub(stale.len())));
        for uscc in &stale {
            let head = self.ledger.head();
            // Kept, and its disclosure too (publicity can end while the
            // score holds): nothing to do.
            if self.current.get(uscc, now, head.size).is_some_and(|kept| kept.disclosure.holds_at(now))
                || self.directory.enterprise_at(uscc, head.size).is_none()
            {
                continue;
            }
            self.compute_kept(uscc, now, head)?;
        }
        Ok(stale.len())
    }

    /// Enterprises waiting for the refresher (operators, the load generator).
    pub fn stale_scores(&self) -> usize {
        self.current.stale()
    }

    /// The current score of `uscc` and when it can next change with no new
    /// entry (watches need both).
    pub(crate) fn evaluate_for_watch(&self, uscc: &str) -> Result<(ScoreView, Option<Timestamp>)> {
        self.evaluate_at_head(uscc, self.clock.now(), self.ledger.head())
    }

    /// Recomputes the current score of `uscc` from its entries, bypassing
    /// the view: what the view must always equal (an admin's audit; tests).
    pub fn recompute(
        &self,
        who: &Principal,
        uscc: &str,
        at: Timestamp,
    ) -> Result<(ScoreView, Option<Timestamp>)> {
        auth::may_audit_scores(who)?;
        let head = self.ledger.head();
        let view = self.evaluate_prefix(uscc, at, head.size, head.size)?;
        let next = self.model.next_change_after(&self.records_of(uscc)?, at, head.size);
        Ok((ScoreView { root: head.root, ..view }, next))
    }

    /// The current score of `uscc` as served to readers (view or
    /// recomputation), without inquiry: an admin's audit (tests).
    pub fn current_score(
        &self,
        who: &Principal,
        uscc: &str,
        at: Timestamp,
    ) -> Result<(ScoreView, Option<Timestamp>)> {
        auth::may_audit_scores(who)?;
        self.evaluate_at_head(uscc, at, self.ledger.head())
    }

    /// Every record about `uscc` in the ledger, in seq order.
    pub(crate) fn records_of(&self, uscc: &str) -> Result<Vec<LedgerRecord>> {
        records_in(&self.ledger, uscc)
    }
}
