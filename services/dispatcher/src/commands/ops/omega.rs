//! `op.omega.*`: arguments into typed calls to the Tier-Omega lane, answers into the
//! original's replies (§7.5).
//!
//! The lane checks its gates (enabled, then admin) before the arguments, so this side
//! refuses nothing on its own: arguments of any type are passed on for the lane to judge
//! (text as text, objects as JSON text).

use std::convert::identity;

use serde_json::{Map, Value, json};
use tonic::Request;

use arqon_proto::grpc::error_code;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::{CommandReply, ErrorCode};

use super::super::catalog::{Spec, arg};
use super::super::{Call, object};
use super::{caller, refused};
use arqon_proto::operators_control::{OperatorsControl, call as bounded};

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.omega.status",
        category: "omega",
        description: "The Tier-Omega lane: whether it is enabled, its lab room and channel, its limits and what it holds",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"op.omega.status"}"#,
    },
    Spec {
        name: "op.omega.register_substrate",
        category: "omega",
        description: "Admins: registers a substrate (up to ARQONBUS_OMEGA_MAX_SUBSTRATES)",
        permission: None,
        system_only: None,
        arguments: &[
            arg("name", true, "its name"),
            arg("kind", true, "its kind"),
            arg("metadata", false, "an object (default {})"),
        ],
        example: r#"{"type":"command","command":"op.omega.register_substrate","args":{"name":"s1","kind":"sim"}}"#,
    },
    Spec {
        name: "op.omega.list_substrates",
        category: "omega",
        description: "The registered substrates",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"op.omega.list_substrates"}"#,
    },
    Spec {
        name: "op.omega.unregister_substrate",
        category: "omega",
        description: "Admins: removes a substrate and its events",
        permission: None,
        system_only: None,
        arguments: &[arg("substrate_id", true, "the substrate")],
        example: r#"{"type":"command","command":"op.omega.unregister_substrate","args":{"substrate_id":"omega_sub_0123456789ab"}}"#,
    },
    Spec {
        name: "op.omega.emit_event",
        category: "omega",
        description: "Admins: records an event of a substrate (the newest ARQONBUS_OMEGA_MAX_EVENTS are kept) and sends it to the lab room as telemetry",
        permission: None,
        system_only: None,
        arguments: &[
            arg("substrate_id", true, "a registered substrate"),
            arg("signal", true, "what happened"),
            arg("payload", false, "an object (default {})"),
        ],
        example: r#"{"type":"command","command":"op.omega.emit_event","args":{"substrate_id":"omega_sub_0123456789ab","signal":"pulse"}}"#,
    },
    Spec {
        name: "op.omega.list_events",
        category: "omega",
        description: "The last events, oldest first, optionally of one substrate or signal",
        permission: None,
        system_only: None,
        arguments: &[
            arg("limit", false, "at most this many, the newest (default 50)"),
            arg("substrate_id", false, "only this substrate's"),
            arg("signal", false, "only this signal"),
        ],
        example: r#"{"type":"command","command":"op.omega.list_events","args":{"limit":10}}"#,
    },
    Spec {
        name: "op.omega.clear_events",
        category: "omega",
        description: "Admins: removes the events (all, or those of one substrate or signal)",
        permission: None,
        system_only: None,
        arguments: &[
            arg("substrate_id", false, "only this substrate's"),
            arg("signal", false, "only this signal"),
        ],
        example: r#"{"type":"command","command":"op.omega.clear_events"}"#,
    },
];

pub(super) async fn execute(
    call: &Call<'_>,
    name: &str,
    control: &OperatorsControl,
) -> CommandReply {
    let args = call.inbound.envelope.args.to_map();
    let reply = match name {
        "op.omega.status" => status(call, control).await,
        "op.omega.register_substrate" => register(call, &args, control).await,
        "op.omega.list_substrates" => list_substrates(call, control).await,
        "op.omega.unregister_substrate" => unregister(call, &args, control).await,
        "op.omega.emit_event" => emit(call, &args, control).await,
        "op.omega.list_events" => list_events(call, &args, control).await,
        "op.omega.clear_events" => clear_events(call, &args, control).await,
        other => Err(CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {other}"),
        )),
    };
    reply.unwrap_or_else(identity)
}

