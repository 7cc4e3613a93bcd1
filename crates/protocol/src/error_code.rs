//! The one list of machine-readable error codes.
//!
//! The same codes appear in WebSocket error envelopes, command responses, gRPC statuses
//! and metric labels, so the list is closed and each code has one spelling.

use std::fmt;
use std::str::FromStr;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)*) => {
        /// A machine-readable error code, spelled as the original spelled it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(ErrorCode::$variant),)*
                    _ => Err(UnknownErrorCode),
                }
            }
        }
    };
}

error_codes! {
    // Envelope level.
    /// The frame is not a valid envelope (including unparsable JSON and unknown fields).
    ValidationError = "VALIDATION_ERROR",
    /// Something failed inside the bus; details are logged, not sent.
    InternalError = "INTERNAL_ERROR",
    OperatorAuthFailed = "OPERATOR_AUTH_FAILED",
    CasilPolicyBlockedSecret = "CASIL_POLICY_BLOCKED_SECRET",
    CasilPolicyOversize = "CASIL_POLICY_OVERSIZE",
    CasilInternalError = "CASIL_INTERNAL_ERROR",
    /// The bus could not accept the envelope right now (for example NATS is unreachable);
    /// it was not delivered and may be retried.
    Unavailable = "UNAVAILABLE",
    /// The bus did not confirm the envelope in time; it may or may not have been delivered.
    Timeout = "TIMEOUT",
    /// The connection sent more envelopes than its rate limit allows; this one was dropped.
    RateLimited = "RATE_LIMITED",
    /// A token (sent with `refresh`) was refused.
    AuthenticationFailed = "AUTHENTICATION_FAILED",
    // Command responses.
    AuthorizationError = "AUTHORIZATION_ERROR",
    FeatureDisabled = "FEATURE_DISABLED",
    ExecutionError = "EXECUTION_ERROR",
    NotFound = "NOT_FOUND",
    MissingCommand = "MISSING_COMMAND",
    UnknownCommand = "UNKNOWN_COMMAND",
    StatusError = "STATUS_ERROR",
    PingError = "PING_ERROR",
    RoomNotFound = "ROOM_NOT_FOUND",
    ChannelNotFound = "CHANNEL_NOT_FOUND",
    ChannelRoomMismatch = "CHANNEL_ROOM_MISMATCH",
    ChannelExists = "CHANNEL_EXISTS",
    CreateChannelError = "CREATE_CHANNEL_ERROR",
    DeleteChannelError = "DELETE_CHANNEL_ERROR",
    JoinChannelError = "JOIN_CHANNEL_ERROR",
    LeaveChannelError = "LEAVE_CHANNEL_ERROR",
    ListChannelsError = "LIST_CHANNELS_ERROR",
    ChannelInfoError = "CHANNEL_INFO_ERROR",
    InvalidTimestamp = "INVALID_TIMESTAMP",
    HistoryError = "HISTORY_ERROR",
    HelpError = "HELP_ERROR",
    CommandNotFound = "COMMAND_NOT_FOUND",
    /// A private message named a client that is not connected in the sender's tenant.
    TargetNotFound = "TARGET_NOT_FOUND",
    /// A change was based on a version that is no longer the live one; read and retry.
    Conflict = "CONFLICT",
    /// A quota of the connection or the tenant is full (channels joined, ...): free
    /// something first, or ask the operator for more.
    QuotaExceeded = "QUOTA_EXCEEDED",
}

/// A string that is not one of the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownErrorCode;

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_round_trips_and_is_unique() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{code}"
            );
        }
        assert_eq!("nope".parse::<ErrorCode>(), Err(UnknownErrorCode));
    }
}
