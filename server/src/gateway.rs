//! The HJ 212 gateway's link to the service: monitoring points come from
//! the directory, and derived records (`exceedance.daily`,
//! `monitoring.missing_day`) go through the same door and append pipeline
//! as gRPC, as the principal `hj212-gateway` bound to source `hj212`.

use std::sync::Arc;

use hj212::{MonitoringPoint, Outage, PasswordCheck, RecordSink, SinkError};
use scoring::Record;

use crate::principals::{Principal, Role};
use crate::service::Service;

pub struct LedgerSink {
    service: Arc<Service>,
    principal: Principal,
}

impl LedgerSink {
    pub fn new(service: Arc<Service>) -> LedgerSink {
        let principal =
            Principal { name: "hj212-gateway".into(), role: Role::Source { source: hj212::SOURCE.into() } };
        LedgerSink { service, principal }
    }
}

impl RecordSink for LedgerSink {
    fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.service.device_point(mn)
    }

    async fn record_outage(&self, outage: Outage) -> Result<(), SinkError> {
        self.outage(outage).await
    }

    fn monitoring_points(&self) -> Vec<MonitoringPoint> {
        self.service.device_points()
    }

    fn check_password(&self, point: &MonitoringPoint, pw: &str) -> Result<PasswordCheck, SinkError> {
        let credentials =
            self.service.device_credentials().map_err(|e| SinkError::Transient(e.to_string()))?;
        credentials.check(point, pw).map_err(|e| SinkError::Transient(e.to_string()))
    }

    /// The error decides ([`crate::error::Error::is_transient`]): what a
    /// caller would be told to retry is transient and keeps the day open;
    /// a record the pipeline refuses for good (e.g. its enterprise is not
    /// registered) is reported as rejected, since retrying cannot change it.
    async fn append(&self, records: Vec<Record>) -> Result<(), SinkError> {
        let ids: Vec<String> = records.iter().map(|r| r.source_record_id.clone()).collect();
        let results = self.service.append_records(&self.principal, records).await;
        let mut rejected = 0;
        let mut first = None;
        for (id, result) in ids.iter().zip(results) {
            let Err(e) = result else { continue };
            if e.is_transient() {
                return Err(SinkError::Transient(format!("{id}: {e}")));
            }
            tracing::warn!(%id, error = %e, "hj212 record rejected by the pipeline");
            rejected += 1;
            first.get_or_insert_with(|| format!("{id}: {e}"));
        }
        match first {
            None => Ok(()),
            Some(first) => Err(SinkError::Rejected { count: rejected, first }),
        }
    }
}

impl LedgerSink {
    async fn outage(&self, outage: Outage) -> Result<(), SinkError> {
        match self.service.record_outage(&self.principal, outage).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_transient() => Err(SinkError::Transient(e.to_string())),
            Err(e) => Err(SinkError::Rejected { count: 1, first: e.to_string() }),
        }
    }
}
