//! Lender access an enterprise grants (征信查询授权书): a grant names one
//! lender principal, a purpose, what it covers, a start and an expiry; a
//! revocation ends it. Both are ledger entries about the enterprise, so
//! who could read what, and on whose authority, is part of the log.

use scoring::{Timestamp, Uscc, ValidationError};

/// The purposes a bank's forms name; any other text (at most
/// [`MAX_PURPOSE_BYTES`]) is taken as given.
pub const PURPOSES: [&str; 3] = ["loan_application", "loan_monitoring", "bond_issuance"];

/// Most bytes of a grant's purpose.
pub const MAX_PURPOSE_BYTES: usize = 200;

/// Longest grant: five years (a loan's monitoring outlives its application).
pub const MAX_GRANT_DAYS: i64 = 5 * 366;

/// What a grant covers beyond the public code, grade and points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cover {
    /// The reasons and entries behind scores and attestations.
    Details,
    /// The score's history (`GetScoreHistory`).
    History,
}

impl Cover {
    pub const ALL: [Cover; 2] = [Cover::Details, Cover::History];

    pub fn as_str(self) -> &'static str {
        match self {
            Cover::Details => "details",
            Cover::History => "history",
        }
    }

    pub fn parse(text: &str) -> Result<Cover, ValidationError> {
        Cover::ALL.into_iter().find(|c| c.as_str() == text).ok_or_else(|| {
            ValidationError::new(
                "covers",
                format!("each must be details or history, got {}", scoring::quoted(text)),
            )
        })
    }
}

/// An access grant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub uscc: Uscc,
    pub lender: String,
    pub purpose: String,
    /// Without repeats, in [`Cover::ALL`]'s order.
    pub covers: Vec<Cover>,
    pub starts_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Grant {
    /// Checks a grant as requested; `now` is the service's clock.
    pub fn new(
        uscc: Uscc,
        lender: &str,
        purpose: &str,
        covers: &[String],
        starts_at: Option<Timestamp>,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Grant, ValidationError> {
        let lender = lender.trim();
        if lender.is_empty() {
            return Err(ValidationError::new("lender", "is required: the lender principal's name"));
        }
        scoring::check_new_text("lender", lender, false)?;
        let purpose = purpose.trim();
        if purpose.is_empty() {
            return Err(ValidationError::new(
                "purpose",
                "is required: loan_application, loan_monitoring, bond_issuance or other text",
            ));
        }
        if purpose.len() > MAX_PURPOSE_BYTES {
            return Err(ValidationError::new(
                "purpose",
                format!("at most {MAX_PURPOSE_BYTES} bytes, got {}", purpose.len()),
            ));
        }
        scoring::check_new_text("purpose", purpose, false)?;
        let mut wanted = Vec::new();
        for c in covers {
            let c = Cover::parse(c.trim())?;
            if !wanted.contains(&c) {
                wanted.push(c);
            }
        }
        if wanted.is_empty() {
            return Err(ValidationError::new("covers", "must name details, history or both"));
        }
        let covers: Vec<Cover> = Cover::ALL.into_iter().filter(|c| wanted.contains(c)).collect();
        let starts_at = starts_at.unwrap_or(now);
        let expires_at = expires_at.ok_or_else(|| ValidationError::new("expires_at", "is required"))?;
        if expires_at <= starts_at {
            return Err(ValidationError::new(
                "expires_at",
                format!("must be after starts_at ({starts_at}), got {expires_at}"),
            ));
        }
        if expires_at > starts_at.plus_days(MAX_GRANT_DAYS) {
            return Err(ValidationError::new(
                "expires_at",
                format!("at most {MAX_GRANT_DAYS} days after starts_at ({starts_at}), got {expires_at}"),
            ));
        }
        if expires_at <= now {
            return Err(ValidationError::new(
                "expires_at",
                format!("is already past ({now}), got {expires_at}"),
            ));
        }
        Ok(Grant {
            uscc,
            lender: lender.to_owned(),
            purpose: purpose.to_owned(),
            covers,
            starts_at,
            expires_at,
        })
    }

    pub fn covers(&self, c: Cover) -> bool {
        self.covers.contains(&c)
    }
}

/// Where a grant stands at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantStatus {
    Pending,
    Live,
    Expired,
    Revoked,
}

