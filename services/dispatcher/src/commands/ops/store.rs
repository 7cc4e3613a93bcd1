//! `op.store.*`: arguments into typed calls to the store, answers into the original's
//! replies (§7.4), with each value's `revision` (and `expires_at`) added.

use std::convert::identity;

use serde_json::{Map, Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_protocol::{CommandReply, ErrorCode};

use super::super::args::{Args, number, scalar_text};
use super::super::catalog::{Arg, Spec, arg};
use super::super::{Call, object};
use super::{caller, refused};
use arqon_proto::operators_control::{OperatorsControl, call as bounded};

const KEY: Arg = arg(
    "key",
    true,
    "the key (trimmed; at most 256 bytes by default)",
);
const NAMESPACE: Arg = arg(
    "namespace",
    false,
    "a namespace of your tenant, tenant:<tenant>/<namespace> (default: tenant:<tenant>)",
);
const TENANT: Arg = arg(
    "tenant",
    false,
    "admins only: the tenant whose store to use (default: yours)",
);

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.store.set",
        category: "store",
        description: "Writes a value (any JSON but null) under a key of your tenant's store; with expected_revision only if the key is still at that revision",
        permission: None,
        system_only: None,
        arguments: &[
            KEY,
            arg("value", true, "any JSON value but null (64 KiB by default)"),
            NAMESPACE,
            TENANT,
            arg(
                "expected_revision",
                false,
                "write only if the key's value is at this revision (0: only if it has none); CONFLICT otherwise",
            ),
            arg(
                "ttl_seconds",
                false,
                "the value expires this long after the write",
            ),
        ],
        example: r#"{"type":"command","command":"op.store.set","args":{"key":"alpha","value":{"n":1}}}"#,
    },
    Spec {
        name: "op.store.get",
        category: "store",
        description: "Reads a key of your tenant's store: found, value and revision",
        permission: None,
        system_only: None,
        arguments: &[KEY, NAMESPACE, TENANT],
        example: r#"{"type":"command","command":"op.store.get","args":{"key":"alpha"}}"#,
    },
    Spec {
        name: "op.store.delete",
        category: "store",
        description: "Deletes a key of your tenant's store",
        permission: None,
        system_only: None,
        arguments: &[KEY, NAMESPACE, TENANT],
        example: r#"{"type":"command","command":"op.store.delete","args":{"key":"alpha"}}"#,
    },
    Spec {
        name: "op.store.list",
        category: "store",
        description: "The keys of a namespace of your tenant's store, sorted, a page at a time",
        permission: None,
        system_only: None,
        arguments: &[
            NAMESPACE,
            TENANT,
            arg(
                "after",
                false,
                "list the keys after this one (the previous page's next_after)",
            ),
            arg(
                "limit",
                false,
                "most keys in the page (1-1000, default 1000)",
            ),
        ],
        example: r#"{"type":"command","command":"op.store.list"}"#,
    },
];

pub(super) async fn execute(
    call: &Call<'_>,
    name: &str,
    control: &OperatorsControl,
) -> CommandReply {
    let args = call.inbound.envelope.args.to_map();
    let reply = match name {
        "op.store.set" => set(call, &args, control).await,
        "op.store.get" => get(call, &args, control).await,
        "op.store.delete" => delete(call, &args, control).await,
        "op.store.list" => list(call, &args, control).await,
        other => Err(CommandReply::error(
            ErrorCode::UnknownCommand,
            format!("Unknown command: {other}"),
        )),
    };
    reply.unwrap_or_else(identity)
}

/// Most keys one `op.store.list` page holds (the operators service's limit too).
const MAX_LIST_LIMIT: usize = 1000;

fn invalid(message: impl Into<String>) -> CommandReply {
    CommandReply::error(ErrorCode::ValidationError, message)
}

/// A text argument as the original read it (`str(...)`): absent or null is empty.
fn text(args: &Map<String, Value>, name: &str) -> Result<String, CommandReply> {
    scalar_text(args, name)
        .map(Option::unwrap_or_default)
        .map_err(invalid)
}

fn namespace(args: &Map<String, Value>) -> Result<Option<pb::Namespace>, CommandReply> {
    let given = |name| text(args, name).map(|t| Some(t).filter(|t| !t.trim().is_empty()));
    Ok(Some(pb::Namespace {
        namespace: given("namespace")?,
        tenant: given("tenant")?,
    }))
}

