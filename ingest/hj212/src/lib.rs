//! HJ 212 online-monitoring packets: parsing, acknowledgement, aggregation.
//!
//! * [`parse_packet`] and [`Framer`] turn a device's TCP byte stream into
//!   checked [`Packet`]s; [`Packet::ack`] builds the `9014` answer.
//! * [`MonitoringPoint`] says which enterprise, outlet and limits a device
//!   (MN) stands for; [`Credentials`] keeps its password's keyed verifier
//!   in server-side state, never in the ledger.
//! * [`DailyAggregator`] judges each China local day per device and
//!   pollutant and emits `exceedance.daily` / `monitoring.missing_day`
//!   records; its rules are documented in `aggregate.rs`.
//! * [`serve_gateway`] is the TCP listener devices connect to, generic over a
//!   [`RecordSink`] so it stays free of gRPC. `gateway.rs` keeps the accept
//!   loop and each connection's handling; beside it, one concern a file:
//!   `gateway/sink.rs` (the [`RecordSink`] seam and [`SinkError`]),
//!   `gateway/config.rs` ([`GatewayConfig`], the clock), `gateway/stats.rs`
//!   (the counters, [`GatewayStats`]), `gateway/admission.rs` (per-peer and
//!   unauthenticated connection slots), `gateway/days.rs` (closing days and
//!   handing their records to the sink) and `gateway/summary.rs` (the
//!   periodic summary line).

#![forbid(unsafe_code)]

mod aggregate;
mod availability;
mod crc;
mod credentials;
mod deviation;
mod figures;
mod framer;
mod gateway;
mod packet;
mod point;
mod split;
mod store;
mod throttle;
mod time;

#[cfg(test)]
mod tests;

pub use aggregate::{
    AcceptOutcome, BACKFILL_DAYS, DailyAggregator, DayClosing, KIND_EXCEEDANCE, KIND_EXCUSED_DAY,
    KIND_INSUFFICIENT_DAY, KIND_MISSING_DAY, SOURCE,
};
pub use availability::Outage;
pub use crc::hj212_crc;
pub use credentials::{
    CREDENTIALS_DIR, Credential, CredentialId, Credentials, DevicePassword, PasswordCheck, PointRegistration,
    SECRET_FILE,
};
pub use deviation::{Deviation, deviations};
pub use figures::{DeviceFigures, OTHER_DEVICES, peer_key};
pub use framer::{Framer, MAX_BUFFERED_BYTES};
pub use gateway::{
    Gateway, GatewayConfig, GatewayCounts, GatewayStats, RecordSink, SinkError, WallClock, serve_gateway,
};
pub use packet::{
    DataFlag, Flag, MAX_CP_BYTES, MAX_DATA_BYTES, MAX_FRAME_BYTES, Measurement, Packet, PacketError, Suffix,
    Value, command, frame, parse_packet,
};
pub use point::{MAX_LIMITS, MonitoringPoint, PasswordHash, PollutantLimit, Statistic};
pub use time::{DataTime, LocalDay};

/// Failures of the aggregation state and the gateway. A rejected packet is
/// not one of them: that is an expected outcome, a [`PacketError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("hj212 state store: {0}")]
    Store(#[from] sled::Error),
    /// The shared (PostgreSQL) state store failed.
    #[error("hj212 state store: {0}")]
    SharedStore(String),
    /// The state directory holds something this code did not write.
    #[error("hj212 state corrupt: {0}")]
    Corruption(String),
    #[error("packet from MN {packet} passed with monitoring point {point}")]
    WrongPoint { packet: String, point: String },
    #[error("record rejected by validation: {0}")]
    Record(#[from] scoring::ValidationError),
    #[error("hj212 gateway: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
