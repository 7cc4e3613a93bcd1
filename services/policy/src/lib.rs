//! The policy stage: every inbound envelope the live policy applies to passes here
//! between the edge and the dispatcher, and CASIL decides what becomes of it. (The edges
//! send the others straight to the dispatcher, by the same rule, `arqon_casil::Engine::
//! applies`, and send everything here while they cannot follow the policy: ADR 019.)
//!
//! Policy replicas share one queue group on the ingress subjects, so each envelope is
//! inspected by exactly one of them. An envelope that passes goes on to the tenant's
//! dispatch subject (unchanged, or redacted and annotated); a blocked one goes nowhere and
//! its sender gets one error. The policy itself is stored on the bus ([`live`]): every
//! replica applies the newest version, and a reload through the gRPC API ([`grpc`])
//! reaches all of them.

mod grpc;
mod inspect;
pub mod kubernetes;
mod live;
mod metrics;
mod settings;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use arqon_bus::{Bus, BusError, Subscription};
use arqon_proto::grpc::{ServiceToken, require};
use arqon_proto::policy::v1::policy_server::PolicyServer;
use arqon_protocol::subject;
use arqon_service::{Process, RoutesBuilder, Service};

pub use grpc::PolicyApi;
pub use live::OpenError;
pub use metrics::PolicyMetrics;
pub use settings::{CasilSettings, SettingsError};

/// Settings of the policy service.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyConfig {
    /// Concurrent consumers in this replica (each a member of the policy queue group).
    #[arg(
        id = "policy_workers",
        long = "policy-workers",
        env = "ARQONBUS_POLICY_WORKERS",
        default_value_t = WORKERS,
        value_parser = clap::value_parser!(u16).range(1..=256),
    )]
    pub workers: u16,

    #[command(flatten)]
    pub casil: CasilSettings,

    /// Where the live policy comes from: `bus` (reloads over the API) or `kubernetes`
    /// (the `CasilPolicy` resource; reloads over the API are refused).
    #[arg(
        long = "policy-source",
        env = "ARQONBUS_POLICY_SOURCE",
        default_value_t = SourceKind::default(),
        value_enum
    )]
    pub source: SourceKind,

    /// The namespace of the `CasilPolicy` (default: the pod's own).
    #[arg(long = "policy-namespace", env = "ARQONBUS_POLICY_NAMESPACE")]
    pub namespace: Option<String>,

    /// The name of the `CasilPolicy` the fleet follows.
    #[arg(
        long = "policy-resource",
        env = "ARQONBUS_POLICY_RESOURCE",
        default_value = RESOURCE
    )]
    pub resource: String,

    /// The token callers of the gRPC API present (set by the binary from
    /// `ARQONBUS_SERVICE_TOKEN`); without it the API is not served over the network.
    #[arg(skip)]
    pub service_token: Option<ServiceToken>,
}

/// Default of `ARQONBUS_POLICY_WORKERS`.
pub const WORKERS: u16 = 2;
/// Default of `ARQONBUS_POLICY_RESOURCE`.
pub const RESOURCE: &str = "arqonbus";

/// Where the live policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SourceKind {
    /// Stored on the bus, changed by reloads.
    #[default]
    Bus,
    /// The `CasilPolicy` Kubernetes resource ([`kubernetes`]).
    Kubernetes,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

/// Why the policy service stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Store(#[from] OpenError),
    #[error("cannot reach the Kubernetes API (ARQONBUS_POLICY_SOURCE=kubernetes): {0}")]
    Kubernetes(#[from] kube::Error),
}

/// What every worker (and the API's inspections) shares.
#[derive(Debug)]
pub(crate) struct Context {
    bus: Bus,
    metrics: PolicyMetrics,
    store: live::Store,
}

/// A running policy stage.
#[derive(Debug)]
pub struct Policy {
    tasks: TaskTracker,
    api: PolicyApi,
    service_token: Option<ServiceToken>,
}

impl Policy {
    /// The control API, to call in process (a standalone dispatcher does).
    pub fn api(&self) -> PolicyApi {
        self.api.clone()
    }

