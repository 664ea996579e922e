//! The inquiry log: lenders' and regulators' reads, recorded and listed.

use super::*;

impl Service {
    /// Records that `who` read these enterprises' scores with `method`,
    /// durably, when `who` is a lender or a regulator (an enterprise reading
    /// itself, an admin and the service are not inquirers).
    pub(super) async fn inquire(
        &self,
        who: &Principal,
        purpose: &str,
        method: &str,
        read: &[&Enterprise],
    ) -> Result<()> {
        if !matches!(who.role, Role::Lender | Role::Regulator { .. }) || read.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let at_ns = now.unix_nanos();
        // The grant a lender's read was made under (checked before the read).
        let cover = match method {
            "GetScoreHistory" => crate::consent::Cover::History,
            _ => crate::consent::Cover::Details,
        };
        let grant_of = |e: &Enterprise| match who.role {
            Role::Lender => self.directory.live_grant(e.uscc.as_str(), &who.name, cover, now).map(|g| g.seq),
            _ => None,
        };
        let inquiries: Vec<Inquiry> = read
            .iter()
            .map(|e| Inquiry {
                grant_seq: grant_of(e),
                uscc: e.uscc.to_string(),
                region_code: e.region_code.clone(),
                principal: who.name.clone(),
                role: who.role.name().to_owned(),
                method: method.to_owned(),
                purpose: purpose.to_owned(),
                at_ns,
            })
            .collect();
        self.inquiries.record(&inquiries).await.map_err(|e| {
            // Never answer a read that could not be recorded.
            tracing::error!(error = %e, "inquiry not recorded; refusing the read");
            Error::Unavailable("the inquiry log cannot record this read now; try again later".into())
        })
    }

    /// A page of the inquiries `who` may see, newest first: an enterprise
    /// sees every inquiry on itself, a lender only its own, a regulator
    /// those on enterprises in its scope, an admin all. `uscc` narrows to
    /// one enterprise.
    pub async fn list_inquiries(
        self: &Arc<Self>,
        who: &Principal,
        uscc: Option<&Uscc>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        page_size: usize,
        after: Option<Vec<u8>>,
    ) -> Result<inquiries::Page> {
        let scope = match (&who.role, uscc) {
            (Role::Enterprise { uscc: own }, None) => Scope::Enterprise(own.clone()),
            (Role::Enterprise { uscc: own }, Some(u)) if u.as_str() == own => Scope::Enterprise(own.clone()),
            (Role::Lender, u) => {
                Scope::Inquirer { principal: who.name.clone(), uscc: u.map(ToString::to_string) }
            }
            (Role::Regulator { region_prefix }, None) => Scope::Region(region_prefix.clone()),
            (Role::Regulator { .. }, Some(u)) => {
                let enterprise = self
                    .registered(u.as_str())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("enterprise {u} is not registered")))?;
                auth::may_read_score(who, &enterprise)?;
                Scope::Enterprise(u.to_string())
            }
            (Role::Admin, None) => Scope::All,
            (Role::Admin, Some(u)) => Scope::Enterprise(u.to_string()),
            _ => return Err(auth::denied(who, "list these inquiries")),
        };
        let page_size = self::page_size(page_size);
        let query = inquiries::Query {
            scope,
            from_ns: from.map(Timestamp::unix_nanos),
            to_ns: to.map(Timestamp::unix_nanos),
            page_size,
            after,
        };
        let service = self.clone();
        blocking(move || Ok(service.inquiries.list(&query)?)).await
    }
}
