//! `ecocode.v1.Ledger`: entries, checkpoints and proofs.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, ledger_server::Ledger};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::convert::to_proto;
use crate::principals::PrincipalStore;
use crate::service::Service;

#[derive(Debug, Clone)]
pub struct LedgerService {
    pub service: Arc<Service>,
    /// For the standing of callers with an open stream.
    pub principals: Arc<PrincipalStore>,
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let who = caller(&request)?;
        // From memory: never a database round trip.
        let checkpoint = self.service.checkpoint(&who)?;
        Ok(Response::new(to_proto::checkpoint(&checkpoint)))
    }

    async fn get_entry(&self, request: Request<pb::GetEntryRequest>) -> Result<Response<pb::Entry>, Status> {
        let who = caller(&request)?;
        let (entry, withheld) = self.service.entry(&who, request.get_ref().seq).await?;
        Ok(Response::new(to_proto::shown_entry(&entry, withheld.as_ref())))
    }

    type ListEntriesStream = super::CallStream<pb::Entry>;

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<Self::ListEntriesStream>, Status> {
        let who = caller(&request)?;
        let pb::ListEntriesRequest { from_seq, to_seq } = *request.get_ref();
        let standing = self.principals.standing(&who)?;
        let entries = self.service.entries(&who, from_seq, to_seq)?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(entries)
            .map(|entry| entry.map(|(e, w)| to_proto::shown_entry(&e, w.as_ref())).map_err(Status::from));
        Ok(Response::new(super::until_revoked(stream, standing)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let who = caller(&request)?;
        let pb::GetInclusionProofRequest { seq, tree_size } = *request.get_ref();
        let (tree_size, hashes) = self.service.inclusion_proof(&who, seq, tree_size).await?;
        Ok(Response::new(pb::InclusionProof {
            seq,
            tree_size,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let who = caller(&request)?;
        let pb::GetConsistencyProofRequest { from_size, to_size } = *request.get_ref();
        let (to_size, hashes) = self.service.consistency_proof(&who, from_size, to_size).await?;
        Ok(Response::new(pb::ConsistencyProof {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            from_size,
            to_size,
        }))
    }
}
