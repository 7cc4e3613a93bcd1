//! `op.store.*`: arguments into typed calls to the store, answers into the original's
//! replies to `op.store`, with each value's `revision` (and `expires_at`) added.

use serde_json::{Value, json};
use tonic::Request;

use arqon_proto::operators::v1 as pb;
use arqon_proto::operators_control::OperatorsControl;
use arqon_protocol::CommandReply;

use super::super::args::{Arg, Parse, Reader, arg};
use super::super::catalog::{Access, Family, Spec};
use super::super::{Call, Reply, object, success};
use super::{ask, parsed};

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

const VALUE: Arg = arg("value", true, "any JSON value but null (64 KiB by default)");
const EXPECTED_REVISION: Arg = arg(
    "expected_revision",
    false,
    "write only if the key's value is at this revision (0: only if it has none); CONFLICT otherwise",
);
const TTL_SECONDS: Arg = arg(
    "ttl_seconds",
    false,
    "the value expires this long after the write",
);
const AFTER: Arg = arg(
    "after",
    false,
    "list the keys after this one (the previous page's next_after)",
);
const LIMIT: Arg = arg(
    "limit",
    false,
    "most keys in the page (1-1000, default 1000)",
);

pub(super) const SPECS: &[Spec] = &[
    Spec {
        name: "op.store.set",
        family: Family::Store,
        description: "Writes a value (any JSON but null) under a key of your tenant's store; with expected_revision only if the key is still at that revision",
        access: Access::Anyone,
        arguments: &[
            KEY,
            VALUE,
            NAMESPACE,
            TENANT,
            EXPECTED_REVISION,
            TTL_SECONDS,
        ],
        example: r#"{"type":"command","command":"op.store.set","args":{"key":"alpha","value":{"n":1}}}"#,
        handler: operators!(set),
    },
    Spec {
        name: "op.store.get",
        family: Family::Store,
        description: "Reads a key of your tenant's store: found, value and revision",
        access: Access::Anyone,
        arguments: &[KEY, NAMESPACE, TENANT],
        example: r#"{"type":"command","command":"op.store.get","args":{"key":"alpha"}}"#,
        handler: operators!(get),
    },
    Spec {
        name: "op.store.delete",
        family: Family::Store,
        description: "Deletes a key of your tenant's store",
        access: Access::Anyone,
        arguments: &[KEY, NAMESPACE, TENANT],
        example: r#"{"type":"command","command":"op.store.delete","args":{"key":"alpha"}}"#,
        handler: operators!(delete),
    },
    Spec {
        name: "op.store.list",
        family: Family::Store,
        description: "The keys of a namespace of your tenant's store, sorted, a page at a time",
        access: Access::Anyone,
        arguments: &[NAMESPACE, TENANT, AFTER, LIMIT],
        example: r#"{"type":"command","command":"op.store.list"}"#,
        handler: operators!(list),
    },
];

/// Most keys one `op.store.list` page holds (the operators service's limit too).
const MAX_LIST_LIMIT: usize = 1000;

/// `namespace` and `tenant`, each absent when blank.
fn namespace(args: &Reader<'_>) -> Reply<Option<pb::Namespace>> {
    let given = |arg| Ok(args.text(arg)?.filter(|t: &String| !t.trim().is_empty()));
    Ok(Some(pb::Namespace {
        namespace: given(&NAMESPACE)?,
        tenant: given(&TENANT)?,
    }))
}

impl Parse for pb::SetRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            value_json: args.json(&VALUE).unwrap_or_default(),
            expected_revision: args.count(&EXPECTED_REVISION)?,
            ttl_seconds: args.number(&TTL_SECONDS)?,
            namespace: namespace(args)?,
            key: args.text(&KEY)?.unwrap_or_default(),
        })
    }
}

impl Parse for pb::GetRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            caller: None,
            namespace: namespace(args)?,
            key: args.text(&KEY)?.unwrap_or_default(),
        })
    }
}

impl Parse for pb::DeleteRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let pb::GetRequest { namespace, key, .. } = pb::GetRequest::parse(args)?;
        Ok(Self {
            caller: None,
            namespace,
            key,
        })
    }
}

impl Parse for pb::ListRequest {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        let limit = args.limit(&LIMIT, MAX_LIST_LIMIT, MAX_LIST_LIMIT)?;
        Ok(Self {
            caller: None,
            after: args.text(&AFTER)?.filter(|after| !after.is_empty()),
            namespace: namespace(args)?,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        })
    }
}

async fn set(_: &Call<'_>, control: &OperatorsControl, request: pb::SetRequest) -> Reply {
    let written = ask(
        "write the store value",
        control.store.set(Request::new(request)),
    )
    .await?;
    Ok(success(
        "Store value written",
        json!({
            "namespace": written.namespace,
            "key": written.key,
            "updated": written.updated,
            "revision": written.revision,
            "expires_at": written.expires_at,
        }),
    ))
}

async fn get(_: &Call<'_>, control: &OperatorsControl, request: pb::GetRequest) -> Reply {
    let read = ask(
        "read the store value",
        control.store.get(Request::new(request)),
    )
    .await?;
    let (value, revision) = if read.found {
        (
            parsed(&read.value_json, Value::Null),
            Value::from(read.revision),
        )
    } else {
        (Value::Null, Value::Null)
    };
    Ok(success(
        "Store value retrieved",
        json!({
            "namespace": read.namespace,
            "key": read.key,
            "found": read.found,
            "value": value,
            "revision": revision,
            "expires_at": read.expires_at,
        }),
    ))
}

async fn delete(_: &Call<'_>, control: &OperatorsControl, request: pb::DeleteRequest) -> Reply {
    let deleted = ask(
        "delete the store value",
        control.store.delete(Request::new(request)),
    )
    .await?;
    Ok(success(
        "Store value deleted",
        json!({"namespace": deleted.namespace, "key": deleted.key, "deleted": deleted.deleted}),
    ))
}

async fn list(_: &Call<'_>, control: &OperatorsControl, request: pb::ListRequest) -> Reply {
    let listed = ask(
        "list the store keys",
        control.store.list(Request::new(request)),
    )
    .await?;
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
