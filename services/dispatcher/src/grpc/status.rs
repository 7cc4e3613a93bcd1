//! gRPC statuses: the status code for the kind of failure, and the bus's own error code
//! (the one list shared with WebSocket error envelopes) in the `arqon-error-code` trailer,
//! both from what a client is told of the error (`arqon_proto::grpc::to_status`).

use tonic::Status;
use tracing::{debug, warn};

use arqon_bus::BusError;
use arqon_proto::grpc::{refusal, to_status};
use arqon_protocol::{ErrorCode, Failed, UserFacingError};

use crate::state::LookupError;

pub(super) use arqon_proto::grpc::status;

/// A request the caller must fix.
pub(super) fn invalid(error: ErrorCode, message: impl Into<String>) -> Status {
    let message = message.into();
    debug!(%message, "gRPC request refused");
    refusal(error, message)
}

/// A bus failure while doing `verb`: the caller learns what failed and whether to retry,
/// the log why.
pub(super) fn bus(verb: &'static str, error: &BusError) -> Status {
    let failed = Failed::new(verb, error);
    if failed.code() == ErrorCode::ValidationError {
        debug!(%failed, "gRPC request refused");
    } else {
        warn!(%failed, "gRPC call failed on the bus");
    }
    to_status(&failed)
}

/// A channel or room that is not there (NOT_FOUND), or a bus failure.
pub(super) fn lookup(verb: &'static str, error: LookupError) -> Status {
    match error {
        LookupError::Bus(e) => bus(verb, &e),
        not_found => to_status(&not_found),
    }
}
