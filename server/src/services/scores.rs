//! `ecocode.v1.Scores`: single, portfolio, regional, historical and live
//! views of scores, and signed attestations.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use ecocode_proto::v1::{self as pb, scores_server::Scores};
use scoring::{Timestamp, Uscc};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::caller;
use crate::auth;
use crate::convert::{from_proto, to_proto};
use crate::error::{Error, Result};
use crate::principals::Principal;
use crate::state::{AppState, ScoreView};

pub const MAX_BATCH: usize = 10_000;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;
const MAX_HISTORY_POINTS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct ScoresService {
    pub state: Arc<AppState>,
}

impl ScoresService {
    /// Evaluates `uscc` for `who`, checking the caller may see it.
    fn score_for(
        &self,
        who: &Principal,
        uscc: &str,
        at: Option<Timestamp>,
        tree_size: u64,
    ) -> Result<ScoreView> {
        let uscc = Uscc::parse(uscc)?;
        auth::may_read_scores_at_all(who, uscc.as_str())?;
        let view = self.state.evaluate(uscc.as_str(), at, tree_size)?;
        auth::may_read_score(who, &view.enterprise)?;
        Ok(view)
    }
}

/// Runs CPU-bound evaluation off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("evaluation task failed: {e}")))?
}

type CodeStream = Pin<Box<dyn Stream<Item = Result<pb::CodeChange, Status>> + Send>>;

#[tonic::async_trait]
impl Scores for ScoresService {
    async fn get_score(&self, request: Request<pb::GetScoreRequest>) -> Result<Response<pb::Score>, Status> {
        let who = caller(&self.state, &request)?;
        let r = request.get_ref();
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let view = self.score_for(&who, &r.uscc, at, r.tree_size)?;
        Ok(Response::new(to_proto::score(&view)))
    }

