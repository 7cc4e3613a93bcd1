//! Placeholder: being written.

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arqon_proto::operators::v1 as pb;

use crate::{OperatorsError, Shared};

/// Settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookSettings {}

/// Metrics.
#[derive(Debug, Clone, Default)]
pub struct WebhookMetrics {}

impl WebhookMetrics {
    pub fn register(_registry: &mut Registry) -> Self {
        Self::default()
    }
}

/// The API.
#[derive(Debug, Clone)]
pub struct WebhookApi {}

pub(crate) async fn start(
    _shared: &Shared,
    _settings: &WebhookSettings,
    _tasks: &TaskTracker,
    _shutdown: CancellationToken,
) -> Result<WebhookApi, OperatorsError> {
    Ok(WebhookApi {})
}

#[tonic::async_trait]
impl pb::webhooks_server::Webhooks for WebhookApi {
    async fn register(
        &self,
        _request: tonic::Request<pb::RegisterWebhookRequest>,
    ) -> Result<tonic::Response<pb::WebhookRule>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn list(
        &self,
        _request: tonic::Request<pb::ListWebhooksRequest>,
    ) -> Result<tonic::Response<pb::ListWebhooksResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }

    async fn unregister(
        &self,
        _request: tonic::Request<pb::UnregisterWebhookRequest>,
    ) -> Result<tonic::Response<pb::UnregisterWebhookResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("being written"))
    }
}
