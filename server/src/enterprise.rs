//! Changes to a registered enterprise: new name, region or industry, and
//! closure or merger into another USCC. Each change is a ledger entry of its
//! own (`EnterpriseUpdate`), so the history is kept; scores and lists follow
//! the new values from that entry on.

use scoring::{Enterprise, Uscc, ValidationError};

/// Whether an enterprise still operates.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum EnterpriseStatus {
    #[default]
    Active,
    /// Ceased operating (注销). Its records and code stay readable; it is
    /// left out of lists unless they ask for closed enterprises.
    Closed,
    /// Merged into another enterprise (吸收合并). Its records stay with its
    /// own USCC (they are facts about it); the successor is scored on its own.
    Merged(Uscc),
}

impl EnterpriseStatus {
    pub fn is_active(&self) -> bool {
        *self == EnterpriseStatus::Active
    }
}

/// What a regulator asks to change; `None` leaves a value as it is.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UpdateRequest {
    pub uscc: Uscc,
    pub name: Option<String>,
    pub region_code: Option<String>,
    pub industry_code: Option<String>,
    pub status: Option<EnterpriseStatus>,
    pub reason: String,
}

/// A change as stored: the enterprise's full details and status from this
/// entry on, and why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EnterpriseUpdate {
    pub enterprise: Enterprise,
    pub status: EnterpriseStatus,
    pub reason: String,
}

impl UpdateRequest {
    /// The full new state, given the current one; errors name the field.
    pub fn resolve(
        &self,
        current: &Enterprise,
        current_status: &EnterpriseStatus,
    ) -> Result<EnterpriseUpdate, ValidationError> {
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(ValidationError::new("reason", "is required: 1 to 500 characters saying why"));
        }
        let enterprise = Enterprise::new(
            self.uscc.as_str(),
            self.name.as_deref().unwrap_or(&current.name),
            self.region_code.as_deref().unwrap_or(&current.region_code),
            self.industry_code.as_deref().unwrap_or(&current.industry_code),
        )?;
        let status = self.status.clone().unwrap_or_else(|| current_status.clone());
        if status == EnterpriseStatus::Merged(self.uscc.clone()) {
            return Err(ValidationError::new("merged_into", "an enterprise cannot merge into itself"));
        }
        Ok(EnterpriseUpdate { enterprise, status, reason: reason.to_owned() })
    }
}
