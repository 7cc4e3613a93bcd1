//! What every client of another service's gRPC API shares, in process or remote: how
//! the remote end is reached (the URL setting, the service token as a bearer, traced,
//! connected lazily), how long a call may take, what the caller's own client is told
//! when a call does not succeed ([`CallError`]), and the errors of a bad configuration.
//! [`crate::policy_control`] and [`crate::operators_control`] are built on it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

use arqon_protocol::{ErrorCode, UserFacingError};

use crate::grpc::{Bearer, ServiceToken, error_code};
use crate::grpc_trace::Traced;

/// The longest a call may take (a policy reload waits for the bus to store it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A remote API's channel: traced, carrying the service token.
pub(crate) type Authenticated = InterceptedService<Traced<Channel>, Bearer>;

/// A service whose API others call, as its clients name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    /// Its name in messages: "policy", "operators".
    pub(crate) name: &'static str,
    /// The setting that gives its URL.
    pub(crate) setting: &'static str,
}

/// Why a service's API cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{setting} {url:?} is not a valid URL: {error}")]
    Url {
        setting: &'static str,
        url: String,
        error: String,
    },
    #[error("{setting} needs ARQONBUS_SERVICE_TOKEN, the token the {service} service expects")]
    NoToken {
        setting: &'static str,
        service: &'static str,
    },
    #[error("the service token cannot be used: {0}")]
    Token(&'static str),
}

impl Service {
    /// A lazily connected channel to the service at `url` (e.g. `http://policy:9200`),
    /// and the bearer that authenticates each call; it connects again after a failure.
    pub(crate) fn connect(
        self,
        url: &str,
        token: Option<&ServiceToken>,
    ) -> Result<(Traced<Channel>, Bearer), ControlError> {
        let token = token.ok_or(ControlError::NoToken {
            setting: self.setting,
            service: self.name,
        })?;
        let bearer = Bearer::new(token).map_err(ControlError::Token)?;
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ControlError::Url {
                setting: self.setting,
                url: url.to_owned(),
                error: e.to_string(),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok((Traced::client(channel), bearer))
    }

    /// Runs one call, in process or remote, bounded by [`CALL_TIMEOUT`]; `verb` says
    /// what it does (`"write the store value"`), for the caller's client should it fail.
    pub(crate) async fn call<T>(
        self,
        verb: &'static str,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CallError> {
        let status = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(response)) => return Ok(response.into_inner()),
            Ok(Err(status)) => status,
            Err(_) => Status::deadline_exceeded("no answer in time"),
        };
        Err(CallError {
            service: self.name,
            verb,
            status,
        })
    }
}

/// A call to another service that did not succeed. Its caller's client is told the
/// service's refusal as the service worded it (its code and message: the request was
/// the problem), or, when the service failed or was not reached, `UNAVAILABLE` naming
/// the service; `Display` says what happened, for the log.
#[derive(Debug)]
pub struct CallError {
    service: &'static str,
    verb: &'static str,
    status: Status,
}

impl CallError {
    /// The service's code, when it refused the request rather than failed: not when it
    /// could not do it (`UNAVAILABLE`, `TIMEOUT`), refused this service's token
    /// (`AUTHENTICATION_FAILED`: a fault of the deployment, not of the client), or gave
    /// no code (the link failed).
    pub fn refusal(&self) -> Option<ErrorCode> {
        error_code(&self.status).filter(|code| {
            !matches!(
                code,
                ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::AuthenticationFailed
            )
        })
    }

    /// The status the service answered with (or the timeout's).
    pub fn status(&self) -> &Status {
        &self.status
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} service could not {}: {:?}: {}",
            self.service,
            self.verb,
            self.status.code(),
            self.status.message()
        )
    }
}

impl std::error::Error for CallError {}

impl UserFacingError for CallError {
    fn code(&self) -> ErrorCode {
        self.refusal().unwrap_or(ErrorCode::Unavailable)
    }

    fn client_message(&self) -> String {
        match self.refusal() {
            Some(_) => self.status.message().to_owned(),
            None => format!(
                "Failed to {}: the {} service is unavailable",
                self.verb, self.service
            ),
        }
    }
}

/// Implements a service's server trait for its generated client, forwarding every
/// method: a remote API behind the same trait object as the in-process one.
macro_rules! forward {
    ($remote:ident($client:ident): $service:ident { $($method:ident($request:ident) -> $response:ident),* $(,)? }) => {
        struct $remote($client<$crate::control::Authenticated>);

        #[tonic::async_trait]
        impl $service for $remote {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<pb::$request>,
                ) -> Result<tonic::Response<pb::$response>, tonic::Status> {
                    self.0.clone().$method(request).await
                }
            )*
        }
    };
}
pub(crate) use forward;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::{refusal, status};
    use tonic::Code;

    const OPERATORS: Service = Service {
        name: "operators",
        setting: "ARQONBUS_OPERATORS_URL",
    };

    async fn failed(answer: Status) -> CallError {
        OPERATORS
            .call::<()>("write the store value", async { Err(answer) })
            .await
            .unwrap_err()
    }

    const UNAVAILABLE: &str =
        "Failed to write the store value: the operators service is unavailable";

    /// Every gRPC code without the bus's own code is the link's or the service's failure.
    #[tokio::test]
    async fn a_status_without_an_error_code_is_unavailable() {
        let codes = [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ];
        for code in codes {
            let error = failed(Status::new(code, "h2 protocol error: 10.0.0.7")).await;
            assert_eq!(error.code(), ErrorCode::Unavailable, "{code:?}");
            assert_eq!(error.client_message(), UNAVAILABLE, "{code:?}");
            assert!(error.to_string().contains("10.0.0.7"), "the log keeps it");
        }
    }

    /// Every error code the service gives: its refusals pass on as it worded them, its
    /// failures (and a refusal of this service's token) are `UNAVAILABLE`.
    #[tokio::test]
    async fn the_services_refusals_pass_on_and_its_failures_do_not() {
        for &code in ErrorCode::ALL {
            let error = failed(refusal(code, "Store key 'k' has no value")).await;
            let failure = matches!(
                code,
                ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::AuthenticationFailed
            );
            if failure {
                assert_eq!(error.code(), ErrorCode::Unavailable, "{code:?}");
                assert_eq!(error.client_message(), UNAVAILABLE, "{code:?}");
            } else {
                assert_eq!(error.code(), code);
                assert_eq!(error.client_message(), "Store key 'k' has no value");
            }
        }
        // The trailer decides, whatever the gRPC code.
        let odd = failed(status(
            Code::FailedPrecondition,
            ErrorCode::Conflict,
            "managed",
        ))
        .await;
        assert_eq!(
            (odd.code(), odd.client_message().as_str()),
            (ErrorCode::Conflict, "managed")
        );
    }
}
