//! The policy service's API as the other services call it: the dispatcher for
//! `op.casil.get` and `op.casil.reload` and to inspect a gRPC `Publish`, the operators
//! to inspect cron firings. Over gRPC with the service token, or in process
//! (standalone).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::grpc::{Bearer, ServiceToken};
use crate::grpc_trace::Traced;
use crate::policy::v1 as pb;
use crate::policy::v1::policy_client::PolicyClient;
use crate::policy::v1::policy_server::Policy;

#[cfg(feature = "testing")]
mod testing;
#[cfg(feature = "testing")]
pub use testing::allow_all;

/// The longest a control call may take (a reload waits for the bus to store it).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the policy service's control API.
#[derive(Clone)]
pub struct PolicyControl(Arc<dyn Policy>);

impl fmt::Debug for PolicyControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PolicyControl")
    }
}

/// Why the control API cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum PolicyControlError {
    #[error("ARQONBUS_POLICY_URL {url:?} is not a valid URL: {error}")]
    Url { url: String, error: String },
    #[error(
        "ARQONBUS_POLICY_URL needs ARQONBUS_SERVICE_TOKEN, the token the policy service expects"
    )]
    NoToken,
    #[error("the service token cannot be used: {0}")]
    Token(&'static str),
}

impl PolicyControl {
    /// Calls `api` directly, in this process.
    pub fn in_process(api: impl Policy) -> Self {
        Self(Arc::new(api))
    }

    /// Calls the policy service at `url` (e.g. `http://policy:9200`), connecting on
    /// first use and again after a failure.
    pub fn remote(url: &str, token: Option<&ServiceToken>) -> Result<Self, PolicyControlError> {
        let token = token.ok_or(PolicyControlError::NoToken)?;
        let bearer = Bearer::new(token).map_err(PolicyControlError::Token)?;
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| PolicyControlError::Url {
                url: url.to_owned(),
                error: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        let client =
            PolicyClient::with_interceptor(Traced::client(endpoint.connect_lazy()), bearer);
        Ok(Self(Arc::new(Remote { client })))
    }

    /// The live policy.
    pub async fn get(&self) -> Result<pb::PolicySnapshot, Status> {
        let call = self.0.get_policy(Request::new(pb::GetPolicyRequest {}));
        bounded(call).await
    }

    /// Stores a new version.
    pub async fn reload(
        &self,
        request: pb::ReloadPolicyRequest,
    ) -> Result<pb::PolicySnapshot, Status> {
        bounded(self.0.reload_policy(Request::new(request))).await
    }

    /// Inspects a message the server originates, as the policy stage inspects a
    /// client's.
    pub async fn inspect(
        &self,
        request: pb::InspectRequest,
    ) -> Result<pb::InspectResponse, Status> {
        bounded(self.0.inspect(Request::new(request))).await
    }
}

async fn bounded<T>(call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result.map(Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(
            "the policy service did not answer in time",
        )),
    }
}

/// The network client, behind the same trait the in-process API implements.
struct Remote {
    client: PolicyClient<InterceptedService<Traced<Channel>, Bearer>>,
}

#[tonic::async_trait]
impl Policy for Remote {
    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, Status> {
        self.client.clone().get_policy(request).await
    }

    async fn validate_policy(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        self.client.clone().validate_policy(request).await
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, Status> {
        self.client.clone().reload_policy(request).await
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        self.client.clone().inspect(request).await
    }
}
