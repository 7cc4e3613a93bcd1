//! The operators' commands (`op.store.*`, `op.webhook.*`, `op.cron.*`, `op.omega.*`):
//! each converts its arguments into a typed call to the operators service, and the
//! answer (or refusal) into the reply the original gave.

mod cron;
mod omega;
mod store;
mod webhook;

use serde_json::{Map, Value};
use tonic::Status;
use tracing::warn;

use arqon_proto::grpc::error_code;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::{CommandReply, ErrorCode};

use super::Call;
use super::catalog::Spec;

/// The operators' commands, for the catalog.
pub(crate) fn specs() -> impl Iterator<Item = &'static Spec> {
    store::SPECS
        .iter()
        .chain(webhook::SPECS)
        .chain(cron::SPECS)
        .chain(omega::SPECS)
}

/// Runs `name` if it is an operators command.
pub(crate) async fn execute(call: &Call<'_>, name: &str) -> Option<CommandReply> {
    let family = if name.starts_with("op.store.") {
        Family::Store
    } else if name.starts_with("op.webhook.") {
        Family::Webhook
    } else if name.starts_with("op.cron.") {
        Family::Cron
    } else if name.starts_with("op.omega.") {
        Family::Omega
    } else {
        return None;
    };
    let Some(control) = call.context.operators.as_ref() else {
        return Some(CommandReply::error(
            ErrorCode::FeatureDisabled,
            "Operators are not configured on this dispatcher (set ARQONBUS_OPERATORS_URL and ARQONBUS_SERVICE_TOKEN)",
        ));
    };
    Some(match family {
        Family::Store => store::execute(call, name, control).await,
        Family::Webhook => webhook::execute(call, name, control).await,
        Family::Cron => cron::execute(call, name, control).await,
        Family::Omega => omega::execute(call, name, control).await,
    })
}

enum Family {
    Store,
    Webhook,
    Cron,
    Omega,
}

/// The caller of an operators call: the client that sent the command.
fn caller(call: &Call<'_>) -> Option<pb::Caller> {
    let identity = &call.inbound.identity;
    Some(pb::Caller {
        tenant: identity.tenant.to_string(),
        client_id: identity.client_id.to_string(),
        admin: identity.role.is_admin(),
        subject: identity.subject.clone(),
        system: identity.system,
    })
}

/// A refused or failed call as the client sees it: the operators' own code and message
/// (with `data`, e.g. the id a `NOT_FOUND` was about), or `UNAVAILABLE`.
fn refused(verb: &str, status: &Status, data: Map<String, Value>) -> CommandReply {
    match error_code(status) {
        Some(ErrorCode::Unavailable) | None => {
            warn!(verb, code = ?status.code(), message = status.message(), "operators call failed");
            CommandReply::error(
                ErrorCode::Unavailable,
                format!("Failed to {verb}: the operators service is unavailable"),
            )
        }
        Some(code) => CommandReply::error_with_data(code, status.message(), data),
    }
}
