//! The ecocode service.
//!
//! * [`app`]: the composition root, `App::build(config)` and `App::run(shutdown)`.
//! * [`service`]: the one door every call goes through, with domain types;
//!   it authorizes with the rules of [`auth`] and runs the append pipeline.
//! * [`events`]: the storage format of ledger events (encode once, decode once).
//! * [`grpc`]: the gRPC transport, converting at the edge with [`convert`];
//!   [`error`] holds the one table from domain errors to gRPC statuses.
//! * [`gateway`]: the HJ 212 gateway's sink into the door.
//! * [`transport`]: TLS, connections and the accept loop; [`calls`]: the
//!   guard around every call (limits, idle streams, drain, status fixes);
//!   [`metrics`]: what is counted and `GET /metrics`; [`private`]: the data
//!   directory's permissions.
//! * [`web`]: the 环保码 web page (HTTP on `--http-listen`), a transport like
//!   gRPC that calls only the door.
//! * [`witness`]: `ecocode witness serve`, a C2SP tlog-witness that
//!   cosigns logs' checkpoints and keeps the evidence of forks;
//!   [`witnessing`]: `serve --witness-policy`, the log asking its witnesses
//!   and publishing checkpoints a quorum cosigned.
//!
//! This is the only crate that knows gRPC and the generated protobuf types.
//! The contract is `docs/api.md`.

#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod calls;
pub mod clock;
pub mod consent;
pub mod convert;
pub mod directory;
pub mod enterprise;
pub mod error;
pub mod events;
pub mod gateway;
pub mod grpc;
pub mod metrics;
pub mod principals;
pub mod private;
pub mod service;
pub mod transport;
pub mod views;
pub mod web;
pub mod witness;
pub mod witnessing;

pub use app::{App, Config, DEFAULT_SCORE_VIEW_CAPACITY};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use hj212::GatewayConfig;
pub use service::{ScoreView, Service};
pub use transport::{TlsFiles, TransportConfig};
