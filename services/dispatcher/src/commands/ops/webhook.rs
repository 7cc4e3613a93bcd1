//! `op.webhook.*`: arguments into typed calls to the webhooks API, answers into the
//! original's replies to `op.webhook`, with `persistent` added and the signing `secret`
//! shown once (at registration).

use serde_json::{Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_proto::operators_control::OperatorsControl;

use super::super::args::{Arg, Parse, Reader, arg};
use super::super::catalog::{Access, Family, Spec};
use super::super::{Call, Reply, success};
use super::{ask, ask_about};

const URL: Arg = arg(
    "url",
    true,
    "http:// or https:// URL; internal addresses are refused unless the bus allows them",
);
const ROOM: Arg = arg(
    "room",
    false,
    "only messages to this room (default: every room)",
);
const CHANNEL: Arg = arg(
    "channel",
    false,
    "only messages to this channel (default: every channel)",
);
const TIMEOUT_SECONDS: Arg = arg(
    "timeout_seconds",
    false,
    "per attempt, > 0 (default 2; at most 30 by default)",
);
const HEADERS: Arg = arg(
    "headers",
    false,
    "an object of extra HTTP headers (values stringified)",
);
const PERSISTENT: Arg = arg(
    "persistent",
    false,
    "keep the rule after you disconnect (default false: removed when you disconnect)",
);
const RULE_ID: Arg = arg("rule_id", true, "the rule's id (wh_…)");

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.webhook.register",
        family: Family::Webhook,
        description: "POSTs every message of your tenant that matches the filters to a URL (signed, retried, at least once); answers with the rule and its signing secret (shown only here)",
        access: Access::Anyone,
        arguments: &[URL, ROOM, CHANNEL, TIMEOUT_SECONDS, HEADERS, PERSISTENT],
        example: r#"{"type":"command","command":"op.webhook.register","args":{"url":"https://example.com/hook","room":"science","channel":"general"}}"#,
        handler: operators!(register),
    },
    Spec {
        name: "op.webhook.list",
        family: Family::Webhook,
        description: "Your webhook rules (an admin's: every rule of the tenant)",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.webhook.list"}"#,
        handler: operators!(list),
    },
    Spec {
        name: "op.webhook.outcomes",
        family: Family::Webhook,
        description: "What the deliveries of your webhook rules (an admin's: every rule of the tenant) came to: delivered, retried, failed, dead-lettered, the last error; the operators add each replica's counts every ARQONBUS_WEBHOOK_OUTCOMES_FLUSH_MS",
        access: Access::Anyone,
        arguments: &[],
        example: r#"{"type":"command","command":"op.webhook.outcomes"}"#,
        handler: operators!(outcomes),
    },
    Spec {
        name: "op.webhook.unregister",
        family: Family::Webhook,
        description: "Removes one of your webhook rules (an admin: any rule of the tenant)",
        access: Access::Anyone,
        arguments: &[RULE_ID],
        example: r#"{"type":"command","command":"op.webhook.unregister","args":{"rule_id":"wh_0123456789ab"}}"#,
        handler: operators!(unregister),
    },
];

impl Parse for pb::RegisterWebhookRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            url: args.text(&URL)?.unwrap_or_default(),
            room: args.text(&ROOM)?,
            channel: args.text(&CHANNEL)?,
            timeout_seconds: args.number(&TIMEOUT_SECONDS)?,
            // Each value as its text.
            headers: args
                .object(&HEADERS)?
                .into_iter()
                .flatten()
                .map(|(name, value)| {
                    let text = match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    (name.clone(), text)
                })
                .collect(),
            persistent: args.truthy(&PERSISTENT)?,
        })
    }
}

impl Parse for pb::UnregisterWebhookRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            rule_id: args.text(&RULE_ID)?.unwrap_or_default(),
        })
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
    control: &OperatorsControl,
    request: pb::RegisterWebhookRequest,
) -> Reply {
    let verb = "register the webhook rule";
    let rule = ask(verb, control.webhook.register(Request::new(request))).await?;
    // This replica queues the tenant's next message at once; others follow the bucket.
    call.context
        .webhook_tenants
        .noted(&call.inbound.identity.tenant, &rule.rule_id);
    Ok(success(
        "Webhook rule registered",
        json!({
            "rule_id": rule.rule_id,
            "url": rule.url,
            "room": rule.room,
            "channel": rule.channel,
            "timeout_seconds": rule.timeout_seconds,
            "created_at": rule.created_at,
            "persistent": rule.persistent,
            "secret": rule.secret,
        }),
    ))
}

async fn list(_: &Call<'_>, control: &OperatorsControl, request: pb::ListWebhooksRequest) -> Reply {
    let verb = "list the webhook rules";
    let listed_rules = ask(verb, control.webhook.list(Request::new(request))).await?;
    let rules: Vec<Value> = listed_rules.rules.iter().map(listed).collect();
    Ok(success(
        "Webhook rules retrieved",
        json!({ "count": rules.len(), "rules": rules }),
    ))
}

async fn outcomes(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::WebhookOutcomesRequest,
) -> Reply {
    let verb = "read the webhook outcomes";
    let answer = ask(verb, control.webhook.outcomes(Request::new(request))).await?;
    let rules: Vec<Value> = answer
        .rules
        .iter()
        .map(|rule| {
            json!({
                "rule_id": rule.rule_id,
                "url": rule.url,
                "delivered": rule.delivered,
                "retried": rule.retried,
                "failed": rule.failed,
                "dead_lettered": rule.dead_lettered,
                "last_error": rule.last_error,
                "last_error_at": rule.last_error_at,
                "last_delivered_at": rule.last_delivered_at,
            })
        })
        .collect();
    Ok(success(
        "Webhook outcomes retrieved",
        json!({ "count": rules.len(), "rules": rules }),
    ))
}

async fn unregister(
    _: &Call<'_>,
    control: &OperatorsControl,
    request: pb::UnregisterWebhookRequest,
) -> Reply {
    let rule_id = request.rule_id.clone();
    let verb = "remove the webhook rule";
    let removed = ask_about(
        verb,
        ("rule_id", &rule_id),
        control.webhook.unregister(Request::new(request)),
    )
    .await?;
    Ok(success(
        "Webhook rule removed",
        json!({ "rule_id": removed.rule_id }),
    ))
}
