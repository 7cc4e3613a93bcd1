//! Authentication of upgrade requests: where the credentials are read from (a header, a
//! WebSocket subprotocol, the query), how they are verified, and what a refusal looks
//! like.

mod jwks;
pub(crate) mod operator;

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use arqon_protocol::{Role, SYSTEM_SCOPE, TenantId};

use crate::EdgeError;
use crate::config::{EdgeConfig, JwtAlgorithm};

pub(crate) use jwks::Jwks;

/// Query parameters that may carry a token, for browsers that cannot set headers.
const TOKEN_QUERY_PARAMS: [&str; 2] = ["token", "access_token"];

/// The WebSocket subprotocol a browser offers beside its credentials, and the one the
/// edge selects: a browser fails a connection whose server selects none of those it
/// offered, and the credentials must not be echoed back.
pub(crate) const PROTOCOL: &str = "arqonbus.v1";
/// A subprotocol carrying a JWT: `arqonbus.bearer.<jwt>` (a JWT's characters are all
/// allowed in a subprotocol name). Browsers cannot set an `Authorization` header on a
/// WebSocket; unlike the query, this header is not written to access logs.
const BEARER_PROTOCOL: &str = "arqonbus.bearer.";
/// A subprotocol carrying the service token, base64url without padding (it may hold
/// characters a subprotocol name cannot): the console's operator login.
const SERVICE_PROTOCOL: &str = "arqonbus.service.";
/// A subprotocol naming the tenant an operator login acts in: `arqonbus.tenant.<tenant>`.
const TENANT_PROTOCOL: &str = "arqonbus.tenant.";

/// What a request presents to be let in.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A JWT.
    Token(String),
    /// The service token, and the tenant the operator acts in.
    Service {
        token: String,
        tenant: Option<String>,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Service { tenant, .. } => f
                .debug_struct("Service")
                .field("tenant", tenant)
                .finish_non_exhaustive(),
        }
    }
}

/// The identity a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant: TenantId,
    pub subject: Option<String>,
    pub role: Role,
    /// The token's `exp`, in seconds since the Unix epoch; `None` when authentication
    /// is off.
    pub expires_at: Option<u64>,
    /// The token's `permissions` claim, when it had one.
    pub permissions: Option<Vec<String>>,
    /// The `arqonbus:system` scope, on an edge that honours it.
    pub system: bool,
}

impl Grant {
    /// Connections when authentication is off: the default tenant, not admin.
    pub fn anonymous() -> Self {
        Self {
            tenant: TenantId::default_tenant(),
            subject: None,
            role: Role::user(),
            expires_at: None,
            permissions: None,
            system: false,
        }
    }
}

arqon_telemetry::label_values! {
    /// Why a token was refused: a closed list, used as a metric label. Clients are told
    /// only "Missing bearer token" or "Invalid token".
    pub enum Reason {
        Missing => "missing",
        Malformed => "malformed",
        BadSignature => "bad_signature",
        Expired => "expired",
        NotYetValid => "not_yet_valid",
        WrongAlgorithm => "wrong_algorithm",
        BadAudience => "bad_audience",
        BadIssuer => "bad_issuer",
        BadClaims => "bad_claims",
        UnknownKey => "unknown_key",
        KeysUnavailable => "keys_unavailable",
        OperatorLoginOff => "operator_login_off",
        BadServiceToken => "bad_service_token",
    }
}

/// A refused token: the reason (for metrics) and the detail (for logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason:?}: {detail}")]
pub struct AuthError {
    pub reason: Reason,
    pub detail: String,
}

impl AuthError {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    fn from_jwt(error: &jsonwebtoken::errors::Error) -> Self {
        let reason = match error.kind() {
            ErrorKind::InvalidSignature => Reason::BadSignature,
            ErrorKind::ExpiredSignature => Reason::Expired,
            ErrorKind::ImmatureSignature => Reason::NotYetValid,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm => Reason::WrongAlgorithm,
            ErrorKind::InvalidAudience => Reason::BadAudience,
            ErrorKind::InvalidIssuer => Reason::BadIssuer,
            ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::InvalidClaimFormat(_)
            | ErrorKind::InvalidSubject => Reason::BadClaims,
            _ => Reason::Malformed,
        };
        Self::new(reason, error.to_string())
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let details = match self.reason {
            Reason::Missing => "Missing bearer token",
            Reason::OperatorLoginOff => {
                "The service token is not accepted here (ARQONBUS_CONSOLE_OPERATOR_LOGIN is off)"
            }
            _ => "Invalid token",
        };
        let mut response = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({ "error": "Unauthorized", "details": details })),
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"arqonbus\""),
        );
        response
    }
}

enum Keys {
    Static(DecodingKey),
    Jwks(Arc<Jwks>),
}