impl GrantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Live => "live",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
        }
    }
}

/// A grant in the ledger and what happened to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantState {
    /// The grant's entry: its identity.
    pub seq: u64,
    pub grant: Grant,
    /// The revocation's entry and its time, once revoked.
    pub revoked: Option<(u64, Timestamp)>,
}

impl GrantState {
    pub fn status(&self, now: Timestamp) -> GrantStatus {
        match self.revoked {
            Some((_, at)) if at <= now => GrantStatus::Revoked,
            _ if now < self.grant.starts_at => GrantStatus::Pending,
            _ if now >= self.grant.expires_at => GrantStatus::Expired,
            _ => GrantStatus::Live,
        }
    }
}

/// Whether `lender`'s reads of an enterprise's details need a grant
/// (`serve --lender-access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LenderAccess {
    /// A lender reads an enterprise's details only under a live grant.
    #[default]
    Granted,
    /// Any lender reads any enterprise (before grants existed).
    Open,
}

impl LenderAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            LenderAccess::Granted => "granted",
            LenderAccess::Open => "open",
        }
    }
}

impl std::str::FromStr for LenderAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<LenderAccess, String> {
        match s {
            "granted" => Ok(LenderAccess::Granted),
            "open" => Ok(LenderAccess::Open),
            other => Err(format!("--lender-access must be granted or open, got {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(days: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_780_272_000 * 1_000_000_000).plus_days(days)
    }

    fn uscc() -> Uscc {
        Uscc::parse("91330421739237858X").unwrap()
    }

    #[test]
    fn a_grant_needs_a_lender_a_purpose_a_cover_and_a_future_expiry() {
        let covers = vec!["details".to_owned()];
        let ok = Grant::new(uscc(), "bank", "loan_application", &covers, None, Some(t(30)), t(0)).unwrap();
        assert_eq!((ok.starts_at, ok.covers.as_slice()), (t(0), [Cover::Details].as_slice()));
        type Case<'a> = (&'a str, &'a str, Vec<String>, Option<Timestamp>, &'a str);
        let cases: [Case; 5] = [
            ("", "loan_application", covers.clone(), Some(t(30)), "lender"),
            ("bank", " ", covers.clone(), Some(t(30)), "purpose"),
            ("bank", "x", vec!["everything".into()], Some(t(30)), "covers"),
            ("bank", "x", covers.clone(), None, "expires_at"),
            ("bank", "x", covers.clone(), Some(t(-1)), "expires_at"),
        ];
        for (lender, purpose, covers, expires, field) in cases {
            let e = Grant::new(uscc(), lender, purpose, &covers, None, expires, t(0)).unwrap_err();
            assert_eq!(e.field, field, "{e:?}");
        }
        let long = Grant::new(uscc(), "bank", "x", &covers, None, Some(t(MAX_GRANT_DAYS + 1)), t(0));
        assert_eq!(long.unwrap_err().field, "expires_at");
    }

    #[test]
    fn a_grant_is_pending_live_expired_or_revoked() {
        let covers = vec!["details".to_owned(), "history".to_owned()];
        let grant =
            Grant::new(uscc(), "bank", "bond_issuance", &covers, Some(t(1)), Some(t(10)), t(0)).unwrap();
        let mut state = GrantState { seq: 7, grant, revoked: None };
        assert_eq!(state.status(t(0)), GrantStatus::Pending);
        assert_eq!(state.status(t(1)), GrantStatus::Live);
        assert_eq!(state.status(t(10)), GrantStatus::Expired);
        state.revoked = Some((9, t(5)));
        assert_eq!(state.status(t(4)), GrantStatus::Live);
        assert_eq!(state.status(t(5)), GrantStatus::Revoked);
    }
}
