//! `ecocode.v1.Registry`: enterprises and monitoring points.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, registry_server::Registry};
use tonic::{Request, Response, Status};

use super::caller;
use crate::convert::to_proto;
use crate::error::Error;
use crate::state::AppState;

#[derive(Debug, Clone)]
pub struct RegistryService {
    pub state: Arc<AppState>,
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn register_enterprise(
        &self,
        request: Request<pb::Enterprise>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&self.state, &request)?;
        let receipt = self.state.register(&who, request.get_ref()).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn get_enterprise(
        &self,
        request: Request<pb::GetEnterpriseRequest>,
    ) -> Result<Response<pb::Enterprise>, Status> {
        let who = caller(&self.state, &request)?;
        let uscc = scoring::Uscc::parse(&request.get_ref().uscc).map_err(Error::from)?;
        crate::auth::may_read_scores_at_all(&who, uscc.as_str())?;
        let enterprise = self
            .state
            .enterprise(uscc.as_str())
            .ok_or_else(|| Error::NotFound(format!("enterprise {uscc} is not registered")))?;
        crate::auth::may_read_score(&who, &enterprise)?;
        Ok(Response::new(to_proto::enterprise(&enterprise)))
    }

    async fn register_monitoring_point(
        &self,
        request: Request<pb::MonitoringPoint>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&self.state, &request)?;
        let receipt = self.state.register_monitoring_point(&who, request.get_ref()).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn get_monitoring_point(
        &self,
        request: Request<pb::GetMonitoringPointRequest>,
    ) -> Result<Response<pb::MonitoringPoint>, Status> {
        let who = caller(&self.state, &request)?;
        let point = self.state.monitoring_point_for(&who, &request.get_ref().mn)?;
        Ok(Response::new(point))
    }
}
