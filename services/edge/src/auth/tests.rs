use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arqon_testkit::{ClosedPort, keys};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const SECRET: &str = "test-secret";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hs256(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(keys::RSA_PRIVATE_PEM.as_bytes()).unwrap()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(keys::EC_PRIVATE_PEM.as_bytes()).unwrap()
}

fn signed(
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: serde_json::Value,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &claims, key).unwrap()
}

fn valid_claims() -> serde_json::Value {
    json!({"sub": "alice", "tenant_id": "t-a", "role": "admin", "exp": now() + 60})
}

async fn authenticator(config: EdgeConfig) -> Authenticator {
    Authenticator::from_config(&config).await.unwrap().unwrap()
}

async fn hs() -> Authenticator {
    authenticator(EdgeConfig::with_secret(SECRET)).await
}

fn public_key_config(algorithm: JwtAlgorithm, pem: &str) -> EdgeConfig {
    EdgeConfig {
        jwt_algorithm: algorithm,
        jwt_secret: None,
        jwt_public_key: Some(pem.to_owned()),
        ..EdgeConfig::with_secret("unused")
    }
}

async fn reason(auth: &Authenticator, token: &str) -> Reason {
    auth.verify(token).await.unwrap_err().reason
}

#[tokio::test]
async fn a_valid_token_grants_its_claims() {
    let grant = hs().await.verify(&hs256(valid_claims())).await.unwrap();
    assert_eq!(grant.tenant.as_str(), "t-a");
    assert_eq!(grant.subject.as_deref(), Some("alice"));
    assert!(grant.role.is_admin());
    assert!(grant.expires_at.unwrap() > now() as u64);
}

#[tokio::test]
async fn permissions_are_read_when_present() {
    let auth = hs().await;
    let grant = auth
        .verify(&hs256(
            json!({"exp": now() + 60, "tenant_id": "t-a", "permissions": ["channel_view"]}),
        ))
        .await
        .unwrap();
    assert_eq!(grant.permissions, Some(vec!["channel_view".to_owned()]));
    let grant = auth
        .verify(&hs256(json!({"exp": now() + 60, "tenant_id": "t-a"})))
        .await
        .unwrap();
    assert_eq!(grant.permissions, None);
}

#[tokio::test]
async fn a_token_without_a_tenant_is_refused_unless_a_fallback_is_set() {
    let token = hs256(json!({"exp": now() + 60}));
    let refused = hs().await.verify(&token).await.unwrap_err();
    assert_eq!(refused.reason, Reason::BadClaims);
    assert!(
        refused.detail.contains("ARQONBUS_AUTH_DEFAULT_TENANT"),
        "{refused}"
    );
    let fallback = authenticator(EdgeConfig {
        default_tenant: Some("default".to_owned()),
        ..EdgeConfig::with_secret(SECRET)
    })
    .await;
    let grant = fallback.verify(&token).await.unwrap();
    assert_eq!(grant.tenant.as_str(), "default");
    assert_eq!(grant.subject, None);
    assert!(!grant.role.is_admin());
    assert!(!grant.system);
    // A bad fallback stops the edge before it starts.
    let bad = EdgeConfig {
        default_tenant: Some("a.b".to_owned()),
        ..EdgeConfig::with_secret(SECRET)
    };
    assert!(bad.validate().is_err());
}

#[tokio::test]
async fn the_system_scope_counts_only_where_it_is_honoured() {
    let system =
        hs256(json!({"exp": now() + 60, "tenant_id": "ops", "scope": "read arqonbus:system"}));
    let admin = hs256(json!({"exp": now() + 60, "tenant_id": "ops", "role": "admin"}));
    // Off by default: the scope is only words.
    assert!(!hs().await.verify(&system).await.unwrap().system);
    let honouring = authenticator(EdgeConfig {
        system_scope: true,
        ..EdgeConfig::with_secret(SECRET)
    })
    .await;
    assert!(honouring.verify(&system).await.unwrap().system);
    // `admin` is not the system authority.
    assert!(!honouring.verify(&admin).await.unwrap().system);
    let near = hs256(json!({"exp": now() + 60, "tenant_id": "ops", "scope": "arqonbus:systems"}));
    assert!(!honouring.verify(&near).await.unwrap().system);
}

