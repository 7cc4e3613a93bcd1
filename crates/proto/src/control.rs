//! What every client of another service's gRPC API shares, in process or remote: how
//! the remote end is reached (the URL setting, the service token as a bearer, traced,
//! connected lazily), how long a call may take, and the errors of a bad configuration.
//! [`crate::policy_control`] and [`crate::operators_control`] are built on it.

use std::future::Future;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

use crate::grpc::{Bearer, ServiceToken};
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

    /// Runs one call, in process or remote, bounded by [`CALL_TIMEOUT`].
    pub(crate) async fn call<T>(
        self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result.map(Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the {} service did not answer in time",
                self.name
            ))),
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
