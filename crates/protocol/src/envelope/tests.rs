use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::{ClientId, CommandReply, EdgeId, SERVER_SENDER};

fn decode(value: Value) -> Result<Envelope, DecodeError> {
    Envelope::from_client_json(&value.to_string())
}

fn errors(value: Value) -> Vec<String> {
    match decode(value) {
        Err(DecodeError::Invalid { errors, .. }) => errors,
        other => panic!("expected a validation failure, got {other:?}"),
    }
}

#[test]
fn room_message_of_the_original_decodes() {
    let env = decode(json!({
        "id": "arq_1700000000000000000_9_0a1b2c",
        "type": "message",
        "room": "science",
        "channel": "general",
        "payload": {"content": "HELLO"}
    }))
    .unwrap();
    assert_eq!(env.id.as_str(), "arq_1700000000000000000_9_0a1b2c");
    assert_eq!(env.kind, MessageType::Message);
    assert_eq!(env.room.as_deref(), Some("science"));
    assert_eq!(env.payload.get("content"), Some(json!("HELLO")));
    assert!(env.args.is_empty() && env.metadata.is_empty());
}

#[test]
fn absent_id_timestamp_and_version_get_defaults() {
    let env = decode(json!({"type": "command", "command": "ping"})).unwrap();
    assert!(MessageId::parse(env.id.as_str()).is_ok());
    let out: Value = serde_json::from_str(&env.to_json()).unwrap();
    assert_eq!(out["version"], "1.0");
    assert!(out["timestamp"].as_str().unwrap().ends_with("+00:00"));
}

#[test]
fn output_always_has_the_core_keys_and_only_set_optionals() {
    let env = Envelope::new(MessageType::Message);
    let out: Value = serde_json::from_str(&env.to_json()).unwrap();
    let keys: Vec<&str> = out
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "args",
            "id",
            "metadata",
            "payload",
            "timestamp",
            "type",
            "version"
        ]
    );
}

#[test]
fn z_timestamps_come_back_with_an_offset() {
    let env = decode(json!({
        "type": "message", "timestamp": "2026-02-18T12:00:00Z",
        "room": "a", "channel": "b", "payload": {}
    }))
    .unwrap();
    let out: Value = serde_json::from_str(&env.to_json()).unwrap();
    assert_eq!(out["timestamp"], "2026-02-18T12:00:00.000000+00:00");
}

#[test]
fn worked_example_f_bad_id() {
    let err = decode(json!({"id": "bad", "type": "message", "payload": {"a": 1}})).unwrap_err();
    assert_eq!(
        err,
        DecodeError::Invalid {
            request_id: "bad".into(),
            errors: vec!["Invalid message ID format: bad".into()],
        }
    );
    let reply: Value = serde_json::from_str(&err.to_envelope().to_json()).unwrap();
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["request_id"], "bad");
    assert_eq!(reply["error"], "Message validation failed");
    assert_eq!(reply["error_code"], "VALIDATION_ERROR");
    assert_eq!(reply["sender"], SERVER_SENDER);
    assert_eq!(
        reply["payload"]["errors"],
        json!(["Invalid message ID format: bad"])
    );
}

