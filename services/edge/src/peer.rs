//! The outbound queue of one connection, and the handle (`Peer`) through which rooms and
//! the pipeline fill it.
//!
//! A plain `VecDeque` behind a mutex, with a `Notify`: it costs nothing while empty (an
//! idle connection holds no queue memory), where a channel would allocate its blocks up
//! front. It is bounded by frames and by bytes; a push past either bound marks the
//! connection too slow.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::ws::Utf8Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use arqon_proto::model::{EdgeDelivery, EncodedHead, message_id};
use arqon_protocol::{ClientId, Identity, TenantId};

/// After a burst, a queue that grew beyond this is shrunk once it is empty again.
const SHRINK_ABOVE: usize = 32;

/// Frames queued for one connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A frame shared by every member of a room.
    Room(Arc<RoomFrame>),
    /// A frame for this connection alone (a private message).
    Frame(Utf8Bytes),
    /// A delivery addressed to this connection by the pipeline (boxed: it is rare, and
    /// queue slots are sized by the largest variant).
    Delivery(Box<EdgeDelivery>),
}

impl Outbound {
    /// Bytes of frames it carries.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outbound::Room(frame) => frame.text.len(),
            Outbound::Frame(frame) => frame.len(),
            Outbound::Delivery(delivery) => delivery.frames.iter().map(|f| f.len()).sum(),
        }
    }
}

/// A room's frame, as its members on this edge share it.
#[derive(Debug)]
pub(crate) struct RoomFrame {
    pub(crate) text: Utf8Bytes,
    /// What its delivery said of the frame, still encoded; `None` from a dispatcher that
    /// wrote no head.
    pub(crate) head: Option<EncodedHead>,
}

impl RoomFrame {
    /// Its envelope's id, to drop a live copy of a message a recovery already wrote: from
    /// the head, or read from a frame that came without one.
    pub(crate) fn id(&self) -> Option<String> {
        message_id(self.head.as_ref(), self.text.as_bytes())
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outbound>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
struct PeerState {
    client_id: ClientId,
    tenant: TenantId,
    /// The token's `sub`, reported by presence.
    subject: Option<String>,
    queue: Mutex<Queue>,
    ready: Notify,
    too_slow: CancellationToken,
    max_frames: usize,
    max_bytes: usize,
    drops: Counter,
}

/// The handle by which rooms and the pipeline reach a connection. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Peer(Arc<PeerState>);

impl Peer {
    pub(crate) fn new(
        identity: &Identity,
        max_frames: usize,
        max_bytes: usize,
        drops: Counter,
    ) -> Self {
        Self(Arc::new(PeerState {
            client_id: identity.client_id.clone(),
            tenant: identity.tenant.clone(),
            subject: identity.subject.clone(),
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            too_slow: CancellationToken::new(),
            max_frames,
            max_bytes,
            drops,
        }))
    }

    pub(crate) fn client_id(&self) -> &ClientId {
        &self.0.client_id
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.0.tenant
    }

    pub(crate) fn subject(&self) -> Option<&str> {
        self.0.subject.as_deref()
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues without waiting. A full queue (by frames or bytes) marks the connection
    /// too slow; it is closed rather than allowed to hold memory without bound.
    /// Whether it was queued (a closed connection takes nothing, a full queue drops it
    /// and ends the connection).
    pub(crate) fn send(&self, outbound: Outbound) -> bool {
        let len = outbound.len();
        {
            let mut queue = self.queue();
            if queue.closed {
                return false;
            }
            if queue.items.len() < self.0.max_frames && queue.bytes + len <= self.0.max_bytes {
                queue.bytes += len;
                queue.items.push_back(outbound);
                drop(queue);
                self.0.ready.notify_one();
                return true;
            }
        }
        self.0.drops.inc();
        if !self.0.too_slow.is_cancelled() {
            warn!(client_id = %self.0.client_id, "outbound queue full: disconnecting slow client");
            self.0.too_slow.cancel();
        }
        false
    }

    /// The next queued item, if any.
    pub(crate) fn pop(&self) -> Option<Outbound> {
        let mut queue = self.queue();
        let item = queue.items.pop_front()?;
        queue.bytes -= item.len();
        if queue.items.is_empty() && queue.items.capacity() > SHRINK_ABOVE {
            queue.items.shrink_to(SHRINK_ABOVE / 4);
        }
        Some(item)
    }

    /// Waits until something may have been queued since the last [`Peer::pop`] found
    /// the queue empty. Create the future before checking the queue (see `serve`).
    pub(crate) fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.ready.notified()
    }

    /// Cancelled when the queue overflowed.
    pub(crate) fn too_slow(&self) -> &CancellationToken {
        &self.0.too_slow
    }

    /// Refuses further items and frees the queued ones.
    pub(crate) fn close(&self) {
        let mut queue = self.queue();
        queue.closed = true;
        queue.items = VecDeque::new();
        queue.bytes = 0;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arqon_protocol::{EdgeId, Role};

    fn frame(text: &'static str) -> Outbound {
        Outbound::Frame(Utf8Bytes::from_static(text))
    }

    /// An ordinary client of the default tenant (for the edge's unit tests).
    pub(crate) fn identity() -> Identity {
        let edge_id = EdgeId::generate();
        Identity {
            tenant: TenantId::default_tenant(),
            client_id: ClientId::generate_on(&edge_id),
            subject: None,
            role: Role::user(),
            edge_id,
            permissions: None,
            system: false,
        }
    }

    #[tokio::test]
    async fn bounded_by_frames_and_bytes_then_too_slow() {
        let drops = Counter::default();
        let peer = Peer::new(&identity(), 2, 10, drops.clone());
        peer.send(frame("aaaa"));
        peer.send(frame("bbbb"));
        assert!(!peer.too_slow().is_cancelled());
        peer.send(frame("c"));
        assert!(
            peer.too_slow().is_cancelled(),
            "a third frame is over the frame bound"
        );
        assert_eq!(drops.get(), 1);
        assert!(matches!(peer.pop(), Some(Outbound::Frame(f)) if f == "aaaa"));

        let peer = Peer::new(&identity(), 100, 10, Counter::default());
        peer.send(frame("123456"));
        peer.send(frame("123456"));
        assert!(
            peer.too_slow().is_cancelled(),
            "twelve bytes are over the byte bound"
        );
    }

    #[tokio::test]
    async fn a_waiter_is_woken_and_closed_queues_take_nothing() {
        let peer = Peer::new(&identity(), 8, 1024, Counter::default());
        let ready = peer.ready();
        tokio::pin!(ready);
        ready.as_mut().enable();
        assert!(peer.pop().is_none());
        peer.send(frame("x"));
        tokio::time::timeout(std::time::Duration::from_secs(1), ready)
            .await
            .expect("woken");
        assert!(peer.pop().is_some());
        peer.close();
        peer.send(frame("y"));
        assert!(peer.pop().is_none());
        assert!(!peer.too_slow().is_cancelled());
    }

    #[test]
    fn a_drained_queue_gives_its_memory_back() {
        let peer = Peer::new(&identity(), 1000, 1 << 20, Counter::default());
        for _ in 0..200 {
            peer.send(frame("x"));
        }
        while peer.pop().is_some() {}
        assert!(peer.queue().items.capacity() <= SHRINK_ABOVE);
    }
}
