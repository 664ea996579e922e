//! Lender access grants: an enterprise grants and revokes, a lender lists
//! what it holds, and every lender read of an enterprise's details is made
//! under a live grant (`serve --lender-access granted`, the default).

use super::*;
use crate::consent::{Cover, Grant, GrantState, LenderAccess};

/// Most grants one `ListGrants` answers.
pub const MAX_GRANTS: usize = 1_000;

impl Service {
    /// `--lender-access`, set once by the composition root.
    pub fn set_lender_access(&self, mode: LenderAccess) {
        let _ = self.lender_access.set(mode);
    }

    pub fn lender_access(&self) -> LenderAccess {
        self.lender_access.get().copied().unwrap_or_default()
    }

    /// The grant a lender's read of `e`'s details (`cover`) is made under;
    /// `FAILED_PRECONDITION` when a lender holds no live one under
    /// `--lender-access granted` ([`auth::lender_access`]). `None` for
    /// every other reader.
    pub(crate) fn lender_grant(&self, who: &Principal, e: &Enterprise, cover: Cover) -> Result<Option<u64>> {
        if who.role != Role::Lender {
            return Ok(None);
        }
        let mode = self.lender_access();
        let live = match mode {
            LenderAccess::Granted => {
                self.directory.live_grant(e.uscc.as_str(), &who.name, cover, self.clock.now())
            }
            LenderAccess::Open => None,
        };
        auth::lender_access(who, e, mode, cover, live.as_ref())
    }

    /// [`Self::lender_grant`], first catching up with the shared store
    /// when a lender holds no live grant on this node: a grant recorded
    /// through another node a moment ago counts (one round trip, only then).
    pub(crate) async fn lender_grant_now(
        &self,
        who: &Principal,
        e: &Enterprise,
        cover: Cover,
    ) -> Result<Option<u64>> {
        match self.lender_grant(who, e, cover) {
            Err(Error::FailedPrecondition(_)) if self.ledger.is_shared() => {
                self.on_ledger(|ledger| ledger.catch_up()).await?;
                self.lender_grant(who, e, cover)
            }
            answer => answer,
        }
    }

    /// Before a lender's read of many enterprises on the blocking pool: on
    /// a shared store, take in grants other nodes recorded.
    pub(crate) async fn catch_up_grants(&self, who: &Principal) -> Result<()> {
        if who.role == Role::Lender && self.ledger.is_shared() {
            self.on_ledger(|ledger| ledger.catch_up()).await?;
        }
        Ok(())
    }

    /// Records `grant` as a ledger entry about its enterprise: by the
    /// enterprise itself (or an admin). The same grant again is a duplicate.
    pub async fn grant_access(&self, who: &Principal, grant: Grant) -> Result<GrantState> {
        let enterprise = self
            .registered(grant.uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {} is not registered", grant.uscc)))?;
        auth::may_grant_access(who, &enterprise)?;
        let lender = grant.lender.clone();
        let event = Event::AccessGrant(grant);
        let receipt = self.append_event(who, &event).await?.map_err(|c| {
            Error::AlreadyExists(format!("this grant is already recorded (seq {})", c.existing.seq))
        })?;
        if !receipt.duplicate {
            self.directory.apply(receipt.seq, self.clock.now(), &event);
        }
        tracing::info!(uscc = %enterprise.uscc, lender, seq = receipt.seq, "access granted");
        self.directory
            .grant(receipt.seq)
            .ok_or_else(|| Error::Internal(format!("grant {} is not in the directory", receipt.seq)))
    }

    /// Ends grant `grant_seq` of `uscc` now: by the enterprise itself (or an admin).
    pub async fn revoke_access(&self, who: &Principal, uscc: &Uscc, grant_seq: u64) -> Result<GrantState> {
        let enterprise = self
            .registered(uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        auth::may_grant_access(who, &enterprise)?;
        let grant = self.directory.grant(grant_seq).filter(|g| g.grant.uscc == *uscc).ok_or_else(|| {
            Error::NotFound(format!("grant_seq: entry {grant_seq} is no access grant of {uscc}"))
        })?;
        if let Some((seq, at)) = grant.revoked {
            return Err(Error::FailedPrecondition(format!(
                "grant {grant_seq} of {uscc} was already revoked at {at} (entry {seq})"
            )));
        }
        let event = Event::AccessRevocation { uscc: uscc.clone(), grant_seq };
        let receipt = self.append_event(who, &event).await?.map_err(|c| {
            Error::AlreadyExists(format!("grant {grant_seq} is already revoked (seq {})", c.existing.seq))
        })?;
        if !receipt.duplicate {
            self.directory.apply(receipt.seq, self.clock.now(), &event);
        }
        self.directory
            .grant(grant_seq)
            .ok_or_else(|| Error::Internal(format!("grant {grant_seq} is not in the directory")))
    }

    /// The grants `who` may see, newest first (at most [`MAX_GRANTS`]): an
    /// enterprise its own, a lender those naming it, a regulator those of
    /// enterprises in its scope, an admin all; `uscc` narrows to one.
    pub async fn list_grants(&self, who: &Principal, uscc: Option<&Uscc>) -> Result<Vec<GrantState>> {
        if let Some(uscc) = uscc {
            auth::may_read_scores_at_all(who, uscc.as_str())?;
        }
        if matches!(who.role, Role::Source { .. } | Role::Public) {
            return Err(auth::denied(who, "list access grants"));
        }
        // A lender's own grants are found by name; others by enterprise.
        let candidates = self.directory.grants(
            |g| {
                uscc.is_none_or(|u| g.grant.uscc == *u)
                    && (who.role != Role::Lender || g.grant.lender == who.name)
            },
            usize::MAX,
        );
        Ok(candidates
            .into_iter()
            .filter(|g| {
                self.directory
                    .enterprise(g.grant.uscc.as_str())
                    .is_some_and(|r| auth::may_see_grant(who, &r.enterprise, &g.grant.lender).is_ok())
            })
            .take(MAX_GRANTS)
            .collect())
    }

    /// The clock the grants' status is read at.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
