//! Whether a policy applies to an envelope, and what the policy stage inspects of it.

use arqon_protocol::{Envelope, MessageType};
use serde_json::json;

use crate::test_support::engine;
use crate::{Decision, Engine, Part, Reason};

fn envelope(value: serde_json::Value) -> Envelope {
    Envelope::from_client_json(&value.to_string())
        .unwrap_or_else(|e| panic!("{value}: {:?}", e.reasons()))
}

fn message(room: &str, channel: &str, content: &str) -> Envelope {
    envelope(
        json!({"type": "message", "room": room, "channel": channel, "payload": {"content": content}}),
    )
}

fn command(name: &str, args: serde_json::Value) -> Envelope {
    envelope(json!({"type": "command", "command": name, "args": args}))
}

fn telemetry(room: &str) -> Envelope {
    envelope(json!({"type": "telemetry", "room": room, "channel": "c", "payload": {"cpu": 1}}))
}

/// Every kind of envelope a client sends, plus one it does not (`Other` to CASIL).
fn every_kind() -> Vec<Envelope> {
    let mut operator_join = Envelope::new(MessageType::OperatorJoin);
    operator_join.room = Some("room-a".into());
    vec![
        message("room-a", "c", "hello"),
        message("room-b", "c", "hello"),
        command("ping", json!({})),
        command("create_channel", json!({"room": "room-a", "channel": "c"})),
        command("join_channel", json!({"room": "room-b", "channel": "c"})),
        command("op.casil.get", json!({})),
        command(
            "op.casil.reload",
            json!({"room": "room-a", "mode": "enforce"}),
        ),
        telemetry("room-a"),
        telemetry("room-b"),
        envelope(
            json!({"type": "message", "room": "room-b", "channel": "c", "payload": {"a": 1}, "metadata": {"note": "x"}}),
        ),
        operator_join,
    ]
}

#[test]
fn a_disabled_policy_applies_to_nothing() {
    let engine =
        engine("enabled: false\nmode: enforce\npolicies: {block_on_probable_secret: true}");
    for e in every_kind() {
        assert!(!engine.applies(&e), "{}", e.to_json());
        assert_eq!(engine.inspect_envelope(&e).outcome.reason, Reason::Disabled);
    }
}

#[test]
fn without_a_scope_every_inspected_kind_applies_in_either_mode() {
    for mode in ["monitor", "enforce"] {
        let engine = engine(&format!("enabled: true\nmode: {mode}"));
        assert!(engine.applies(&message("room-a", "c", "hi")));
        assert!(engine.applies(&telemetry("room-b")));
        assert!(
            engine.applies(&command("ping", json!({}))),
            "a room-less command has the empty target, in scope without an include list"
        );
        assert!(engine.applies(&command("op.casilx", json!({}))));
    }
}

#[test]
fn kinds_casil_does_not_inspect_and_its_own_commands_never_apply() {
    let engine = engine("enabled: true\nmode: enforce");
    let mut response = Envelope::new(MessageType::OperatorJoin);
    response.room = Some("room-a".into());
    assert!(!engine.applies(&response));
    for name in ["op.casil.get", "op.casil.reload"] {
        let exempt = command(name, json!({"room": "room-a", "password": "hunter2"}));
        assert!(!engine.applies(&exempt), "{name}");
        let outcome = engine.inspect_envelope(&exempt).outcome;
        assert_eq!(outcome.reason, Reason::OutOfScope, "{name}");
        assert!(!outcome.inspected);
    }
}

#[test]
fn an_include_list_applies_to_its_targets_only() {
    let engine = engine("enabled: true\nscope: {include: ['room-a*']}");
    assert!(engine.applies(&message("room-a", "c", "hi")));
    assert!(engine.applies(&message("room-a2", "c", "hi")));
    assert!(!engine.applies(&message("room-b", "c", "hi")));
    assert!(engine.applies(&telemetry("room-a")));
    assert!(!engine.applies(&telemetry("room-b")));
    assert!(
        !engine.applies(&command("ping", json!({}))),
        "the empty target matches no include"
    );
}

