//! Built-in commands. `catalog.rs` lists them, each with its handler: an async function
//! taking the command's typed request, parsed once from its `args` (`args.rs`), and
//! returning a [`CommandReply`] (and, for joins and leaves, the membership change the
//! edge applies).

/// A catalog entry's handler: `$handler(call, request)`, its request parsed first.
macro_rules! handler {
    ($handler:path) => {
        $crate::commands::catalog::Handler {
            run: |call| {
                Box::pin($crate::commands::run(call, move |request| {
                    $handler(call, request)
                }))
            },
            #[cfg(test)]
            parse: |reader| $crate::commands::parse_for(&$handler, reader),
        }
    };
}

mod args;
mod casil;
mod catalog;
pub(crate) mod channels;
mod history;
mod ops;
mod overview;
mod rooms;
mod system;
mod tenants;

use std::future::Future;

use serde_json::{Map, Value};
use tracing::warn;

use arqon_bus::BusError;
use arqon_proto::model::{Inbound, MembershipChange};
use arqon_protocol::{CommandReply, ErrorCode, Failed, Timestamp, UserFacingError};

use crate::Context;
use crate::state::LookupError;
use args::{Parse, Reader};
use catalog::{Access, Spec};

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

/// What a handler returns: its success, or the reply that refuses the command.
pub(crate) type Reply<T = CommandReply> = Result<T, CommandReply>;

/// What a command handler sees besides its request.
pub(crate) struct Call<'a> {
    pub(crate) context: &'a Context,
    pub(crate) inbound: &'a Inbound,
    spec: &'static Spec,
    args: Map<String, Value>,
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

/// Parses the command's arguments into `A`, then runs `handler` with them.
async fn run<A, T, F>(call: &Call<'_>, handler: impl FnOnce(A) -> F) -> Outcome
where
    A: Parse,
    T: Into<Outcome>,
    F: Future<Output = Reply<T>>,
{
    let request = A::parse(&Reader::new(&call.args, call.spec.family));
    match request {
        Ok(request) => handler(request)
            .await
            .map_or_else(Outcome::from, Into::into),
        Err(refusal) => refusal.into(),
    }
}

/// Parses arguments as `handler`'s request, and only that.
#[cfg(test)]
fn parse_for<'a, A: Parse, F, R>(_: &F, reader: &Reader<'_>) -> Reply<()>
where
    F: Fn(&'a Call<'a>, A) -> R,
{
    A::parse(reader).map(drop)
}

/// The `data` of a reply, from a `json!` object.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A success whose `data` is a `json!` object.
fn success(message: impl Into<String>, data: Value) -> CommandReply {
    CommandReply::success(message, object(data))
}

/// A bus failure inside a command: the client learns what failed (as the bus's errors
/// read, under the command's own `code`, as the original's commands reported theirs), the
/// log why.
fn failed(code: ErrorCode, verb: &'static str, error: &BusError) -> CommandReply {
    warn!(%error, verb, "command failed on the bus");
    CommandReply::error(code, Failed::new(verb, error).client_message())
}

/// A room or channel that is not there, with its own code and text; or a bus failure,
/// reported as `code`.
fn lookup_failed(code: ErrorCode, verb: &'static str, error: &LookupError) -> CommandReply {
    match error {
        LookupError::Bus(e) => failed(code, verb, e),
        not_found => CommandReply::failure(not_found),
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
    match spec.access {
        Access::Needs(permission) if !inbound.identity.may(permission) => {
            let refusal = format!(
                "Authorization error: '{name}' needs the '{}' permission",
                permission.as_str()
            );
            return CommandReply::error(ErrorCode::AuthorizationError, refusal).into();
        }
        Access::System(refusal) if !inbound.identity.system => {
            return CommandReply::error(ErrorCode::AuthorizationError, refusal).into();
        }
        _ => {}
    }
    let call = Call {
        context,
        inbound,
        spec,
        args: inbound.envelope.args.to_map(),
    };
    (spec.handler.run)(&call).await
}