/// Verifies tokens: one algorithm, a secret, a PEM key or a JWKS, `exp` required, `nbf`
/// checked, optional `aud` and `iss`, a small leeway.
pub struct Authenticator {
    keys: Keys,
    validation: Validation,
    tenant_claim: String,
    default_tenant: Option<TenantId>,
    system_scope: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The verifier `config` asks for: `None` when authentication is off. A missing or
    /// unreadable key is an error: the edge refuses to start rather than accept anyone.
    /// With a JWKS URL the keys are fetched now; if that fails the edge starts, refuses
    /// tokens and reports not ready until a later fetch succeeds.
    pub async fn from_config(config: &EdgeConfig) -> Result<Option<Self>, EdgeError> {
        let Some((algorithm, spec)) = key_spec(config)? else {
            return Ok(None);
        };
        let keys = match spec {
            KeySpec::Static(key) => Keys::Static(key),
            KeySpec::Jwks(url) => {
                Keys::Jwks(Jwks::start(&url, algorithm, config.jwks_refresh()).await?)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.jwt_leeway_seconds;
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        validation.validate_aud = config.jwt_audience.is_some();
        // A configured audience or issuer must be present, not just right when present.
        if let Some(audience) = &config.jwt_audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        Ok(Some(Self {
            keys,
            validation,
            tenant_claim: config.tenant_claim.clone(),
            default_tenant: default_tenant(config)?,
            system_scope: config.system_scope,
        }))
    }

    /// The JWKS, when keys come from one (it is refreshed in the background).
    pub(crate) fn jwks(&self) -> Option<&Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks),
            Keys::Static(_) => None,
        }
    }

    /// Whether tokens can be verified now (a JWKS has been fetched).
    pub fn is_ready(&self) -> bool {
        self.jwks().is_none_or(|jwks| jwks.has_keys())
    }

    pub async fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let key = match &self.keys {
            Keys::Static(key) => key.clone(),
            Keys::Jwks(jwks) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|e| AuthError::from_jwt(&e))?;
                if !self.validation.algorithms.contains(&header.alg) {
                    return Err(AuthError::new(
                        Reason::WrongAlgorithm,
                        format!("token algorithm {:?} is not the configured one", header.alg),
                    ));
                }
                jwks.key(header.kid.as_deref()).await?
            }
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation)
            .map_err(|e| AuthError::from_jwt(&e))?;
        self.grant(data.claims)
    }

    fn grant(&self, mut claims: Map<String, Value>) -> Result<Grant, AuthError> {
        let text = |claims: &mut Map<String, Value>, name: &str| match claims.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(AuthError::new(
                Reason::BadClaims,
                format!("claim {name} is not a string"),
            )),
        };
        let tenant = match (text(&mut claims, &self.tenant_claim)?, &self.default_tenant) {
            (Some(tenant), _) => TenantId::parse(&tenant)
                .map_err(|e| AuthError::new(Reason::BadClaims, e.to_string()))?,
            (None, Some(fallback)) => fallback.clone(),
            (None, None) => {
                return Err(AuthError::new(
                    Reason::BadClaims,
                    format!(
                        "no {} claim (set ARQONBUS_AUTH_DEFAULT_TENANT to accept such tokens)",
                        self.tenant_claim
                    ),
                ));
            }
        };
        let subject = text(&mut claims, "sub")?;
        let role = text(&mut claims, "role")?
            .map(Role::new)
            .unwrap_or_else(Role::user);
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp.max(0.0) as u64);
        let scopes = text(&mut claims, "scope")?.unwrap_or_default();
        let system = self.system_scope && scopes.split_whitespace().any(|s| s == SYSTEM_SCOPE);
        let permissions = match claims.remove("permissions") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(p) => Ok(p),
                        _ => Err(not_a_list()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(not_a_list()),
        };
        Ok(Grant {
            tenant,
            subject,
            role,
            expires_at,
            permissions,
            system,
        })
    }
}

/// `ARQONBUS_AUTH_DEFAULT_TENANT`, checked.
pub(crate) fn default_tenant(config: &EdgeConfig) -> Result<Option<TenantId>, EdgeError> {
    config
        .default_tenant
        .as_deref()
        .map(|tenant| {
            TenantId::parse(tenant).map_err(|e| {
                EdgeError::Config(format!("ARQONBUS_AUTH_DEFAULT_TENANT={tenant}: {e}"))
            })
        })
        .transpose()
}

fn not_a_list() -> AuthError {
    AuthError::new(
        Reason::BadClaims,
        "claim permissions is not a list of strings",
    )
}

/// Where verification keys come from, as configured.
pub(crate) enum KeySpec {
    Static(DecodingKey),
    Jwks(String),
}

