//! Placeholder: being written.

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arqon_proto::operators::v1 as pb;

use crate::{OperatorsError, Shared};

/// Settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CronSettings {}

/// Metrics.
#[derive(Debug, Clone, Default)]
pub struct CronMetrics {}

impl CronMetrics {
    pub fn register(_registry: &mut Registry) -> Self {
        Self::default()
    }
}

/// The API.
#[derive(Debug, Clone)]
pub struct CronApi {}

pub(crate) async fn start(
    _shared: &Shared,
    _settings: &CronSettings,
    _tasks: &TaskTracker,
    _shutdown: CancellationToken,
) -> Result<CronApi, OperatorsError> {
    Ok(CronApi {})
}

#[tonic::async_trait]
impl pb::cron_server::Cron for CronApi {
    async fn schedule(
        &self,
        _request: tonic::Request<pb::ScheduleRequest>,
    ) -> Result<tonic::Response<pb::CronJob>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn list(
        &self,
        _request: tonic::Request<pb::ListJobsRequest>,
    ) -> Result<tonic::Response<pb::ListJobsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn cancel(
        &self,
        _request: tonic::Request<pb::CancelJobRequest>,
    ) -> Result<tonic::Response<pb::CancelJobResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }
}
