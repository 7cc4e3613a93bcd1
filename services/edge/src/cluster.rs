//! How an edge takes part in the cluster: it renews its key in the bucket of live edges
//! (with the CASIL version it routes by), answers presence queries about its
//! connections, and takes private messages for them.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use arqon_bus::{Bus, BusError, KvStore, Subscription};
use serde_json::Value;

use arqon_proto::layout::{self, EdgeLiveness};
use arqon_proto::model::{DirectAck, DirectDelivery, PresenceQuery, RoomDelivery};
use arqon_protocol::{Envelope, Identity, JsonObject, MessageType, SERVER_SENDER, Topic, subject};

use crate::peer::Outbound;
use crate::{Shared, presence};

/// This edge's key in the bucket of live edges: its connections and the CASIL version
/// it routes by ([`EdgeLiveness`]). Writes are one at a time and each writes what is
/// current then, so the stored value never goes back to an older report.
pub(crate) struct Liveness {
    key: String,
    state: tokio::sync::Mutex<LivenessState>,
}

struct LivenessState {
    edges: KvStore,
    /// Whether the key was removed for good (the edge stops); later writes are skipped.
    removed: bool,
}

impl Liveness {
    pub(crate) fn new(edges: KvStore, edge_id: &arqon_protocol::EdgeId) -> Self {
        Self {
            key: edge_id.as_str().to_owned(),
            state: tokio::sync::Mutex::new(LivenessState {
                edges,
                removed: false,
            }),
        }
    }

    /// Writes the key with what is current now. A write that fails is tried once more on
    /// the bucket opened again: a NATS server restarted without its memory buckets has
    /// lost it.
    pub(crate) async fn write(&self, shared: &Shared) -> Result<(), BusError> {
        let mut state = self.state.lock().await;
        if state.removed {
            return Ok(());
        }
        // Also what the console's overview shows of each edge (the `overview` command).
        let value = EdgeLiveness {
            connections: shared.connections.len() as u64,
            frames_in: shared.metrics.frames_in.get(),
            frames_out: shared.metrics.frames_out.get(),
            bus_connected: shared.bus.is_connected(),
            uptime_seconds: shared.started.elapsed().as_secs(),
            casil_version: shared.route.reported(),
        };
        if state.edges.put(&self.key, value.encode()).await.is_ok() {
            return Ok(());
        }
        state.edges = shared.bus.key_value(layout::edges()).await?;
        state.edges.put(&self.key, value.encode()).await.map(|_| ())
    }

    async fn remove(&self) {
        let mut state = self.state.lock().await;
        state.removed = true;
        if let Err(e) = state.edges.delete(&self.key).await {
            debug!(error = %e, "cannot remove this edge's liveness key");
        }
    }
}

/// Renews this edge's key until `stop`, then removes it.
pub(crate) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        if let Err(e) = shared.liveness.write(&shared).await {
            warn!(error = %e, "cannot renew this edge's liveness key");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(subject::EDGE_HEARTBEAT) => {}
        }
    }
    shared.liveness.remove().await;
}

/// Answers presence queries with this edge's memberships, until `stop`: bounded
/// (`presence`), so a crowded room's answer is never too large for the bus.
pub(crate) async fn answer_presence(
    shared: Arc<Shared>,
    mut queries: Subscription,
    stop: CancellationToken,
) {
    while let Some(message) = queries.next_until(&stop).await {
        let query = match PresenceQuery::decode(message.payload.clone()) {
            Ok(query) => query,
            Err(e) => {
                warn!(error = %e, "undecodable presence query");
                continue;
            }
        };
        let bounds = presence::Bounds::new(
            &query,
            shared.config.presence_max_members,
            shared.config.presence_max_reply_bytes,
            shared.bus.max_payload(),
        );
        let (reply, cut) = presence::reply(
            shared.edge_id.clone(),
            &query,
            bounds,
            shared.rooms.presence(&query),
            shared.connections.per_tenant(query.tenant.as_ref()),
        );
        if let Some(by) = cut {
            shared.metrics.presence_truncated(by);
        }
        if let Err(e) = message.respond(&shared.bus, reply.encode()).await {
            debug!(error = %e, "cannot answer a presence query");
        }
    }
}

