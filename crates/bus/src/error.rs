//! The one error type of the bus layer, and what a client is told of it.

use arqon_protocol::{ErrorCode, UserFacingError};

/// What went wrong on the bus. Callers branch on the variant; the strings carry details
/// for logs and are not meant for clients: what a client sees is its [`UserFacingError`]
/// form, usually as the reason of an [`arqon_protocol::Failed`] naming what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Not connected to NATS, or the connection was lost.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// No answer (reply, acknowledgement, flush) within the bound.
    #[error("bus operation timed out")]
    Timeout,
    /// A request found nobody subscribed to its subject.
    #[error("no responders")]
    NoResponders,
    /// A subject (or queue group) that NATS would refuse or misroute.
    #[error("invalid subject: {0}")]
    InvalidSubject(String),
    /// A KV key outside `[-/_=.a-zA-Z0-9]+` (no empty tokens, no leading/trailing `.`).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A header name or value that cannot travel in a NATS header block.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// A bucket or stream configuration that NATS would refuse.
    #[error("invalid bus configuration: {0}")]
    InvalidConfig(String),
    /// Headers plus payload exceed the limit (the server's max payload, or a bucket's
    /// `max_value_size`).
    #[error("payload too large: {size} bytes, the limit is {max}")]
    PayloadTooLarge {
        /// Size of the rejected message.
        size: usize,
        /// The limit it exceeded.
        max: usize,
    },
    /// `KvStore::create` on a key that has a value.
    #[error("key already exists")]
    AlreadyExists,
    /// `KvStore::update` with a revision that is not the key's latest.
    #[error("wrong revision")]
    WrongRevision,
    /// Anything else the backend reported.
    #[error("bus backend error: {0}")]
    Backend(String),
}

impl BusError {
    /// A short, stable label, e.g. of a metric.
    pub fn label(&self) -> &'static str {
        match self {
            BusError::Unavailable(_) => "unavailable",
            BusError::Timeout => "timeout",
            BusError::NoResponders => "no_responders",
            BusError::InvalidSubject(_) => "invalid_subject",
            BusError::InvalidKey(_) => "invalid_key",
            BusError::InvalidHeader(_) => "invalid_header",
            BusError::InvalidConfig(_) => "invalid_config",
            BusError::PayloadTooLarge { .. } => "payload_too_large",
            BusError::AlreadyExists => "already_exists",
            BusError::WrongRevision => "wrong_revision",
            BusError::Backend(_) => "backend",
        }
    }

    /// Whether retrying later may succeed (the connection or the server was the problem).
    pub fn is_transient(&self) -> bool {
        matches!(self, BusError::Unavailable(_) | BusError::Timeout)
    }
}

/// The one mapping of a bus failure to what a client sees, for every service: the bus
/// being down is `UNAVAILABLE` (retry later), a message over the bus's size the caller's
/// to fix, anything else a fault of ours (`INTERNAL_ERROR`).
impl UserFacingError for BusError {
    fn code(&self) -> ErrorCode {
        match self {
            BusError::Unavailable(_)
            | BusError::Timeout
            | BusError::NoResponders
            | BusError::Backend(_) => ErrorCode::Unavailable,
            BusError::PayloadTooLarge { .. } => ErrorCode::ValidationError,
            BusError::InvalidSubject(_)
            | BusError::InvalidKey(_)
            | BusError::InvalidHeader(_)
            | BusError::InvalidConfig(_)
            | BusError::AlreadyExists
            | BusError::WrongRevision => ErrorCode::InternalError,
        }
    }

    fn client_message(&self) -> String {
        match self {
            BusError::PayloadTooLarge { size, max } => {
                format!("it is {size} bytes; the bus accepts at most {max}")
            }
            other if other.code() == ErrorCode::Unavailable => "the bus is unavailable".into(),
            _ => "internal error".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_and_hide_details() {
        let err = BusError::Backend("secret internal detail".into());
        assert_eq!(err.label(), "backend");
        assert!(!err.label().contains("secret"));
        assert_eq!(BusError::Timeout.label(), "timeout");
        assert!(BusError::Unavailable("x".into()).is_transient());
        assert!(!BusError::WrongRevision.is_transient());
    }

    /// Every variant, as a client reads it: the code, and no detail.
    #[test]
    fn clients_see_a_code_and_no_detail() {
        let secret = || "nats://10.0.0.7:4222 secret".to_owned();
        let cases = [
            (
                BusError::Unavailable(secret()),
                ErrorCode::Unavailable,
                "the bus is unavailable",
            ),
            (
                BusError::Timeout,
                ErrorCode::Unavailable,
                "the bus is unavailable",
            ),
            (
                BusError::NoResponders,
                ErrorCode::Unavailable,
                "the bus is unavailable",
            ),
            (
                BusError::Backend(secret()),
                ErrorCode::Unavailable,
                "the bus is unavailable",
            ),
            (
                BusError::PayloadTooLarge {
                    size: 2000,
                    max: 1024,
                },
                ErrorCode::ValidationError,
                "it is 2000 bytes; the bus accepts at most 1024",
            ),
            (
                BusError::InvalidSubject(secret()),
                ErrorCode::InternalError,
                "internal error",
            ),
            (
                BusError::InvalidKey(secret()),
                ErrorCode::InternalError,
                "internal error",
            ),
            (
                BusError::InvalidHeader(secret()),
                ErrorCode::InternalError,
                "internal error",
            ),
            (
                BusError::InvalidConfig(secret()),
                ErrorCode::InternalError,
                "internal error",
            ),
            (
                BusError::AlreadyExists,
                ErrorCode::InternalError,
                "internal error",
            ),
            (
                BusError::WrongRevision,
                ErrorCode::InternalError,
                "internal error",
            ),
        ];
        for (error, code, message) in cases {
            assert_eq!(
                (error.code(), error.client_message().as_str()),
                (code, message),
                "{error:?}"
            );
        }
        let failed = arqon_protocol::Failed::new("publish", BusError::Timeout);
        assert_eq!(
            failed.client_message(),
            "Failed to publish: the bus is unavailable"
        );
    }
}
