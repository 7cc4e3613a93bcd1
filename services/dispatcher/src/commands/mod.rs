//! Built-in commands. Each returns a [`CommandReply`] (and, for joins and leaves, the
//! membership change the edge applies).

mod args;
mod casil;
mod catalog;
pub(crate) mod channels;
mod history;
mod ops;
mod system;

use serde_json::{Map, Value};
use tracing::warn;

use arqon_proto::model::{Inbound, MembershipChange};
use arqon_protocol::{CommandReply, ErrorCode, Timestamp};

use crate::Context;
use crate::state::LookupError;
use args::Args;

/// The result of one command.
pub(crate) struct Outcome {
    pub(crate) reply: CommandReply,
    pub(crate) membership: Option<MembershipChange>,
}

impl From<CommandReply> for Outcome {
    fn from(reply: CommandReply) -> Self {
        Self {
            reply,
            membership: None,
        }
    }
}

/// What a command handler sees.
pub(crate) struct Call<'a> {
    pub(crate) context: &'a Context,
    pub(crate) inbound: &'a Inbound,
    pub(crate) args: Args,
}

impl Call<'_> {
    fn client(&self) -> &str {
        self.inbound.identity.client_id.as_str()
    }

    /// `queried_by` and `queried_at`, as the original's read commands report.
    fn queried(&self, data: &mut Map<String, Value>) {
        data.insert("queried_by".into(), Value::from(self.client()));
        data.insert(
            "queried_at".into(),
            Value::from(Timestamp::now().to_rfc3339()),
        );
    }
}

/// The `data` of a reply, from a `json!` object.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A bus failure inside a command: the client learns the command failed, the log why.
fn failed(code: ErrorCode, verb: &str, error: &dyn std::fmt::Display) -> CommandReply {
    warn!(%error, verb, "command failed on the bus");
    CommandReply::error(code, format!("Failed to {verb}: the bus is unavailable"))
}

/// A room or channel that is not there, with its own code and text; or a bus failure,
/// reported as `code`.
fn lookup_failed(code: ErrorCode, verb: &str, error: &LookupError) -> CommandReply {
    match error.not_found_code() {
        Some(not_found) => CommandReply::error(not_found, error.to_string()),
        None => failed(code, verb, error),
    }
}

pub(crate) async fn execute(context: &Context, inbound: &Inbound) -> Outcome {
    let name = inbound
        .envelope
        .command
        .as_deref()
        .map(str::trim)
        .unwrap_or_default();
    if name.is_empty() {
        return CommandReply::error(ErrorCode::MissingCommand, "Command name is required").into();
    }
    let Some(spec) = catalog::find(name) else {
        return CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {name}"),
        )
        .into();
    };
    if let Some(permission) = spec.permission
        && !inbound.identity.may(permission)
    {
        return CommandReply::error(
            ErrorCode::AuthorizationError,
            format!(
                "Authorization error: '{name}' needs the '{}' permission",
                permission.as_str()
            ),
        )
        .into();
    }
    if let Some(refusal) = spec.system_only
        && !inbound.identity.system
    {
        return CommandReply::error(ErrorCode::AuthorizationError, refusal).into();
    }
    let call = Call {
        context,
        inbound,
        args: Args::new(inbound.envelope.args.to_map()),
    };
    if let Some(reply) = ops::execute(&call, spec.name).await {
        return reply.into();
    }
    match spec.name {
        "ping" => system::ping(&call).into(),
        "status" => system::status(&call).await.into(),
        "help" => system::help(&call).into(),
        "create_channel" => channels::create(&call).await.into(),
        "delete_channel" => channels::delete(&call).await.into(),
        "join_channel" => channels::join(&call).await,
        "leave_channel" => channels::leave(&call).await,
        "list_channels" => channels::list(&call).await.into(),
        "channel_info" => channels::info(&call).await.into(),
        "history" => history::history(&call).await.into(),
        "op.casil.get" => casil::get(&call).await.into(),
        "op.casil.reload" => casil::reload(&call).await.into(),
        // `refresh` is answered by the edge; reaching here means an edge forwarded it.
        other => CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {other}"),
        )
        .into(),
    }
}
