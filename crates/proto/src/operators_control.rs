//! The operators service's APIs as the dispatcher calls them for `op.webhook.*`,
//! `op.cron.*`, `op.store.*` and `op.omega.*`: over gRPC with the service token, or in
//! process (standalone).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tonic::{Response, Status};

use crate::control::{CallError, ControlError, Service, forward};
use crate::grpc::ServiceToken;
use crate::operators::v1 as pb;
use crate::operators::v1::{
    cron_client::CronClient, cron_server::Cron, omega_client::OmegaClient, omega_server::Omega,
    store_client::StoreClient, store_server::Store, webhooks_client::WebhooksClient,
    webhooks_server::Webhooks,
};

/// The operators service, as its clients name it.
const OPERATORS: Service = Service {
    name: "operators",
    setting: "ARQONBUS_OPERATORS_URL",
};

/// Handles on the four APIs; run each call through [`call`].
#[derive(Clone)]
pub struct OperatorsControl {
    pub store: Arc<dyn Store>,
    pub webhook: Arc<dyn Webhooks>,
    pub cron: Arc<dyn Cron>,
    pub omega: Arc<dyn Omega>,
}

impl fmt::Debug for OperatorsControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorsControl")
    }
}

impl OperatorsControl {
    /// Calls the APIs directly, in this process.
    pub fn in_process(
        store: impl Store,
        webhook: impl Webhooks,
        cron: impl Cron,
        omega: impl Omega,
    ) -> Self {
        Self {
            store: Arc::new(store),
            webhook: Arc::new(webhook),
            cron: Arc::new(cron),
            omega: Arc::new(omega),
        }
    }

    /// Calls the operators service at `url`, connecting on first use.
    pub fn remote(url: &str, token: Option<&ServiceToken>) -> Result<Self, ControlError> {
        let (channel, bearer) = OPERATORS.connect(url, token)?;
        Ok(Self {
            store: Arc::new(RemoteStore(StoreClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ))),
            webhook: Arc::new(RemoteWebhooks(WebhooksClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ))),
            cron: Arc::new(RemoteCron(CronClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ))),
            omega: Arc::new(RemoteOmega(OmegaClient::with_interceptor(channel, bearer))),
        })
    }
}

/// Runs one call of an operators API, bounded by [`crate::control::CALL_TIMEOUT`]; `verb`
/// says what it does, for the caller's client should it fail.
pub async fn call<T>(
    verb: &'static str,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, CallError> {
    OPERATORS.call(verb, call).await
}

forward!(RemoteStore(StoreClient): Store {
    set(SetRequest) -> SetResponse,
    get(GetRequest) -> GetResponse,
    delete(DeleteRequest) -> DeleteResponse,
    list(ListRequest) -> ListResponse,
});

forward!(RemoteWebhooks(WebhooksClient): Webhooks {
    register(RegisterWebhookRequest) -> WebhookRule,
    list(ListWebhooksRequest) -> ListWebhooksResponse,
    unregister(UnregisterWebhookRequest) -> UnregisterWebhookResponse,
    queue_depth(WebhookQueueDepthRequest) -> WebhookQueueDepth,
    outcomes(WebhookOutcomesRequest) -> WebhookOutcomesResponse,
});

forward!(RemoteCron(CronClient): Cron {
    schedule(ScheduleRequest) -> CronJob,
    list(ListJobsRequest) -> ListJobsResponse,
    cancel(CancelJobRequest) -> CancelJobResponse,
});

forward!(RemoteOmega(OmegaClient): Omega {
    status(OmegaStatusRequest) -> OmegaStatus,
    register_substrate(RegisterSubstrateRequest) -> Substrate,
    list_substrates(ListSubstratesRequest) -> ListSubstratesResponse,
    unregister_substrate(UnregisterSubstrateRequest) -> UnregisterSubstrateResponse,
    emit_event(EmitEventRequest) -> OmegaEvent,
    list_events(ListEventsRequest) -> ListEventsResponse,
    clear_events(ClearEventsRequest) -> ClearEventsResponse,
});
