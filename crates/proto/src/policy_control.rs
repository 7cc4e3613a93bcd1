//! The policy service's API as the other services call it: the dispatcher for
//! `op.casil.get` and `op.casil.reload` and to inspect a gRPC `Publish`, the operators
//! to inspect cron firings. Over gRPC with the service token, or in process
//! (standalone).

use std::fmt;
use std::sync::Arc;

use tonic::Request;

use crate::control::{CallError, ControlError, Service, forward};
use crate::grpc::ServiceToken;
use crate::policy::v1 as pb;
use crate::policy::v1::policy_client::PolicyClient;
use crate::policy::v1::policy_server::Policy;

#[cfg(feature = "testing")]
mod testing;
#[cfg(feature = "testing")]
pub use testing::allow_all;

/// The policy service, as its clients name it.
const POLICY: Service = Service {
    name: "policy",
    setting: "ARQONBUS_POLICY_URL",
};

/// A handle on the policy service's control API.
#[derive(Clone)]
pub struct PolicyControl(Arc<dyn Policy>);

impl fmt::Debug for PolicyControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PolicyControl")
    }
}

impl PolicyControl {
    /// Calls `api` directly, in this process.
    pub fn in_process(api: impl Policy) -> Self {
        Self(Arc::new(api))
    }

    /// Calls the policy service at `url` (e.g. `http://policy:9200`), connecting on
    /// first use and again after a failure.
    pub fn remote(url: &str, token: Option<&ServiceToken>) -> Result<Self, ControlError> {
        let (channel, bearer) = POLICY.connect(url, token)?;
        Ok(Self(Arc::new(Remote(PolicyClient::with_interceptor(
            channel, bearer,
        )))))
    }

    /// The live policy.
    pub async fn get(&self) -> Result<pb::PolicySnapshot, CallError> {
        let get = self.0.get_policy(Request::new(pb::GetPolicyRequest {}));
        POLICY.call("read the CASIL policy", get).await
    }

    /// Checks a candidate without applying it.
    pub async fn validate(
        &self,
        request: pb::ValidatePolicyRequest,
    ) -> Result<pb::ValidatePolicyResponse, CallError> {
        let validate = self.0.validate_policy(Request::new(request));
        POLICY.call("validate the CASIL policy", validate).await
    }

    /// The versions the bus still keeps, oldest first.
    pub async fn versions(&self) -> Result<pb::PolicyVersions, CallError> {
        let list = self
            .0
            .list_policy_versions(Request::new(pb::ListPolicyVersionsRequest {}));
        POLICY.call("read the CASIL policy's versions", list).await
    }

    /// Stores a new version.
    pub async fn reload(
        &self,
        request: pb::ReloadPolicyRequest,
    ) -> Result<pb::PolicySnapshot, CallError> {
        let reload = self.0.reload_policy(Request::new(request));
        POLICY.call("reload the CASIL policy", reload).await
    }

    /// Inspects a message the server originates, as the policy stage inspects a
    /// client's.
    pub async fn inspect(
        &self,
        request: pb::InspectRequest,
    ) -> Result<pb::InspectResponse, CallError> {
        let inspect = self.0.inspect(Request::new(request));
        POLICY.call("inspect the message", inspect).await
    }
}

forward!(Remote(PolicyClient): Policy {
    get_policy(GetPolicyRequest) -> PolicySnapshot,
    validate_policy(ValidatePolicyRequest) -> ValidatePolicyResponse,
    list_policy_versions(ListPolicyVersionsRequest) -> PolicyVersions,
    reload_policy(ReloadPolicyRequest) -> PolicySnapshot,
    inspect(InspectRequest) -> InspectResponse,
});
