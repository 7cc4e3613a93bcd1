//! `overview`: what the admin console's overview shows, in one answer, read from the
//! state `status` and `op.casil.get` read: the caller's tenant's connections, rooms,
//! channels and stored messages, the CASIL mode and version, the bus as this replica
//! sees it, and the live edges. The system authority also gets every tenant's
//! connections and each edge's own report (its liveness key: connections, frames in and
//! out), from which the console computes the fleet's rates, and each policy, dispatcher
//! and operators replica's (`arqon_proto::liveness`: version, uptime); a tenant gets how
//! many of each are alive. The webhook queue's depth is the operators service's answer
//! (`Webhooks.QueueDepth`).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use tonic::Request;

use arqon_bus::BusError;
use arqon_proto::liveness::{self, ServiceLiveness};
use arqon_proto::operators::v1 as pb;
use arqon_proto::operators_control;
use arqon_protocol::{CommandReply, ErrorCode, Timestamp, UserFacingError};

use super::{Call, Reply, casil, failed, object, ops};

/// Edges whose reports one answer lists at most, the first by id; as many replicas of
/// each other service.
const MAX_EDGES_LISTED: usize = 1000;

pub(crate) async fn overview(call: &Call<'_>, (): ()) -> Reply {
    let context = call.context;
    let identity = &call.inbound.identity;
    let fleet = identity.system;
    let scope = (!fleet).then_some(&identity.tenant);
    let gathered = async {
        Ok::<_, BusError>((
            context
                .presence
                .connections(scope, context.max_tenants_listed)
                .await?,
            context.presence.edge_reports().await?,
            liveness::live(&context.replicas).await?,
            context.registry.all(&identity.tenant).await?,
            context.history.count_tenant(&identity.tenant).await?,
        ))
    };
    let (clients, reports, replicas, channels, stored) = gathered
        .await
        .map_err(|e| failed(ErrorCode::StatusError, "read the overview", &e))?;
    let rooms: BTreeSet<&str> = channels.iter().map(|t| t.room.as_str()).collect();
    let connections: u64 = if fleet {
        clients.per_tenant.values().sum()
    } else {
        clients
            .per_tenant
            .get(&identity.tenant)
            .copied()
            .unwrap_or_default()
    };
    let mut data = object(json!({
        "tenant": identity.tenant.as_str(),
        "scope": if fleet { "fleet" } else { "tenant" },
        "connections": connections,
        "rooms": rooms.len(),
        "channels": channels.len(),
        "stored_messages": stored,
        "history": context.history.enabled(),
        "casil": casil_state(call).await,
        "webhooks": webhook_queue(call, fleet).await,
        "bus": {
            "backend": context.bus.backend(),
            "connected": context.bus.is_connected(),
        },
        "dispatcher": {
            "replica": context.replica.as_str(),
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": context.started.elapsed().as_secs(),
        },
        "edges": edges(&reports, fleet),
        "services": services(&replicas, fleet),
        "timestamp": Timestamp::now().to_rfc3339(),
    }));
    if fleet {
        let per_tenant: Map<String, Value> = clients
            .per_tenant
            .into_iter()
            .map(|(tenant, n)| (tenant.to_string(), Value::from(n)))
            .collect();
        data.insert("clients".into(), Value::Object(per_tenant));
        data.insert("clients_complete".into(), Value::from(clients.complete));
    }
    Ok(CommandReply::success("Bus overview", data))
}

/// The live policy's mode and version, or why they cannot be read (the rest of the
/// overview is still worth showing).
async fn casil_state(call: &Call<'_>) -> Value {
    let Some(control) = call.context.policy.as_ref() else {
        return json!({"error": "CASIL control is not configured on this dispatcher (ARQONBUS_POLICY_URL)"});
    };
    let live = match control.get().await {
        Ok(live) => live,
        Err(e) => return json!({"error": casil::refused(&e).message}),
    };
    match casil::snapshot(&live) {
        Ok(policy) => json!({
            "enabled": policy.get("enabled"),
            "mode": policy.get("mode"),
            "version": policy.get("version"),
            "updated_at": policy.get("updated_at"),
        }),
        Err(reply) => json!({"error": reply.message}),
    }
}

