//! Failed calls: the gRPC code for the kind of failure, the bus's own error code in the
//! trailer (`arqon_proto::grpc::status`), and the message the client sees.

use tonic::{Code, Status};
use tracing::{debug, warn};

use arqon_bus::BusError;
use arqon_proto::grpc::{status, to_status};
use arqon_protocol::{ErrorCode, Failed, UserFacingError};

/// A request the caller must fix (`VALIDATION_ERROR` unless said otherwise).
pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Status {
    status(Code::InvalidArgument, code, message)
}

/// `VALIDATION_ERROR` with `message`.
pub fn validation(message: impl Into<String>) -> Status {
    invalid(ErrorCode::ValidationError, message)
}

/// `AUTHORIZATION_ERROR`.
pub fn forbidden(message: impl Into<String>) -> Status {
    status(
        Code::PermissionDenied,
        ErrorCode::AuthorizationError,
        message,
    )
}

/// `NOT_FOUND`.
pub fn not_found(message: impl Into<String>) -> Status {
    status(Code::NotFound, ErrorCode::NotFound, message)
}

/// `FEATURE_DISABLED`.
pub fn disabled(message: impl Into<String>) -> Status {
    status(
        Code::FailedPrecondition,
        ErrorCode::FeatureDisabled,
        message,
    )
}

/// `CONFLICT`: the state changed since the caller read it.
pub fn conflict(message: impl Into<String>) -> Status {
    status(Code::Aborted, ErrorCode::Conflict, message)
}

/// A bus failure while doing `verb`: the caller learns what failed, as the bus's errors
/// read to clients, the log why.
pub fn bus_failure(verb: &'static str, error: &BusError) -> Status {
    let failed = Failed::new(verb, error);
    if failed.code() == ErrorCode::ValidationError {
        debug!(%failed, "operators call refused");
    } else {
        warn!(%failed, "operators call failed on the bus");
    }
    to_status(&failed)
}
