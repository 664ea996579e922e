//! The enterprise's lender access grants on its signed-in page: listed,
//! granted and revoked through the door (`Consent.*`'s rules).

use super::*;
use crate::service::{GrantState, LenderGrant};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct GrantForm {
    csrf: String,
    lender: String,
    purpose: String,
    /// Checkboxes: present when ticked.
    details: Option<String>,
    history: Option<String>,
    /// The last day, `YYYY-MM-DD` (the grant ends at its start, UTC).
    expires_on: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RevokeForm {
    csrf: String,
    seq: String,
}

pub async fn grant_access(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
    Form(form): Form<GrantForm>,
) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    let signed = require_signed_in(&st, &headers)?;
    check_csrf(&st, &headers, &signed, &form.csrf)?;
    let expires_at = Timestamp::parse_rfc3339(&format!("{}T00:00:00Z", form.expires_on.trim()))
        .ok_or_else(|| Error::InvalidArgument("expires_on: a date, e.g. 2027-06-30".into()))?;
    let covers: Vec<String> = [("details", &form.details), ("history", &form.history)]
        .into_iter()
        .filter(|(_, ticked)| ticked.is_some())
        .map(|(c, _)| c.to_owned())
        .collect();
    let now = st.service.clock().now();
    let grant =
        LenderGrant::new(uscc.clone(), &form.lender, &form.purpose, &covers, None, Some(expires_at), now)?;
    let state = st.service.grant_access(&signed.principal, grant).await?;
    Ok(Redirect::to(&format!("/e/{uscc}?filed={}#grants", state.seq)).into_response())
}

pub async fn revoke_access(
    State(st): State<WebState>,
    Path(uscc): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Result<Response> {
    let uscc = parse_uscc(&uscc)?;
    let signed = require_signed_in(&st, &headers)?;
    check_csrf(&st, &headers, &signed, &form.csrf)?;
    let seq: u64 = form
        .seq
        .trim()
        .parse()
        .map_err(|_| Error::InvalidArgument("seq: the grant's ledger entry number".into()))?;
    st.service.revoke_access(&signed.principal, &uscc, seq).await?;
    Ok(Redirect::to(&format!("/e/{uscc}#grants")).into_response())
}

/// The enterprise's grants as its page lists them, newest first.
pub(super) async fn grant_lines(st: &WebState, who: &Principal, uscc: &Uscc) -> Result<Vec<GrantLine>> {
    let now = st.service.clock().now();
    let grants: Vec<GrantState> = st.service.list_grants(who, Some(uscc)).await?;
    Ok(grants
        .iter()
        .map(|g| GrantLine {
            seq: g.seq,
            lender: g.grant.lender.clone(),
            purpose: g.grant.purpose.clone(),
            covers: g.grant.covers.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
            starts_on: date(g.grant.starts_at),
            expires_on: date(g.grant.expires_at),
            status: g.status(now).as_str(),
        })
        .collect())
}
