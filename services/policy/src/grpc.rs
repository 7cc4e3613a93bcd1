//! `arqon.policy.v1.Policy` (`proto/arqon/policy/v1/policy.proto`): the live policy, a
//! check of a candidate, and a reload. The same object serves remote calls (behind the
//! service token) and in-process ones (the dispatcher of a standalone process).

use std::sync::Arc;

use serde_json::{Map, Value};
use tonic::{Code, Request, Response, Status};
use tracing::{Instrument as _, warn};

use arqon_casil::{Decision, Engine, Policy, PolicyError as Invalid, Record};
use arqon_proto::grpc::{refusal, status, to_status};
use arqon_proto::policy::v1 as pb;
use arqon_protocol::{Envelope, ErrorCode, Failed, TenantId};

use crate::Context;
use crate::inspect::{self, Sender};
use crate::live::{Live, ReloadError};

/// The implementation of the service.
#[derive(Debug, Clone)]
pub struct PolicyApi {
    pub(crate) context: Arc<Context>,
    /// `namespace/name` of the `CasilPolicy` resource when it is the source.
    pub(crate) managed_by: Option<String>,
}

/// A candidate as the caller gave it.
enum Candidate {
    Document(String),
    Changes(Map<String, Value>),
}

impl Candidate {
    fn from_pb(candidate: Option<pb::Candidate>) -> Result<Self, Status> {
        use pb::candidate::Source;
        match candidate.and_then(|c| c.source) {
            Some(Source::Document(text)) => Ok(Self::Document(text)),
            Some(Source::ChangesJson(text)) => match serde_json::from_str(&text) {
                Ok(Value::Object(changes)) => Ok(Self::Changes(changes)),
                _ => Err(invalid("'changes_json' must be a JSON object")),
            },
            None => Err(invalid(
                "a candidate is required: 'document' or 'changes_json'",
            )),
        }
    }

    /// The policy this candidate makes of `live`.
    fn apply(&self, live: &Policy) -> Result<Policy, Invalid> {
        match self {
            Self::Document(text) => Policy::from_yaml(text),
            Self::Changes(changes) => live.with_changes(changes),
        }
    }
}

fn invalid(message: impl Into<String>) -> Status {
    refusal(ErrorCode::ValidationError, message)
}

fn snapshot(live: &Live) -> pb::PolicySnapshot {
    version(&live.record)
}

fn version(record: &Record) -> pb::PolicySnapshot {
    pb::PolicySnapshot {
        version: record.version,
        document_json: record.policy.to_json(),
        updated_at: record.updated_at.clone(),
        updated_by: record.updated_by.clone(),
    }
}

#[tonic::async_trait]
impl pb::policy_server::Policy for PolicyApi {
    async fn get_policy(
        &self,
        _request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, Status> {
        Ok(Response::new(snapshot(&self.context.store.current())))
    }

    async fn list_policy_versions(
        &self,
        _request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Result<Response<pb::PolicyVersions>, Status> {
        let records = self.context.store.versions().await.map_err(|e| {
            let failed = Failed::new("read the policy's versions", e);
            warn!(error = %failed, "CASIL versions not read");
            to_status(&failed)
        })?;
        Ok(Response::new(pb::PolicyVersions {
            versions: records.iter().map(version).collect(),
        }))
    }

    async fn validate_policy(
        &self,
        request: Request<pb::ValidatePolicyRequest>,
    ) -> Result<Response<pb::ValidatePolicyResponse>, Status> {
        let candidate = Candidate::from_pb(request.into_inner().candidate)?;
        let live = self.context.store.current();
        let checked = candidate
            .apply(live.engine.policy())
            .and_then(|policy| Engine::compile(policy.clone()).map(|_| policy));
        Ok(Response::new(match checked {
            Ok(policy) => pb::ValidatePolicyResponse {
                valid: true,
                problems: Vec::new(),
                document_json: policy.to_json(),
            },
            Err(e) => pb::ValidatePolicyResponse {
                valid: false,
                problems: e.problems().to_vec(),
                document_json: String::new(),
            },
        }))
    }

    async fn reload_policy(
        &self,
        request: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::PolicySnapshot>, Status> {
        // Retrying cannot help while Kubernetes holds the policy: FAILED_PRECONDITION,
        // not the table's ABORTED for a conflict (ADR 014).
        if let Some(resource) = &self.managed_by {
            return Err(status(
                Code::FailedPrecondition,
                ErrorCode::Conflict,
                format!(
                    "The CASIL policy is managed by the Kubernetes resource CasilPolicy {resource}: change it with kubectl apply."
                ),
            ));
        }
        let request = request.into_inner();
        let candidate = Candidate::from_pb(request.candidate)?;
        let actor = if request.actor.trim().is_empty() {
            "unknown"
        } else {
            request.actor.trim()
        };
        let reloaded = self
            .context
            .store
            .reload(request.expected_version, actor, |live| {
                candidate.apply(live)
            })
            .await;
        match reloaded {
            Ok(live) => Ok(Response::new(snapshot(&live))),
            Err(ReloadError::Invalid(e)) => Err(invalid(format!("Validation error: {e}"))),
            Err(e @ ReloadError::Conflict { .. }) => {
                Err(refusal(ErrorCode::Conflict, e.to_string()))
            }
            Err(ReloadError::Bus(e)) => {
                let failed = Failed::new("store the policy", e);
                warn!(error = %failed, "CASIL reload failed");
                Err(to_status(&failed))
            }
            Err(e @ ReloadError::Corrupt(_)) => {
                warn!(error = %e, "CASIL reload failed");
                Err(refusal(
                    ErrorCode::InternalError,
                    "Failed to store the policy: internal error",
                ))
            }
        }
    }

    async fn inspect(
        &self,
        request: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let request = request.into_inner();
        let tenant =
            TenantId::parse(&request.tenant).map_err(|e| invalid(format!("'tenant': {e}")))?;
        let mut envelope = Envelope::from_client_json(&request.envelope_json)
            .map_err(|e| invalid(format!("'envelope_json': {}", e.reasons().join("; "))))?;
        let origin = match request.origin.trim() {
            "" => "server",
            origin => origin,
        };
        let sender = Sender {
            tenant: &tenant,
            client_id: origin,
        };
        let span = inspect::span(|_| None);
        let (outcome, _) = inspect::decide(&self.context, &sender, &mut envelope, &span)
            .instrument(span.clone())
            .await;
        let blocked = outcome.decision == Decision::Block;
        Ok(Response::new(pb::InspectResponse {
            decision: outcome.decision.as_str().to_owned(),
            reason: outcome.reason.as_str().to_owned(),
            envelope_json: if blocked {
                String::new()
            } else {
                envelope.to_json()
            },
        }))
    }
}
