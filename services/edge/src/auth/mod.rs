//! Authentication of upgrade requests: where the token is read from, how it is verified,
//! and what a refusal looks like.

use axum::Json;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use arqon_protocol::{Role, TenantId};

/// Query parameters that may carry a token, for browsers that cannot set headers.
const TOKEN_QUERY_PARAMS: [&str; 2] = ["token", "access_token"];

/// The identity a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub tenant: TenantId,
    pub subject: Option<String>,
    pub role: Role,
}

impl Grant {
    /// Connections when authentication is off: the default tenant, not admin.
    pub fn anonymous() -> Self {
        Self {
            tenant: TenantId::default_tenant(),
            subject: None,
            role: Role::user(),
        }
    }
}

/// Why an upgrade was refused. The client sees only the category; the detail is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let details = match self {
            AuthError::Missing => "Missing bearer token",
            AuthError::Invalid(_) => "Invalid token",
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

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    tenant_id: Option<String>,
    role: Option<String>,
}

/// Verifies HS256 tokens signed with the shared secret.
#[derive(Clone)]
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `exp` is required and checked with no leeway; `nbf` is checked when present. Only
    /// HS256 is accepted, so `alg: none` and every other algorithm are refused.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Grant, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let tenant = match claims.tenant_id {
            None => TenantId::default_tenant(),
            Some(tenant) => {
                TenantId::parse(&tenant).map_err(|e| AuthError::Invalid(e.to_string()))?
            }
        };
        Ok(Grant {
            tenant,
            subject: claims.sub,
            role: claims.role.map(Role::new).unwrap_or_else(Role::user),
        })
    }
}

/// The token of an upgrade request: `Authorization: Bearer <token>` (scheme matched
/// case-insensitively), else the first non-empty `token` / `access_token` query parameter.
pub(crate) fn extract_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            let token = token.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
        });
    from_header.or_else(|| {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
        TOKEN_QUERY_PARAMS.iter().find_map(|name| {
            pairs
                .iter()
                .find(|(key, value)| key == name && !value.is_empty())
                .map(|(_, value)| value.clone())
        })
    })
}

#[cfg(test)]
mod tests;
