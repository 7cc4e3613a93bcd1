//! Placeholder: being written.

use arqon_proto::operators::v1 as pb;

use crate::{OperatorsError, Shared};

/// Settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OmegaSettings {}

/// The API.
#[derive(Debug, Clone)]
pub struct OmegaApi {}

pub(crate) async fn start(
    _shared: &Shared,
    _settings: &OmegaSettings,
) -> Result<OmegaApi, OperatorsError> {
    Ok(OmegaApi {})
}

#[tonic::async_trait]
impl pb::omega_server::Omega for OmegaApi {
    async fn status(
        &self,
        _request: tonic::Request<pb::OmegaStatusRequest>,
    ) -> Result<tonic::Response<pb::OmegaStatus>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn register_substrate(
        &self,
        _request: tonic::Request<pb::RegisterSubstrateRequest>,
    ) -> Result<tonic::Response<pb::Substrate>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn list_substrates(
        &self,
        _request: tonic::Request<pb::ListSubstratesRequest>,
    ) -> Result<tonic::Response<pb::ListSubstratesResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn unregister_substrate(
        &self,
        _request: tonic::Request<pb::UnregisterSubstrateRequest>,
    ) -> Result<tonic::Response<pb::UnregisterSubstrateResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn emit_event(
        &self,
        _request: tonic::Request<pb::EmitEventRequest>,
    ) -> Result<tonic::Response<pb::OmegaEvent>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn list_events(
        &self,
        _request: tonic::Request<pb::ListEventsRequest>,
    ) -> Result<tonic::Response<pb::ListEventsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn clear_events(
        &self,
        _request: tonic::Request<pb::ClearEventsRequest>,
    ) -> Result<tonic::Response<pb::ClearEventsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }
}
