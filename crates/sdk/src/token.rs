//! Development tokens: HS256 JWTs with the claims the edge reads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

pub use arqon_protocol::SYSTEM_SCOPE;

/// The claims of an ArqonBus token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub sub: String,
    pub tenant_id: String,
    pub role: String,
    pub iat: u64,
    pub exp: u64,
    /// Space-separated scopes; `arqonbus:system` asks for the fleet-wide authority (only
    /// edges with `ARQONBUS_AUTH_SYSTEM_SCOPE=true` honour it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Claims {
    /// Claims valid from now for `ttl`.
    pub fn new(sub: &str, tenant: &str, role: &str, ttl: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Self {
            sub: sub.to_owned(),
            tenant_id: tenant.to_owned(),
            role: role.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
            scope: None,
        }
    }
}

/// Signs `claims` with `secret` (HS256).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_carry_the_claims() {
        let claims = Claims::new("alice", "t-a", "admin", Duration::from_secs(60));
        assert_eq!(claims.exp - claims.iat, 60);
        let token = mint_hs256(b"s", &claims).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.validate_exp = true;
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s"),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["tenant_id"], "t-a");
        assert_eq!(decoded.claims["role"], "admin");
        assert_eq!(decoded.claims["sub"], "alice");
    }
}
