//! `op.omega.*`: arguments into typed calls to the Tier-Omega lane, answers into the
//! original's replies to `op.omega`.
//!
//! The lane checks its gates (enabled, then admin) before the arguments, so this side
//! refuses nothing on its own: arguments of any type are passed on for the lane to judge
//! (text as text, objects as JSON text).

use serde_json::{Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_proto::operators_control::{OperatorsControl, call as bounded};
use arqon_protocol::{CommandReply, ErrorCode};

use super::super::args::{Arg, Parse, Reader, arg};
use super::super::catalog::{Access, Family, Spec};
use super::super::{Call, Reply, object, success};
use super::{OperatorsRequest, ask, ask_about, parsed, refused};

const NAME: Arg = arg("name", true, "its name");
const KIND: Arg = arg("kind", true, "its kind");
const METADATA: Arg = arg("metadata", false, "an object (default {})");
const SUBSTRATE: Arg = arg("substrate_id", true, "the substrate");
const REGISTERED: Arg = arg("substrate_id", true, "a registered substrate");
const SIGNAL: Arg = arg("signal", true, "what happened");
const PAYLOAD: Arg = arg("payload", false, "an object (default {})");
const LIMIT: Arg = arg("limit", false, "at most this many, the newest (default 50)");
const OF_SUBSTRATE: Arg = arg("substrate_id", false, "only this substrate's");
const OF_SIGNAL: Arg = arg("signal", false, "only this signal");

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.omega.status",
        family: Family::Omega,
        description: "The Tier-Omega lane: whether it is enabled, its lab room and channel, its limits and what it holds",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.omega.status"}"#,
        handler: operators!(status),
    },
    Spec {
        name: "op.omega.register_substrate",
        family: Family::Omega,
        description: "Admins: registers a substrate (up to ARQONBUS_OMEGA_MAX_SUBSTRATES)",
        access: Access::Anyone,
        arguments: &[NAME, KIND, METADATA],
        example: r#"{"type":"command","command":"op.omega.register_substrate","args":{"name":"s1","kind":"sim"}}"#,
        handler: operators!(register),
    },
    Spec {
        name: "op.omega.list_substrates",
        family: Family::Omega,
        description: "The registered substrates",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.omega.list_substrates"}"#,
        handler: operators!(list_substrates),
    },
    Spec {
        name: "op.omega.unregister_substrate",
        family: Family::Omega,
        description: "Admins: removes a substrate and its events",
        access: Access::Anyone,
        arguments: &[SUBSTRATE],
        example: r#"{"type":"command","command":"op.omega.unregister_substrate","args":{"substrate_id":"omega_sub_0123456789ab"}}"#,
        handler: operators!(unregister),
    },
    Spec {
        name: "op.omega.emit_event",
        family: Family::Omega,
        description: "Admins: records an event of a substrate (the newest ARQONBUS_OMEGA_MAX_EVENTS are kept) and sends it to the lab room as telemetry",
        access: Access::Anyone,
        arguments: &[REGISTERED, SIGNAL, PAYLOAD],
        example: r#"{"type":"command","command":"op.omega.emit_event","args":{"substrate_id":"omega_sub_0123456789ab","signal":"pulse"}}"#,
        handler: operators!(emit),
    },
    Spec {
        name: "op.omega.list_events",
        family: Family::Omega,
        description: "The last events, oldest first, optionally of one substrate or signal",
        access: Access::Anyone,
        arguments: &[LIMIT, OF_SUBSTRATE, OF_SIGNAL],
        example: r#"{"type":"command","command":"op.omega.list_events","args":{"limit":10}}"#,
        handler: operators!(list_events),
    },
    Spec {
        name: "op.omega.clear_events",
        family: Family::Omega,
        description: "Admins: removes the events (all, or those of one substrate or signal)",
        access: Access::Anyone,
        arguments: &[OF_SUBSTRATE, OF_SIGNAL],
        example: r#"{"type":"command","command":"op.omega.clear_events"}"#,
        handler: operators!(clear_events),
    },
];

/// A filter: absent when blank.
fn filter(args: &Reader<'_>, arg: &Arg) -> Option<String> {
    args.any_text(arg).filter(|text| !text.trim().is_empty())
}

impl Parse for pb::RegisterSubstrateRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            name: args.any_text(&NAME).unwrap_or_default(),
            kind: args.any_text(&KIND).unwrap_or_default(),
            metadata_json: args.json(&METADATA).unwrap_or_default(),
        })
    }
}

impl Parse for pb::UnregisterSubstrateRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            substrate_id: args.any_text(&SUBSTRATE).unwrap_or_default(),
        })
    }
}

impl Parse for pb::EmitEventRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            substrate_id: args.any_text(&REGISTERED).unwrap_or_default(),
            signal: args.any_text(&SIGNAL).unwrap_or_default(),
            payload_json: args.json(&PAYLOAD).unwrap_or_default(),
        })
    }
}

impl Parse for pb::ClearEventsRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            substrate_id: filter(args, &OF_SUBSTRATE),
            signal: filter(args, &OF_SIGNAL),
        })
    }
}

/// `list_events`' request. An unreadable `limit` is sent as 0, which the lane refuses
/// only after its gates (a disabled lane says so first); the refusal then says what was
/// wrong with it.
struct ListEvents {
    request: pb::ListEventsRequest,
    unreadable: Option<CommandReply>,
}

impl Parse for ListEvents {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let (limit, unreadable) = match args.integer(&LIMIT) {
            Ok(limit) => (limit, None),
            Err(refusal) => (Some(0), Some(refusal)),
        };
        let request = pb::ListEventsRequest {
            caller: None,
            limit,
            substrate_id: filter(args, &OF_SUBSTRATE),
            signal: filter(args, &OF_SIGNAL),
        };
        Ok(Self {
            request,
            unreadable,
        })
    }
}

