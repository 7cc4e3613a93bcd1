use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const SECRET: &[u8] = b"test-secret";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn token(claims: serde_json::Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[test]
fn a_valid_token_grants_its_claims() {
    let auth = Authenticator::hs256(SECRET);
    let grant = auth
        .verify(&token(
            json!({"sub": "alice", "tenant_id": "t-a", "role": "admin", "exp": now() + 60}),
        ))
        .unwrap();
    assert_eq!(grant.tenant.as_str(), "t-a");
    assert_eq!(grant.subject.as_deref(), Some("alice"));
    assert!(grant.role.is_admin());
}

#[test]
fn missing_claims_get_safe_defaults() {
    let grant = Authenticator::hs256(SECRET)
        .verify(&token(json!({"exp": now() + 60})))
        .unwrap();
    assert_eq!(grant, Grant::anonymous());
}

#[test]
fn refusals() {
    let auth = Authenticator::hs256(SECRET);
    let expired = token(json!({"exp": now() - 10}));
    let not_yet = token(json!({"exp": now() + 60, "nbf": now() + 30}));
    let no_exp = token(json!({"sub": "x"}));
    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(b"other"),
    )
    .unwrap();
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &json!({"exp": now() + 60}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    // alg: none, with the signature stripped.
    let none = {
        let body = token(json!({"exp": now() + 60}));
        let payload = body.split('.').nth(1).unwrap().to_owned();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    };
    let unsafe_tenant = token(json!({"exp": now() + 60, "tenant_id": "a.>"}));
    let bad_role_type = token(json!({"exp": now() + 60, "role": 5}));
    for (name, t) in [
        ("expired", expired),
        ("not yet valid", not_yet),
        ("no exp", no_exp),
        ("wrong secret", wrong_secret),
        ("HS384", hs384),
        ("alg none", none),
        ("unsafe tenant", unsafe_tenant),
        ("non-string role", bad_role_type),
        ("garbage", "invalid.token.value".to_owned()),
        ("empty", String::new()),
    ] {
        assert!(
            matches!(auth.verify(&t), Err(AuthError::Invalid(_))),
            "{name} was accepted"
        );
    }
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
fn refusal_responses_are_401_json_with_a_challenge() {
    let response = AuthError::Invalid("bad signature".into()).into_response();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"arqonbus\""
    );
}
