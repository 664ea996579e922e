//! `ecocode.v1.Ingest`: single records and client streams.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, ingest_server::Ingest};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::caller;
use crate::convert::{from_proto, to_proto};
use crate::error::{Error, Result};
use crate::principals::PrincipalStore;
use crate::service::Service;

/// Records of a stream are appended in chunks of this many, so a long
/// stream is durable as it goes and memory stays bounded.
const STREAM_CHUNK: usize = 1_000;
/// Rejections listed in one response; `rejected_count` counts them all.
pub const MAX_REJECTED_LISTED: usize = 1_000;

#[derive(Debug, Clone)]
pub struct IngestService {
    pub service: Arc<Service>,
    /// Most records one `AppendRecords` stream may carry (`--max-stream-records`).
    pub max_stream_records: u64,
    /// For the standing of callers with an open stream.
    pub principals: Arc<PrincipalStore>,
}

impl IngestService {
    /// Appends one chunk of a stream, converting at the edge: a record that
    /// does not convert is rejected at its own index, the others go on.
    async fn append_chunk(
        &self,
        who: &crate::principals::Principal,
        chunk: &[pb::Record],
    ) -> Vec<Result<ledger::Receipt>> {
        let mut results: Vec<Option<Result<ledger::Receipt>>> = Vec::with_capacity(chunk.len());
        let mut valid = Vec::with_capacity(chunk.len());
        let mut slots = Vec::with_capacity(chunk.len());
        for (i, record) in chunk.iter().enumerate() {
            match from_proto::record(record) {
                Ok(record) => {
                    valid.push(record);
                    slots.push(i);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e.into()))),
            }
        }
        let appended = self.service.append_records(who, valid).await;
        for (slot, result) in slots.into_iter().zip(appended) {
            results[slot] = Some(result);
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(Error::Internal("record was neither appended nor rejected".into())))
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn append_record(&self, request: Request<pb::Record>) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&request)?;
        let record = from_proto::record(request.get_ref()).map_err(Error::from)?;
        let receipt = self.service.append_record(&who, record).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn append_records(
        &self,
        request: Request<Streaming<pb::Record>>,
    ) -> Result<Response<pb::AppendRecordsResponse>, Status> {
        let who = caller(&request)?;
        // Authenticated once, when the stream opened: re-checked before
        // each chunk is appended, and the stream ends as soon as a reload
        // revokes the principal, even while it waits for the client.
        let mut standing = self.principals.standing(&who)?;
        let mut stream = request.into_inner();
        let mut response = pb::AppendRecordsResponse::default();
        let mut chunk = Vec::with_capacity(STREAM_CHUNK);
        let mut first_index = 0u64;
        // Entries the response's checkpoint must cover: every receipt's seq.
        let mut covered = 0u64;
        let mut over_limit = false;
        loop {
            let next = tokio::select! {
                biased;
                revoked = standing.revoked() => return Err(revoked.into()),
                next = stream.next() => next,
            };
            let end = match next {
                // One record too many ends the stream; the records before it
                // are still appended below, then the call is refused.
                Some(Ok(_)) if first_index + chunk.len() as u64 >= self.max_stream_records => {
                    over_limit = true;
                    true
                }
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
                // Records of a revoked principal not yet appended never are.
                standing.check()?;
                let results = self.append_chunk(&who, &chunk).await;
                for (offset, result) in results.into_iter().enumerate() {
                    if let Ok(receipt) = &result {
                        covered = covered.max(receipt.seq + 1);
                    }
                    match result {
                        Ok(receipt) if receipt.duplicate => response.duplicates += 1,
                        Ok(_) => response.accepted += 1,
                        Err(_) if response.rejected.len() == MAX_REJECTED_LISTED => {
                            response.rejected_count += 1
                        }
                        Err(e) => {
                            response.rejected_count += 1;
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
        if over_limit {
            return Err(Error::ResourceExhausted(format!(
                "a stream may carry at most {} records; those were processed \
                 ({} accepted, {} duplicates, {} rejected) and the rest refused; send it in a new stream",
                self.max_stream_records, response.accepted, response.duplicates, response.rejected_count
            ))
            .into());
        }
        let checkpoint = self.service.checkpoint_covering(&who, covered).await?;
        response.checkpoint = Some(to_proto::checkpoint(&checkpoint));
        Ok(Response::new(response))
    }
}
