//! `ecocode.v1.Consent`: lender access grants, granted and revoked by the
//! enterprise, listed by each party.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, consent_server::Consent};
use scoring::Uscc;
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::convert::{from_proto, to_proto};
use crate::error::Error;
use crate::service::Service;

#[derive(Debug, Clone)]
pub struct ConsentService {
    pub service: Arc<Service>,
}

fn uscc(text: &str) -> Result<Uscc, Status> {
    Ok(Uscc::parse(text).map_err(Error::from)?)
}

#[tonic::async_trait]
impl Consent for ConsentService {
    async fn grant_access(
        &self,
        request: Request<pb::GrantAccessRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let who = caller(&request)?;
        let grant = request
            .get_ref()
            .grant
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("grant: is required".into()))?;
        let now = self.service.now();
        let grant = from_proto::access_grant(grant, now).map_err(Error::from)?;
        let state = self.service.grant_access(&who, grant).await?;
        Ok(Response::new(to_proto::grant(&state, self.service.now())))
    }

    async fn revoke_access(
        &self,
        request: Request<pb::RevokeAccessRequest>,
    ) -> Result<Response<pb::Grant>, Status> {
        let who = caller(&request)?;
        let r = request.get_ref();
        let state = self.service.revoke_access(&who, &uscc(&r.uscc)?, r.grant_seq).await?;
        Ok(Response::new(to_proto::grant(&state, self.service.now())))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let who = caller(&request)?;
        let r = request.get_ref();
        let filter = if r.uscc.is_empty() { None } else { Some(uscc(&r.uscc)?) };
        let grants = self.service.list_grants(&who, filter.as_ref()).await?;
        let now = self.service.now();
        Ok(Response::new(pb::ListGrantsResponse {
            grants: grants.iter().map(|g| to_proto::grant(g, now)).collect(),
        }))
    }
}