/// Checks the authentication settings without touching the network: the algorithm, and
/// exactly one usable key source for it. `None` when authentication is off.
pub(crate) fn key_spec(config: &EdgeConfig) -> Result<Option<(Algorithm, KeySpec)>, EdgeError> {
    if !config.enable_auth {
        return Ok(None);
    }
    let algorithm = match config.jwt_algorithm {
        JwtAlgorithm::Hs256 => {
            let secret = config
                .jwt_secret
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    EdgeError::Config(
                    "authentication is on but no JWT secret is set: set ARQONBUS_AUTH_JWT_SECRET \
                     (or --jwt-secret), or turn authentication off with ARQONBUS_ENABLE_AUTH=false \
                     for local development"
                        .to_owned(),
                )
                })?;
            let key = DecodingKey::from_secret(secret.as_bytes());
            return Ok(Some((Algorithm::HS256, KeySpec::Static(key))));
        }
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    };
    let pem = match (&config.jwt_public_key, &config.jwt_public_key_file) {
        (Some(pem), _) => Some(pem.clone()),
        (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
            EdgeError::Config(format!(
                "cannot read ARQONBUS_AUTH_JWT_PUBLIC_KEY_FILE {}: {e}",
                path.display()
            ))
        })?),
        (None, None) => None,
    };
    let spec = match (pem, &config.jwks_url) {
        (Some(pem), None) => {
            let key = match algorithm {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
                _ => DecodingKey::from_ec_pem(pem.as_bytes()),
            }
            .map_err(|e| {
                EdgeError::Config(format!(
                    "the JWT public key is not a valid {algorithm:?} PEM key: {e}"
                ))
            })?;
            KeySpec::Static(key)
        }
        (None, Some(url)) => KeySpec::Jwks(url.clone()),
        (Some(_), Some(_)) => {
            return Err(EdgeError::Config(
                "set either a JWT public key or a JWKS URL, not both".to_owned(),
            ));
        }
        (None, None) => {
            return Err(EdgeError::Config(format!(
                "{algorithm:?} needs a public key: set ARQONBUS_AUTH_JWT_PUBLIC_KEY, \
                 ARQONBUS_AUTH_JWT_PUBLIC_KEY_FILE or ARQONBUS_AUTH_JWKS_URL"
            )));
        }
    };
    Ok(Some((algorithm, spec)))
}

/// Checks what a request presents: a JWT with the authenticator (anyone is the anonymous
/// user when authentication is off), the service token with the operator login.
pub(crate) async fn authenticate(
    auth: Option<&Authenticator>,
    operator: Option<&operator::OperatorLogin>,
    credential: Option<Credential>,
) -> Result<Grant, AuthError> {
    match (credential, auth) {
        (Some(Credential::Service { token, tenant }), _) => match operator {
            Some(operator) => operator.grant(&token, tenant.as_deref()),
            None => Err(AuthError::new(
                Reason::OperatorLoginOff,
                "the service token was presented and ARQONBUS_CONSOLE_OPERATOR_LOGIN is off",
            )),
        },
        (_, None) => Ok(Grant::anonymous()),
        (Some(Credential::Token(token)), Some(auth)) => auth.verify(&token).await,
        (None, Some(_)) => Err(AuthError::new(Reason::Missing, "no token in the request")),
    }
}

/// The credentials of an upgrade request, the first found of: `Authorization: Bearer
/// <token>`; the subprotocols `arqonbus.bearer.<jwt>`, or `arqonbus.service.<base64url
/// service token>` with `arqonbus.tenant.<tenant>`; the `token` / `access_token` query
/// parameter.
pub(crate) fn extract_credential(headers: &HeaderMap, uri: &Uri) -> Option<Credential> {
    if let Some(token) = authorization(headers) {
        return Some(Credential::Token(token));
    }
    let protocols: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let after = |prefix: &str| {
        protocols
            .iter()
            .find_map(|p| p.strip_prefix(prefix).filter(|rest| !rest.is_empty()))
    };
    if let Some(token) = after(BEARER_PROTOCOL) {
        return Some(Credential::Token(token.to_owned()));
    }
    if let Some(encoded) = after(SERVICE_PROTOCOL) {
        use base64::Engine as _;
        // Undecodable: presented, and wrong.
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default();
        let tenant = after(TENANT_PROTOCOL).map(str::to_owned);
        return Some(Credential::Service { token, tenant });
    }
    query_token(uri).map(Credential::Token)
}

/// The token of an upgrade request: `Authorization: Bearer <token>` (scheme matched
/// case-insensitively), else the first non-empty `token` / `access_token` query parameter.
#[cfg(test)]
pub(crate) fn extract_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    authorization(headers).or_else(|| query_token(uri))
}

/// `Authorization: Bearer <token>`, the scheme matched case-insensitively.
fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
        })
}

/// The first non-empty `token` / `access_token` query parameter.
fn query_token(uri: &Uri) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    TOKEN_QUERY_PARAMS.iter().find_map(|name| {
        pairs
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.clone())
    })
}

#[cfg(test)]
mod tests;
