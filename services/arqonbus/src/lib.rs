//! The `arqonbus` binary as a library: it runs one service or all of them in one process,
//! on listeners the caller has bound, until a shutdown token is cancelled.
//!
//! `main.rs` only parses the command line, sets up logging and handles signals; the
//! command's [`Plan`] binds and runs it. Tests call [`serve`] with port-0 listeners and
//! run exactly what the binary runs. Each service is built and run through the same
//! interface, `arqon_service::Service` (`host.rs`).

mod bus_metrics;
pub mod cli;
mod dev;
pub mod effective;
pub mod healthcheck;
mod host;
mod plan;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use arqon_bus::{Bus, NatsOptions};
use arqon_dispatcher::{
    Dispatcher, DispatcherConfig, OperatorsControl, PolicyControl, ServiceToken,
};
use arqon_edge::{EdgeConfig, EdgeService, EdgeSettings};
use arqon_operators::{Operators, OperatorsConfig};
use arqon_policy::{Policy, PolicyConfig};

use host::Host;

pub use dev::{DevCredentials, dev_credentials};
pub use plan::Plan;

/// The version every service reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Which services this process runs.
#[derive(Debug, Clone, Default)]
pub struct Services {
    pub edge: Option<EdgeConfig>,
    pub policy: Option<PolicyConfig>,
    pub dispatcher: Option<DispatcherConfig>,
    pub operators: Option<OperatorsConfig>,
}

impl Services {
    /// All four, as `arqonbus standalone` runs them.
    pub fn all(
        edge: EdgeConfig,
        policy: PolicyConfig,
        dispatcher: DispatcherConfig,
        operators: OperatorsConfig,
    ) -> Self {
        Self {
            edge: Some(edge),
            policy: Some(policy),
            dispatcher: Some(dispatcher),
            operators: Some(operators),
        }
    }

    pub fn edge(edge: EdgeConfig) -> Self {
        Self {
            edge: Some(edge),
            ..Self::default()
        }
    }

    pub fn policy(policy: PolicyConfig) -> Self {
        Self {
            policy: Some(policy),
            ..Self::default()
        }
    }

    pub fn dispatcher(dispatcher: DispatcherConfig) -> Self {
        Self {
            dispatcher: Some(dispatcher),
            ..Self::default()
        }
    }

    pub fn operators(operators: OperatorsConfig) -> Self {
        Self {
            operators: Some(operators),
            ..Self::default()
        }
    }

    /// Gives `token` to the services with a gRPC API (they serve it only with one), to
    /// the dispatcher (it presents it to the policy service), and to the edge (the
    /// console's operator login, when that is on).
    pub fn with_service_token(mut self, token: Option<ServiceToken>) -> Self {
        if let Some(edge) = self.edge.as_mut() {
            edge.service_token.clone_from(&token);
        }
        if let Some(policy) = self.policy.as_mut() {
            policy.service_token.clone_from(&token);
        }
        if let Some(operators) = self.operators.as_mut() {
            operators.service_token.clone_from(&token);
        }
        if let Some(dispatcher) = self.dispatcher.as_mut() {
            dispatcher.service_token = token;
        }
        self
    }
}

/// Listeners bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Required when the edge runs.
    pub websocket: Option<TcpListener>,
    /// `/health`, `/ready`, `/version`.
    pub http: TcpListener,
    /// The gRPC APIs of the policy stage and the dispatcher (those with a service token).
    pub grpc: Option<TcpListener>,
}

/// Connects to NATS when `url` is set (one URL or a comma-separated seed list);
/// otherwise the embedded bus if `embedded_allowed`.
pub async fn connect_bus(
    url: Option<&str>,
    options: NatsOptions,
    embedded_allowed: bool,
) -> anyhow::Result<Bus> {
    match url {
        Some(url) => Bus::connect_nats(url, options)
            .await
            .with_context(|| format!("connecting to NATS at {url}")),
        None if embedded_allowed => {
            info!("no NATS URL configured: using the embedded in-process bus");
            Ok(Bus::embedded(Default::default()))
        }
        None => anyhow::bail!(
            "{} needs NATS: set ARQONBUS_NATS_URL (or --nats-url), or run `arqonbus standalone`",
            options.name
        ),
    }
}

/// Runs `services` on `bus` until `shutdown`, then drains them. The policy stage and the
/// dispatcher subscribe before the edge accepts its first connection. The HTTP listener
/// serves `/health`, `/ready`, `/version`, `/metrics`, and the edge's `/status`.
pub async fn serve(
    component: &'static str,
    services: Services,
    bus: Bus,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // As `main` does: the one TLS provider (ring), also when serving in process (tests,
    // benches); the webhook HTTP client cannot be built without it.
    arqon_edge::install_crypto_provider();
    let mut host = Host::new(bus, shutdown);
    // Services in this process call each other in process.
    let mut policy_api = None;
    if let Some(config) = services.policy {
        let policy: Policy = host.build(config).await?;
        policy_api = Some(policy.api());
        host.run(policy);
    }
    let mut operators_apis = None;
    if let Some(mut config) = services.operators {
        // Cron firings pass the policy stage in this process.
        if let Some(api) = &policy_api
            && config.policy_url.is_none()
        {
            config.policy_control = Some(PolicyControl::in_process(api.clone()));
        }
        let operators: Operators = host.build(config).await?;
        operators_apis = Some(operators.apis());
        host.run(operators);
    }
    if let Some(mut config) = services.dispatcher {
        if let Some(api) = policy_api
            && config.policy_url.is_none()
        {
            config.policy_control = Some(PolicyControl::in_process(api));
        }
        if let Some(apis) = operators_apis
            && config.operators_url.is_none()
        {
            config.operators_control = Some(OperatorsControl::in_process(
                apis.store,
                apis.webhook,
                apis.cron,
                apis.omega,
            ));
        }
        let dispatcher: Dispatcher = host.build(config).await?;
        host.run(dispatcher);
    }
    if let Some(config) = services.edge {
        let listener = listeners
            .websocket
            .context("the edge needs a WebSocket listener")?;
        let edge: EdgeService = host.build(EdgeSettings { config, listener }).await?;
        host.run(edge);
    }
    host.serve(component, listeners.http, listeners.grpc).await
}
