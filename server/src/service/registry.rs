//! Registry reads: enterprises, monitoring points, device credentials.

use super::*;

impl Service {
    pub async fn enterprise(&self, who: &Principal, uscc: &Uscc) -> Result<Enterprise> {
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        let enterprise = self
            .registered(uscc.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        auth::may_read_score(who, &enterprise)?;
        Ok(enterprise)
    }

    pub async fn monitoring_point(&self, who: &Principal, mn: &str) -> Result<MonitoringPoint> {
        let point = self.directory.point(mn).ok_or_else(|| {
            let shown: String = mn.chars().take(32).collect();
            Error::NotFound(format!("no monitoring point is registered for device {shown:?}"))
        })?;
        let enterprise = self.registered(point.uscc().as_str()).await?.ok_or_else(|| {
            Error::Internal(format!("monitoring point {mn} names unregistered {}", point.uscc()))
        })?;
        auth::may_read_score(who, &enterprise)?;
        Ok(point)
    }

    /// The point of device `mn`, for the HJ 212 gateway, which is part of
    /// the service itself (its records are authorized as the gateway's
    /// principal when they are appended).
    pub(crate) fn device_point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.directory.point(mn)
    }

    /// Every registered point, for the gateway's missing days of devices
    /// that never connect.
    pub(crate) fn device_points(&self) -> Vec<MonitoringPoint> {
        self.directory.points()
    }

    /// Makes the device passwords' verifiers usable (the composition root
    /// opens them after the ledger).
    pub fn attach_credentials(&self, credentials: Arc<hj212::Credentials>) {
        let _ = self.credentials.set(credentials);
    }

    /// The device passwords' verifiers, for registrations and the gateway.
    pub(crate) fn device_credentials(&self) -> Result<&Arc<hj212::Credentials>> {
        self.credentials
            .get()
            .ok_or_else(|| Error::Unavailable("device credentials are not open yet; try again".into()))
    }

    pub(super) async fn registered(&self, uscc: &str) -> Result<Option<Enterprise>> {
        if let Some(found) = self.directory.current(uscc) {
            return Ok(Some(found));
        }
        Ok(self.registration(uscc).await?.map(|r| r.enterprise))
    }

    /// The directory's record of `uscc`. On a shared store a miss first
    /// catches up with what other nodes appended (one round trip, on the
    /// blocking pool), so an enterprise registered through another node a
    /// moment ago is found; if the store cannot be reached, that is the
    /// answer (`UNAVAILABLE`), not "not registered".
    pub(super) async fn registration(&self, uscc: &str) -> Result<Option<crate::directory::Registered>> {
        if let Some(found) = self.directory.enterprise(uscc) {
            return Ok(Some(found));
        }
        if !self.ledger.is_shared() {
            return Ok(None);
        }
        self.on_ledger(|ledger| ledger.catch_up()).await?;
        Ok(self.directory.enterprise(uscc))
    }

    /// Runs `read` on the blocking pool: on PostgreSQL every ledger read
    /// is a database round trip, and on sled it may be a disk read; an
    /// async worker never waits for either (docs/api.md, "Blocking").
    pub(super) async fn on_ledger<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Ledger) -> ledger::Result<T> + Send + 'static,
    ) -> Result<T> {
        let ledger = self.ledger.clone();
        blocking(move || Ok(read(&ledger)?)).await
    }
}
