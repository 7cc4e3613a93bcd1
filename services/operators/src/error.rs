//! Why an operators call did not succeed, as the operators say it, and the one place it
//! becomes a gRPC status: the API layer (`grpc_api!`, which implements each gRPC service
//! by its domain methods) converts it with the `From` below, and nothing else builds a
//! status. The client sees the error's code and message (`UserFacingError`); a bus
//! failure's detail goes to the log.

use tonic::Status;
use tracing::{debug, warn};

use arqon_bus::BusError;
use arqon_proto::grpc::to_status;
use arqon_protocol::{ErrorCode, Failed, UserFacingError};

/// An operators call refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is wrong (`VALIDATION_ERROR`), as the text says.
    #[error("{0}")]
    Invalid(String),
    /// The caller may not (`AUTHORIZATION_ERROR`).
    #[error("{0}")]
    Forbidden(String),
    /// What the request names is not there, or not the caller's to see (`NOT_FOUND`).
    #[error("{0}")]
    NotFound(String),
    /// The operator is switched off (`FEATURE_DISABLED`).
    #[error("{0}")]
    Disabled(String),
    /// The state changed since the caller read it (`CONFLICT`).
    #[error("{0}")]
    Conflict(String),
    /// The bus failed while doing something.
    #[error(transparent)]
    Bus(Failed<BusError>),
}

/// `VALIDATION_ERROR` with `message`.
pub fn validation(message: impl Into<String>) -> ApiError {
    ApiError::Invalid(message.into())
}

/// `AUTHORIZATION_ERROR`.
pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::Forbidden(message.into())
}

/// `NOT_FOUND`.
pub fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::NotFound(message.into())
}

/// `FEATURE_DISABLED`.
pub fn disabled(message: impl Into<String>) -> ApiError {
    ApiError::Disabled(message.into())
}

/// `CONFLICT`: the state changed since the caller read it.
pub fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::Conflict(message.into())
}

/// The bus failed while doing `verb`.
pub fn bus_failure(verb: &'static str, error: &BusError) -> ApiError {
    ApiError::Bus(Failed::new(verb, error.clone()))
}

impl UserFacingError for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            ApiError::Invalid(_) => ErrorCode::ValidationError,
            ApiError::Forbidden(_) => ErrorCode::AuthorizationError,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Disabled(_) => ErrorCode::FeatureDisabled,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Bus(failed) => failed.code(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            ApiError::Bus(failed) => failed.client_message(),
            refused => refused.to_string(),
        }
    }
}

/// The API layer's conversion; a failure of ours is logged here, once.
impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error.code() {
            ErrorCode::Unavailable | ErrorCode::InternalError => {
                warn!(%error, "operators call failed");
            }
            _ => debug!(%error, "operators call refused"),
        }
        to_status(&error)
    }
}

/// Implements the gRPC service `$service` for `$api` by its inherent methods of the same
/// names, each taking the request's message and answering `Result<_, ApiError>`.
macro_rules! grpc_api {
    ($api:ident: $service:path { $($method:ident($request:ident) -> $response:ident),* $(,)? }) => {
        #[tonic::async_trait]
        impl $service for $api {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<pb::$request>,
                ) -> Result<tonic::Response<pb::$response>, tonic::Status> {
                    $api::$method(self, request.into_inner())
                        .await
                        .map(tonic::Response::new)
                        .map_err(tonic::Status::from)
                }
            )*
        }
    };
}
pub(crate) use grpc_api;

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_proto::grpc::error_code;
    use tonic::Code;

    /// Each error as a gRPC caller (and, through the dispatcher, a WebSocket client)
    /// gets it.
    #[test]
    fn every_error_has_its_code_and_message() {
        let cases = [
            (
                validation("'key' is required"),
                Code::InvalidArgument,
                ErrorCode::ValidationError,
                "'key' is required",
            ),
            (
                forbidden("Only admins"),
                Code::PermissionDenied,
                ErrorCode::AuthorizationError,
                "Only admins",
            ),
            (
                not_found("Cron job 'x' not found"),
                Code::NotFound,
                ErrorCode::NotFound,
                "Cron job 'x' not found",
            ),
            (
                disabled("off"),
                Code::FailedPrecondition,
                ErrorCode::FeatureDisabled,
                "off",
            ),
            (
                conflict("changed"),
                Code::Aborted,
                ErrorCode::Conflict,
                "changed",
            ),
            (
                bus_failure(
                    "list cron jobs",
                    &BusError::Unavailable("nats://10.0.0.7".into()),
                ),
                Code::Unavailable,
                ErrorCode::Unavailable,
                "Failed to list cron jobs: the bus is unavailable",
            ),
            (
                bus_failure(
                    "write the store value",
                    &BusError::InvalidKey("d..x".into()),
                ),
                Code::Internal,
                ErrorCode::InternalError,
                "Failed to write the store value: internal error",
            ),
            (
                bus_failure(
                    "emit the Tier-Omega event",
                    &BusError::PayloadTooLarge { size: 9, max: 8 },
                ),
                Code::InvalidArgument,
                ErrorCode::ValidationError,
                "Failed to emit the Tier-Omega event: it is 9 bytes; the bus accepts at most 8",
            ),
        ];
        for (error, code, error_code_, message) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code);
            assert_eq!(error_code(&status), Some(error_code_));
            assert_eq!(status.message(), message);
        }
    }
}
