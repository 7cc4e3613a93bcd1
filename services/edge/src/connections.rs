//! The connections held by this edge, and the subscription through which the pipeline
//! reaches them (`arqon.edge.<edge_id>`).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use tracing::{debug, warn};

use arqon_bus::Subscription;
use arqon_proto::model::EdgeDelivery;
use arqon_protocol::{ClientId, TenantId};
use arqon_telemetry::traces;
use tokio_util::sync::CancellationToken;

use crate::peer::{Outbound, Peer};

#[derive(Debug, Default)]
pub(crate) struct Connections {
    peers: RwLock<HashMap<ClientId, Peer>>,
}

impl Connections {
    pub(crate) fn insert(&self, peer: Peer) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.client_id().clone(), peer);
    }

    pub(crate) fn remove(&self, client_id: &ClientId) {
        self.peers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(client_id);
    }

    pub(crate) fn get(&self, client_id: &ClientId) -> Option<Peer> {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(client_id)
            .cloned()
    }

    /// Open connections per tenant (only `tenant`'s when given).
    pub(crate) fn per_tenant(&self, tenant: Option<&TenantId>) -> Vec<(TenantId, u64)> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        let mut counts: HashMap<&TenantId, u64> = HashMap::new();
        for peer in peers.values() {
            if tenant.is_none_or(|t| t == peer.tenant()) {
                *counts.entry(peer.tenant()).or_default() += 1;
            }
        }
        counts.into_iter().map(|(t, n)| (t.clone(), n)).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Hands each delivery addressed to this edge to its connection, until `stop`.
    pub(crate) async fn route(&self, mut subscription: Subscription, stop: CancellationToken) {
        while let Some(message) = subscription.next_until(&stop).await {
            // The answer to a client's envelope (or a private message): the end of its
            // trace on this edge.
            let span = traces::continue_span(
                |key| message.headers.get(key),
                || {
                    tracing::debug_span!(
                        "edge.answer",
                        otel.kind = "consumer",
                        messaging.system = "arqonbus",
                        messaging.operation = "receive",
                        arqonbus.client_id = tracing::field::Empty,
                        arqonbus.frames = tracing::field::Empty,
                    )
                },
            );
            let _in_span = span.enter();
            match EdgeDelivery::decode(message.payload) {
                Ok(delivery) => {
                    span.record("arqonbus.client_id", delivery.client_id.as_str());
                    span.record("arqonbus.frames", delivery.frames.len());
                    match self.get(&delivery.client_id) {
                        Some(peer) => {
                            if !peer.send(Outbound::Delivery(Box::new(delivery))) {
                                traces::set_error(&span, "the connection's queue is full");
                            }
                        }
                        None => {
                            debug!(client_id = %delivery.client_id, "delivery for a connection that is gone");
                            traces::set_error(&span, "the connection is gone");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "undecodable edge delivery"),
            }
        }
    }
}
