//! The operators' commands (`op.store.*`, `op.webhook.*`, `op.cron.*`, `op.omega.*`):
//! each parses its arguments into the typed request of an operators API call, and turns
//! the answer (or refusal) into the reply the original gave.

/// A catalog entry's handler for an operators command: `$handler(call, control,
/// request)`, once the operators service is known to be configured (`FEATURE_DISABLED`
/// otherwise, whatever the arguments) and the request parsed, the caller in it.
macro_rules! operators {
    ($handler:path) => {
        $crate::commands::catalog::Handler {
            run: |call| {
                Box::pin($crate::commands::ops::run(call, move |control, request| {
                    $handler(call, control, request)
                }))
            },
            #[cfg(test)]
            parse: |reader| $crate::commands::ops::parse_for(&$handler, reader),
        }
    };
}

mod cron;
mod omega;
mod store;
mod webhook;

#[cfg(test)]
mod tests;

use std::future::Future;

use serde_json::Value;
use tonic::{Response, Status};
use tracing::warn;

use arqon_proto::control::CallError;
use arqon_proto::operators::v1 as pb;
use arqon_proto::operators_control::{OperatorsControl, call as bounded};
use arqon_protocol::{CommandReply, ErrorCode};

use super::args::Parse;
#[cfg(test)]
use super::args::Reader;
use super::catalog::Spec;
use super::{Call, Outcome, Reply};

/// The operators' commands, for the catalog.
pub(crate) fn specs() -> impl Iterator<Item = &'static Spec> {
    store::SPECS
        .iter()
        .chain(webhook::SPECS)
        .chain(cron::SPECS)
        .chain(omega::SPECS)
}

/// The request of an operators call, which names the client it is made for.
trait OperatorsRequest: Parse {
    fn with_caller(self, caller: pb::Caller) -> Self;
}

macro_rules! requests {
    ($($request:ident),* $(,)?) => {$(
        impl OperatorsRequest for pb::$request {
            fn with_caller(mut self, caller: pb::Caller) -> Self {
                self.caller = Some(caller);
                self
            }
        }
    )*};
}
requests!(
    SetRequest,
    GetRequest,
    DeleteRequest,
    ListRequest,
    RegisterWebhookRequest,
    ListWebhooksRequest,
    UnregisterWebhookRequest,
    WebhookOutcomesRequest,
    ScheduleRequest,
    ListJobsRequest,
    CancelJobRequest,
    OmegaStatusRequest,
    RegisterSubstrateRequest,
    ListSubstratesRequest,
    UnregisterSubstrateRequest,
    EmitEventRequest,
    ClearEventsRequest,
);

/// The requests of the commands that take no arguments.
macro_rules! no_arguments {
    ($($request:ident),* $(,)?) => {$(
        impl Parse for pb::$request {
            fn parse(_: &super::args::Reader<'_>) -> Reply<Self> {
                Ok(Self::default())
            }
        }
    )*};
}
no_arguments!(
    ListWebhooksRequest,
    WebhookOutcomesRequest,
    ListJobsRequest,
    OmegaStatusRequest,
    ListSubstratesRequest,
);

/// Runs an operators command: `FEATURE_DISABLED` without the operators service, then its
/// request parsed, then `handler`.
async fn run<'a, R, F>(
    call: &'a Call<'a>,
    handler: impl FnOnce(&'a OperatorsControl, R) -> F,
) -> Outcome
where
    R: OperatorsRequest,
    F: Future<Output = Reply>,
{
    let Some(control) = call.context.operators.as_ref() else {
        return CommandReply::error(
            ErrorCode::FeatureDisabled,
            "Operators are not configured on this dispatcher (set ARQONBUS_OPERATORS_URL and ARQONBUS_SERVICE_TOKEN)",
        )
        .into();
    };
    super::run(call, |request: R| {
        handler(control, request.with_caller(caller(call)))
    })
    .await
}

/// Parses arguments as `handler`'s request, and only that.
#[cfg(test)]
fn parse_for<'a, R: Parse, F, T>(_: &F, reader: &Reader<'_>) -> Reply<()>
where
    F: Fn(&'a Call<'a>, &'a OperatorsControl, R) -> T,
{
    R::parse(reader).map(drop)
}

/// The caller of an operators call: the client that sent the command.
pub(super) fn caller(call: &Call<'_>) -> pb::Caller {
    let identity = &call.inbound.identity;
    pb::Caller {
        tenant: identity.tenant.to_string(),
        client_id: identity.client_id.to_string(),
        admin: identity.role.is_admin(),
        subject: identity.subject.clone(),
        system: identity.system,
    }
}

/// One call of an operators API, bounded in time; its refusal or failure as the client
/// sees it.
async fn ask<T>(
    verb: &'static str,
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Reply<T> {
    bounded(verb, call).await.map_err(|e| refused(&e))
}

/// [`ask`] about `id`: a `NOT_FOUND` echoes it in its `data`, as the original's did.
async fn ask_about<T>(
    verb: &'static str,
    id: (&str, &str),
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Reply<T> {
    bounded(verb, call).await.map_err(|e| {
        let mut reply = refused(&e);
        if reply.error_code == Some(ErrorCode::NotFound) {
            reply.data.insert(id.0.to_owned(), Value::from(id.1.trim()));
        }
        reply
    })
}

/// A call that did not succeed, as the client sees it; logged when the operators
/// failed rather than refused.
fn refused(error: &CallError) -> CommandReply {
    if error.refusal().is_none() {
        warn!(%error, "operators call failed");
    }
    CommandReply::failure(error)
}

/// A JSON text from the operators, parsed back (`fallback` if unreadable).
fn parsed(json: &str, fallback: Value) -> Value {
    serde_json::from_str(json).unwrap_or(fallback)
}
