//! The edge's settings: flags, each with an `ARQONBUS_*` environment variable.

use std::time::Duration;

use clap::builder::BoolishValueParser;

use crate::{Authenticator, EdgeError};

/// Settings of the WebSocket edge. The listeners are bound by the caller.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// Require a JWT on every upgrade. Turning this off gives every connection the
    /// `default` tenant and no admin rights.
    #[arg(
        long = "enable-auth",
        env = "ARQONBUS_ENABLE_AUTH",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub enable_auth: bool,

    /// The HS256 secret tokens are signed with. Required when authentication is on.
    #[arg(
        long = "jwt-secret",
        env = "ARQONBUS_AUTH_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// The largest WebSocket message accepted, in bytes (at least 1024). A larger one
    /// closes the connection with code 1009.
    #[arg(
        long = "max-message-size",
        env = "ARQONBUS_MAX_MESSAGE_SIZE",
        default_value_t = 1_048_576,
        value_parser = clap::value_parser!(u32).range(1024..),
    )]
    pub max_message_size: u32,

    /// Frames waiting to be written to one connection. A client that lets its queue fill
    /// up is disconnected as too slow (close code 4008).
    #[arg(
        long = "outbound-queue",
        env = "ARQONBUS_OUTBOUND_QUEUE",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub outbound_queue: u32,

    /// How long the edge waits for the pipeline to confirm one envelope before telling the
    /// client it timed out, in milliseconds.
    #[arg(
        long = "pipeline-timeout-ms",
        env = "ARQONBUS_PIPELINE_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub pipeline_timeout_ms: u64,
}

impl EdgeConfig {
    /// Defaults for tests and embedding: authentication on with `secret`.
    pub fn with_secret(secret: impl Into<String>) -> Self {
        Self {
            enable_auth: true,
            jwt_secret: Some(secret.into()),
            max_message_size: 1_048_576,
            outbound_queue: 1024,
            pipeline_timeout_ms: 5000,
        }
    }

    /// The token verifier these settings ask for: `None` when authentication is off, an
    /// error when it is on without a secret (the edge refuses to start rather than
    /// accept anyone).
    pub fn authenticator(&self) -> Result<Option<Authenticator>, EdgeError> {
        match (self.enable_auth, self.jwt_secret.as_deref()) {
            (false, _) => Ok(None),
            (true, Some(secret)) if !secret.is_empty() => {
                Ok(Some(Authenticator::hs256(secret.as_bytes())))
            }
            (true, _) => Err(EdgeError::Config(
                "authentication is on but no JWT secret is set: set ARQONBUS_AUTH_JWT_SECRET \
                 (or --jwt-secret), or turn authentication off with ARQONBUS_ENABLE_AUTH=false \
                 for local development"
                    .to_owned(),
            )),
        }
    }

    pub fn pipeline_timeout(&self) -> Duration {
        Duration::from_millis(self.pipeline_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_on_without_a_secret_is_refused() {
        let mut config = EdgeConfig::with_secret("s");
        assert!(config.authenticator().unwrap().is_some());
        config.jwt_secret = None;
        let err = config.authenticator().unwrap_err().to_string();
        assert!(err.contains("ARQONBUS_AUTH_JWT_SECRET"), "{err}");
        config.jwt_secret = Some(String::new());
        assert!(config.authenticator().is_err());
        config.enable_auth = false;
        assert!(config.authenticator().unwrap().is_none());
    }
}
