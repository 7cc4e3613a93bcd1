//! What every gRPC API of ArqonBus shares: the service token that authenticates callers,
//! and failed calls that carry the bus's own error code.
//!
//! Callers send `authorization: Bearer <token>`. The comparison is constant-time, so
//! response times do not tell a caller how much of a guess was right (only whether its
//! length was). No refusal repeats or hints at the token.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Status};
use tracing::info;

use arqon_protocol::{ErrorCode, UserFacingError};

/// The longest any call may take; every service bounds its own work more tightly.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `routes` on `listener` until `shutdown` resolves, then stops accepting and lets
/// the calls in flight finish.
pub async fn serve(
    routes: tonic::service::Routes,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .timeout(CALL_TIMEOUT)
        .layer(crate::grpc_trace::ServerLayer)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The metadata key that carries the token.
pub const AUTHORIZATION: &str = "authorization";

/// The trailer that carries the [`ErrorCode`] of a failed call.
pub const ERROR_CODE_METADATA: &str = "arqon-error-code";

/// The gRPC code of a failed call that carries `error`: one table for every API.
pub fn grpc_code(error: ErrorCode) -> Code {
    match error {
        ErrorCode::ValidationError
        | ErrorCode::InvalidTimestamp
        | ErrorCode::MissingCommand
        | ErrorCode::UnknownCommand
        | ErrorCode::ChannelRoomMismatch => Code::InvalidArgument,
        ErrorCode::NotFound
        | ErrorCode::RoomNotFound
        | ErrorCode::ChannelNotFound
        | ErrorCode::TargetNotFound
        | ErrorCode::CommandNotFound => Code::NotFound,
        ErrorCode::ChannelExists => Code::AlreadyExists,
        ErrorCode::AuthenticationFailed | ErrorCode::OperatorAuthFailed => Code::Unauthenticated,
        ErrorCode::AuthorizationError
        | ErrorCode::CasilPolicyBlockedSecret
        | ErrorCode::CasilPolicyOversize => Code::PermissionDenied,
        ErrorCode::FeatureDisabled => Code::FailedPrecondition,
        ErrorCode::Conflict => Code::Aborted,
        ErrorCode::QuotaExceeded | ErrorCode::RateLimited => Code::ResourceExhausted,
        // TIMEOUT: the bus did not confirm in time; retrying is the caller's call.
        ErrorCode::Unavailable | ErrorCode::Timeout => Code::Unavailable,
        ErrorCode::InternalError
        | ErrorCode::CasilInternalError
        | ErrorCode::ExecutionError
        | ErrorCode::StatusError
        | ErrorCode::PingError
        | ErrorCode::CreateChannelError
        | ErrorCode::DeleteChannelError
        | ErrorCode::JoinChannelError
        | ErrorCode::LeaveChannelError
        | ErrorCode::ListChannelsError
        | ErrorCode::ChannelInfoError
        | ErrorCode::HistoryError
        | ErrorCode::HelpError => Code::Internal,
    }
}

/// A failed call carrying `error`, its gRPC code from [`grpc_code`].
pub fn refusal(error: ErrorCode, message: impl Into<String>) -> Status {
    status(grpc_code(error), error, message)
}

/// What a gRPC caller is told of `error`.
pub fn to_status(error: &dyn UserFacingError) -> Status {
    refusal(error.code(), error.client_message())
}

/// A failed call: `code` for gRPC clients, `error` in the [`ERROR_CODE_METADATA`] trailer
/// (the one list shared with WebSocket error envelopes). [`refusal`] picks `code`; this
/// is for the few answers whose gRPC code says more than the table's.
pub fn status(code: Code, error: ErrorCode, message: impl Into<String>) -> Status {
    let mut status = Status::new(code, message);
    status.metadata_mut().insert(
        ERROR_CODE_METADATA,
        MetadataValue::from_static(error.as_str()),
    );
    status
}

/// The [`ErrorCode`] a failed call carries, if it carries a known one (what the caller's
/// client is told of it is [`crate::control::CallError`]'s to say).
pub fn error_code(status: &Status) -> Option<ErrorCode> {
    let value = status.metadata().get(ERROR_CODE_METADATA)?.to_str().ok()?;
    value.parse().ok()
}

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
    pub fn check(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Err("the service token is empty")
        } else if !self.0.bytes().all(|b| b.is_ascii_graphic()) {
            Err("the service token must be visible ASCII characters without spaces")
        } else {
            Ok(())
        }
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
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

/// The server-side interceptor every call passes before its request is decoded.
pub fn require(
    token: ServiceToken,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |request: Request<()>| match authenticate(&token, request.metadata()) {
        Ok(()) => Ok(request),
        Err(why) => {
            info!(peer = ?request.remote_addr(), why, "gRPC call refused");
            Err(refusal(ErrorCode::AuthenticationFailed, why))
        }
    }
}

/// The client-side interceptor: adds the token to every call.
#[derive(Clone, Debug)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// `Err` when the token cannot travel in metadata (see [`ServiceToken::check`]).
    pub fn new(token: &ServiceToken) -> Result<Self, &'static str> {
        token.check()?;
        format!("Bearer {}", token.expose())
            .parse()
            .map(Self)
            .map_err(|_| "the service token cannot be sent as gRPC metadata")
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(AUTHORIZATION, self.0.clone());
        Ok(request)
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

    /// Every error code travels in the trailer, under its gRPC code from the one table.
    #[test]
    fn every_error_code_has_one_grpc_code() {
        for &code in ErrorCode::ALL {
            let refused = refusal(code, "said");
            assert_eq!(refused.code(), grpc_code(code), "{code:?}");
            assert_eq!(error_code(&refused), Some(code));
            assert_eq!(refused.message(), "said");
        }
        for (error, code) in [
            (ErrorCode::ValidationError, Code::InvalidArgument),
            (ErrorCode::InvalidTimestamp, Code::InvalidArgument),
            (ErrorCode::NotFound, Code::NotFound),
            (ErrorCode::ChannelNotFound, Code::NotFound),
            (ErrorCode::AuthenticationFailed, Code::Unauthenticated),
            (ErrorCode::AuthorizationError, Code::PermissionDenied),
            (ErrorCode::FeatureDisabled, Code::FailedPrecondition),
            (ErrorCode::Conflict, Code::Aborted),
            (ErrorCode::QuotaExceeded, Code::ResourceExhausted),
            (ErrorCode::Unavailable, Code::Unavailable),
            (ErrorCode::Timeout, Code::Unavailable),
            (ErrorCode::InternalError, Code::Internal),
        ] {
            assert_eq!(grpc_code(error), code, "{error:?}");
        }
        let mut plain = Status::internal("no trailer");
        assert_eq!(error_code(&plain), None);
        plain.metadata_mut().insert(
            ERROR_CODE_METADATA,
            MetadataValue::from_static("NO_SUCH_CODE"),
        );
        assert_eq!(error_code(&plain), None);
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