/// The webhook queue's depth: the tenant's jobs; the whole queue's for the fleet.
async fn webhook_queue(call: &Call<'_>, fleet: bool) -> Value {
    let Some(control) = call.context.operators.as_ref() else {
        return json!({"error": "Webhooks are not configured on this dispatcher (ARQONBUS_OPERATORS_URL)"});
    };
    let request = pb::WebhookQueueDepthRequest {
        caller: Some(ops::caller(call)),
    };
    let depth = operators_control::call(
        "read the webhook queue",
        control.webhook.queue_depth(Request::new(request)),
    )
    .await;
    match depth {
        Ok(depth) if fleet => json!({
            "queued": depth.jobs.unwrap_or(depth.tenant_jobs),
            "bytes": depth.bytes,
            "tenant_queued": depth.tenant_jobs,
        }),
        Ok(depth) => json!({ "queued": depth.tenant_jobs }),
        Err(e) => json!({ "error": e.client_message() }),
    }
}

/// The live edges: how many; for the fleet, each one's report and their sums.
fn edges(reports: &[(String, Value)], fleet: bool) -> Value {
    let mut edges = json!({ "alive": reports.len() });
    if !fleet {
        return edges;
    }
    let sum = |field: &str| -> u64 {
        reports
            .iter()
            .filter_map(|(_, report)| report.get(field)?.as_u64())
            .sum()
    };
    let list: Vec<Value> = reports
        .iter()
        .take(MAX_EDGES_LISTED)
        .map(|(edge_id, report)| {
            json!({
                "edge_id": edge_id,
                "connections": report.get("connections"),
                "frames_in": report.get("frames_in"),
                "frames_out": report.get("frames_out"),
                "bus_connected": report.get("bus_connected"),
                "uptime_seconds": report.get("uptime_seconds"),
            })
        })
        .collect();
    edges["frames_in"] = Value::from(sum("frames_in"));
    edges["frames_out"] = Value::from(sum("frames_out"));
    edges["list_complete"] = Value::from(list.len() == reports.len());
    edges["list"] = Value::from(list);
    edges
}

/// The live replicas of each service: how many; for the fleet, each one's report.
fn services(replicas: &[ServiceLiveness], fleet: bool) -> Value {
    let mut services = Map::new();
    for service in liveness::SERVICES {
        let of_service = replicas.iter().filter(|r| r.service == service);
        let mut entry = json!({ "alive": of_service.clone().count() });
        if fleet {
            let list: Vec<Value> = of_service
                .take(MAX_EDGES_LISTED)
                .map(|r| {
                    json!({
                        "replica": r.replica,
                        "version": r.version,
                        "uptime_seconds": r.uptime_seconds,
                        "bus_connected": r.bus_connected,
                    })
                })
                .collect();
            entry["list_complete"] = Value::from(list.len() == entry["alive"]);
            entry["list"] = Value::from(list);
        }
        services.insert(service.to_owned(), entry);
    }
    Value::Object(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_sees_how_many_replicas_and_the_fleet_sees_each() {
        let replica = |service: &str, replica: &str| ServiceLiveness {
            service: service.into(),
            replica: replica.into(),
            version: "1.0.0".into(),
            uptime_seconds: 7,
            bus_connected: true,
        };
        let replicas = vec![
            replica("dispatcher", "dispatcher_a"),
            replica("dispatcher", "dispatcher_b"),
            replica("policy", "policy_a"),
            // A service the console does not know is not listed.
            replica("other", "other_a"),
        ];
        assert_eq!(
            services(&replicas, false),
            json!({"policy": {"alive": 1}, "dispatcher": {"alive": 2}, "operators": {"alive": 0}})
        );
        let fleet = services(&replicas, true);
        assert_eq!(fleet["dispatcher"]["alive"], 2);
        assert_eq!(fleet["dispatcher"]["list"][1]["replica"], "dispatcher_b");
        assert_eq!(fleet["dispatcher"]["list"][0]["version"], "1.0.0");
        assert_eq!(fleet["dispatcher"]["list_complete"], true);
        assert_eq!(fleet["operators"]["list"], json!([]));
    }

    #[test]
    fn a_tenant_sees_how_many_edges_and_the_fleet_sees_each() {
        let reports = vec![
            (
                "e1".to_owned(),
                json!({"connections": 2, "frames_in": 10, "frames_out": 30}),
            ),
            (
                "e2".to_owned(),
                json!({"connections": 1, "frames_in": 5, "frames_out": 1}),
            ),
            ("e3".to_owned(), Value::Null),
        ];
        assert_eq!(edges(&reports, false), json!({"alive": 3}));
        let fleet = edges(&reports, true);
        assert_eq!(fleet["alive"], 3);
        assert_eq!(fleet["frames_in"], 15);
        assert_eq!(fleet["frames_out"], 31);
        assert_eq!(fleet["list"].as_array().unwrap().len(), 3);
        assert_eq!(fleet["list"][0]["edge_id"], "e1");
        assert_eq!(fleet["list_complete"], true);
    }
}
