//! The operational HTTP endpoints every service serves on its HTTP port.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

/// The name every service reports, as the original did.
pub const SERVICE_NAME: &str = "arqonbus";

/// Answers whether the process can do its work now; each `Err` names what is missing.
pub type ReadinessCheck = Arc<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

#[derive(Clone)]
struct Ops {
    component: &'static str,
    version: &'static str,
    ready: ReadinessCheck,
}

/// `/health` (the process is alive), `/ready` (its dependencies are connected: 503
/// otherwise, with the reasons) and `/version`.
pub fn router(component: &'static str, version: &'static str, ready: ReadinessCheck) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(readiness))
        .route("/version", get(version_info))
        .with_state(Ops {
            component,
            version,
            ready,
        })
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false)
}

async fn health(State(ops): State<Ops>) -> impl IntoResponse {
    Json(json!({
        "status": "healthy",
        "service": SERVICE_NAME,
        "component": ops.component,
        "timestamp": now(),
    }))
}

async fn readiness(State(ops): State<Ops>) -> impl IntoResponse {
    match (ops.ready)() {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reasons": reasons })),
        ),
    }
}

async fn version_info(State(ops): State<Ops>) -> impl IntoResponse {
    Json(json!({
        "service": SERVICE_NAME,
        "version": ops.version,
        "component": ops.component,
        "timestamp": now(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn get_json(router: Router, path: &str) -> (StatusCode, Value) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn endpoints_report_health_version_and_readiness() {
        let connected = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&connected);
        let check: ReadinessCheck = Arc::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(vec!["bus not connected".to_owned()])
            }
        });
        let app = router("edge", "9.9.9", check);

        let (status, body) = get_json(app.clone(), "/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["service"], "arqonbus");

        let (status, body) = get_json(app.clone(), "/version").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["version"], "9.9.9");
        assert_eq!(body["component"], "edge");

        assert_eq!(get_json(app.clone(), "/ready").await.0, StatusCode::OK);
        connected.store(false, Ordering::SeqCst);
        let (status, body) = get_json(app, "/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reasons"][0], "bus not connected");
    }
}
