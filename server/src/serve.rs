//! `serve`: the gRPC server on a listener until shutdown. Production
//! (`main.rs`) and the integration tests call this same function.

use std::future::Future;
use std::sync::Arc;

use ecocode_proto::v1::{
    ingest_server::IngestServer, ledger_server::LedgerServer, registry_server::RegistryServer,
    scores_server::ScoresServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::error::{Error, Result};
use crate::services::{IngestService, LedgerService, RegistryService, ScoresService};
use crate::state::AppState;

/// Largest request accepted; larger ones are `RESOURCE_EXHAUSTED`.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Concurrent requests per connection before callers queue.
const CONCURRENCY_PER_CONNECTION: usize = 256;

/// Serves every service on `listener` until `shutdown` resolves, then stops
/// accepting, lets in-flight calls finish, and closes the ledger (flushing
/// it and signing a final checkpoint).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    state: Arc<AppState>,
) -> Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RegistryServer<RegistryService>>().await;
    health.set_serving::<IngestServer<IngestService>>().await;
    health.set_serving::<ScoresServer<ScoresService>>().await;
    health.set_serving::<LedgerServer<LedgerService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ecocode_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection service: {e}")))?;

    let registry = RegistryServer::new(RegistryService { state: state.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let ingest = IngestServer::new(IngestService { state: state.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let scores = ScoresServer::new(ScoresService { state: state.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let ledger = LedgerServer::new(LedgerService { state: state.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let shutdown = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.begin_shutdown();
        }
    };
    let addr = listener.local_addr().map_err(|e| Error::io("listener address", e))?;
    tracing::info!(%addr, model = state.model.version(), entries = state.ledger.head().size, "serving gRPC");
    let result = Server::builder()
        .concurrency_limit_per_connection(CONCURRENCY_PER_CONNECTION)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(registry)
        .add_service(ingest)
        .add_service(scores)
        .add_service(ledger)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")));
    tracing::info!("stopped accepting; closing the ledger");
    state.ledger.close().await?;
    result
}
