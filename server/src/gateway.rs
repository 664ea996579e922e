//! The HJ 212 gateway's link to the service: monitoring points come from
//! the directory, and derived records (`exceedance.daily`,
//! `monitoring.missing_day`) go through the same append pipeline as gRPC,
//! as the principal `hj212-gateway` bound to source `hj212`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use ingest::hj212::{self, Gateway, GatewayConfig, GatewayStats, MonitoringPoint, RecordSink};
use scoring::Record;
use tokio::net::TcpListener;

use crate::convert::to_proto;
use crate::error::{Error, Result};
use crate::principals::{Principal, Role};
use crate::state::AppState;

pub struct LedgerSink {
    state: Arc<AppState>,
    principal: Principal,
}

impl LedgerSink {
    pub fn new(state: Arc<AppState>) -> LedgerSink {
        let principal =
            Principal { name: "hj212-gateway".into(), role: Role::Source { source: hj212::SOURCE.into() } };
        LedgerSink { state, principal }
    }
}

impl RecordSink for LedgerSink {
    fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint> {
        self.state.monitoring_point(mn)
    }

    /// Transient failures (shutting down, storage errors) are returned so the
    /// gateway keeps the day open and tries again; a record the pipeline
    /// rejects for good (e.g. its enterprise is not registered) is logged and
    /// skipped, since retrying cannot change the answer.
    fn append(&self, records: Vec<Record>) -> impl Future<Output = Result<(), String>> + Send {
        let records: Vec<_> = records.iter().map(to_proto::record).collect();
        async move {
            let results = self.state.append_records(&self.principal, &records).await;
            for (record, result) in records.iter().zip(results) {
                match result {
                    Ok(_) => {}
                    Err(
                        e
                        @ (Error::Unavailable(_) | Error::Internal(_) | Error::Io { .. } | Error::Ledger(_)),
                    ) => {
                        return Err(format!("{}: {e}", record.source_record_id));
                    }
                    Err(e) => tracing::warn!(
                        id = %record.source_record_id, error = %e, "hj212 record rejected by the pipeline"
                    ),
                }
            }
            Ok(())
        }
    }
}

/// Serves data loggers on `listener` until `shutdown`; aggregation state
/// lives in `DATA/hj212`. The gateway reads time from the service's clock.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    data_dir: &Path,
    config: Option<GatewayConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<Arc<GatewayStats>> {
    let clock = state.clock.clone();
    let config = GatewayConfig { clock: Arc::new(move || clock.now()), ..config.unwrap_or_default() };
    let gateway = Gateway::open(&data_dir.join("hj212"), Arc::new(LedgerSink::new(state)), config)
        .map_err(|e| Error::Internal(format!("hj212 gateway state: {e}")))?;
    let stats = gateway.stats();
    gateway.serve(listener, shutdown).await.map_err(|e| Error::Internal(format!("hj212 gateway: {e}")))?;
    Ok(stats)
}
