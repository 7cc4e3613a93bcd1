//! The edge as a service of a process ([`arqon_service::Service`]): built from its
//! settings and the WebSocket listener the process bound, run until the shutdown token.

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use arqon_service::{Process, Readiness, Service};
use arqon_telemetry::metrics::HttpMetrics;

use crate::{Edge, EdgeConfig, EdgeError, EdgeMetrics};

/// What the edge is built from as a service of a process: its settings and the
/// WebSocket listener the process bound.
#[derive(Debug)]
pub struct EdgeSettings {
    pub config: EdgeConfig,
    pub listener: TcpListener,
}

/// The edge as a service of a process: the edge and the listener it serves.
#[derive(Debug)]
pub struct EdgeService {
    edge: Edge,
    listener: TcpListener,
    http_metrics: HttpMetrics,
    version: &'static str,
}

impl Service for EdgeService {
    type Settings = EdgeSettings;
    type Error = EdgeError;
    const NAME: &'static str = "edge";

    async fn build(settings: EdgeSettings, process: Process<'_>) -> Result<Self, EdgeError> {
        let metrics = EdgeMetrics::register(process.registry);
        let shutdown = process.shutdown.clone();
        let edge = Box::pin(Edge::start(
            settings.config,
            process.bus.clone(),
            metrics,
            shutdown,
        ))
        .await?;
        Ok(Self {
            edge,
            listener: settings.listener,
            http_metrics: process.http_metrics.clone(),
            version: process.version,
        })
    }

    fn http_routes(&self) -> Router {
        self.edge.status_router(self.version)
    }

    fn readiness(&self) -> Readiness {
        let edge = self.edge.clone();
        Arc::new(move || edge.unready_reasons())
    }

    async fn run(self) -> Result<(), EdgeError> {
        self.edge.serve(self.listener, &self.http_metrics).await
    }
}
