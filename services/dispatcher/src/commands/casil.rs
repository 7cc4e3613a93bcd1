//! `op.casil.get`, `op.casil.reload`, `op.casil.validate` and `op.casil.history`: calls
//! to the policy service's control API.

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
        candidate: Some(changes(call)),
        expected_version: None,
        actor,
    };
    let live = control.reload(request).await.map_err(|e| refused(&e))?;
    Ok(CommandReply::success(
        "CASIL policy reloaded",
        snapshot(&live)?,
    ))
}

/// The reload arguments as a candidate: the changes, applied to the live policy by the
/// policy service.
fn changes(call: &Call<'_>) -> pb::Candidate {
    pb::Candidate {
        source: Some(pb::candidate::Source::ChangesJson(
            call.inbound.envelope.args.as_str().to_owned(),
        )),
    }
}

/// The system authority only (checked before the call, from the catalog): the
/// arguments of a reload, checked by the policy service exactly as a reload checks them,
/// and applied to nothing. Every problem is listed; a valid draft gives the policy a
/// reload would make live.
pub(super) async fn validate(call: &Call<'_>, (): ()) -> Reply {
    let request = pb::ValidatePolicyRequest {
        candidate: Some(changes(call)),
    };
    let checked = control(call)?
        .validate(request)
        .await
        .map_err(|e| refused(&e))?;
    let mut data = serde_json::Map::new();
    data.insert("valid".into(), Value::from(checked.valid));
    data.insert("problems".into(), Value::from(checked.problems));
    if checked.valid {
        let policy = Policy::from_json(&checked.document_json).map_err(|e| {
            warn!(error = %e, "the policy service validated a policy this dispatcher cannot read");
            CommandReply::error(
                ErrorCode::InternalError,
                "The policy service sent a policy this dispatcher cannot read",
            )
        })?;
        data.insert("policy".into(), Value::Object(policy.snapshot()));
    }
    let message = if checked.valid {
        "CASIL draft is valid"
    } else {
        "CASIL draft is invalid"
    };
    Ok(CommandReply::success(message, data))
}

/// The versions the bus still keeps (16 at most), newest first, each with its settings
/// under `op.casil.get`'s names.
pub(super) async fn history(call: &Call<'_>, (): ()) -> Reply {
    let kept = control(call)?.versions().await.map_err(|e| refused(&e))?;
    let mut versions = Vec::with_capacity(kept.versions.len());
    for version in kept.versions.iter().rev() {
        let mut entry = snapshot(version)?;
        let settings: serde_json::Map<String, Value> = entry
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "version" | "updated_at" | "updated_by"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        entry.retain(|name, _| matches!(name.as_str(), "version" | "updated_at" | "updated_by"));
        entry.insert("policy".into(), Value::Object(settings));
        versions.push(Value::Object(entry));
    }
    // Complete when the first version is still kept.
    let complete = kept.versions.first().is_none_or(|v| v.version <= 1);
    let mut data = serde_json::Map::new();
    data.insert("count".into(), Value::from(versions.len()));
    data.insert("versions".into(), Value::from(versions));
    data.insert("complete".into(), Value::from(complete));
    Ok(CommandReply::success("CASIL policy versions", data))
}