    async fn batch_get_scores(
        &self,
        request: Request<pb::BatchGetScoresRequest>,
    ) -> Result<Response<pb::BatchGetScoresResponse>, Status> {
        let who = caller(&self.state, &request)?;
        let r = request.into_inner();
        if r.uscc.len() > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "uscc: at most {MAX_BATCH} per call, got {}",
                r.uscc.len()
            ))
            .into());
        }
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let mut usccs = Vec::with_capacity(r.uscc.len());
        for (i, s) in r.uscc.iter().enumerate() {
            let uscc =
                Uscc::parse(s).map_err(|e| Error::InvalidArgument(format!("uscc[{i}]: {}", e.rule)))?;
            auth::may_read_scores_at_all(&who, uscc.as_str())?;
            usccs.push(uscc);
        }
        let at = at.unwrap_or_else(|| self.state.clock.now());
        let state = self.state.clone();
        let response = blocking(move || {
            let mut response = pb::BatchGetScoresResponse::default();
            for uscc in usccs {
                match state.evaluate(uscc.as_str(), Some(at), 0) {
                    Ok(view) => {
                        auth::may_read_score(&who, &view.enterprise)?;
                        response.scores.push(to_proto::score(&view));
                    }
                    Err(Error::NotFound(_)) => response.not_found.push(uscc.to_string()),
                    Err(e) => return Err(e),
                }
            }
            Ok(response)
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn list_scores(
        &self,
        request: Request<pb::ListScoresRequest>,
    ) -> Result<Response<pb::ListScoresResponse>, Status> {
        let who = caller(&self.state, &request)?;
        let r = request.into_inner();
        let region = auth::list_scope(&who, &r.region_prefix)?;
        let codes = from_proto::codes(&r.codes).map_err(Error::from)?;
        let page_size = match r.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let after = decode_page_token(&r.page_token)?;
        let industry = r.industry_prefix;
        let at = self.state.clock.now();
        let state = self.state.clone();
        let response = blocking(move || {
            let mut response = pb::ListScoresResponse::default();
            let candidates = state.enterprises_after(&after, &region, &industry);
            let mut last_examined = None;
            for e in &candidates {
                if response.scores.len() == page_size {
                    break;
                }
                last_examined = Some(e.uscc.to_string());
                let view = state.evaluate(e.uscc.as_str(), Some(at), 0)?;
                if codes.is_empty() || codes.contains(&view.evaluation.code) {
                    response.scores.push(to_proto::score(&view));
                }
            }
            let examined_all = last_examined.as_deref() == candidates.last().map(|e| e.uscc.as_str());
            if !examined_all {
                response.next_page_token = encode_page_token(&last_examined.unwrap_or_default());
            }
            Ok(response)
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn get_score_history(
        &self,
        request: Request<pb::GetScoreHistoryRequest>,
    ) -> Result<Response<pb::GetScoreHistoryResponse>, Status> {
        let who = caller(&self.state, &request)?;
        let r = request.into_inner();
        let now = self.state.clock.now();
        let to = from_proto::optional_timestamp(r.to.as_ref(), "to").map_err(Error::from)?.unwrap_or(now);
        let from = from_proto::optional_timestamp(r.from.as_ref(), "from")
            .map_err(Error::from)?
            .unwrap_or(to.plus_days(-365));
        if from > to {
            return Err(Error::InvalidArgument(format!("from: {from} is after to ({to})")).into());
        }
        let first = self.score_for(&who, &r.uscc, Some(from), 0)?;
        let state = self.state.clone();
        let points = blocking(move || {
            let uscc = first.enterprise.uscc.to_string();
            let records = state.records_of(&uscc)?;
            let tree_size = first.tree_size;
            let changes = state.model.change_points(&records, from, to, tree_size);
            if changes.len() > MAX_HISTORY_POINTS {
                return Err(Error::InvalidArgument(format!(
                    "from/to: the period has {} change points, more than {MAX_HISTORY_POINTS}; ask for a shorter period",
                    changes.len()
                )));
            }
            let mut points = vec![to_proto::score(&first)];
            let mut last = (first.evaluation.points, first.evaluation.grade, first.evaluation.code);
            for t in changes {
                let evaluation = state.model.score(&records, t, tree_size);
                let key = (evaluation.points, evaluation.grade, evaluation.code);
                if key != last {
                    last = key;
                    let view = ScoreView { evaluation, ..first.clone() };
                    points.push(to_proto::score(&view));
                }
            }
            Ok(points)
        })
        .await?;
        Ok(Response::new(pb::GetScoreHistoryResponse { points }))
    }

    type WatchCodesStream = CodeStream;

    async fn watch_codes(
        &self,
        request: Request<pb::WatchCodesRequest>,
    ) -> Result<Response<Self::WatchCodesStream>, Status> {
        let who = caller(&self.state, &request)?;
        let r = request.into_inner();
        if r.uscc.is_empty() || r.uscc.len() > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "uscc: watch 1 to {MAX_BATCH} enterprises, got {}",
                r.uscc.len()
            ))
            .into());
        }
        // Subscribe before the first evaluation so no change falls between.
        let changes = self.state.subscribe_changes();
        let mut current = HashMap::new();
        for s in &r.uscc {
            let view = self.score_for(&who, s, None, 0)?;
            current.insert(view.enterprise.uscc.to_string(), view);
        }
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(crate::watch::run(self.state.clone(), current, changes, tx));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)) as CodeStream))
    }

    async fn get_attestation(
        &self,
        request: Request<pb::GetAttestationRequest>,
    ) -> Result<Response<pb::Attestation>, Status> {
        let who = caller(&self.state, &request)?;
        let r = request.get_ref();
        let at = from_proto::optional_timestamp(r.as_of.as_ref(), "as_of").map_err(Error::from)?;
        let view = self.score_for(&who, &r.uscc, at, r.tree_size)?;
        let body = crate::attestation::body(&self.state.origin, &view);
        let signed_note = self.state.ledger.sign_note(&body);
        Ok(Response::new(pb::Attestation {
            score: Some(to_proto::score(&view)),
            signed_note,
            public_key: self.state.ledger.public_key().to_vec(),
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
