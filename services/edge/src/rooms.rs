//! Local fan-out: one NATS subscription per `room:channel` with members on this edge.
//!
//! A room's subscription is shared by all its local members (reference counted by the
//! member list) and dropped when the last one leaves. Each delivered message is decoded
//! once, its frame checked as UTF-8 once, and the same bytes are queued to every member
//! but the sender.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use arqon_bus::Bus;
use arqon_proto::model::{EdgeDelivery, MembershipChange, PresenceQuery, RoomDelivery};
use arqon_protocol::{ClientId, TenantId, Topic, subject};

use arqon_telemetry::metrics::TracedLatency;
use arqon_telemetry::traces;

use crate::metrics::EdgeMetrics;
use crate::peer::{Outbound, Peer, RoomFrame};
use crate::presence::Matched;

/// A room is identified by its tenant and topic: tenants never share one.
type RoomKey = (TenantId, Topic);

/// The subscription did not become ready.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not subscribe to {subject}: {reason}")]
pub(crate) struct JoinError {
    subject: String,
    reason: String,
}

struct Room {
    tenant: TenantId,
    topic: Topic,
    subject: String,
    members: RwLock<Vec<Peer>>,
    /// `None` until the subscription is registered with the server, then its outcome.
    ready: watch::Receiver<Option<Result<(), String>>>,
    stop: CancellationToken,
}

/// The rooms with local members.
pub(crate) struct Rooms {
    bus: Bus,
    rooms: Mutex<HashMap<RoomKey, Arc<Room>>>,
    tasks: TaskTracker,
    join_timeout: Duration,
    /// The number of rooms, frames queued to members, and receive-to-delivery latency.
    gauge: Gauge,
    deliveries: Counter,
    latency: TracedLatency,
}

impl Rooms {
    pub(crate) fn new(
        bus: Bus,
        tasks: TaskTracker,
        join_timeout: Duration,
        metrics: &EdgeMetrics,
    ) -> Self {
        Self {
            bus,
            rooms: Mutex::new(HashMap::new()),
            tasks,
            join_timeout,
            gauge: metrics.rooms.clone(),
            deliveries: metrics.fanout_deliveries.clone(),
            latency: metrics.delivery_latency.clone(),
        }
    }

