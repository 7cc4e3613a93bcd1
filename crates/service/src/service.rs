//! The interface every service has: built from its settings, run until the process's
//! shutdown token, then drained; with its gRPC APIs, its HTTP routes and its part of
//! `/ready`. `arqonbus` runs any set of them in one process through it.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use arqon_bus::Bus;
use arqon_telemetry::metrics::HttpMetrics;

pub use tonic::service::RoutesBuilder;

/// What a process gives each service it builds.
#[derive(Debug)]
pub struct Process<'a> {
    /// The process's bus.
    pub bus: &'a Bus,
    /// Where the service registers its metrics (`/metrics`).
    pub registry: &'a mut Registry,
    /// The process's HTTP metrics, for the routes a service serves itself.
    pub http_metrics: &'a HttpMetrics,
    /// The process's one shutdown token: cancelled, every service drains.
    pub shutdown: &'a CancellationToken,
    /// The version the process reports (`/version`, the edge's `/status`).
    pub version: &'static str,
}

/// Why a service cannot take work now (its part of `/ready`); empty when it can.
pub type Readiness = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// A service: settings → build → run until the shutdown token.
pub trait Service: Sized + Send + 'static {
    /// What it is built from: its flags (and, for the edge, its listener).
    type Settings: Send;
    /// Why it could not start, or stopped.
    type Error: std::error::Error + Send + Sync + 'static;
    /// What it is called in messages: "starting the {NAME}".
    const NAME: &'static str;

    /// Registers its metrics, opens its state and subscribes; returns once it takes
    /// work, so what a process starts after it finds it listening.
    fn build(
        settings: Self::Settings,
        process: Process<'_>,
    ) -> impl Future<Output = Result<Self, Self::Error>> + Send;

    /// Adds its gRPC APIs to `routes`; none without a service token.
    fn add_grpc(&self, _routes: &mut RoutesBuilder) {}

    /// Its HTTP routes beside `/health`, `/ready`, `/version` and `/metrics`.
    fn http_routes(&self) -> Router {
        Router::new()
    }

    /// Its part of `/ready`, asked on every probe, also while it runs.
    fn readiness(&self) -> Readiness {
        Arc::new(Vec::new)
    }

    /// Runs until the shutdown token is cancelled, then finishes its work.
    fn run(self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
