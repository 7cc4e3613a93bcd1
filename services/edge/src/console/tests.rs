//! The console's routes in memory: files with their headers, the login check.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use arqon_bus::Bus;
use arqon_proto::grpc::ServiceToken;
use arqon_telemetry::metrics::HttpMetrics;

use crate::{Edge, EdgeConfig, EdgeMetrics};

const SECRET: &str = "console-secret";
const SERVICE_TOKEN: &str = "a-service-token-long-enough-0123";

async fn edge(config: EdgeConfig) -> (axum::Router, CancellationToken) {
    let mut registry = Registry::default();
    let metrics = EdgeMetrics::register(&mut registry);
    let http = HttpMetrics::register(&mut registry);
    let stop = CancellationToken::new();
    let edge = Edge::start(
        config,
        Bus::embedded(Default::default()),
        metrics,
        stop.clone(),
    )
    .await
    .unwrap();
    (edge.router(&http), stop)
}

fn token(claims: Value) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let mut claims = claims;
    claims["exp"] = json!(exp);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn get(router: &axum::Router, path: &str) -> axum::response::Response {
    router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn login(router: &axum::Router, body: &str) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(
            Request::post("/console/api/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_owned()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn pages_are_served_with_a_strict_policy() {
    let (router, stop) = edge(EdgeConfig::with_secret(SECRET)).await;
    let page = get(&router, "/console/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let body = page.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("js/app.js"));

    let module = get(&router, "/console/js/bus.js").await;
    assert_eq!(module.status(), StatusCode::OK);
    assert!(
        module.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = get(&router, "/console/js/nope.js").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(
        missing
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY)
    );
    let bare = get(&router, "/console").await;
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    stop.cancel();
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let (router, stop) = edge(EdgeConfig {
        console: false,
        ..EdgeConfig::with_secret(SECRET)
    })
    .await;
    assert_eq!(
        get(&router, "/console/").await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _) = login(&router, "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    stop.cancel();
}

#[tokio::test]
async fn the_login_check_says_who_a_token_makes_the_caller() {
    let (router, stop) = edge(EdgeConfig::with_secret(SECRET)).await;
    let admin = token(json!({"sub": "ann", "tenant_id": "acme", "role": "admin"}));
    let (status, who) = login(&router, &json!({"token": admin}).to_string()).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["tenant"], "acme");
    assert_eq!(who["admin"], true);
    assert_eq!(who["system"], false);
    assert_eq!(who["operator"], false);

    let (status, refused) = login(&router, &json!({"token": "not-a-jwt"}).to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["details"], "Invalid token");
    let (status, _) = login(&router, "{}").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = login(&router, "token=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The operator login is off by default.
    let service = json!({"service_token": SERVICE_TOKEN, "tenant": "acme"}).to_string();
    let (status, refused) = login(&router, &service).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        refused["details"]
            .as_str()
            .unwrap()
            .contains("ARQONBUS_CONSOLE_OPERATOR_LOGIN"),
        "{refused}"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_service_token_makes_an_operator_when_the_login_is_on() {
    let (router, stop) = edge(EdgeConfig {
        console_operator_login: true,
        service_token: Some(ServiceToken::new(SERVICE_TOKEN)),
        ..EdgeConfig::with_secret(SECRET)
    })
    .await;
    let service = json!({"service_token": SERVICE_TOKEN, "tenant": "acme"}).to_string();
    let (status, who) = login(&router, &service).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who["tenant"], "acme");
    assert_eq!(who["system"], true);
    assert_eq!(who["operator"], true);
    let wrong = json!({"service_token": "a-wrong-token-long-enough-01234", "tenant": "acme"});
    let (status, _) = login(&router, &wrong.to_string()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    stop.cancel();
}