/// Writes private messages to their connection, answering whether it was here.
pub(crate) async fn take_direct(
    shared: Arc<Shared>,
    mut deliveries: Subscription,
    stop: CancellationToken,
) {
    while let Some(message) = deliveries.next_until(&stop).await {
        let delivered = match DirectDelivery::decode(message.payload.clone()) {
            Ok(direct) => deliver(&shared, direct),
            Err(e) => {
                warn!(error = %e, "undecodable private delivery");
                false
            }
        };
        if let Err(e) = message
            .respond(&shared.bus, DirectAck { delivered }.encode())
            .await
        {
            debug!(error = %e, "cannot acknowledge a private delivery");
        }
    }
}

/// Only a connection of the sender's own tenant gets it: another tenant's client id is
/// answered exactly as an unknown one.
fn deliver(shared: &Shared, direct: DirectDelivery) -> bool {
    let Some(peer) = shared.connections.get(&direct.client_id) else {
        return false;
    };
    if peer.tenant() != &direct.tenant {
        return false;
    }
    match Utf8Bytes::try_from(direct.frame) {
        Ok(frame) => {
            peer.send(Outbound::Frame(frame));
            true
        }
        Err(_) => {
            warn!("private delivery frame is not UTF-8");
            false
        }
    }
}

/// Tells the operators a client is gone, so what it owned without `persistent` goes too.
/// (A crashed edge says nothing: the operators also check the edges bucket.)
pub(crate) async fn say_gone(shared: &Shared, identity: &Identity) {
    let target = subject::client_gone(&identity.tenant);
    let id = Bytes::from(identity.client_id.as_str().to_owned());
    if let Err(e) = shared.bus.publish(target, id).await {
        debug!(error = %e, "cannot announce a disconnect");
    }
}

/// Announces that a connection joined or left a channel, to every edge with members.
pub(crate) async fn announce(shared: &Shared, identity: &Identity, topic: &Topic, action: &str) {
    if !shared.config.presence_events {
        return;
    }
    let mut event = Envelope::new(MessageType::Telemetry);
    event.room = Some(topic.room.to_string());
    event.channel = Some(topic.channel.to_string());
    event.sender = Some(SERVER_SENDER.to_owned());
    let mut presence = serde_json::Map::new();
    presence.insert("action".into(), Value::from(action));
    presence.insert("client_id".into(), Value::from(identity.client_id.as_str()));
    presence.insert("subject".into(), Value::from(identity.subject.clone()));
    let mut payload = serde_json::Map::new();
    payload.insert("presence".into(), Value::Object(presence));
    event.payload = JsonObject::from_map(&payload);
    let delivery = RoomDelivery {
        exclude: Some(identity.client_id.clone()),
        ..RoomDelivery::of(&event)
    };
    let target = subject::presence_events(&identity.tenant, topic);
    if let Err(e) = shared.bus.publish(target, delivery.encode()).await {
        debug!(error = %e, "cannot announce a presence change");
    }
}

/// Writes presence events to this edge's members of their channel, until `stop`.
pub(crate) async fn relay_presence(
    shared: Arc<Shared>,
    mut events: Subscription,
    stop: CancellationToken,
) {
    while let Some(message) = events.next_until(&stop).await {
        let Some((tenant, topic)) = subject::parse_presence_events(&message.subject) else {
            continue;
        };
        match RoomDelivery::decode(message.payload) {
            Ok(delivery) => shared.rooms.deliver(&tenant, &topic, delivery),
            Err(e) => warn!(error = %e, "undecodable presence event"),
        }
    }
}

/// Subscribes to what the cluster asks of this edge.
pub(crate) async fn subscribe(
    bus: &Bus,
    edge_id: &arqon_protocol::EdgeId,
) -> Result<(Subscription, Subscription), arqon_bus::BusError> {
    let presence = bus.subscribe(subject::PRESENCE_QUERY).await?;
    let direct = bus.subscribe(subject::edge_direct(edge_id)).await?;
    Ok((presence, direct))
}