#[tokio::test]
async fn refusals_carry_their_reason() {
    let auth = hs().await;
    let none = {
        let payload = hs256(json!({"exp": now() + 60}))
            .split('.')
            .nth(1)
            .unwrap()
            .to_owned();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(b"other"),
    )
    .unwrap();
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let cases = [
        (
            "expired",
            hs256(json!({"exp": now() - 60})),
            Reason::Expired,
        ),
        (
            "not yet valid",
            hs256(json!({"exp": now() + 60, "nbf": now() + 60})),
            Reason::NotYetValid,
        ),
        ("no exp", hs256(json!({"sub": "x"})), Reason::BadClaims),
        ("wrong secret", other_secret, Reason::BadSignature),
        ("HS384", hs384, Reason::WrongAlgorithm),
        ("alg none", none, Reason::Malformed),
        (
            "unsafe tenant",
            hs256(json!({"exp": now() + 60, "tenant_id": "a.>"})),
            Reason::BadClaims,
        ),
        (
            "non-string role",
            hs256(json!({"exp": now() + 60, "role": 5})),
            Reason::BadClaims,
        ),
        (
            "garbage",
            "invalid.token.value".to_owned(),
            Reason::Malformed,
        ),
        ("empty", String::new(), Reason::Malformed),
    ];
    for (name, token, expected) in cases {
        assert_eq!(reason(&auth, &token).await, expected, "{name}");
    }
}

#[tokio::test]
async fn leeway_tolerates_small_clock_skew_only() {
    let auth = hs().await;
    assert!(
        auth.verify(&hs256(json!({"exp": now() - 2, "tenant_id": "t-a"})))
            .await
            .is_ok()
    );
    assert_eq!(
        reason(&auth, &hs256(json!({"exp": now() - 30}))).await,
        Reason::Expired
    );
    let strict = authenticator(EdgeConfig {
        jwt_leeway_seconds: 0,
        ..EdgeConfig::with_secret(SECRET)
    })
    .await;
    assert_eq!(
        reason(&strict, &hs256(json!({"exp": now() - 2}))).await,
        Reason::Expired
    );
}

#[tokio::test]
async fn audience_issuer_and_tenant_claim_are_configurable() {
    let auth = authenticator(EdgeConfig {
        jwt_audience: Some("bus".into()),
        jwt_issuer: Some("https://id.example".into()),
        tenant_claim: "org".into(),
        ..EdgeConfig::with_secret(SECRET)
    })
    .await;
    let good =
        hs256(json!({"exp": now() + 60, "aud": "bus", "iss": "https://id.example", "org": "acme"}));
    assert_eq!(auth.verify(&good).await.unwrap().tenant.as_str(), "acme");
    let wrong_aud = hs256(json!({"exp": now() + 60, "aud": "other", "iss": "https://id.example"}));
    assert_eq!(reason(&auth, &wrong_aud).await, Reason::BadAudience);
    let wrong_iss = hs256(json!({"exp": now() + 60, "aud": "bus", "iss": "https://evil.example"}));
    assert_eq!(reason(&auth, &wrong_iss).await, Reason::BadIssuer);
    let no_aud = hs256(json!({"exp": now() + 60, "iss": "https://id.example"}));
    assert_eq!(reason(&auth, &no_aud).await, Reason::BadClaims);
    let no_iss = hs256(json!({"exp": now() + 60, "aud": "bus"}));
    assert_eq!(reason(&auth, &no_iss).await, Reason::BadClaims);
}

#[tokio::test]
async fn rs256_and_es256_with_pem_keys() {
    let rs = authenticator(public_key_config(JwtAlgorithm::Rs256, keys::RSA_PUBLIC_PEM)).await;
    let es = authenticator(public_key_config(JwtAlgorithm::Es256, keys::EC_PUBLIC_PEM)).await;
    let rs_token = signed(Algorithm::RS256, None, &rsa_key(), valid_claims());
    let es_token = signed(Algorithm::ES256, None, &ec_key(), valid_claims());
    assert!(rs.verify(&rs_token).await.is_ok());
    assert!(es.verify(&es_token).await.is_ok());
    assert_eq!(reason(&rs, &es_token).await, Reason::WrongAlgorithm);
    assert_eq!(reason(&es, &rs_token).await, Reason::WrongAlgorithm);
    // Algorithm confusion: an HS256 token "signed" with the RSA public key as the secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &valid_claims(),
        &EncodingKey::from_secret(keys::RSA_PUBLIC_PEM.as_bytes()),
    )
    .unwrap();
    assert_eq!(reason(&rs, &confused).await, Reason::WrongAlgorithm);
}

