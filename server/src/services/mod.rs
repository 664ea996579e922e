//! The gRPC services of `ecocode.v1`: thin handlers that authenticate,
//! convert, call `AppState` and convert back.

mod ingest;
mod ledger;
mod registry;
mod scores;

pub use ingest::IngestService;
pub use ledger::LedgerService;
pub use registry::RegistryService;
pub use scores::ScoresService;

use std::sync::Arc;

use tonic::Request;

use crate::principals::Principal;
use crate::state::AppState;

/// Authenticates the caller of `request`.
fn caller<T>(state: &Arc<AppState>, request: &Request<T>) -> Result<Principal, tonic::Status> {
    crate::auth::authenticate(&state.principals, request.metadata()).map_err(Into::into)
}
