//! `op.webhook.*`: arguments into typed calls to the webhooks API, answers into the
//! original's replies (§7.2), with `persistent` added and the signing `secret` shown once
//! (at registration).

use std::collections::HashMap;
use std::convert::identity;

use serde_json::{Map, Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_protocol::{CommandReply, ErrorCode};

use super::super::args::{boolean, number, scalar_text, validation};
use super::super::catalog::{Spec, arg};
use super::super::{Call, object};
use super::{caller, refused};
use arqon_proto::operators_control::{OperatorsControl, call as bounded};

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.webhook.register",
        category: "webhook",
        description: "POSTs every message of your tenant that matches the filters to a URL (signed, retried, at least once); answers with the rule and its signing secret (shown only here)",
        permission: None,
        system_only: None,
        arguments: &[
            arg(
                "url",
                true,
                "http:// or https:// URL; internal addresses are refused unless the bus allows them",
            ),
            arg(
                "room",
                false,
                "only messages to this room (default: every room)",
            ),
            arg(
                "channel",
                false,
                "only messages to this channel (default: every channel)",
            ),
            arg(
                "timeout_seconds",
                false,
                "per attempt, > 0 (default 2; at most 30 by default)",
            ),
            arg(
                "headers",
                false,
                "an object of extra HTTP headers (values stringified)",
            ),
            arg(
                "persistent",
                false,
                "keep the rule after you disconnect (default false: removed when you disconnect)",
            ),
        ],
        example: r#"{"type":"command","command":"op.webhook.register","args":{"url":"https://example.com/hook","room":"science","channel":"general"}}"#,
    },
    Spec {
        name: "op.webhook.list",
        category: "webhook",
        description: "Your webhook rules (an admin's: every rule of the tenant)",
        permission: None,
        system_only: None,
        arguments: &[],
        example: r#"{"type":"command","command":"op.webhook.list"}"#,
    },
    Spec {
        name: "op.webhook.unregister",
        category: "webhook",
        description: "Removes one of your webhook rules (an admin: any rule of the tenant)",
        permission: None,
        system_only: None,
        arguments: &[arg("rule_id", true, "the rule's id (wh_…)")],
        example: r#"{"type":"command","command":"op.webhook.unregister","args":{"rule_id":"wh_0123456789ab"}}"#,
    },
];

pub(super) async fn execute(
    call: &Call<'_>,
    name: &str,
    control: &OperatorsControl,
) -> CommandReply {
    let args = call.inbound.envelope.args.to_map();
    let reply = match name {
        "op.webhook.register" => register(call, &args, control).await,
        "op.webhook.list" => list(call, control).await,
        "op.webhook.unregister" => unregister(call, &args, control).await,
        other => Err(CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {other}"),
        )),
    };
    reply.unwrap_or_else(identity)
}

/// A text argument (a string, or a number or boolean as text).
fn text(args: &Map<String, Value>, name: &str) -> Result<Option<String>, CommandReply> {
    scalar_text(args, name).map_err(validation)
}

/// `headers`: an object whose values are stringified.
fn headers(args: &Map<String, Value>) -> Result<HashMap<String, String>, CommandReply> {
    match args.get("headers") {
        None | Some(Value::Null) => Ok(HashMap::new()),
        Some(Value::Object(headers)) => Ok(headers
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (name.clone(), text)
            })
            .collect()),
        Some(_) => Err(validation("'headers' must be an object")),
    }
}

/// A rule as listed: no secret, no headers.
fn listed(rule: &pb::WebhookRule) -> Value {
    json!({
        "rule_id": rule.rule_id,
        "url": rule.url,
        "owner_client_id": rule.owner_client_id,
        "room": rule.room,
        "channel": rule.channel,
        "timeout_seconds": rule.timeout_seconds,
        "persistent": rule.persistent,
        "created_at": rule.created_at,
    })
}