/// A JSON value as text, parsed back (`null` if the store sent something unreadable).
fn parsed(json: &str) -> Value {
    serde_json::from_str(json).unwrap_or(Value::Null)
}

async fn set(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let value_json = match args.get("value") {
        None | Some(Value::Null) => String::new(),
        Some(value) => value.to_string(),
    };
    let expected_revision = match args.get("expected_revision") {
        None | Some(Value::Null) => None,
        Some(revision) => Some(
            revision
                .as_u64()
                .ok_or_else(|| invalid("'expected_revision' must be a non-negative integer"))?,
        ),
    };
    let ttl_seconds = number(args, "ttl_seconds").map_err(invalid)?;
    let request = pb::SetRequest {
        caller: caller(call),
        namespace: namespace(args)?,
        key: text(args, "key")?,
        value_json,
        expected_revision,
        ttl_seconds,
    };
    let written = bounded(control.store.set(Request::new(request)))
        .await
        .map_err(|status| refused("write the store value", &status, Map::new()))?;
    Ok(CommandReply::success(
        "Store value written",
        object(json!({
            "namespace": written.namespace,
            "key": written.key,
            "updated": written.updated,
            "revision": written.revision,
            "expires_at": written.expires_at,
        })),
    ))
}

async fn get(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::GetRequest {
        caller: caller(call),
        namespace: namespace(args)?,
        key: text(args, "key")?,
    };
    let read = bounded(control.store.get(Request::new(request)))
        .await
        .map_err(|status| refused("read the store value", &status, Map::new()))?;
    let (value, revision) = if read.found {
        (parsed(&read.value_json), Value::from(read.revision))
    } else {
        (Value::Null, Value::Null)
    };
    Ok(CommandReply::success(
        "Store value retrieved",
        object(json!({
            "namespace": read.namespace,
            "key": read.key,
            "found": read.found,
            "value": value,
            "revision": revision,
            "expires_at": read.expires_at,
        })),
    ))
}

async fn delete(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let request = pb::DeleteRequest {
        caller: caller(call),
        namespace: namespace(args)?,
        key: text(args, "key")?,
    };
    let deleted = bounded(control.store.delete(Request::new(request)))
        .await
        .map_err(|status| refused("delete the store value", &status, Map::new()))?;
    Ok(CommandReply::success(
        "Store value deleted",
        object(json!({
            "namespace": deleted.namespace,
            "key": deleted.key,
            "deleted": deleted.deleted,
        })),
    ))
}

async fn list(
    call: &Call<'_>,
    args: &Map<String, Value>,
    control: &OperatorsControl,
) -> Result<CommandReply, CommandReply> {
    let limit = Args::new(args.clone()).limit(MAX_LIST_LIMIT, MAX_LIST_LIMIT)?;
    let after = text(args, "after")?;
    let request = pb::ListRequest {
        caller: caller(call),
        namespace: namespace(args)?,
        after: Some(after).filter(|after| !after.is_empty()),
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
    };
    let listed = bounded(control.store.list(Request::new(request)))
        .await
        .map_err(|status| refused("list the store keys", &status, Map::new()))?;
    let mut data = object(json!({
        "namespace": listed.namespace,
        "count": listed.keys.len(),
        "total": listed.total,
        "complete": listed.complete,
    }));
    if !listed.complete
        && let Some(last) = listed.keys.last()
    {
        data.insert("next_after".to_owned(), Value::from(last.as_str()));
    }
    data.insert("keys".to_owned(), Value::from(listed.keys));
    Ok(CommandReply::success("Store keys listed", data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn text_arguments_are_read_as_the_original_did() {
        let a = args(json!({"key": " k ", "n": 42, "b": true, "nothing": null, "o": {}}));
        assert_eq!(text(&a, "key").unwrap(), " k ");
        assert_eq!(text(&a, "n").unwrap(), "42");
        assert_eq!(text(&a, "b").unwrap(), "true");
        assert_eq!(text(&a, "nothing").unwrap(), "");
        assert_eq!(text(&a, "absent").unwrap(), "");
        assert_eq!(text(&a, "o").unwrap_err().message, "'o' must be a string");
        let ns = namespace(&args(json!({"namespace": " ", "tenant": "t-b"})))
            .unwrap()
            .unwrap();
        assert_eq!((ns.namespace, ns.tenant.as_deref()), (None, Some("t-b")));
    }
}
