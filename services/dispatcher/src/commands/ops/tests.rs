//! The operators' commands' requests, read from their arguments as each family's page
//! documents.

use serde_json::json;

use super::super::args::parse_as as read;
use super::super::catalog::Family;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::ErrorCode;

#[test]
fn store_arguments_are_read_as_the_original_did() {
    let set: pb::SetRequest = read(
        Family::Store,
        json!({
            "key": 42, "value": {"n": 1}, "namespace": " ", "tenant": "t-b",
            "expected_revision": 3, "ttl_seconds": " 1.5 ",
        }),
    )
    .unwrap();
    assert_eq!(set.key, "42");
    assert_eq!(set.value_json, r#"{"n":1}"#);
    let ns = set.namespace.unwrap();
    assert_eq!((ns.namespace, ns.tenant.as_deref()), (None, Some("t-b")));
    assert_eq!(
        (set.expected_revision, set.ttl_seconds),
        (Some(3), Some(1.5))
    );
    // Absent or null: left to the service, which words the refusal.
    let empty: pb::SetRequest = read(Family::Store, json!({"value": null})).unwrap();
    assert_eq!((empty.key.as_str(), empty.value_json.as_str()), ("", ""));
    let list: pb::ListRequest = read(Family::Store, json!({"after": ""})).unwrap();
    assert_eq!((list.after, list.limit), (None, 1000));
    for (args, refusal) in [
        (json!({"key": {"a": 1}}), "'key' must be a string"),
        (json!({"namespace": ["x"]}), "'namespace' must be a string"),
        (
            json!({"expected_revision": -1}),
            "'expected_revision' must be a non-negative integer",
        ),
        (
            json!({"ttl_seconds": "soon"}),
            "'ttl_seconds' must be a number, not 'soon'",
        ),
    ] {
        assert_eq!(
            read::<pb::SetRequest>(Family::Store, args)
                .unwrap_err()
                .message,
            refusal
        );
    }
    assert_eq!(
        read::<pb::ListRequest>(Family::Store, json!({"limit": 0}))
            .unwrap_err()
            .message,
        "'limit' must be an integer from 1 to 1000"
    );
}

#[test]
fn webhook_arguments_are_read_as_the_original_did() {
    let rule: pb::RegisterWebhookRequest = read(
        Family::Webhook,
        json!({
            "url": 5, "room": " r ", "channel": null, "timeout_seconds": " 3 ",
            "headers": {"X-A": "a", "X-N": 1, "X-B": true}, "persistent": "yes",
        }),
    )
    .unwrap();
    assert_eq!(rule.url, "5");
    assert_eq!((rule.room.as_deref(), rule.channel), (Some(" r "), None));
    assert_eq!(rule.timeout_seconds, Some(3.0));
    assert_eq!(
        (
            rule.headers["X-A"].as_str(),
            rule.headers["X-N"].as_str(),
            rule.headers["X-B"].as_str()
        ),
        ("a", "1", "true")
    );
    assert!(rule.persistent);
    let bare: pb::RegisterWebhookRequest = read(Family::Webhook, json!({})).unwrap();
    assert_eq!(
        (bare.url.as_str(), bare.headers.len(), bare.persistent),
        ("", 0, false)
    );
    for (args, refusal) in [
        (json!({"url": {}}), "'url' must be a string"),
        (json!({"headers": "X-A: 1"}), "'headers' must be an object"),
        (
            json!({"timeout_seconds": "soon"}),
            "'timeout_seconds' must be a number, not 'soon'",
        ),
        (
            json!({"timeout_seconds": true}),
            "'timeout_seconds' must be a number",
        ),
        (
            json!({"persistent": "perhaps"}),
            "'persistent' must be a boolean",
        ),
    ] {
        let reply = read::<pb::RegisterWebhookRequest>(Family::Webhook, args).unwrap_err();
        assert_eq!(reply.error_code, Some(ErrorCode::ValidationError));
        assert_eq!(reply.message, format!("Validation error: {refusal}"));
    }
}

#[test]
fn cron_arguments_convert_as_the_originals_did() {
    let request = read::<pb::ScheduleRequest>(
        Family::Cron,
        json!({
            "room": " science ", "channel": 7, "payload": {"k": 1}, "delay_seconds": "0.5",
            "interval_seconds": 2, "repeat_count": "3", "persistent": "yes",
            "schedule": "", "timezone": " UTC ",
        }),
    )
    .unwrap();
    assert_eq!(
        (request.room.as_str(), request.channel.as_str()),
        (" science ", "7")
    );
    assert_eq!(request.payload_json, r#"{"k":1}"#);
    assert_eq!(
        (request.delay_seconds, request.interval_seconds),
        (Some(0.5), Some(2.0))
    );
    assert_eq!(request.repeat_count, Some(3));
    assert_eq!(
        (request.schedule, request.timezone.as_deref()),
        (None, Some(" UTC "))
    );
    assert!(request.persistent);
    let bare = read::<pb::ScheduleRequest>(Family::Cron, json!({"payload": null})).unwrap();
    assert_eq!((bare.room.as_str(), bare.payload_json.as_str()), ("", ""));
}

#[test]
fn cron_wrong_types_are_named() {
    for (args, refusal) in [
        (
            json!({"delay_seconds": "soon"}),
            "'delay_seconds' must be a number, not 'soon'",
        ),
        (
            json!({"interval_seconds": true}),
            "'interval_seconds' must be a number",
        ),
        (
            json!({"repeat_count": 2.5}),
            "'repeat_count' must be an integer, not '2.5'",
        ),
        (
            json!({"repeat_count": "many"}),
            "'repeat_count' must be an integer, not 'many'",
        ),
        (
            json!({"persistent": "perhaps"}),
            "'persistent' must be a boolean",
        ),
        (json!({"schedule": 5}), "'schedule' must be a string"),
    ] {
        assert_eq!(
            read::<pb::ScheduleRequest>(Family::Cron, args)
                .unwrap_err()
                .message,
            refusal
        );
    }
}

#[test]
fn omega_arguments_pass_through_for_the_lane_to_judge() {
    let substrate: pb::RegisterSubstrateRequest = read(
        Family::Omega,
        json!({"name": "s", "kind": 3, "metadata": [1]}),
    )
    .unwrap();
    assert_eq!(
        (substrate.name.as_str(), substrate.kind.as_str()),
        ("s", "3")
    );
    assert_eq!(substrate.metadata_json, "[1]");
    let event: pb::EmitEventRequest =
        read(Family::Omega, json!({"payload": null, "signal": {"a": 1}})).unwrap();
    assert_eq!(
        (event.substrate_id.as_str(), event.signal.as_str()),
        ("", r#"{"a":1}"#)
    );
    assert_eq!(event.payload_json, "");
    let clear: pb::ClearEventsRequest =
        read(Family::Omega, json!({"signal": " ", "substrate_id": "x"})).unwrap();
    assert_eq!(
        (clear.substrate_id.as_deref(), clear.signal),
        (Some("x"), None)
    );
}
