//! `ecocode.v1.Ingest`: single records and client streams.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, ingest_server::Ingest};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::caller;
use crate::convert::to_proto;
use crate::error::Error;
use crate::state::AppState;

/// Records of a stream are appended in chunks of this many, so a long
/// stream is durable as it goes and memory stays bounded.
const STREAM_CHUNK: usize = 1_000;

#[derive(Debug, Clone)]
pub struct IngestService {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn append_record(&self, request: Request<pb::Record>) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&self.state, &request)?;
        let receipt = self.state.append_record(&who, request.get_ref()).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn append_records(
        &self,
        request: Request<Streaming<pb::Record>>,
    ) -> Result<Response<pb::AppendRecordsResponse>, Status> {
        let who = caller(&self.state, &request)?;
        let mut stream = request.into_inner();
        let mut response = pb::AppendRecordsResponse::default();
        let mut chunk = Vec::with_capacity(STREAM_CHUNK);
        let mut first_index = 0u64;
        loop {
            let next = stream.next().await;
            let end = match next {
                Some(Ok(record)) => {
                    chunk.push(record);
                    false
                }
                // A broken stream ends the call, but what was appended stays
                // appended: the client learns which by re-sending (duplicates).
                Some(Err(status)) => return Err(status),
                None => true,
            };
            if chunk.len() == STREAM_CHUNK || (end && !chunk.is_empty()) {
                let results = self.state.append_records(&who, &chunk).await;
                for (offset, result) in results.into_iter().enumerate() {
                    match result {
                        Ok(receipt) if receipt.duplicate => response.duplicates += 1,
                        Ok(_) => response.accepted += 1,
                        Err(e) => {
                            let status = Status::from(e);
                            response.rejected.push(pb::RecordError {
                                index: first_index + offset as u64,
                                code: format!("{:?}", status.code()),
                                message: status.message().to_owned(),
                            });
                        }
                    }
                }
                first_index += chunk.len() as u64;
                chunk.clear();
            }
            if end {
                break;
            }
        }
        let checkpoint = self.state.ledger.checkpoint().map_err(Error::from)?;
        response.checkpoint = Some(to_proto::checkpoint(&checkpoint));
        Ok(Response::new(response))
    }
}
