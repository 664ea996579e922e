//! The seam between the gateway and whatever stores its records: the
//! server implements [`RecordSink`] over its ledger path, tests over a channel.

use std::future::Future;

use scoring::Record;

use crate::availability::Outage;
use crate::credentials::PasswordCheck;
use crate::point::MonitoringPoint;

/// Where the gateway gets registrations from and puts records.
pub trait RecordSink: Send + Sync + 'static {
    /// The registered monitoring point of device `mn`, if any.
    fn monitoring_point(&self, mn: &str) -> Option<MonitoringPoint>;

    /// Every registered monitoring point, with its registration time, so
    /// that devices that never connect still have missing days.
    fn monitoring_points(&self) -> Vec<MonitoringPoint>;

    /// Checks a packet's `PW` against `point`'s credential (the server's
    /// [`crate::Credentials`]). May block on its store: the gateway calls it
    /// off the async workers. An error (store unreachable) means "not known
    /// now": the packet is neither recorded nor acknowledged.
    fn check_password(&self, point: &MonitoringPoint, pw: &str) -> Result<PasswordCheck, SinkError>;

    /// Appends records through the normal ledger path. Must be idempotent on
    /// (`source`, `source_record_id`): after a failure or crash the same
    /// records are appended again.
    fn append(&self, records: Vec<Record>) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Records a platform outage of the gateway itself. Must be idempotent
    /// on `outage.from`.
    fn record_outage(&self, outage: Outage) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Why a [`RecordSink`] did not take a batch of records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The sink could not store the batch now (shutting down, storage
    /// failing). The gateway keeps the days open and sends the same records
    /// again at the next close; appends are idempotent.
    #[error("not stored now, will retry: {0}")]
    Transient(String),
    /// The sink refused `count` records for good (e.g. the enterprise is not
    /// registered); sending them again cannot change that, so the days close.
    #[error("{count} records refused: {first}")]
    Rejected { count: usize, first: String },
}
