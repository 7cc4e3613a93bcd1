//! The one error type of the bus layer.

/// What went wrong on the bus. Callers branch on the variant; the strings carry details
/// for logs and are not meant for clients (use [`BusError::code`] for anything a client
/// may see).
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
    /// A short, stable label: safe to show to clients and to use as a metric label.
    pub fn code(&self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_hide_details() {
        let err = BusError::Backend("secret internal detail".into());
        assert_eq!(err.code(), "backend");
        assert!(!err.code().contains("secret"));
        assert_eq!(BusError::Timeout.code(), "timeout");
        assert!(BusError::Unavailable("x".into()).is_transient());
        assert!(!BusError::WrongRevision.is_transient());
    }
}
