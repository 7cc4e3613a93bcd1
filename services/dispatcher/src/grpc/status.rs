//! gRPC statuses: the status code for the kind of failure, and the bus's own error code
//! (the one list shared with WebSocket error envelopes) in the `arqon-error-code` trailer.

use tonic::{Code, Status};
use tracing::{debug, warn};

use arqon_bus::BusError;
use arqon_protocol::ErrorCode;

use crate::state::LookupError;

pub(super) use arqon_proto::grpc::status;

/// A request the caller must fix.
pub(super) fn invalid(error: ErrorCode, message: impl Into<String>) -> Status {
    let message = message.into();
    debug!(%message, "gRPC request refused");
    status(Code::InvalidArgument, error, message)
}

/// A bus failure while doing `verb`: the caller learns what failed and whether to retry,
/// the log why.
pub(super) fn bus(verb: &str, error: &BusError) -> Status {
    match error {
        BusError::PayloadTooLarge { size, max } => invalid(
            ErrorCode::ValidationError,
            format!("The message is {size} bytes; the bus accepts at most {max}"),
        ),
        BusError::Unavailable(_)
        | BusError::Timeout
        | BusError::NoResponders
        | BusError::Backend(_) => {
            warn!(%error, verb, "gRPC call failed on the bus");
            status(
                Code::Unavailable,
                ErrorCode::Unavailable,
                format!("Failed to {verb}: the bus is unavailable. Retry later."),
            )
        }
        BusError::InvalidSubject(_)
        | BusError::InvalidKey(_)
        | BusError::InvalidHeader(_)
        | BusError::InvalidConfig(_)
        | BusError::AlreadyExists
        | BusError::WrongRevision => {
            warn!(%error, verb, "gRPC call failed inside the dispatcher");
            status(
                Code::Internal,
                ErrorCode::InternalError,
                format!("Failed to {verb}: internal error"),
            )
        }
    }
}

/// A channel or room that is not there (NOT_FOUND), or a bus failure.
pub(super) fn lookup(verb: &str, error: LookupError) -> Status {
    match &error {
        LookupError::Bus(e) => bus(verb, e),
        LookupError::RoomNotFound(_) | LookupError::ChannelNotFound(_) => {
            let code = error.not_found_code().unwrap_or(ErrorCode::NotFound);
            status(Code::NotFound, code, error.to_string())
        }
    }
}
