//! Tokens signed with RS256 and ES256, from a PEM key or a JWKS endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use arqon_e2e::{Cluster, Mode, edge_config};
use arqon_edge::{EdgeConfig, JwtAlgorithm};
use arqon_testkit::keys;

fn claims(tenant: &str) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"sub": "e2e", "tenant_id": tenant, "exp": now + 3600})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims("t-a"), key).unwrap()
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(keys::RSA_PRIVATE_PEM.as_bytes()).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(keys::EC_PRIVATE_PEM.as_bytes()).unwrap()
}

/// Serves a JWKS with one RSA key (`kid` "k1") and counts fetches.
async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let mut jwk = Jwk::from_encoding_key(&rsa(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = JwkSet { keys: vec![jwk] };
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fetches);
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let set = set.clone();
            async move { axum::Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fetches)
}

async fn upgrade(cluster: &Cluster, token: &str) -> Result<(), u16> {
    match tokio_tungstenite::connect_async(cluster.url_with_token(token)).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

async fn jwks_edge(mode: Mode) {
    let (url, fetches) = jwks_server().await;
    let config = EdgeConfig {
        jwt_algorithm: JwtAlgorithm::Rs256,
        jwt_secret: None,
        jwks_url: Some(url),
        jwks_refresh_seconds: 3600,
        ..edge_config()
    };
    let cluster =
        Cluster::start_with_probe(mode, config, sign(Algorithm::RS256, Some("k1"), &rsa())).await;
    assert_eq!(
        upgrade(&cluster, &sign(Algorithm::RS256, Some("k1"), &rsa())).await,
        Ok(())
    );
    // An unknown kid is refused; the key set was fetched once at start and at most once
    // more for the unknown kid, whatever the number of attempts.
    for _ in 0..5 {
        assert_eq!(
            upgrade(&cluster, &sign(Algorithm::RS256, Some("k2"), &rsa())).await,
            Err(401)
        );
    }
    assert!(
        fetches.load(Ordering::SeqCst) <= 2,
        "{}",
        fetches.load(Ordering::SeqCst)
    );
    // HS256, even one signed with the public key, is another algorithm: refused.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("t-a"),
        &EncodingKey::from_secret(keys::RSA_PUBLIC_PEM.as_bytes()),
    )
    .unwrap();
    assert_eq!(upgrade(&cluster, &confused).await, Err(401));
    assert_eq!(
        upgrade(&cluster, &sign(Algorithm::ES256, Some("k1"), &ec())).await,
        Err(401)
    );
    cluster.stop().await;
}

async fn es256_pem_edge(mode: Mode) {
    let config = EdgeConfig {
        jwt_algorithm: JwtAlgorithm::Es256,
        jwt_secret: None,
        jwt_public_key: Some(keys::EC_PUBLIC_PEM.to_owned()),
        ..edge_config()
    };
    let cluster =
        Cluster::start_with_probe(mode, config, sign(Algorithm::ES256, None, &ec())).await;
    assert_eq!(
        upgrade(&cluster, &sign(Algorithm::ES256, None, &ec())).await,
        Ok(())
    );
    assert_eq!(
        upgrade(&cluster, &sign(Algorithm::RS256, None, &rsa())).await,
        Err(401)
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_from_a_jwks_standalone() {
    jwks_edge(Mode::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_from_a_jwks_distributed() {
    jwks_edge(Mode::Distributed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_from_a_pem_key_standalone() {
    es256_pem_edge(Mode::Standalone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_from_a_pem_key_distributed() {
    es256_pem_edge(Mode::Distributed).await;
}
