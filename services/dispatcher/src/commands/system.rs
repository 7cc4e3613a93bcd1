//! `ping`, `status` and `help`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use arqon_protocol::{CommandReply, ErrorCode, Timestamp};

use super::args::{Parse, Reader};
use super::catalog::{self, Access, COMMAND, Spec};
use super::{Call, Reply, failed, object};

/// Answers with the time the envelope spent between the edge and here.
pub(crate) async fn ping(call: &Call<'_>, (): ()) -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as f64)
        .unwrap_or_default();
    let latency_ms = ((now - call.inbound.received_at_unix_micros as f64) / 1000.0).max(0.0);
    let latency_ms = (latency_ms * 100.0).round() / 100.0;
    let data = object(json!({
        "latency_ms": latency_ms,
        "client_id": call.client(),
        "timestamp": Timestamp::now().to_rfc3339(),
        "uptime_seconds": call.context.started.elapsed().as_secs(),
    }));
    Ok(CommandReply::success(
        format!("Pong! Latency: {latency_ms}ms"),
        data,
    ))
}

/// The bus as the dispatcher sees it. Counts are the caller's tenant's, admins included;
/// only the system authority sees connected clients of every tenant (the first
/// `ARQONBUS_STATUS_MAX_TENANTS` by name).
pub(crate) async fn status(call: &Call<'_>, (): ()) -> Reply {
    let context = call.context;
    let identity = &call.inbound.identity;
    let scope = (!identity.system).then_some(&identity.tenant);
    let gathered = async {
        Ok::<_, arqon_bus::BusError>((
            context
                .presence
                .connections(scope, context.max_tenants_listed)
                .await?,
            context.presence.edges().await?,
            context.registry.all(&identity.tenant).await?,
            context.history.count_tenant(&identity.tenant).await?,
        ))
    };
    let (clients, edges, channels, stored) = gathered
        .await
        .map_err(|e| failed(ErrorCode::StatusError, "read status", &e))?;
    let rooms: std::collections::BTreeSet<&str> =
        channels.iter().map(|t| t.room.as_str()).collect();
    let clients_complete = clients.complete;
    let clients: Map<String, Value> = clients
        .per_tenant
        .into_iter()
        .map(|(tenant, n)| (tenant.to_string(), Value::from(n)))
        .collect();
    let data = object(json!({
        "server": {
            "status": "running",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": context.started.elapsed().as_secs(),
            "replica": context.replica.as_str(),
            "edges": edges,
        },
        "clients": clients,
        "clients_complete": clients_complete,
        "rooms": rooms.len(),
        "channels": channels.len(),
        "messages": {
            "routed_by_this_replica": context.metrics.routed(),
            "commands_by_this_replica": context.metrics.commands(),
            "stored": stored,
            "history": context.history.enabled(),
        },
        "timestamp": Timestamp::now().to_rfc3339(),
    }));
    Ok(CommandReply::success("Bus status", data))
}

fn describe(spec: &Spec) -> Value {
    let arguments: Vec<Value> = spec
        .arguments
        .iter()
        .map(|a| json!({"name": a.name, "required": a.required, "description": a.description}))
        .collect();
    json!({
        "name": spec.name,
        "description": spec.description,
        "category": spec.family.as_str(),
        "usage": spec.example,
        "permissions": match spec.access {
            Access::Anyone => vec![],
            Access::Needs(permission) => vec![permission.as_str()],
            Access::System(_) => vec!["system"],
        },
        "arguments": arguments,
        "examples": [spec.example],
    })
}

/// `help`'s request: the command to describe, if one.
pub(crate) struct Help {
    command: Option<String>,
}

impl Parse for Help {
    fn parse(args: &Reader<'_>) -> Reply<Self> {
        Ok(Self {
            command: args.string(&COMMAND)?.map(str::to_owned),
        })
    }
}

/// Every command, or one.
pub(crate) async fn help(call: &Call<'_>, request: Help) -> Reply {
    if let Some(name) = request.command {
        return match catalog::find(&name) {
            Some(spec) => Ok(CommandReply::success(
                format!("Help for '{name}'"),
                object(describe(spec)),
            )),
            None => Err(CommandReply::error(
                ErrorCode::CommandNotFound,
                format!("Command not found: {name}"),
            )),
        };
    }
    let mut categories: Map<String, Value> = Map::new();
    for spec in catalog::all() {
        if let Value::Array(names) = categories
            .entry(spec.family.as_str())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            names.push(Value::from(spec.name));
        }
    }
    let commands: Map<String, Value> = catalog::all()
        .map(|spec| (spec.name.to_owned(), describe(spec)))
        .collect();
    let mut data = object(json!({
        "available_commands": catalog::all().map(|s| s.name).collect::<Vec<_>>(),
        "commands": commands,
        "categories": categories,
        "usage": "Send {\"type\":\"command\",\"command\":\"<name>\",\"args\":{...}}; help with args {\"command\":\"<name>\"} describes one",
    }));
    call.queried(&mut data);
    Ok(CommandReply::success(
        format!("{} commands available", catalog::all().count()),
        data,
    ))
}

/// `refresh` is answered by the edge; reaching here means an edge forwarded it.
pub(crate) async fn refresh(_: &Call<'_>, (): ()) -> Reply {
    Err(CommandReply::error(
        ErrorCode::UnknownCommand,
        "Unknown command: refresh",
    ))
}
