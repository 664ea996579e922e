//! `ecocode.v1.Ledger`: entries, checkpoints and proofs.

use std::pin::Pin;
use std::sync::Arc;

use ecocode_proto::v1::{self as pb, ledger_server::Ledger};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
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

    type ListEntriesStream = Pin<Box<dyn Stream<Item = Result<pb::Entry, Status>> + Send>>;

    async fn list_entries(
        &self,
        request: Request<pb::ListEntriesRequest>,
    ) -> Result<Response<Self::ListEntriesStream>, Status> {
        let who = caller(&self.state, &request)?;
        auth::may_read_ledger(&who)?;
        let size = self.state.ledger.head().size;
        let pb::ListEntriesRequest { from_seq, to_seq } = *request.get_ref();
        let to = if to_seq == 0 { size } else { to_seq };
        if to > size || from_seq > to {
            return Err(Error::Ledger(ingest::ledger::Error::OutOfRange(format!(
                "entries {from_seq}..{to} are not within the ledger's {size} entries"
            )))
            .into());
        }
        // A bounded channel: a slow reader holds back only its own stream.
        let (tx, rx) = mpsc::channel(1024);
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            for entry in state.ledger.scan(from_seq, to) {
                let item = match entry {
                    Ok(e) if auth::may_read_entry(&who, &e.subject, e.seq).is_err() => continue,
                    Ok(e) => Ok(to_proto::entry(&e)),
                    Err(e) => Err(Status::from(Error::from(e))),
                };
                let stop = item.is_err();
                if tx.blocking_send(item).is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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
