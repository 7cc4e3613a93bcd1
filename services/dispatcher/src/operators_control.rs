//! The operators service's APIs as the dispatcher calls them for `op.webhook.*`,
//! `op.cron.*`, `op.store.*` and `op.omega.*`: over gRPC with the service token, or in
//! process (standalone).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arqon_proto::grpc_trace::Traced;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use arqon_proto::grpc::{Bearer, ServiceToken};
use arqon_proto::operators::v1 as pb;
use arqon_proto::operators::v1::{
    cron_client::CronClient, cron_server::Cron, omega_client::OmegaClient, omega_server::Omega,
    store_client::StoreClient, store_server::Store, webhooks_client::WebhooksClient,
    webhooks_server::Webhooks,
};

/// Handles on the four APIs.
#[derive(Clone)]
pub struct OperatorsControl {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) webhook: Arc<dyn Webhooks>,
    pub(crate) cron: Arc<dyn Cron>,
    pub(crate) omega: Arc<dyn Omega>,
}

impl fmt::Debug for OperatorsControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorsControl")
    }
}

/// Why the APIs cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum OperatorsControlError {
    #[error("ARQONBUS_OPERATORS_URL {url:?} is not a valid URL: {error}")]
    Url { url: String, error: String },
    #[error(
        "ARQONBUS_OPERATORS_URL needs ARQONBUS_SERVICE_TOKEN, the token the operators service expects"
    )]
    NoToken,
    #[error("the service token cannot be used: {0}")]
    Token(&'static str),
}

/// The longest an operators call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Authenticated = InterceptedService<Traced<Channel>, Bearer>;

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
    pub fn remote(url: &str, token: Option<&ServiceToken>) -> Result<Self, OperatorsControlError> {
        let token = token.ok_or(OperatorsControlError::NoToken)?;
        let bearer = Bearer::new(token).map_err(OperatorsControlError::Token)?;
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| OperatorsControlError::Url {
                url: url.to_owned(),
                error: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        let channel = Traced::client(channel);
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

/// Runs one call, bounded by [`CALL_TIMEOUT`].
pub(crate) async fn call<T>(
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(
            "the operators service did not answer in time",
        )),
    }
}

/// Implements a server trait by forwarding every method to the generated client.
macro_rules! forward {
    ($remote:ident($client:ident): $service:ident { $($method:ident($request:ident) -> $response:ident),* $(,)? }) => {
        struct $remote($client<Authenticated>);

        #[tonic::async_trait]
        impl $service for $remote {
            $(
                async fn $method(
                    &self,
                    request: Request<pb::$request>,
                ) -> Result<Response<pb::$response>, Status> {
                    self.0.clone().$method(request).await
                }
            )*
        }
    };
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
