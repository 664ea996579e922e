//! `ecocode.v1.Scores`: single, portfolio, regional, historical and live
//! views of scores, and signed attestations.

use std::sync::Arc;

use base64::Engine;
use ecocode_proto::v1::{self as pb, scores_server::Scores};
use scoring::Uscc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::auth::{caller, purpose};
use crate::convert::{from_proto, to_proto};
use crate::error::{Error, Result};
use crate::principals::PrincipalStore;
use crate::service::{CodeChange, ListQuery, MAX_BATCH, Service};

/// Bytes of a score proof per streamed message: well below gRPC's 4 MiB.
const SCORE_PROOF_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ScoresService {
    pub service: Arc<Service>,
    /// For the standing of callers with an open watch.
    pub principals: Arc<PrincipalStore>,
}

/// USCCs of a request, each error naming its index.
fn usccs(texts: &[String]) -> Result<Vec<Uscc>> {
    if texts.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "uscc: at most {MAX_BATCH} per call, got {}",
            texts.len()
        )));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, s)| Uscc::parse(s).map_err(|e| Error::InvalidArgument(format!("uscc[{i}]: {}", e.rule))))
        .collect()
}

fn code_change(change: CodeChange) -> pb::CodeChange {
    pb::CodeChange {
        uscc: change.uscc.to_string(),
        previous: change.previous.map_or(pb::EcoCode::Unspecified, to_proto::code).into(),
        current: to_proto::code(change.view.evaluation.code).into(),
        score: Some(to_proto::score(&change.view)),
    }
}

#[tonic::async_trait]
impl Scores for ScoresService {
    async fn get_score(&self, request: Request<pb::GetScoreRequest>) -> Result<Response<pb::Score>, Status> {
        let who = caller(&request)?;
        let r = request.get_ref();
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let uscc = Uscc::parse(&r.uscc).map_err(Error::from)?;
        let view = self.service.score(&who, &purpose(&request), &uscc, at, r.tree_size).await?;
        Ok(Response::new(to_proto::score(&view)))
    }

    async fn batch_get_scores(
        &self,
        request: Request<pb::BatchGetScoresRequest>,
    ) -> Result<Response<pb::BatchGetScoresResponse>, Status> {
        let (who, purpose) = (caller(&request)?, purpose(&request));
        let r = request.into_inner();
        let usccs = usccs(&r.uscc)?;
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let answer = self.service.batch_scores(&who, &purpose, usccs, at).await?;
        Ok(Response::new(pb::BatchGetScoresResponse {
            scores: answer.scores.iter().map(to_proto::score).collect(),
            not_found: answer.not_found.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let query = ListQuery {
            codes: from_proto::codes(&r.codes).map_err(Error::from)?,
            mee_levels: from_proto::mee_levels(&r.mee_levels).map_err(Error::from)?,
            after: decode_page_token(&r.page_token)?,
            page_size: r.page_size as usize,
            region_prefix: r.region_prefix,
            industry_prefix: r.industry_prefix,
            include_closed: r.include_closed,
        };
        let page = self.service.list_scores(&who, query).await?;
        Ok(Response::new(pb::ListScoresResponse {
            scores: page.scores.iter().map(to_proto::score).collect(),
            next_page_token: page.next_after.as_deref().map(encode_page_token).unwrap_or_default(),
        }))
    }

    async fn get_score_history(
        &self,
        request: Request<pb::GetScoreHistoryRequest>,
    ) -> Result<Response<pb::GetScoreHistoryResponse>, Status> {
        let (who, purpose) = (caller(&request)?, purpose(&request));
        let r = request.into_inner();
        let to = from_proto::optional_timestamp(r.to.as_ref(), "to").map_err(Error::from)?;
        let from = from_proto::optional_timestamp(r.from.as_ref(), "from").map_err(Error::from)?;
        let uscc = Uscc::parse(&r.uscc).map_err(Error::from)?;
        let points = self.service.score_history(&who, &purpose, &uscc, from, to).await?;
        Ok(Response::new(pb::GetScoreHistoryResponse {
            points: points.iter().map(to_proto::score).collect(),
        }))
    }

    type WatchCodesStream = super::CallStream<pb::CodeChange>;

    async fn watch_codes(
        &self,
        request: Request<pb::WatchCodesRequest>,
    ) -> Result<Response<Self::WatchCodesStream>, Status> {
        let (who, purpose) = (caller(&request)?, purpose(&request));
        let r = request.into_inner();
        let usccs = usccs(&r.uscc)?;
        let standing = self.principals.standing(&who)?;
        let changes = self.service.watch(&who, &purpose, &usccs).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(changes)
            .map(|change| change.map(code_change).map_err(Status::from));
        Ok(Response::new(super::until_revoked(stream, standing)))
    }

    async fn get_attestation(
        &self,
        request: Request<pb::GetAttestationRequest>,
    ) -> Result<Response<pb::Attestation>, Status> {
        let who = caller(&request)?;
        let r = request.get_ref();
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let uscc = Uscc::parse(&r.uscc).map_err(Error::from)?;
        let (view, signed_note) =
            self.service.attestation(&who, &purpose(&request), &uscc, at, r.tree_size).await?;
        Ok(Response::new(pb::Attestation {
            score: Some(to_proto::score(&view)),
            signed_note,
            public_key: self.service.public_key().to_vec(),
        }))
    }

    type GetScoreProofStream = super::CallStream<pb::ScoreProofChunk>;

    /// The bundle is built whole (bounded by `MAX_PROOF_ENTRIES`), then sent
    /// in chunks below gRPC's message limit.
    async fn get_score_proof(
        &self,
        request: Request<pb::GetScoreProofRequest>,
    ) -> Result<Response<Self::GetScoreProofStream>, Status> {
        let who = caller(&request)?;
        let r = request.get_ref();
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let uscc = Uscc::parse(&r.uscc).map_err(Error::from)?;
        let bundle = self.service.score_proof(&who, &purpose(&request), &uscc, r.tree_size, at).await?;
        let chunks: Vec<Result<pb::ScoreProofChunk, Status>> = bundle
            .chunks(SCORE_PROOF_CHUNK)
            .map(|c| Ok(pb::ScoreProofChunk { bundle: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn list_inquiries(
        &self,
        request: Request<pb::ListInquiriesRequest>,
    ) -> Result<Response<pb::ListInquiriesResponse>, Status> {
        let who = caller(&request)?;
        let r = request.into_inner();
        let uscc = match r.uscc.as_str() {
            "" => None,
            text => Some(Uscc::parse(text).map_err(Error::from)?),
        };
        let from = from_proto::optional_timestamp(r.from.as_ref(), "from").map_err(Error::from)?;
        let to = from_proto::optional_timestamp(r.to.as_ref(), "to").map_err(Error::from)?;
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| {
                Error::InvalidArgument("page_token: not a token returned by ListInquiries".into())
            })?),
        };
        let page =
            self.service.list_inquiries(&who, uscc.as_ref(), from, to, r.page_size as usize, after).await?;
        Ok(Response::new(pb::ListInquiriesResponse {
            inquiries: page.inquiries.iter().map(to_proto::inquiry).collect(),
            next_page_token: page
                .next
                .map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k))
                .unwrap_or_default(),
        }))
    }
}

fn encode_page_token(after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{after}"))
}

fn decode_page_token(token: &str) -> Result<String> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let invalid = || Error::InvalidArgument("page_token: not a token returned by ListScores".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix("v1:").map(str::to_owned).ok_or_else(invalid)
}