/// A text argument: a string as is, another value as its JSON text, absent or null empty.
fn text(args: &Map<String, Value>, name: &str) -> String {
    match args.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// An optional text argument (a filter).
fn optional(args: &Map<String, Value>, name: &str) -> Option<String> {
    Some(text(args, name)).filter(|t| !t.trim().is_empty())
}

/// An object argument as JSON text (whatever it is: the lane checks it), empty if absent.
fn json_text(args: &Map<String, Value>, name: &str) -> String {
    match args.get(name) {
        None | Some(Value::Null) => String::new(),
        Some(value) => value.to_string(),
    }
}

/// `limit` as an integer, as the original's `int(...)` read it: `Err` when it is not one.
fn limit(args: &Map<String, Value>) -> Result<Option<i64>, ()> {
    match args.get("limit") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates: a huge float is a huge limit.
            .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
            .map(Some)
            .ok_or(()),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// A JSON text from the lane, parsed back (`{}` if unreadable).
fn parsed(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or_else(|_| json!({}))
}

fn event(event: pb::OmegaEvent) -> Value {
    json!({
        "event_id": event.event_id,
        "substrate_id": event.substrate_id,
        "signal": event.signal,
        "payload": parsed(&event.payload_json),
        "emitted_by": event.emitted_by,
        "timestamp": event.timestamp,
    })
}

async fn status(call: &Call<'_>, control: &OperatorsControl) -> Result<CommandReply, CommandReply> {
    let request = pb::OmegaStatusRequest {
        caller: caller(call),
    };
    let status = bounded(control.omega.status(Request::new(request)))
        .await
        .map_err(|status| refused("read the Tier-Omega lane", &status, Map::new()))?;
    Ok(CommandReply::success(
        "Tier-Omega lane status",
        object(json!({
            "enabled": status.enabled,
            "lab_room": status.lab_room,
            "lab_channel": status.lab_channel,
            "max_events": status.max_events,
            "max_substrates": status.max_substrates,
            "substrate_count": status.substrate_count,
            "event_count": status.event_count,
        })),
    ))
}

async fn register(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::RegisterSubstrateRequest {
        caller: caller(call),
        name: text(args, "name"),
        kind: text(args, "kind"),
        metadata_json: json_text(args, "metadata"),
    };
    let substrate = bounded(control.omega.register_substrate(Request::new(request)))
        .await
        .map_err(|status| refused("register the Tier-Omega substrate", &status, Map::new()))?;
    Ok(CommandReply::success(
        "Tier-Omega substrate registered",
        object(json!({
            "substrate_id": substrate.substrate_id,
            "name": substrate.name,
            "kind": substrate.kind,
            "created_at": substrate.created_at,
        })),
    ))
}

async fn list_substrates(
    call: &Call<'_>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::ListSubstratesRequest {
        caller: caller(call),
    };
    let listed = bounded(control.omega.list_substrates(Request::new(request)))
        .await
        .map_err(|status| refused("list the Tier-Omega substrates", &status, Map::new()))?;
    let substrates: Vec<Value> = listed
        .substrates
        .into_iter()
        .map(|s| {
            json!({
                "substrate_id": s.substrate_id,
                "name": s.name,
                "kind": s.kind,
                "owner_client_id": s.owner_client_id,
                "metadata": parsed(&s.metadata_json),
                "created_at": s.created_at,
            })
        })
        .collect();
    Ok(CommandReply::success(
        "Tier-Omega substrates listed",
        object(json!({"count": substrates.len(), "substrates": substrates})),
    ))
}

async fn unregister(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let substrate_id = text(args, "substrate_id");
    let request = pb::UnregisterSubstrateRequest {
        caller: caller(call),
        substrate_id: substrate_id.clone(),
    };
    let removed = bounded(control.omega.unregister_substrate(Request::new(request)))
        .await
        .map_err(|status| {
            // A miss names the id, as the original's did.
            let data = match error_code(&status) {
                Some(ErrorCode::NotFound) => object(json!({"substrate_id": substrate_id.trim()})),
                _ => Map::new(),
            };
            refused("unregister the Tier-Omega substrate", &status, data)
        })?;
    Ok(CommandReply::success(
        "Tier-Omega substrate removed",
        object(json!({
            "removed": true,
            "substrate_id": removed.substrate_id,
            "name": removed.name,
            "kind": removed.kind,
            "removed_events": removed.removed_events,
        })),
    ))
}

async fn emit(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::EmitEventRequest {
        caller: caller(call),
        substrate_id: text(args, "substrate_id"),
        signal: text(args, "signal"),
        payload_json: json_text(args, "payload"),
    };
    let emitted = bounded(control.omega.emit_event(Request::new(request)))
        .await
        .map_err(|status| refused("emit the Tier-Omega event", &status, Map::new()))?;
    Ok(CommandReply::success(
        "Tier-Omega event emitted",
        object(event(emitted)),
    ))
}

async fn list_events(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    // An unreadable limit is sent as 0, which the lane refuses only after its gates (a
    // disabled lane says so first); the refusal then says what was wrong.
    let (limit, readable) = match limit(args) {
        Ok(limit) => (limit, true),
        Err(()) => (Some(0), false),
    };
    let request = pb::ListEventsRequest {
        caller: caller(call),
        limit,
        substrate_id: optional(args, "substrate_id"),
        signal: optional(args, "signal"),
    };
    let listed = bounded(control.omega.list_events(Request::new(request)))
        .await
        .map_err(|status| match error_code(&status) {
            Some(ErrorCode::ValidationError) if !readable => {
                CommandReply::error(ErrorCode::ValidationError, "'limit' must be an integer")
            }
            _ => refused("list the Tier-Omega events", &status, Map::new()),
        })?;
    let events: Vec<Value> = listed.events.into_iter().map(event).collect();
    Ok(CommandReply::success(
        "Tier-Omega events listed",
        object(json!({
            "events": events,
            "count": events.len(),
            "limit": listed.limit,
            "substrate_id": listed.substrate_id,
            "signal": listed.signal,
        })),
    ))
}

async fn clear_events(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::ClearEventsRequest {
        caller: caller(call),
        substrate_id: optional(args, "substrate_id"),
        signal: optional(args, "signal"),
    };
    let cleared = bounded(control.omega.clear_events(Request::new(request)))
        .await
        .map_err(|status| refused("clear the Tier-Omega events", &status, Map::new()))?;
    Ok(CommandReply::success(
        "Tier-Omega events cleared",
        object(json!({
            "removed_count": cleared.removed_count,
            "remaining_count": cleared.remaining_count,
            "substrate_id": cleared.substrate_id,
            "signal": cleared.signal,
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_pass_through_for_the_lane_to_judge() {
        let a =
            args(json!({"name": "s", "kind": 3, "metadata": [1], "payload": null, "signal": " "}));
        assert_eq!(text(&a, "name"), "s");
        assert_eq!(text(&a, "kind"), "3");
        assert_eq!(text(&a, "absent"), "");
        assert_eq!(json_text(&a, "metadata"), "[1]");
        assert_eq!(json_text(&a, "payload"), "");
        assert_eq!(optional(&a, "signal"), None);
        assert_eq!(optional(&a, "name").as_deref(), Some("s"));
    }

    #[test]
    fn limits_are_read_as_integers() {
        let read = |value: Value| limit(&args(json!({ "limit": value })));
        assert_eq!(limit(&args(json!({}))), Ok(None));
        assert_eq!(read(json!(7)), Ok(Some(7)));
        assert_eq!(read(json!(0)), Ok(Some(0)));
        assert_eq!(read(json!(-2)), Ok(Some(-2)));
        assert_eq!(read(json!(2.9)), Ok(Some(2)));
        assert_eq!(read(json!(" 12 ")), Ok(Some(12)));
        assert_eq!(read(json!(u64::MAX)), Ok(Some(i64::MAX)));
        assert_eq!(read(json!("ten")), Err(()));
        assert_eq!(read(json!([1])), Err(()));
    }
}