#[test]
fn garbage_is_a_validation_error_without_request_id() {
    let err = Envelope::from_client_json("not json").unwrap_err();
    assert!(
        matches!(&err, DecodeError::Malformed { detail } if detail.starts_with("Invalid JSON:"))
    );
    let reply: Value = serde_json::from_str(&err.to_envelope().to_json()).unwrap();
    assert_eq!(reply["error_code"], "VALIDATION_ERROR");
    assert!(reply.get("request_id").is_none());
    for not_object in ["[1,2]", "\"x\"", "3", "null"] {
        assert_eq!(
            Envelope::from_client_json(not_object),
            Err(DecodeError::Malformed {
                detail: "Envelope must be a JSON object".into()
            }),
            "{not_object}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let input = r#"{"id": "arq_nope", "type": "private", "version": "2.0",
        "timestamp": "yesterday", "from": "alice", "room": 5, "args": [1]}"#;
    let errs = Envelope::from_client_json(input).unwrap_err().reasons();
    assert_eq!(
        errs,
        vec![
            "Unknown field 'from'",
            "Field 'room' must be a string",
            "Field 'args' must be an object",
            "Invalid message ID format: arq_nope",
            "Unsupported message type: private",
            "Unsupported protocol version: 2.0",
            "Timestamp must be an ISO 8601 date-time: yesterday",
        ]
    );
}

#[test]
fn empty_values_count_as_missing() {
    assert_eq!(
        errors(json!({"id": "", "type": "", "version": "", "timestamp": ""})),
        vec![
            "Message ID is required",
            "Message type is required",
            "Protocol version is required",
            "Timestamp is required",
        ]
    );
}

#[test]
fn each_type_requires_its_fields() {
    let cases = [
        (
            json!({"type": "message"}),
            "Field 'payload' is required for message messages",
        ),
        (
            json!({"type": "message", "payload": null}),
            "Field 'payload' is required for message messages",
        ),
        (
            json!({"type": "command"}),
            "Field 'command' is required for command messages",
        ),
        (
            json!({"type": "command", "command": ""}),
            "Field 'command' is required for command messages",
        ),
        (
            json!({"type": "response"}),
            "Field 'request_id' is required for response messages",
        ),
        (
            json!({"type": "response", "request_id": "x"}),
            "Response messages must include status",
        ),
        (
            json!({"type": "error"}),
            "Field 'error' is required for error messages",
        ),
        (
            json!({"type": "operator.join"}),
            "Field 'payload' is required for operator.join messages",
        ),
        (
            json!({"type": "response", "request_id": "x", "status": "done"}),
            "Unsupported response status: done",
        ),
        (
            json!({"type": "message", "payload": "text"}),
            "Field 'payload' must be an object",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(errors(input.clone()), vec![expected.to_owned()], "{input}");
    }
    assert!(decode(json!({"type": "telemetry"})).is_ok());
    assert!(decode(json!({"type": "response", "request_id": "x", "status": "success"})).is_ok());
}

#[test]
fn server_only_types_are_refused_from_clients_but_read_by_clients() {
    let ack = Envelope::new(MessageType::Message).message_ack().to_json();
    assert_eq!(
        Envelope::from_client_json(&ack).unwrap_err().reasons(),
        vec!["Unsupported message type: message_response"]
    );
    assert_eq!(
        Envelope::from_server_json(&ack).unwrap().kind,
        MessageType::MessageResponse
    );
}

#[test]
fn unsafe_room_and_channel_names_are_refused_at_the_door() {
    let errs = errors(json!({
        "type": "message", "room": "a.b", "channel": "*", "payload": {}
    }));
    assert_eq!(errs.len(), 2);
    assert!(errs[0].starts_with("Invalid room name 'a.b'"), "{errs:?}");
    assert!(errs[1].starts_with("Invalid channel name '*'"), "{errs:?}");
}

#[test]
fn legacy_command_shape_is_understood() {
    let env = decode(json!({
        "type": "command",
        "payload": {"command": "join_channel", "parameters": {"room": "r", "channel": "c"}}
    }))
    .unwrap();
    assert_eq!(env.command.as_deref(), Some("join_channel"));
    assert_eq!(env.args.get("room"), Some(json!("r")));
    assert_eq!(
        errors(json!({"type": "command", "payload": {"command": "x", "parameters": 3}})),
        vec!["Field 'parameters' must be an object"]
    );
}

#[test]
fn legacy_client_fields_are_carried() {
    let env = decode(json!({
        "type": "message", "room": "r", "channel": "c", "payload": {},
        "from_client": "someone", "to_client": "arq_client_1"
    }))
    .unwrap();
    assert_eq!(env.sender.as_deref(), Some("someone"));
    assert_eq!(env.metadata.get("to_client"), Some(json!("arq_client_1")));
}

#[test]
fn welcome_and_command_reply_shapes() {
    let client = ClientId::generate_on(&EdgeId::generate());
    let welcome: Value = serde_json::from_str(&Envelope::welcome(&client).to_json()).unwrap();
    assert_eq!(welcome["type"], "message");
    assert_eq!(welcome["sender"], "arqonbus");
    assert_eq!(welcome["payload"]["welcome"], "Connected to ArqonBus");
    assert_eq!(welcome["payload"]["client_id"], client.as_str());

    let reply = CommandReply::error(ErrorCode::UnknownCommand, "Unknown command: x");
    let out: Value =
        serde_json::from_str(&reply.into_envelope("arq_1_1_abcdef").to_json()).unwrap();
    assert_eq!(out["type"], "response");
    assert_eq!(out["status"], "error");
    assert_eq!(out["error_code"], "UNKNOWN_COMMAND");
    assert_eq!(out["request_id"], "arq_1_1_abcdef");
    assert_eq!(
        out["payload"],
        json!({"message": "Unknown command: x", "data": {}, "metadata": {}})
    );
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,16}"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_object() -> impl Strategy<Value = Value> {
    let value = json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(".{0,8}", value, 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        prop::sample::select(MessageType::ALL.to_vec()),
        (prop::option::of(name()), prop::option::of(name())),
        prop::option::of(".{1,10}"),
        (json_object(), json_object(), json_object()),
        (
            -10_000_000_000_000_000i64..10_000_000_000_000_000i64,
            -50_400i32..50_400,
        ),
    )
        .prop_map(
            |(kind, (room, channel), text, (payload, args, metadata), (us, off))| {
                let mut env = Envelope::new(kind);
                env.room = room;
                env.channel = channel;
                env.sender = text.clone();
                env.command = Some(text.clone().unwrap_or_else(|| "ping".into()));
                env.request_id = Some("req".into());
                env.status = Some(Status::Pending);
                env.error = Some("boom".into());
                env.error_code = text;
                env.payload = JsonObject::from_value(&payload).unwrap();
                env.args = JsonObject::from_value(&args).unwrap();
                env.metadata = JsonObject::from_value(&metadata).unwrap();
                env.timestamp = Timestamp::from_unix_micros(us, off - off % 60).unwrap();
                env
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(env in envelope()) {
        let text = env.to_json();
        let back = Envelope::from_server_json(&text).unwrap();
        prop_assert_eq!(&back, &env);
        if env.kind.is_client_type() {
            prop_assert_eq!(Envelope::from_client_json(&text).unwrap(), env);
        }
    }

    #[test]
    fn to_json_writes_the_bytes_serde_writes(mut env in envelope(), present in any::<u16>()) {
        env.from_client = env.sender.clone();
        env.to_client = env.sender.clone().map(|s| format!("{s}\"\n"));
        let optional = [
            &mut env.room, &mut env.channel, &mut env.sender, &mut env.from_client,
            &mut env.to_client, &mut env.command, &mut env.request_id, &mut env.error,
            &mut env.error_code,
        ];
        for (i, field) in optional.into_iter().enumerate() {
            if present & (1 << i) == 0 {
                *field = None;
            }
        }
        if present & (1 << 10) == 0 {
            env.status = None;
        }
        prop_assert_eq!(env.to_json(), serde_json::to_string(&env).unwrap());
    }

    #[test]
    fn any_text_is_answered_without_panicking(text in ".{0,200}") {
        if let Err(err) = Envelope::from_client_json(&text) {
            prop_assert!(!err.reasons().is_empty());
            prop_assert!(err.to_envelope().has_error_code(ErrorCode::ValidationError));
        }
    }

    #[test]
    fn any_object_is_either_an_envelope_or_a_listed_failure(object in json_object()) {
        match Envelope::from_client_json(&object.to_string()) {
            Ok(env) => prop_assert!(env.kind.is_client_type()),
            Err(DecodeError::Invalid { errors, request_id }) => {
                prop_assert!(!errors.is_empty());
                prop_assert!(!request_id.is_empty());
            }
            Err(DecodeError::Malformed { detail }) => prop_assert!(false, "object judged malformed: {}", detail),
        }
    }
}

#[test]
fn a_casil_block_answers_with_the_reason_and_the_envelope_it_blocked() {
    let mut blocked = Envelope::new(MessageType::Message);
    blocked.room = Some("science".into());
    blocked.channel = Some("general".into());
    let frame: Value = serde_json::from_str(
        &blocked
            .casil_blocked(ErrorCode::CasilPolicyBlockedSecret)
            .to_json(),
    )
    .unwrap();
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["error"], "CASIL blocked message");
    assert_eq!(frame["error_code"], "CASIL_POLICY_BLOCKED_SECRET");
    assert_eq!(frame["payload"]["reason"], "CASIL_POLICY_BLOCKED_SECRET");
    assert_eq!(frame["request_id"], blocked.id.as_str());
    assert_eq!(
        (&frame["room"], &frame["channel"]),
        (&json!("science"), &json!("general"))
    );
    assert_eq!(frame["sender"], "arqonbus");
}

#[test]
fn string_fields_read_the_same_with_or_without_escapes() {
    let frame = |sender: &str| {
        format!(r#"{{"type":"message","room":"science","sender":{sender},"payload":{{}}}}"#)
    };
    for (written, read) in [
        (r#""plain é""#, Some("plain é")),
        (r#""a\"b\\c\u00e9\n\/""#, Some("a\"b\\cé\n/")),
        (r#""""#, Some("")),
        ("null", None),
    ] {
        let envelope = Envelope::from_client_json(&frame(written)).unwrap();
        assert_eq!(envelope.sender.as_deref(), read, "{written}");
    }
    for mistyped in ["1", "[\"a\"]", "{}", "true"] {
        let reasons = Envelope::from_client_json(&frame(mistyped))
            .unwrap_err()
            .reasons();
        assert_eq!(reasons, ["Field 'sender' must be a string"], "{mistyped}");
    }
}
