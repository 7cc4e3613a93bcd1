//! The `arqonbus` binary as a library: it runs one service or all of them in one process,
//! on listeners the caller has bound, until a shutdown token is cancelled.
//!
//! `main.rs` only parses flags, sets up logging, binds, and handles signals; tests call
//! [`serve`] with port-0 listeners and run exactly what the binary runs.

mod bus_metrics;
pub mod cli;
mod dev;
pub mod effective;
pub mod healthcheck;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use axum::Router;

use arqon_bus::{Bus, NatsOptions};
use arqon_dispatcher::{
    DispatcherConfig, DispatcherMetrics, OperatorsControl, PolicyControl, ServiceToken,
};
use arqon_edge::{Edge, EdgeConfig, EdgeMetrics};
use arqon_operators::{OperatorsConfig, OperatorsMetrics};
use arqon_policy::{PolicyConfig, PolicyMetrics};
use arqon_telemetry::metrics::{HttpMetrics, Registry, metrics_router};
use arqon_telemetry::ops;

use bus_metrics::BusCollector;

pub use dev::{DevCredentials, dev_credentials};

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

    /// Gives `token` to the services with a gRPC API (they serve it only with one) and to
    /// the dispatcher (it presents it to the policy service).
    pub fn with_service_token(mut self, token: Option<ServiceToken>) -> Self {
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

type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

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
    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    arqon_telemetry::traces::register_metrics(&mut registry);
    registry.register_collector(Box::new(BusCollector(bus.clone())));
    let mut tasks: Vec<Task> = Vec::new();
    let mut grpc = tonic::service::RoutesBuilder::default();
    let mut policy_api = None;
    if let Some(config) = services.policy {
        let metrics = PolicyMetrics::register(&mut registry);
        let policy = arqon_policy::start(config, bus.clone(), metrics, shutdown.clone())
            .await
            .context("starting the policy stage")?;
        policy.add_grpc(&mut grpc);
        policy_api = Some(policy.api());
        tasks.push(Box::pin(async move {
            policy.wait().await;
            Ok(())
        }));
    }
    let mut operators_apis = None;
    if let Some(mut config) = services.operators {
        // Cron firings pass the policy stage in this process.
        if let Some(api) = &policy_api
            && config.policy_url.is_none()
        {
            config.policy_control = Some(PolicyControl::in_process(api.clone()));
        }
        let metrics = OperatorsMetrics::register(&mut registry);
        let operators = arqon_operators::start(config, bus.clone(), metrics, shutdown.clone())
            .await
            .context("starting the operators")?;
        operators.add_grpc(&mut grpc);
        operators_apis = Some(operators.apis());
        tasks.push(Box::pin(async move {
            operators.wait().await;
            Ok(())
        }));
    }
    if let Some(mut config) = services.dispatcher {
        // Services in this process are called in process.
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
        let metrics = DispatcherMetrics::register(&mut registry);
        let dispatcher = arqon_dispatcher::start(config, bus.clone(), metrics, shutdown.clone())
            .await
            .context("starting the dispatcher")?;
        dispatcher.add_grpc(&mut grpc);
        tasks.push(Box::pin(async move {
            dispatcher.wait().await;
            Ok(())
        }));
    }
    if let Some(listener) = listeners.grpc {
        let stop = shutdown.clone();
        let served = arqon_proto::grpc::serve(grpc.routes(), listener, stop.cancelled_owned());
        tasks.push(Box::pin(async move {
            served.await.context("serving the gRPC APIs")
        }));
    }
    let mut http = Router::new();
    let mut edge_handle = None;
    if let Some(config) = services.edge {
        let listener = listeners
            .websocket
            .context("the edge needs a WebSocket listener")?;
        let metrics = EdgeMetrics::register(&mut registry);
        let edge = Edge::start(config, bus.clone(), metrics, shutdown.clone())
            .await
            .context("starting the edge")?;
        http = http.merge(edge.status_router(VERSION));
        edge_handle = Some(edge.clone());
        let ws_metrics = http_metrics.clone();
        tasks.push(Box::pin(async move {
            edge.serve(listener, &ws_metrics)
                .await
                .context("serving WebSockets")
        }));
    }
    let ready_bus = bus.clone();
    let ready_shutdown = shutdown.clone();
    let ready: ops::ReadinessCheck = Arc::new(move || {
        let mut reasons = edge_handle
            .as_ref()
            .map(Edge::unready_reasons)
            .unwrap_or_default();
        if ready_shutdown.is_cancelled() && reasons.is_empty() {
            reasons.push("shutting down".to_owned());
        }
        if !ready_bus.is_connected() {
            reasons.push("bus is not connected".to_owned());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    });
    let http = http
        .merge(ops::router(component, VERSION, ready))
        .merge(metrics_router(Arc::new(registry)));
    let http = http_metrics.instrument(http);
    // The HTTP endpoints stay up while the services drain, so probes see `/ready` turn
    // 503 and `/metrics` stays scrapable until the end.
    let http_stop = CancellationToken::new();
    let http_server = axum::serve(listeners.http, http)
        .with_graceful_shutdown(http_stop.clone().cancelled_owned());
    info!(component, version = VERSION, "running");
    let services = async {
        let result = futures_util::future::try_join_all(tasks).await;
        http_stop.cancel();
        result
    };
    let (services, served) = tokio::join!(services, async {
        http_server.await.context("serving HTTP")
    });
    services?;
    served?;
    Ok(())
}
