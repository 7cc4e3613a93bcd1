//! A policy service that lets every message through unchanged, for the unit tests of the
//! services (feature `testing`; the end-to-end tests inspect with the real policy stage).

use tonic::{Request, Response, Status};

use super::PolicyControl;
use crate::policy::v1 as pb;
use crate::policy::v1::policy_server::Policy;

struct AllowAll;

/// A control whose `inspect` lets everything through unchanged; the other calls fail.
pub fn allow_all() -> PolicyControl {
    PolicyControl::in_process(AllowAll)
}

#[tonic::async_trait]
impl Policy for AllowAll {
    async fn get_policy(
        &self,
        _request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }

    async fn validate_policy(
        &self,
        _request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }

    async fn list_policy_versions(
        &self,
        _request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Result<Response<pb::PolicyVersions>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }

    async fn reload_policy(
        &self,
        _request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        Ok(Response::new(pb::InspectResponse {
            decision: "ALLOW".to_owned(),
            reason: "CASIL_OK".to_owned(),
            envelope_json: request.into_inner().envelope_json,
        }))
    }
}