impl OperatorsRequest for ListEvents {
    fn with_caller(mut self, caller: pb::Caller) -> Self {
        self.request.caller = Some(caller);
        self
    }
}

fn event(event: pb::OmegaEvent) -> Value {
    json!({
        "event_id": event.event_id,
        "substrate_id": event.substrate_id,
        "signal": event.signal,
        "payload": parsed(&event.payload_json, json!({})),
        "emitted_by": event.emitted_by,
        "timestamp": event.timestamp,
    })
}

async fn status(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::OmegaStatusRequest,
) -> Reply {
    let verb = "read the Tier-Omega lane";
    let status = ask(verb, control.omega.status(Request::new(request))).await?;
    Ok(success(
        "Tier-Omega lane status",
        json!({
            "enabled": status.enabled,
            "lab_room": status.lab_room,
            "lab_channel": status.lab_channel,
            "max_events": status.max_events,
            "max_substrates": status.max_substrates,
            "substrate_count": status.substrate_count,
            "event_count": status.event_count,
        }),
    ))
}

async fn register(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::RegisterSubstrateRequest,
) -> Reply {
    let verb = "register the Tier-Omega substrate";
    let substrate = ask(
        verb,
        control.omega.register_substrate(Request::new(request)),
    )
    .await?;
    Ok(success(
        "Tier-Omega substrate registered",
        json!({
            "substrate_id": substrate.substrate_id,
            "name": substrate.name,
            "kind": substrate.kind,
            "created_at": substrate.created_at,
        }),
    ))
}

async fn list_substrates(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::ListSubstratesRequest,
) -> Reply {
    let verb = "list the Tier-Omega substrates";
    let listed = ask(verb, control.omega.list_substrates(Request::new(request))).await?;
    let substrates: Vec<Value> = listed
        .substrates
        .into_iter()
        .map(|s| {
            json!({
                "substrate_id": s.substrate_id,
                "name": s.name,
                "kind": s.kind,
                "owner_client_id": s.owner_client_id,
                "metadata": parsed(&s.metadata_json, json!({})),
                "created_at": s.created_at,
            })
        })
        .collect();
    Ok(success(
        "Tier-Omega substrates listed",
        json!({"count": substrates.len(), "substrates": substrates}),
    ))
}

async fn unregister(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::UnregisterSubstrateRequest,
) -> Reply {
    let substrate_id = request.substrate_id.clone();
    let unregister = control.omega.unregister_substrate(Request::new(request));
    let verb = "unregister the Tier-Omega substrate";
    let removed = ask_about(verb, ("substrate_id", &substrate_id), unregister).await?;
    Ok(success(
        "Tier-Omega substrate removed",
        json!({
            "removed": true,
            "substrate_id": removed.substrate_id,
            "name": removed.name,
            "kind": removed.kind,
            "removed_events": removed.removed_events,
        }),
    ))
}

async fn emit(_: &Call<'_>, control: &OperatorsControl, request: pb::EmitEventRequest) -> Reply {
    let verb = "emit the Tier-Omega event";
    let emitted = ask(verb, control.omega.emit_event(Request::new(request))).await?;
    Ok(CommandReply::success(
        "Tier-Omega event emitted",
        object(event(emitted)),
    ))
}

async fn list_events(_: &Call<'_>, control: &OperatorsControl, request: ListEvents) -> Reply {
    let ListEvents {
        request,
        unreadable,
    } = request;
    let list = control.omega.list_events(Request::new(request));
    let listed = bounded("list the Tier-Omega events", list)
        .await
        .map_err(|e| match (e.refusal(), unreadable) {
            (Some(ErrorCode::ValidationError), Some(refusal)) => refusal,
            _ => refused(&e),
        })?;
    let events: Vec<Value> = listed.events.into_iter().map(event).collect();
    Ok(success(
        "Tier-Omega events listed",
        json!({
            "events": events,
            "count": events.len(),
            "limit": listed.limit,
            "substrate_id": listed.substrate_id,
            "signal": listed.signal,
        }),
    ))
}

async fn clear_events(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::ClearEventsRequest,
) -> Reply {
    let verb = "clear the Tier-Omega events";
    let cleared = ask(verb, control.omega.clear_events(Request::new(request))).await?;
    Ok(success(
        "Tier-Omega events cleared",
        json!({
            "removed_count": cleared.removed_count,
            "remaining_count": cleared.remaining_count,
            "substrate_id": cleared.substrate_id,
            "signal": cleared.signal,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::args::parse_as;

    #[test]
    fn an_unreadable_limit_waits_for_the_gates() {
        let limit = |value: Value| {
            let ListEvents {
                request,
                unreadable,
            } = parse_as(Family::Omega, json!({ "limit": value })).unwrap();
            (request.limit, unreadable.map(|refusal| refusal.message))
        };
        assert_eq!(limit(json!(7)), (Some(7), None));
        assert_eq!(limit(json!(-2)), (Some(-2), None));
        assert_eq!(limit(json!(" 12 ")), (Some(12), None));
        assert_eq!(limit(json!(null)), (None, None));
        assert_eq!(
            limit(json!("ten")),
            (
                Some(0),
                Some("'limit' must be an integer, not 'ten'".into())
            )
        );
        assert_eq!(
            limit(json!(2.9)),
            (
                Some(0),
                Some("'limit' must be an integer, not '2.9'".into())
            )
        );
    }
}