#[test]
fn bad_key_settings_stop_the_edge_before_it_starts() {
    let no_key = EdgeConfig {
        jwt_public_key: None,
        ..public_key_config(JwtAlgorithm::Rs256, "")
    };
    assert!(
        no_key
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ARQONBUS_AUTH_JWKS_URL")
    );
    let both = EdgeConfig {
        jwks_url: Some("http://127.0.0.1:1/jwks".into()),
        ..public_key_config(JwtAlgorithm::Rs256, keys::RSA_PUBLIC_PEM)
    };
    assert!(both.validate().is_err());
    assert!(
        public_key_config(JwtAlgorithm::Rs256, "not a key")
            .validate()
            .is_err()
    );
    assert!(
        public_key_config(JwtAlgorithm::Es256, keys::RSA_PUBLIC_PEM)
            .validate()
            .is_err()
    );
    let no_secret = EdgeConfig {
        jwt_secret: None,
        ..EdgeConfig::with_secret("")
    };
    assert!(
        no_secret
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ARQONBUS_AUTH_JWT_SECRET")
    );
    let off = EdgeConfig {
        enable_auth: false,
        ..no_secret
    };
    assert!(off.validate().is_ok());
}

/// A JWKS endpoint whose key set can change, counting fetches.
struct JwksServer {
    url: String,
    set: Arc<std::sync::Mutex<JwkSet>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> Self {
        use axum::routing::get;
        let set = Arc::new(std::sync::Mutex::new(JwkSet { keys }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (Arc::clone(&set), Arc::clone(&fetches));
        let app = axum::Router::new().route(
            "/jwks",
            get(move || {
                let (s, f) = (Arc::clone(&s), Arc::clone(&f));
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(s.lock().unwrap().clone())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, set, fetches }
    }
}

fn jwk(kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn jwks_config(url: &str) -> EdgeConfig {
    EdgeConfig {
        jwt_algorithm: JwtAlgorithm::Rs256,
        jwt_secret: None,
        jwks_url: Some(url.to_owned()),
        jwks_refresh_seconds: 3600,
        ..EdgeConfig::with_secret("unused")
    }
}

#[tokio::test]
async fn jwks_keys_are_cached_and_refreshed_on_an_unknown_kid_at_a_bounded_rate() {
    let server = JwksServer::start(vec![jwk("k1")]).await;
    let mut config = jwks_config(&server.url);
    config.jwks_refresh_seconds = 1;
    let auth = authenticator(config).await;
    assert!(auth.is_ready());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    let k1 = signed(Algorithm::RS256, Some("k1"), &rsa_key(), valid_claims());
    for _ in 0..3 {
        assert!(auth.verify(&k1).await.is_ok());
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "known keys come from the cache"
    );

    // The issuer rotates: k2 appears. The refresh interval has passed, so the unknown
    // kid causes one fetch, and the token is accepted.
    server.set.lock().unwrap().keys.push(jwk("k2"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let k2 = signed(Algorithm::RS256, Some("k2"), &rsa_key(), valid_claims());
    assert!(auth.verify(&k2).await.is_ok());
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    // A burst of unknown kids right after causes no fetch at all.
    let k9 = signed(Algorithm::RS256, Some("k9"), &rsa_key(), valid_claims());
    for _ in 0..10 {
        assert_eq!(reason(&auth, &k9).await, Reason::UnknownKey);
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_refuses_tokens_and_reports_not_ready() {
    let closed = ClosedPort::new();
    let url = format!("http://{}/jwks", closed.addr());
    let auth = authenticator(jwks_config(&url)).await;
    assert!(!auth.is_ready());
    let token = signed(Algorithm::RS256, Some("k1"), &rsa_key(), valid_claims());
    assert_eq!(reason(&auth, &token).await, Reason::KeysUnavailable);
    // An HS256 token is refused before any key lookup.
    assert_eq!(
        reason(&auth, &hs256(valid_claims())).await,
        Reason::WrongAlgorithm
    );
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn token_sources_in_order() {
    let uri: Uri = "/ws?token=q1&access_token=q2".parse().unwrap();
    assert_eq!(
        extract_token(&headers(&[("authorization", "bearer  h1 ")]), &uri).as_deref(),
        Some("h1")
    );
    assert_eq!(extract_token(&headers(&[]), &uri).as_deref(), Some("q1"));
    let uri: Uri = "/ws?token=&access_token=q%2B2".parse().unwrap();
    assert_eq!(extract_token(&headers(&[]), &uri).as_deref(), Some("q+2"));
    // A non-bearer scheme is not a token; the query is still read.
    assert_eq!(
        extract_token(&headers(&[("authorization", "Basic abc")]), &uri).as_deref(),
        Some("q+2")
    );
    let bare: Uri = "/ws".parse().unwrap();
    assert_eq!(
        extract_token(&headers(&[("authorization", "Bearer ")]), &bare),
        None
    );
    assert_eq!(extract_token(&headers(&[]), &bare), None);
}

#[test]
fn refusal_responses_are_401_json_with_a_challenge_and_no_detail() {
    let response =
        AuthError::new(Reason::BadSignature, "signature mismatch for key x").into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"arqonbus\""
    );
}

#[test]
fn credentials_ride_in_subprotocols_behind_the_header_and_before_the_query() {
    let query: Uri = "/ws?token=q1".parse().unwrap();
    let bare: Uri = "/ws".parse().unwrap();
    let offered = |value: &str| headers(&[("sec-websocket-protocol", value)]);
    // A JWT beside the protocol the edge selects.
    assert_eq!(
        extract_credential(&offered("arqonbus.v1, arqonbus.bearer.a.b.c"), &query),
        Some(Credential::Token("a.b.c".to_owned()))
    );
    // The header wins; then the subprotocol; the query last.
    let both = headers(&[
        ("authorization", "Bearer h1"),
        ("sec-websocket-protocol", "arqonbus.bearer.p1"),
    ]);
    assert_eq!(
        extract_credential(&both, &query),
        Some(Credential::Token("h1".to_owned()))
    );
    assert_eq!(
        extract_credential(&offered("arqonbus.v1"), &query),
        Some(Credential::Token("q1".to_owned()))
    );
    assert_eq!(
        extract_credential(&offered("arqonbus.bearer."), &bare),
        None
    );
    // The service token, base64url (it may hold characters a subprotocol cannot).
    let service = offered("arqonbus.v1, arqonbus.service.cy90b2tlbj0_, arqonbus.tenant.acme");
    assert_eq!(
        extract_credential(&service, &bare),
        Some(Credential::Service {
            token: "s/token=?".to_owned(),
            tenant: Some("acme".to_owned()),
        })
    );
    // Undecodable: presented, and wrong (never mistaken for no credentials).
    assert_eq!(
        extract_credential(&offered("arqonbus.service.***"), &bare),
        Some(Credential::Service {
            token: String::new(),
            tenant: None,
        })
    );
    // Never printed.
    assert!(!format!("{:?}", Credential::Token("secret".to_owned())).contains("secret"));
}

#[tokio::test]
async fn the_service_token_is_refused_unless_the_operator_login_is_on() {
    let auth = hs().await;
    let service = || {
        Some(Credential::Service {
            token: "a-service-token-long-enough-0123".to_owned(),
            tenant: Some("acme".to_owned()),
        })
    };
    let off = authenticate(Some(&auth), None, service())
        .await
        .unwrap_err();
    assert_eq!(off.reason, Reason::OperatorLoginOff);
    let config = EdgeConfig {
        console_operator_login: true,
        service_token: Some(arqon_proto::grpc::ServiceToken::new(
            "a-service-token-long-enough-0123",
        )),
        ..EdgeConfig::with_secret(SECRET)
    };
    let login = operator::OperatorLogin::from_config(&config).unwrap();
    let grant = authenticate(Some(&auth), login.as_ref(), service())
        .await
        .unwrap();
    assert!(grant.system);
    // A JWT is still a JWT, and nothing is still missing.
    let jwt = Some(Credential::Token(hs256(valid_claims())));
    let grant = authenticate(Some(&auth), login.as_ref(), jwt)
        .await
        .unwrap();
    assert!(!grant.system && grant.role.is_admin());
    let missing = authenticate(Some(&auth), login.as_ref(), None)
        .await
        .unwrap_err();
    assert_eq!(missing.reason, Reason::Missing);
    // Authentication off: anyone is the anonymous user, but the service token is
    // still checked.
    assert_eq!(
        authenticate(None, None, None).await.unwrap(),
        Grant::anonymous()
    );
    assert!(authenticate(None, None, service()).await.is_err());
}
