//! One process's services on one bus: each built through the same interface
//! ([`Service`]), their gRPC APIs on one listener, their HTTP routes beside `/health`,
//! `/ready`, `/version` and `/metrics` on another, run until the shutdown token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use arqon_bus::Bus;
use arqon_service::{Process, Readiness, RoutesBuilder, Service};
use arqon_telemetry::metrics::{HttpMetrics, Registry, metrics_router};
use arqon_telemetry::ops;

use crate::VERSION;
use crate::bus_metrics::BusCollector;

type Task = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The services of one process, as they are built and until they have run.
pub(crate) struct Host {
    bus: Bus,
    shutdown: CancellationToken,
    registry: Registry,
    http_metrics: HttpMetrics,
    grpc: RoutesBuilder,
    http: Router,
    readiness: Vec<Readiness>,
    tasks: Vec<Task>,
}

impl Host {
    pub(crate) fn new(bus: Bus, shutdown: CancellationToken) -> Self {
        let mut registry = Registry::default();
        let http_metrics = HttpMetrics::register(&mut registry);
        arqon_telemetry::traces::register_metrics(&mut registry);
        registry.register_collector(Box::new(BusCollector(bus.clone())));
        Self {
            bus,
            shutdown,
            registry,
            http_metrics,
            grpc: RoutesBuilder::default(),
            http: Router::new(),
            readiness: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Builds `S` from `settings`; it is listening once this returns.
    pub(crate) async fn build<S: Service>(&mut self, settings: S::Settings) -> anyhow::Result<S> {
        let process = Process {
            bus: &self.bus,
            registry: &mut self.registry,
            http_metrics: &self.http_metrics,
            shutdown: &self.shutdown,
            version: VERSION,
        };
        S::build(settings, process)
            .await
            .with_context(|| format!("starting the {}", S::NAME))
    }

    /// Adds `service`'s APIs, routes and readiness, and runs it with the others.
    pub(crate) fn run<S: Service>(&mut self, service: S) {
        service.add_grpc(&mut self.grpc);
        self.http = std::mem::take(&mut self.http).merge(service.http_routes());
        self.readiness.push(service.readiness());
        self.tasks.push(Box::pin(async move {
            service
                .run()
                .await
                .with_context(|| format!("running the {}", S::NAME))
        }));
    }

    /// Runs everything until the shutdown token, then until every service has drained;
    /// the HTTP endpoints stay up until then, so probes see `/ready` turn 503 and
    /// `/metrics` stays scrapable to the end.
    pub(crate) async fn serve(
        mut self,
        component: &'static str,
        http: TcpListener,
        grpc: Option<TcpListener>,
    ) -> anyhow::Result<()> {
        if let Some(listener) = grpc {
            let routes = std::mem::take(&mut self.grpc).routes();
            let served =
                arqon_proto::grpc::serve(routes, listener, self.shutdown.clone().cancelled_owned());
            self.tasks.push(Box::pin(async move {
                served.await.context("serving the gRPC APIs")
            }));
        }
        let ready = readiness(self.readiness, self.bus.clone(), self.shutdown.clone());
        let router = self
            .http
            .merge(ops::router(component, VERSION, ready))
            .merge(metrics_router(Arc::new(self.registry)));
        let router = self.http_metrics.instrument(router);
        let http_stop = CancellationToken::new();
        let http_server =
            axum::serve(http, router).with_graceful_shutdown(http_stop.clone().cancelled_owned());
        info!(component, version = VERSION, "running");
        let services = async {
            let result = futures_util::future::try_join_all(self.tasks).await;
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
}

/// `/ready`: the services' reasons, "shutting down" once the token is cancelled (when no
/// service says more), and the bus's connection.
fn readiness(
    services: Vec<Readiness>,
    bus: Bus,
    shutdown: CancellationToken,
) -> ops::ReadinessCheck {
    Arc::new(move || {
        let mut reasons: Vec<String> = services.iter().flat_map(|ready| ready()).collect();
        if shutdown.is_cancelled() && reasons.is_empty() {
            reasons.push("shutting down".to_owned());
        }
        if !bus.is_connected() {
            reasons.push("bus is not connected".to_owned());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    })
}
