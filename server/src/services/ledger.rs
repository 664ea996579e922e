//! `ecocode.v1.Ledger`: entries, checkpoints and proofs.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, ledger_server::Ledger};
use tonic::{Request, Response, Status};

use super::caller;
use crate::auth;
use crate::convert::to_proto;
use crate::error::Error;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct LedgerService {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let who = caller(&self.state, &request)?;
        auth::may_read_ledger(&who)?;
        let checkpoint = self.state.ledger.checkpoint().map_err(Error::from)?;
        Ok(Response::new(to_proto::checkpoint(&checkpoint)))
    }

    async fn get_entry(&self, request: Request<pb::GetEntryRequest>) -> Result<Response<pb::Entry>, Status> {
        let who = caller(&self.state, &request)?;
        auth::may_read_ledger(&who)?;
        let seq = request.get_ref().seq;
        let entry = self.state.ledger.entry(seq).map_err(Error::from)?;
        auth::may_read_entry(&who, &entry.subject, seq)?;
        Ok(Response::new(to_proto::entry(&entry)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let who = caller(&self.state, &request)?;
        auth::may_read_ledger(&who)?;
        let pb::GetInclusionProofRequest { seq, tree_size } = *request.get_ref();
        let tree_size = if tree_size == 0 { self.state.ledger.head().size } else { tree_size };
        let hashes = self.state.ledger.inclusion_proof(seq, tree_size).map_err(Error::from)?;
        Ok(Response::new(pb::InclusionProof { seq, tree_size, hashes: hashes.iter().map(|h| h.to_vec()).collect() }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let who = caller(&self.state, &request)?;
        auth::may_read_ledger(&who)?;
        let pb::GetConsistencyProofRequest { from_size, to_size } = *request.get_ref();
        let to_size = if to_size == 0 { self.state.ledger.head().size } else { to_size };
        let hashes = self.state.ledger.consistency_proof(from_size, to_size).map_err(Error::from)?;
        Ok(Response::new(pb::ConsistencyProof {
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            from_size,
            to_size,
        }))
    }
}
