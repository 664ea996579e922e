//! `ecocode.v1.Registry`: enterprises and monitoring points.

use std::sync::Arc;

use ecocode_proto::v1::{self as pb, registry_server::Registry};
use tonic::{Request, Response, Status};

use crate::auth::caller;
use crate::convert::{from_proto, to_proto};
use crate::error::Error;
use crate::service::Service;

#[derive(Debug, Clone)]
pub struct RegistryService {
    pub service: Arc<Service>,
}

#[tonic::async_trait]
impl Registry for RegistryService {
    async fn register_enterprise(
        &self,
        request: Request<pb::Enterprise>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&request)?;
        let enterprise = from_proto::enterprise(request.get_ref()).map_err(Error::from)?;
        let receipt = self.service.register(&who, enterprise).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn get_enterprise(
        &self,
        request: Request<pb::GetEnterpriseRequest>,
    ) -> Result<Response<pb::Enterprise>, Status> {
        let who = caller(&request)?;
        let uscc = scoring::Uscc::parse(&request.get_ref().uscc).map_err(Error::from)?;
        let enterprise = self.service.enterprise(&who, &uscc).await?;
        Ok(Response::new(to_proto::enterprise(&enterprise)))
    }

    async fn get_enterprise_history(
        &self,
        request: Request<pb::GetEnterpriseRequest>,
    ) -> Result<Response<pb::EnterpriseHistory>, Status> {
        let who = caller(&request)?;
        let uscc = scoring::Uscc::parse(&request.get_ref().uscc).map_err(Error::from)?;
        let versions = self.service.enterprise_history(&who, &uscc).await?;
        Ok(Response::new(to_proto::enterprise_history(&versions)))
    }

    async fn update_enterprise(
        &self,
        request: Request<pb::EnterpriseUpdate>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&request)?;
        let update = from_proto::enterprise_update_request(request.get_ref()).map_err(Error::from)?;
        let receipt = self.service.update_enterprise(&who, update).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn register_monitoring_point(
        &self,
        request: Request<pb::MonitoringPoint>,
    ) -> Result<Response<pb::Receipt>, Status> {
        let who = caller(&request)?;
        let point = from_proto::monitoring_point_registration(request.get_ref()).map_err(Error::from)?;
        let receipt = self.service.register_point(&who, point).await?;
        Ok(Response::new(to_proto::receipt(&receipt)))
    }

    async fn get_gateway_figures(
        &self,
        request: Request<pb::GetGatewayFiguresRequest>,
    ) -> Result<Response<pb::GatewayFigures>, Status> {
        let who = caller(&request)?;
        let figures = self.service.gateway_figures(&who, &request.get_ref().mn)?;
        Ok(Response::new(to_proto::gateway_figures(&figures)))
    }

    async fn get_monitoring_point(
        &self,
        request: Request<pb::GetMonitoringPointRequest>,
    ) -> Result<Response<pb::MonitoringPoint>, Status> {
        let who = caller(&request)?;
        let point = self.service.monitoring_point(&who, &request.get_ref().mn).await?;
        // The hash is in the ledger for whoever may read it there, but a
        // registry answer has no use for it.
        let answer =
            pb::MonitoringPoint { password_hash: String::new(), ..to_proto::monitoring_point(&point) };
        Ok(Response::new(answer))
    }
}
