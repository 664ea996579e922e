//! The ecocode service: gRPC handlers over the ledger and the scoring model.
//!
//! This is the only crate that knows gRPC and the generated protobuf types;
//! conversions live in [`convert`], the status table in [`error`].

#![forbid(unsafe_code)]

pub mod attestation;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod convert;
pub mod error;
pub mod gateway;
pub mod import;
pub mod principals;
pub mod proof_bundle;
pub mod serve;
pub mod services;
pub mod state;
pub mod watch;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use serve::serve;
pub use state::{AppState, Config};