async fn register(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::RegisterWebhookRequest {
        caller: caller(call),
        url: text(args, "url")?.unwrap_or_default(),
        room: text(args, "room")?,
        channel: text(args, "channel")?,
        timeout_seconds: number(args, "timeout_seconds").map_err(validation)?,
        headers: headers(args)?,
        persistent: boolean(args, "persistent").map_err(validation)?,
    };
    let rule = bounded(control.webhook.register(Request::new(request)))
        .await
        .map_err(|status| refused("register the webhook rule", &status, Map::new()))?;
    // This replica queues the tenant's next message at once; others follow the bucket.
    call.context
        .webhook_tenants
        .noted(&call.inbound.identity.tenant, &rule.rule_id);
    Ok(CommandReply::success(
        "Webhook rule registered",
        object(json!({
            "rule_id": rule.rule_id,
            "url": rule.url,
            "room": rule.room,
            "channel": rule.channel,
            "timeout_seconds": rule.timeout_seconds,
            "created_at": rule.created_at,
            "persistent": rule.persistent,
            "secret": rule.secret,
        })),
    ))
}

async fn list(call: &Call<'_>, control: &OperatorsControl) -> Result<CommandReply, CommandReply> {
    let request = pb::ListWebhooksRequest {
        caller: caller(call),
    };
    let listed_rules = bounded(control.webhook.list(Request::new(request)))
        .await
        .map_err(|status| refused("list the webhook rules", &status, Map::new()))?;
    let rules: Vec<Value> = listed_rules.rules.iter().map(listed).collect();
    Ok(CommandReply::success(
        "Webhook rules retrieved",
        object(json!({ "count": rules.len(), "rules": rules })),
    ))
}

async fn unregister(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let rule_id = text(args, "rule_id")?.unwrap_or_default();
    let request = pb::UnregisterWebhookRequest {
        caller: caller(call),
        rule_id: rule_id.clone(),
    };
    let removed = bounded(control.webhook.unregister(Request::new(request)))
        .await
        .map_err(|status| {
            let data = object(json!({ "rule_id": rule_id.trim() }));
            refused("remove the webhook rule", &status, data)
        })?;
    Ok(CommandReply::success(
        "Webhook rule removed",
        object(json!({ "rule_id": removed.rule_id })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn arguments_are_read_as_the_original_did() {
        let a = args(json!({"url": 5, "room": " r ", "nothing": null, "o": {}}));
        assert_eq!(text(&a, "url").unwrap().as_deref(), Some("5"));
        assert_eq!(text(&a, "room").unwrap().as_deref(), Some(" r "));
        assert_eq!(text(&a, "nothing").unwrap(), None);
        assert_eq!(text(&a, "absent").unwrap(), None);
        assert_eq!(
            text(&a, "o").unwrap_err().message,
            "Validation error: 'o' must be a string"
        );

        let timeout = |v: Value| number(&args(json!({ "timeout_seconds": v })), "timeout_seconds");
        assert_eq!(timeout(json!(1.5)).unwrap(), Some(1.5));
        assert_eq!(timeout(json!(" 3 ")).unwrap(), Some(3.0));
        assert_eq!(timeout(json!(null)).unwrap(), None);
        assert_eq!(
            timeout(json!("soon")).unwrap_err(),
            "'timeout_seconds' must be a number, not 'soon'"
        );
        for bad in [json!([1]), json!(true)] {
            assert_eq!(
                timeout(bad).unwrap_err(),
                "'timeout_seconds' must be a number"
            );
        }

        let h = headers(&args(
            json!({"headers": {"X-A": "a", "X-N": 1, "X-B": true}}),
        ))
        .unwrap();
        assert_eq!(h["X-A"], "a");
        assert_eq!(h["X-N"], "1");
        assert_eq!(h["X-B"], "true");
        for bad in [json!("x"), json!([]), json!(3)] {
            let reply = headers(&args(json!({ "headers": bad }))).unwrap_err();
            assert_eq!(reply.error_code, Some(ErrorCode::ValidationError));
            assert_eq!(
                reply.message,
                "Validation error: 'headers' must be an object"
            );
        }

        let flag = |v: Value| boolean(&args(json!({ "persistent": v })), "persistent");
        assert!(flag(json!(true)).unwrap());
        assert!(flag(json!("yes")).unwrap());
        assert!(flag(json!(1)).unwrap());
        assert!(!flag(json!(0)).unwrap());
        assert!(!flag(json!("off")).unwrap());
        assert!(!boolean(&Map::new(), "persistent").unwrap());
        for bad in [json!("maybe"), json!([true])] {
            assert_eq!(flag(bad).unwrap_err(), "'persistent' must be a boolean");
        }
    }
}
