//! Errors that know their audience: the code a client gets and a message safe to show it
//! (neon's proxy marks its errors the same way). What went wrong inside stays in the
//! error's `Display`, for logs. Each service maps its errors to what a client sees once,
//! where they leave it: a WebSocket reply, a gRPC status.

use std::fmt;

use crate::ErrorCode;

/// An error a client may be told about; its `Display` is for logs.
pub trait UserFacingError: fmt::Display {
    /// The code of the client's error envelope or gRPC status.
    fn code(&self) -> ErrorCode;
    /// What the client reads: no internals (addresses, keys, backend errors).
    fn client_message(&self) -> String;
}

/// `error` while doing `verb` (a phrase such as `"write the store value"`): to a client,
/// `Failed to <verb>: <error's client message>`, with the error's code.
#[derive(Debug)]
pub struct Failed<E> {
    pub verb: &'static str,
    pub error: E,
}

impl<E> Failed<E> {
    pub fn new(verb: &'static str, error: E) -> Self {
        Self { verb, error }
    }
}

impl<E: fmt::Display> fmt::Display for Failed<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}: {}", self.verb, self.error)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Failed<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<E: UserFacingError> UserFacingError for Failed<E> {
    fn code(&self) -> ErrorCode {
        self.error.code()
    }

    fn client_message(&self) -> String {
        format!("Failed to {}: {}", self.verb, self.error.client_message())
    }
}

impl<E: UserFacingError + ?Sized> UserFacingError for &E {
    fn code(&self) -> ErrorCode {
        (**self).code()
    }

    fn client_message(&self) -> String {
        (**self).client_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("disk 7 is on fire")]
    struct Broken;

    impl UserFacingError for Broken {
        fn code(&self) -> ErrorCode {
            ErrorCode::Unavailable
        }

        fn client_message(&self) -> String {
            "the store is unavailable".into()
        }
    }

    #[test]
    fn a_failure_names_what_failed_and_keeps_the_detail_for_logs() {
        let failed = Failed::new("write the value", Broken);
        assert_eq!(failed.code(), ErrorCode::Unavailable);
        assert_eq!(
            failed.client_message(),
            "Failed to write the value: the store is unavailable"
        );
        assert_eq!(
            failed.to_string(),
            "failed to write the value: disk 7 is on fire"
        );
    }
}