#[test]
fn a_command_applies_where_its_arguments_say_it_goes() {
    let engine = engine("enabled: true\nscope: {include: ['room-a*']}");
    assert!(engine.applies(&command(
        "create_channel",
        json!({"room": "room-a", "channel": "c"})
    )));
    assert!(!engine.applies(&command(
        "create_channel",
        json!({"room": "room-b", "channel": "c"})
    )));
    // An out-of-scope envelope room does not carry a command into a protected room.
    let mut carried = command(
        "op.cron.schedule",
        json!({"room": "room-a", "channel": "c"}),
    );
    carried.room = Some("room-b".into());
    carried.channel = Some("c".into());
    assert!(engine.applies(&carried));
    // Arguments name a place only as strings, and only for commands.
    assert!(!engine.applies(&command("create_channel", json!({"room": 7}))));
    let mut args_on_a_message = message("room-b", "c", "hi");
    args_on_a_message.args = arqon_protocol::JsonObject::parse(r#"{"room":"room-a"}"#).unwrap();
    assert!(!engine.applies(&args_on_a_message));
}

#[test]
fn an_exclude_list_wins_over_the_rest() {
    let engine = engine("enabled: true\nscope: {include: ['*'], exclude: ['room-b*']}");
    assert!(engine.applies(&message("room-a", "c", "hi")));
    assert!(!engine.applies(&message("room-b", "c", "hi")));
    assert!(engine.applies(&command("ping", json!({}))));
    // One target in scope is enough: the command goes to room-a too.
    let mut both = command("create_channel", json!({"room": "room-a", "channel": "c"}));
    both.room = Some("room-b".into());
    assert!(engine.applies(&both));
    let only_b = command("create_channel", json!({"room": "room-b", "channel": "c"}));
    assert!(!engine.applies(&only_b));
}

/// The edge's question and the policy stage's answer agree for every envelope and
/// policy: the policy applies exactly when the stage inspects something.
#[test]
fn applies_is_exactly_when_the_stage_inspects_something() {
    let policies = [
        "enabled: false",
        "enabled: true",
        "enabled: true\nmode: enforce\npolicies: {block_on_probable_secret: true}",
        "enabled: true\nscope: {include: ['room-a*']}",
        "enabled: true\nscope: {exclude: ['room-a*']}",
        "enabled: true\nscope: {include: ['*'], exclude: ['room-b:*']}",
        "enabled: true\nscope: {include: ['']}",
    ];
    for yaml in policies {
        let engine: Engine = engine(yaml);
        for e in every_kind() {
            let outcome = engine.inspect_envelope(&e).outcome;
            assert_eq!(
                engine.applies(&e),
                outcome.inspected,
                "{yaml}\n{}",
                e.to_json()
            );
            if !outcome.inspected {
                assert_eq!(outcome.decision, Decision::Allow);
                assert!(matches!(
                    outcome.reason,
                    Reason::Disabled | Reason::OutOfScope
                ));
            }
        }
    }
}

#[test]
fn every_part_and_target_is_inspected_and_the_worst_stands() {
    let engine = engine(
        "enabled: true\nmode: enforce\nscope: {include: ['room-a*']}\npolicies: {block_on_probable_secret: true, redaction: {transport_redaction: true}}",
    );
    // A secret in the metadata blocks like one in the payload.
    let hidden = envelope(
        json!({"type": "message", "room": "room-a", "channel": "c", "payload": {"ok": 1}, "metadata": {"note": "my password"}}),
    );
    assert_eq!(
        engine.inspect_envelope(&hidden).outcome.reason,
        Reason::BlockedSecret
    );
    // A command's arguments naming the protected room are inspected for it.
    let mut carried = command(
        "op.cron.schedule",
        json!({"room": "room-a", "channel": "c", "note": "AKIAIOSFODNN7EXAMPLE"}),
    );
    carried.room = Some("room-b".into());
    assert_eq!(
        engine.inspect_envelope(&carried).outcome.decision,
        Decision::Block
    );
    // Out of scope: nothing is inspected, whatever it holds.
    let elsewhere = message("room-b", "c", "my password");
    let inspection = engine.inspect_envelope(&elsewhere);
    assert_eq!(inspection.outcome.reason, Reason::OutOfScope);
    assert!(inspection.redacted.is_empty());
}

#[test]
fn redacted_parts_are_returned_once_each() {
    let engine =
        engine("enabled: true\nmode: enforce\npolicies: {redaction: {transport_redaction: true}}");
    let e = envelope(
        json!({"type": "message", "room": "r", "channel": "c", "payload": {"password": "x"}, "metadata": {"token": "y"}}),
    );
    let inspection = engine.inspect_envelope(&e);
    assert_eq!(inspection.outcome.decision, Decision::AllowWithRedaction);
    let parts: Vec<Part> = inspection.redacted.iter().map(|(p, _)| *p).collect();
    assert_eq!(parts, vec![Part::Payload, Part::Metadata]);
}