    /// Adds the gRPC API, behind the service token, to `routes`; nothing without a token.
    pub fn add_grpc(&self, routes: &mut tonic::service::RoutesBuilder) {
        if let Some(token) = &self.service_token {
            routes.add_service(PolicyServer::with_interceptor(
                self.api.clone(),
                require(token.clone()),
            ));
        }
    }

    /// Waits until the stage has stopped (after `shutdown`).
    pub async fn wait(self) {
        self.tasks.wait().await;
        info!("policy stage stopped");
    }
}

impl Service for Policy {
    type Settings = PolicyConfig;
    type Error = PolicyError;
    const NAME: &'static str = "policy stage";

    async fn build(settings: PolicyConfig, process: Process<'_>) -> Result<Self, PolicyError> {
        let metrics = PolicyMetrics::register(process.registry);
        let shutdown = process.shutdown.clone();
        Box::pin(start(settings, process.bus.clone(), metrics, shutdown)).await
    }

    fn add_grpc(&self, routes: &mut RoutesBuilder) {
        Policy::add_grpc(self, routes);
    }

    async fn run(self) -> Result<(), PolicyError> {
        self.wait().await;
        Ok(())
    }
}

/// Loads the live policy (storing the one from the settings if the bus has none), joins
/// the policy queue group and follows reloads; returns once the subscriptions are
/// registered with the bus, so envelopes published from then on are inspected. Runs
/// until `shutdown`.
pub async fn start(
    config: PolicyConfig,
    bus: Bus,
    metrics: PolicyMetrics,
    shutdown: CancellationToken,
) -> Result<Policy, PolicyError> {
    let client = match config.source {
        SourceKind::Bus => None,
        SourceKind::Kubernetes => Some(Box::pin(kube::Client::try_default()).await?),
    };
    Box::pin(start_with(config, bus, metrics, client, shutdown)).await
}

/// [`start`], with the Kubernetes client given (tests point it at their own API).
pub async fn start_with(
    config: PolicyConfig,
    bus: Bus,
    metrics: PolicyMetrics,
    client: Option<kube::Client>,
    shutdown: CancellationToken,
) -> Result<Policy, PolicyError> {
    let seed = config.casil.policy()?;
    let (store, watch) = live::Store::open(&bus, seed, metrics.clone()).await?;
    let tasks = TaskTracker::new();
    tasks.spawn(store.clone().follow(watch, shutdown.clone()));
    let mut managed_by = None;
    if let Some(client) = client {
        let source = kubernetes::Source {
            namespace: config.namespace.clone(),
            name: config.resource.clone(),
        };
        let (namespace, name) = kubernetes::describe(&client, &source);
        info!(resource = %format!("{namespace}/{name}"), "the CasilPolicy resource is the policy's source");
        managed_by = Some(format!("{namespace}/{name}"));
        let run = kubernetes::run(
            client,
            source,
            bus.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(error = %e, "the CasilPolicy watcher stopped");
            }
        });
    }
    let context = Arc::new(Context {
        bus: bus.clone(),
        metrics,
        store: store.clone(),
    });
    let workers = |mut subscription: Subscription| {
        let (context, shutdown) = (Arc::clone(&context), shutdown.clone());
        async move {
            while let Some(message) = subscription.next_until(&shutdown).await {
                inspect::handle(&context, message).await;
            }
        }
    };
    let (ingress, group) = (subject::INGRESS_ALL, subject::POLICY_QUEUE);
    bus.spawn_queue_workers(ingress, group, config.workers, &tasks, workers)
        .await?;
    bus.flush().await?;
    // Listed in the console's overview (`overview`).
    arqon_proto::liveness::keep_alive(
        bus.clone(),
        "policy",
        arqon_proto::liveness::replica_id("policy"),
        env!("CARGO_PKG_VERSION"),
        &tasks,
        shutdown.clone(),
    );
    tasks.close();
    info!(workers = config.workers, "policy stage started");
    Ok(Policy {
        tasks,
        api: PolicyApi {
            context,
            managed_by,
        },
        service_token: config.service_token,
    })
}
