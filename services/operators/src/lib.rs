//! The operators service: webhooks, cron jobs, the tenant key-value store and the
//! Tier-Omega lane (`op.webhook.*`, `op.cron.*`, `op.store.*`, `op.omega.*`), each a
//! typed gRPC API (`proto/arqon/operators/v1`) that the dispatcher calls for WebSocket
//! clients and backends may call directly.
//!
//! All state lives in the bus (JetStream KV and streams, or their embedded equivalents),
//! so any replica answers any call and losing one loses nothing.

pub mod caller;
pub mod cron;
pub mod error;
pub mod omega;
pub mod owners;
pub mod store;
pub mod webhook;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use arqon_bus::{Bus, BusError};
use arqon_proto::grpc::{ServiceToken, require};
use arqon_proto::operators::v1::{
    cron_server::CronServer, omega_server::OmegaServer, store_server::StoreServer,
    webhooks_server::WebhooksServer,
};
use arqon_proto::policy_control::PolicyControl;
use arqon_service::{Process, RoutesBuilder, Service};
use prometheus_client::registry::Registry;

pub use caller::Caller;
pub use cron::{CronApi, CronSettings};
pub use omega::{OmegaApi, OmegaSettings};
pub use owners::Owners;
pub use store::{StoreApi, StoreSettings};
pub use webhook::{WebhookApi, WebhookSettings};

/// Settings of the operators service.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OperatorsConfig {
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub webhook: WebhookSettings,
    #[command(flatten)]
    pub cron: CronSettings,
    #[command(flatten)]
    pub omega: OmegaSettings,
    /// The token callers of the gRPC APIs present (set by the binary from
    /// `ARQONBUS_SERVICE_TOKEN`); without it the APIs are not served over the network.
    #[arg(skip)]
    pub service_token: Option<ServiceToken>,
    /// The policy service's gRPC API, e.g. `http://policy:9200` (needs the service
    /// token): every cron firing passes CASIL there before it is published. Required;
    /// standalone calls its policy stage in process.
    #[arg(
        id = "operators_policy_url",
        long = "operators-policy-url",
        env = "ARQONBUS_POLICY_URL"
    )]
    pub policy_url: Option<String>,
    /// The policy API in this process (standalone); wins over `policy_url`.
    #[arg(skip)]
    pub policy_control: Option<PolicyControl>,
}

/// Why the operators service stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum OperatorsError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("{0}")]
    Settings(String),
}

/// The metrics of every operator.
#[derive(Debug, Clone, Default)]
pub struct OperatorsMetrics {
    pub webhook: webhook::WebhookMetrics,
    pub cron: cron::CronMetrics,
}

impl OperatorsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            webhook: webhook::WebhookMetrics::register(registry),
            cron: cron::CronMetrics::register(registry),
        }
    }
}

/// What the operators share.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub(crate) bus: Bus,
    /// Where cron firings are inspected (CASIL).
    pub(crate) policy: PolicyControl,
    pub(crate) owners: Owners,
    pub(crate) metrics: OperatorsMetrics,
}

/// The four APIs, to call in process (a standalone dispatcher does).
#[derive(Debug, Clone)]
pub struct OperatorsApis {
    pub store: StoreApi,
    pub webhook: WebhookApi,
    pub cron: CronApi,
    pub omega: OmegaApi,
}

/// A running operators service.
#[derive(Debug)]
pub struct Operators {
    tasks: TaskTracker,
    apis: OperatorsApis,
    service_token: Option<ServiceToken>,
}

impl Operators {
    /// The APIs, to call in process.
    pub fn apis(&self) -> OperatorsApis {
        self.apis.clone()
    }

    /// Adds the gRPC APIs, behind the service token, to `routes`; nothing without one.
    pub fn add_grpc(&self, routes: &mut tonic::service::RoutesBuilder) {
        let Some(token) = &self.service_token else {
            return;
        };
        let apis = self.apis.clone();
        routes.add_service(StoreServer::with_interceptor(
            apis.store,
            require(token.clone()),
        ));
        routes.add_service(WebhooksServer::with_interceptor(
            apis.webhook,
            require(token.clone()),
        ));
        routes.add_service(CronServer::with_interceptor(
            apis.cron,
            require(token.clone()),
        ));
        routes.add_service(OmegaServer::with_interceptor(
            apis.omega,
            require(token.clone()),
        ));
    }

    /// Waits until every operator has stopped (after `shutdown`).
    pub async fn wait(self) {
        self.tasks.wait().await;
        info!("operators service stopped");
    }
}

impl Service for Operators {
    type Settings = OperatorsConfig;
    type Error = OperatorsError;
    const NAME: &'static str = "operators";

    async fn build(
        settings: OperatorsConfig,
        process: Process<'_>,
    ) -> Result<Self, OperatorsError> {
        let metrics = OperatorsMetrics::register(process.registry);
        let shutdown = process.shutdown.clone();
        Box::pin(start(settings, process.bus.clone(), metrics, shutdown)).await
    }

    fn add_grpc(&self, routes: &mut RoutesBuilder) {
        Operators::add_grpc(self, routes);
    }

    async fn run(self) -> Result<(), OperatorsError> {
        self.wait().await;
        Ok(())
    }
}

/// Opens every operator's state and starts their background work (webhook delivery, the
/// cron scheduler); runs until `shutdown`.
pub async fn start(
    config: OperatorsConfig,
    bus: Bus,
    metrics: OperatorsMetrics,
    shutdown: CancellationToken,
) -> Result<Operators, OperatorsError> {
    let policy = match (config.policy_control, &config.policy_url) {
        (Some(control), _) => control,
        (None, Some(url)) => PolicyControl::remote(url, config.service_token.as_ref())
            .map_err(|e| OperatorsError::Settings(e.to_string()))?,
        (None, None) => {
            return Err(OperatorsError::Settings(
                "ARQONBUS_POLICY_URL is required: cron firings pass CASIL at the policy service (e.g. http://policy:9200)".to_owned(),
            ));
        }
    };
    let tasks = TaskTracker::new();
    let owners = Owners::start(&bus, &tasks, shutdown.clone()).await?;
    let shared = Shared {
        bus,
        policy,
        owners,
        metrics,
    };
    let apis = OperatorsApis {
        store: store::start(&shared, &config.store).await?,
        webhook: webhook::start(&shared, &config.webhook, &tasks, shutdown.clone()).await?,
        cron: cron::start(&shared, &config.cron, &tasks, shutdown.clone()).await?,
        omega: omega::start(&shared, &config.omega).await?,
    };
    // Listed in the console's overview (`overview`).
    arqon_proto::liveness::keep_alive(
        shared.bus.clone(),
        "operators",
        arqon_proto::liveness::replica_id("operators"),
        env!("CARGO_PKG_VERSION"),
        &tasks,
        shutdown,
    );
    tasks.close();
    info!("operators service started");
    Ok(Operators {
        tasks,
        apis,
        service_token: config.service_token,
    })
}
