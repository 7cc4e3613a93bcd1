//! `GET /status`: what this edge holds now.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::Shared;

#[derive(Clone)]
struct StatusState {
    shared: Arc<Shared>,
    version: &'static str,
}

pub(crate) fn router(shared: Arc<Shared>, version: &'static str) -> Router {
    Router::new()
        .route("/status", get(status))
        .with_state(StatusState { shared, version })
}

async fn status(State(state): State<StatusState>) -> Json<Value> {
    let shared = &state.shared;
    let metrics = &shared.metrics;
    let draining = shared.shutdown.is_cancelled();
    Json(json!({
        "status": if draining { "draining" } else if shared.bus.is_connected() { "healthy" } else { "degraded" },
        "service": arqon_telemetry::ops::SERVICE_NAME,
        "component": "edge",
        "version": state.version,
        "edge_id": shared.edge_id.as_str(),
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "bus": {
            "backend": shared.bus.backend(),
            "connected": shared.bus.is_connected(),
        },
        "connections": {
            "open": shared.connections.len(),
            "admitted": shared.admitted.load(Ordering::Acquire),
            "max": shared.config.max_connections,
        },
        "rooms": shared.rooms.len(),
        "messages": {
            "frames_in": metrics.frames_in.get(),
            "bytes_in": metrics.bytes_in.get(),
            "frames_out": metrics.frames_out.get(),
            "bytes_out": metrics.bytes_out.get(),
            "fanout_deliveries": metrics.fanout_deliveries.get(),
        },
    }))
}
