//! The service token: the one credential of the gRPC API.
//!
//! Backends send `authorization: Bearer <token>`. The comparison is constant-time, so
//! response times do not tell a caller how much of a guess was right (only whether its
//! length was). No refusal repeats or hints at the token.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};
use tracing::info;

use arqon_protocol::ErrorCode;

use super::status::status;

/// The metadata key that carries the token.
pub(super) const AUTHORIZATION: &str = "authorization";

/// The shared secret backends present to the gRPC API. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceToken(Arc<str>);

impl ServiceToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::from(token.into()))
    }

    /// The token itself, to build a client's `authorization` metadata.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Why the token cannot be used, if it cannot. It travels in a metadata value after
    /// `Bearer `, so it must be one run of visible ASCII.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Err("the service token is empty")
        } else if !self.0.bytes().all(|b| b.is_ascii_graphic()) {
            Err("the service token must be visible ASCII characters without spaces")
        } else {
            Ok(())
        }
    }

    fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl From<String> for ServiceToken {
    fn from(token: String) -> Self {
        Self::new(token)
    }
}

impl From<&str> for ServiceToken {
    fn from(token: &str) -> Self {
        Self::new(token)
    }
}

impl fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceToken(<redacted>)")
    }
}

/// The interceptor every call passes before its request is decoded.
pub(super) fn require(
    token: ServiceToken,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |request: Request<()>| match authenticate(&token, request.metadata()) {
        Ok(()) => Ok(request),
        Err(refusal) => {
            info!(peer = ?request.remote_addr(), refusal, "gRPC call refused");
            Err(status(
                tonic::Code::Unauthenticated,
                ErrorCode::AuthenticationFailed,
                refusal,
            ))
        }
    }
}

/// `Err` says why, in words safe to send back.
fn authenticate(token: &ServiceToken, metadata: &MetadataMap) -> Result<(), &'static str> {
    let Some(value) = metadata.get(AUTHORIZATION) else {
        return Err("Missing service token: send the metadata 'authorization: Bearer <token>'");
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(bearer)
        .ok_or("Malformed authorization metadata: expected 'Bearer <token>'")?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err("Invalid service token")
    }
}

/// The credentials of a `Bearer` authorization value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(AUTHORIZATION, value.parse().unwrap());
        map
    }

    #[test]
    fn accepts_only_the_bearer_token() {
        let token = ServiceToken::new("s3cret-token");
        assert_eq!(
            authenticate(&token, &metadata("Bearer s3cret-token")),
            Ok(())
        );
        assert_eq!(
            authenticate(&token, &metadata("bearer  s3cret-token ")),
            Ok(())
        );
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer S3CRET-TOKEN",
        ] {
            assert_eq!(
                authenticate(&token, &metadata(wrong)),
                Err("Invalid service token"),
                "{wrong}"
            );
        }
        for malformed in ["s3cret-token", "Basic s3cret-token", "Bearer ", "Bearer"] {
            let refusal = authenticate(&token, &metadata(malformed)).unwrap_err();
            assert!(refusal.starts_with("Malformed"), "{malformed}: {refusal}");
        }
        let refusal = authenticate(&token, &MetadataMap::new()).unwrap_err();
        assert!(refusal.starts_with("Missing service token"), "{refusal}");
    }

    #[test]
    fn the_token_is_checked_and_never_shown() {
        assert!(ServiceToken::new("").check().is_err());
        assert!(ServiceToken::new("has space").check().is_err());
        assert!(ServiceToken::new("tab\there").check().is_err());
        assert!(ServiceToken::new("ok-Token_123~").check().is_ok());
        let token = ServiceToken::new("s3cret-token");
        assert!(!format!("{token:?}").contains("s3cret"));
        assert_eq!(token.expose(), "s3cret-token");
    }
}
