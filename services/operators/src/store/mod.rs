//! Placeholder: being written.

use arqon_proto::operators::v1 as pb;

use crate::{OperatorsError, Shared};

/// Settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreSettings {}

/// The API.
#[derive(Debug, Clone)]
pub struct StoreApi {}

pub(crate) async fn start(
    _shared: &Shared,
    _settings: &StoreSettings,
) -> Result<StoreApi, OperatorsError> {
    Ok(StoreApi {})
}

#[tonic::async_trait]
impl pb::store_server::Store for StoreApi {
    async fn set(
        &self,
        _request: tonic::Request<pb::SetRequest>,
    ) -> Result<tonic::Response<pb::SetResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn get(
        &self,
        _request: tonic::Request<pb::GetRequest>,
    ) -> Result<tonic::Response<pb::GetResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn delete(
        &self,
        _request: tonic::Request<pb::DeleteRequest>,
    ) -> Result<tonic::Response<pb::DeleteResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn list(
        &self,
        _request: tonic::Request<pb::ListRequest>,
    ) -> Result<tonic::Response<pb::ListResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }
}