    /// Adds `peer` to the room, subscribing first if it is the room's first local member.
    /// Returns once messages published from now on reach the peer.
    pub(crate) async fn join(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        peer: Peer,
    ) -> Result<(), JoinError> {
        let key = (tenant.clone(), topic.clone());
        let client_id = peer.client_id().clone();
        let room = {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            let room = rooms.entry(key.clone()).or_insert_with(|| {
                let (ready_tx, ready_rx) = watch::channel(None);
                let room = Arc::new(Room {
                    tenant: tenant.clone(),
                    topic: topic.clone(),
                    subject: subject::room(tenant, topic),
                    members: RwLock::new(Vec::new()),
                    ready: ready_rx,
                    stop: CancellationToken::new(),
                });
                self.tasks.spawn(run_room(
                    self.bus.clone(),
                    Arc::clone(&room),
                    ready_tx,
                    self.deliveries.clone(),
                    self.latency.clone(),
                ));
                self.gauge.inc();
                room
            });
            write(&room.members).push(peer);
            Arc::clone(room)
        };
        let mut ready = room.ready.clone();
        let outcome = tokio::time::timeout(self.join_timeout, ready.wait_for(Option::is_some))
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| match r {
                Ok(state) => state.clone().unwrap_or(Ok(())),
                Err(_) => Err("subscription ended".to_owned()),
            });
        outcome.map_err(|reason| {
            self.leave(tenant, topic, &client_id);
            JoinError {
                subject: room.subject.clone(),
                reason,
            }
        })
    }

    /// Removes the client from the room; the last member out drops the subscription.
    pub(crate) fn leave(&self, tenant: &TenantId, topic: &Topic, client_id: &ClientId) {
        let key = (tenant.clone(), topic.clone());
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(room) = rooms.get(&key) else { return };
        let empty = {
            let mut members = write(&room.members);
            members.retain(|m| m.client_id() != client_id);
            members.is_empty()
        };
        if empty {
            room.stop.cancel();
            rooms.remove(&key);
            self.gauge.dec();
        }
    }

    /// Writes `delivery` to this edge's members of the room, if it has any.
    pub(crate) fn deliver(&self, tenant: &TenantId, topic: &Topic, delivery: RoomDelivery) {
        let room = {
            let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            rooms.get(&(tenant.clone(), topic.clone())).cloned()
        };
        if let Some(room) = room {
            self.deliveries.inc_by(fan_out(&room, delivery).0);
        }
    }

    /// The channels matching `query`, with their members when it asks for them. The
    /// rooms' lock is held only to pick them; the reply is built from this snapshot.
    pub(crate) fn presence(&self, query: &PresenceQuery) -> Vec<Matched<Peer>> {
        let matching: Vec<Arc<Room>> = {
            let rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            rooms
                .iter()
                .filter(|((tenant, topic), _)| query.matches(tenant, topic))
                .map(|(_, room)| Arc::clone(room))
                .collect()
        };
        matching
            .into_iter()
            .map(|room| {
                let members = read(&room.members);
                Matched {
                    tenant: room.tenant.clone(),
                    topic: room.topic.clone(),
                    count: members.len() as u64,
                    members: if query.with_members {
                        members.clone()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }

    /// Number of rooms with local members.
    pub(crate) fn len(&self) -> usize {
        self.rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Tells every member the channel is gone: the notice, and a leave each connection
/// applies itself (so its own record of what it joined stays true).
fn close(room: &Room, notice: bytes::Bytes) -> u64 {
    let members = read(&room.members);
    for member in members.iter() {
        member.send(Outbound::Delivery(Box::new(EdgeDelivery {
            client_id: member.client_id().clone(),
            membership: Some(MembershipChange::Leave(room.topic.clone())),
            frames: vec![notice.clone()],
            completes: None,
            publish: None,
        })));
    }
    members.len() as u64
}

async fn run_room(
    bus: Bus,
    room: Arc<Room>,
    ready: watch::Sender<Option<Result<(), String>>>,
    deliveries: Counter,
    latency: TracedLatency,
) {
    let subscribed = async {
        let subscription = bus.subscribe(room.subject.clone()).await?;
        // The join is confirmed to the client only after the server knows the
        // subscription, so nothing published after the confirmation is missed.
        bus.flush().await?;
        Ok::<_, arqon_bus::BusError>(subscription)
    };
    let mut subscription = tokio::select! {
        () = room.stop.cancelled() => return,
        result = subscribed => match result {
            Ok(subscription) => subscription,
            Err(e) => {
                warn!(subject = %room.subject, error = %e, "room subscription failed");
                ready.send_replace(Some(Err(e.to_string())));
                return;
            }
        },
    };
    ready.send_replace(Some(Ok(())));
    debug!(subject = %room.subject, "room subscribed");
    while let Some(message) = subscription.next_until(&room.stop).await {
        let span = traces::continue_span(
            |key| message.headers.get(key),
            || {
                tracing::debug_span!(
                    "edge.fanout",
                    otel.kind = "consumer",
                    messaging.system = "arqonbus",
                    messaging.operation = "receive",
                    messaging.destination.name = %room.topic,
                    arqonbus.tenant = %room.tenant,
                    arqonbus.members = tracing::field::Empty,
                    arqonbus.drops = tracing::field::Empty,
                )
            },
        );
        let _in_span = span.enter();
        match RoomDelivery::decode(message.payload) {
            Ok(delivery) => {
                if let Some(received) = delivery.received_at_unix_micros {
                    let waited = crate::connection::unix_micros()
                        .saturating_sub(received)
                        .max(0);
                    latency.observe(waited as f64 / 1e6, traces::exemplar(&span), None);
                }
                let (queued, dropped) = fan_out(&room, delivery);
                span.record("arqonbus.members", queued);
                span.record("arqonbus.drops", dropped);
                deliveries.inc_by(queued);
            }
            Err(e) => warn!(subject = %room.subject, error = %e, "undecodable room delivery"),
        }
    }
    debug!(subject = %room.subject, "room unsubscribed");
}

/// Queues the frame to every member but the sender; returns how many got it and how many
/// could not take it (full queues). When the channel was deleted, every member also gets
/// a leave to apply.
fn fan_out(room: &Room, delivery: RoomDelivery) -> (u64, u64) {
    if delivery.close_room {
        return (close(room, delivery.frame), 0);
    }
    let frame = match Utf8Bytes::try_from(delivery.frame) {
        Ok(frame) => frame,
        Err(_) => {
            warn!(subject = %room.subject, "room delivery is not UTF-8");
            return (0, 0);
        }
    };
    let frame = Arc::new(RoomFrame {
        text: frame,
        head: delivery.head,
    });
    let members = read(&room.members);
    let (mut queued, mut dropped) = (0, 0);
    for member in members.iter() {
        if delivery.exclude.as_ref() != Some(member.client_id()) {
            if member.send(Outbound::Room(Arc::clone(&frame))) {
                queued += 1;
            } else {
                dropped += 1;
            }
        }
    }
    (queued, dropped)
}
