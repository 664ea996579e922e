//! The gRPC transport of `ecocode.v1`: thin handlers that take the caller
//! from the request (put there by [`Authenticate`]), convert at the edge
//! with [`crate::convert`], call the one door ([`Service`]) and convert the
//! answer back. No rule of who may do what lives here.

mod consent;
mod ingest;
mod ledger;
mod registry;
mod scores;

use std::pin::Pin;
use std::sync::Arc;

use ecocode_proto::v1::{
    consent_server::ConsentServer, ingest_server::IngestServer, ledger_server::LedgerServer,
    registry_server::RegistryServer, scores_server::ScoresServer,
};
use tokio_stream::{Stream, StreamExt as _};
use tonic::Status;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

pub use self::consent::ConsentService;
pub use self::ingest::IngestService;
pub use self::ledger::LedgerService;
pub use self::registry::RegistryService;
pub use self::scores::ScoresService;
use crate::auth::Authenticate;
use crate::error::{Error, Result};
use crate::principals::{PrincipalStore, Standing};
use crate::service::Service;
use crate::transport::TransportConfig;

/// Every gRPC service of the process: `ecocode.v1` behind authentication,
/// plus the standard health and reflection services; and the health
/// reporter, so the composition root can say when the service cannot write.
/// Requests above `limits.max_message_bytes` are refused by tonic's decoder
/// (and answered `RESOURCE_EXHAUSTED` by the call guard, `calls`).
pub async fn routes(
    service: Arc<Service>,
    principals: Arc<PrincipalStore>,
    limits: &TransportConfig,
) -> Result<(Routes, tonic_health::server::HealthReporter)> {
    let max_message_bytes = limits.max_message_bytes;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RegistryServer<RegistryService>>().await;
    health.set_serving::<IngestServer<IngestService>>().await;
    health.set_serving::<ScoresServer<ScoresService>>().await;
    health.set_serving::<LedgerServer<LedgerService>>().await;
    health.set_serving::<ConsentServer<ConsentService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ecocode_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection service: {e}")))?;
    let auth = Authenticate::new(principals.clone());
    let registry = RegistryServer::new(RegistryService { service: service.clone() })
        .max_decoding_message_size(max_message_bytes);
    let ingest = IngestServer::new(IngestService {
        service: service.clone(),
        max_stream_records: limits.max_stream_records,
        principals: principals.clone(),
    })
    .max_decoding_message_size(max_message_bytes);
    let scores =
        ScoresServer::new(ScoresService { service: service.clone(), principals: principals.clone() })
            .max_decoding_message_size(max_message_bytes);
    let consent = ConsentServer::new(ConsentService { service: service.clone() })
        .max_decoding_message_size(max_message_bytes);
    let ledger =
        LedgerServer::new(LedgerService { service, principals }).max_decoding_message_size(max_message_bytes);
    let mut routes = Routes::new(health_service);
    routes = routes
        .add_service(reflection)
        .add_service(InterceptedService::new(registry, auth.clone()))
        .add_service(InterceptedService::new(ingest, auth.clone()))
        .add_service(InterceptedService::new(scores, auth.clone()))
        .add_service(InterceptedService::new(consent, auth.clone()))
        .add_service(InterceptedService::new(ledger, auth));
    Ok((routes, health))
}

/// Reports the whole service, and the services that write, NOT_SERVING
/// while the ledger cannot take appends (a full disk), SERVING otherwise.
pub async fn report_writable(health: &tonic_health::server::HealthReporter, writable: bool) {
    let status =
        if writable { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    health.set_service_status("", status).await;
    if writable {
        health.set_serving::<IngestServer<IngestService>>().await;
    } else {
        health.set_not_serving::<IngestServer<IngestService>>().await;
    }
}

/// A server stream of one call.
pub(crate) type CallStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `stream`, ended with `UNAUTHENTICATED` as soon as the caller's principal
/// is revoked: woken by the principal store's reload, not at the next item,
/// so a quiet watch ends too. Dropping the inner stream stops its producer
/// (a watch task, an entry reader).
pub(crate) fn until_revoked<T: Send + 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    standing: Standing,
) -> CallStream<T> {
    let open: Option<(CallStream<T>, Standing)> = Some((Box::pin(stream), standing));
    Box::pin(futures::stream::unfold(open, |open| async move {
        let (mut stream, mut standing) = open?;
        tokio::select! {
            // Revocation first: nothing more goes out once it is seen.
            biased;
            revoked = standing.revoked() => Some((Err(Status::from(revoked)), None)),
            item = stream.next() => item.map(|item| (item, Some((stream, standing)))),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principals::Role;

    // A revoked lender's entry listing went on until it was read to the end.
    #[tokio::test]
    async fn a_quiet_stream_ends_unauthenticated_at_the_reload_that_revokes_its_caller() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(PrincipalStore::open(dir.path()).unwrap());
        let token = store.add("bank-a", Role::Lender).unwrap();
        store.reload_if_changed().unwrap();
        let who = store.authenticate(&token).unwrap();
        // A stream with nothing to send: only the revocation can end it.
        let quiet = futures::stream::pending::<Result<u64, Status>>();
        let mut guarded = until_revoked(quiet, store.standing(&who).unwrap());

        // Another principal changes nothing for this one.
        store.add("bank-b", Role::Lender).unwrap();
        store.reload_if_changed().unwrap();
        let still_open = futures::poll!(futures::StreamExt::next(&mut guarded));
        assert!(still_open.is_pending());

        PrincipalStore::open(dir.path()).unwrap().revoke("bank-a").unwrap();
        store.reload_if_changed().unwrap();
        let ended = guarded.next().await.expect("an end status").unwrap_err();
        assert_eq!(ended.code(), tonic::Code::Unauthenticated);
        assert!(guarded.next().await.is_none());
        assert!(store.standing(&who).is_err(), "a new call is refused");
    }
}
