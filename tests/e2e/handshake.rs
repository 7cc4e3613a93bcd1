//! The upgrade: who gets in, and what they see first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};

use arqon_e2e::{Cluster, SECRET};
use arqon_protocol::{ClientId, MessageType};
use arqon_sdk::token::{Claims, mint_hs256};

use crate::both_modes;

both_modes!(
    valid_token_gets_the_welcome,
    bad_tokens_get_401,
    query_tokens_work,
    health_version_and_readiness_answer,
);

async fn valid_token_gets_the_welcome(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    let welcome = client.welcome();
    assert_eq!(welcome.kind, MessageType::Message);
    assert_eq!(welcome.sender.as_deref(), Some("arqonbus"));
    assert_eq!(
        welcome.payload.get("welcome"),
        Some(json!("Connected to ArqonBus"))
    );
    assert!(
        ClientId::parse(client.client_id()).is_some(),
        "{}",
        client.client_id()
    );
}

/// Tries an upgrade and returns the refusal's status, `WWW-Authenticate` and JSON body.
async fn refusal(cluster: &Cluster, authorization: Option<String>) -> (StatusCode, String, Value) {
    let mut request = cluster.ws_url.as_str().into_client_request().unwrap();
    if let Some(value) = authorization {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("the upgrade was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or(b"null")).unwrap();
            (response.status(), challenge, body)
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn bad_tokens_get_401(cluster: &Cluster) {
    let (status, challenge, body) = refusal(cluster, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer"));
    assert_eq!(
        body,
        json!({"error": "Unauthorized", "details": "Missing bearer token"})
    );

    let mut expired = Claims::new("e2e", "t-a", "user", Duration::from_secs(60));
    expired.exp = now() - 30;
    let wrong_secret = Claims::new("e2e", "t-a", "user", Duration::from_secs(60));
    let bad_tokens = [
        ("garbage", "invalid.token.value".to_owned()),
        ("expired", mint_hs256(SECRET.as_bytes(), &expired).unwrap()),
        (
            "wrong signature",
            mint_hs256(b"not-the-secret", &wrong_secret).unwrap(),
        ),
    ];
    for (name, token) in bad_tokens {
        let (status, _, body) = refusal(cluster, Some(format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(
            body,
            json!({"error": "Unauthorized", "details": "Invalid token"}),
            "{name}"
        );
    }
}

async fn query_tokens_work(cluster: &Cluster) {
    for param in ["token", "access_token"] {
        let url = format!(
            "{}?{param}={}",
            cluster.ws_url,
            cluster.token("t-a", "user")
        );
        let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        use futures_util::StreamExt;
        let first = tokio::time::timeout(arqon_e2e::WAIT, socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let welcome: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
        assert_eq!(welcome["payload"]["welcome"], "Connected to ArqonBus");
    }
    // `/` upgrades too, for clients of the original.
    let root = cluster.ws_url.trim_end_matches("/ws");
    let url = format!("{root}/?token={}", cluster.token("t-a", "user"));
    assert!(tokio_tungstenite::connect_async(url).await.is_ok());
}

async fn health_version_and_readiness_answer(cluster: &Cluster) {
    let addr = cluster.http_addr;
    let get = move |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            let (status, body) = arqon_testkit::http::get(addr, path, arqon_e2e::WAIT).unwrap();
            (status, serde_json::from_str::<Value>(&body).unwrap())
        })
    };
    let (status, health) = get("/health").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy");
    let (status, version) = get("/version").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(version["service"], "arqonbus");
    assert_eq!(version["version"], arqonbus::VERSION);
    let (status, ready) = get("/ready").await.unwrap();
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
}
