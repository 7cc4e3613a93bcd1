//! Errors of the client.

/// What went wrong talking to the bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// The connection could not be opened (including a refused upgrade, such as 401).
    #[error("Failed to connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The connection is closed.
    #[error("Client is not connected")]
    Closed,
    /// Nothing arrived in time.
    #[error("Timed out waiting for message")]
    Timeout,
    /// The server sent something that is not an envelope.
    #[error("Invalid frame from the server: {0}")]
    Protocol(String),
    /// The bus refused an envelope or a command failed.
    #[error("{code}: {message}")]
    Rejected { code: String, message: String },
    /// The argument could not be sent as an envelope.
    #[error("Invalid request: {0}")]
    Invalid(String),
}
