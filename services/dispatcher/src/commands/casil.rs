//! `op.casil.get` and `op.casil.reload`: calls to the policy service's control API.

use serde_json::Value;
use tracing::warn;

use arqon_casil::Policy;
use arqon_proto::control::CallError;
use arqon_proto::policy::v1 as pb;
use arqon_protocol::{CommandReply, ErrorCode};

use super::args::{Arg, arg};
use super::{Call, Reply};
use crate::PolicyControl;

/// The settings `op.casil.reload` changes: its arguments, passed whole to the policy
/// service, which checks them.
pub(super) const SETTINGS: &[Arg] = &[
    arg("mode", false, "monitor or enforce"),
    arg("enabled", false, "inspect at all"),
    arg(
        "block_on_probable_secret",
        false,
        "block (in enforce mode) payloads with a probable secret",
    ),
    arg(
        "redaction_patterns",
        false,
        "secret patterns (regexes), a string or a list",
    ),
];

fn control<'a>(call: &Call<'a>) -> Result<&'a PolicyControl, CommandReply> {
    call.context.policy.as_ref().ok_or_else(|| {
        CommandReply::error(
            ErrorCode::FeatureDisabled,
            "CASIL control is not configured on this dispatcher (set ARQONBUS_POLICY_URL and ARQONBUS_SERVICE_TOKEN)",
        )
    })
}

/// The original's flat snapshot of the policy, with its `version`.
pub(super) fn snapshot(
    snapshot: &pb::PolicySnapshot,
) -> Result<serde_json::Map<String, Value>, CommandReply> {
    let policy = Policy::from_json(&snapshot.document_json).map_err(|e| {
        warn!(error = %e, "the policy service sent a policy this dispatcher cannot read");
        CommandReply::error(
            ErrorCode::InternalError,
            "The policy service sent a policy this dispatcher cannot read",
        )
    })?;
    let mut data = policy.snapshot();
    data.insert("version".into(), Value::from(snapshot.version));
    data.insert(
        "updated_at".into(),
        Value::from(snapshot.updated_at.clone()),
    );
    data.insert(
        "updated_by".into(),
        Value::from(snapshot.updated_by.clone()),
    );
    Ok(data)
}

/// A failed control call as the client sees it; logged when the policy service failed
/// rather than refused.
pub(super) fn refused(error: &CallError) -> CommandReply {
    if error.refusal().is_none() {
        warn!(%error, "CASIL control call failed");
    }
    CommandReply::failure(error)
}

pub(super) async fn get(call: &Call<'_>, (): ()) -> Reply {
    let live = control(call)?.get().await.map_err(|e| refused(&e))?;
    Ok(CommandReply::success(
        "CASIL policy snapshot",
        snapshot(&live)?,
    ))
}

/// Admin only (checked before the call, from the catalog); the arguments are the
/// changes, applied to the live policy by the policy service.
pub(super) async fn reload(call: &Call<'_>, (): ()) -> Reply {
    let control = control(call)?;
    let identity = &call.inbound.identity;
    let actor = match &identity.subject {
        Some(subject) => format!("{subject} ({})", identity.client_id),
        None => identity.client_id.to_string(),
    };
    let request = pb::ReloadPolicyRequest {
        candidate: Some(pb::Candidate {
            source: Some(pb::candidate::Source::ChangesJson(
                call.inbound.envelope.args.as_str().to_owned(),
            )),
        }),
        expected_version: None,
        actor,
    };
    let live = control.reload(request).await.map_err(|e| refused(&e))?;
    Ok(CommandReply::success(
        "CASIL policy reloaded",
        snapshot(&live)?,
    ))
}
