//! One WebSocket connection: reads envelopes into the pipeline one at a time, writes what
//! the bus sends it, and applies the memberships the dispatcher decides.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use arqon_proto::model::{EdgeDelivery, Inbound, MembershipChange};
use arqon_protocol::{
    ClientId, CommandReply, Envelope, ErrorCode, Identity, MessageId, Topic, subject,
};

use crate::Shared;
use crate::auth::Grant;

/// Close codes the edge uses besides the standard ones.
pub mod close_code {
    /// The server is shutting down: reconnect, possibly elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// The client sent a message larger than `ARQONBUS_MAX_MESSAGE_SIZE`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client did not read its frames fast enough and its queue filled up.
    pub const TOO_SLOW: u16 = 4008;
}

/// Frames queued for one connection.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A frame shared by every member of a room.
    Frame(Utf8Bytes),
    /// A delivery addressed to this connection by the pipeline.
    Delivery(EdgeDelivery),
}

/// The handle by which rooms and the pipeline reach a connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) client_id: ClientId,
    queue: mpsc::Sender<Outbound>,
    too_slow: CancellationToken,
}

impl Peer {
    /// Queues without waiting. A full queue marks the connection too slow; it is closed
    /// rather than allowed to hold memory without bound.
    pub(crate) fn send(&self, outbound: Outbound) {
        match self.queue.try_send(outbound) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.too_slow.is_cancelled() {
                    warn!(client_id = %self.client_id, "outbound queue full: disconnecting slow client");
                    self.too_slow.cancel();
                }
            }
            // The connection is already gone.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// The envelope waiting for the pipeline's answer. The connection's next frame is read
/// only after it, which keeps one client's envelopes in order through replicated stages.
struct InFlight {
    sequence: u64,
    id: MessageId,
    deadline: Instant,
}

struct Connection {
    shared: Arc<Shared>,
    socket: WebSocket,
    identity: Identity,
    ingress_subject: String,
    peer: Peer,
    joined: HashSet<Topic>,
    sequence: u64,
    in_flight: Option<InFlight>,
}

/// What woke the connection up.
enum Event {
    Close(u16, &'static str),
    Outbound(Outbound),
    Timeout,
    Frame(Option<Result<Message, axum::Error>>),
}

/// Why the read loop ended.
enum End {
    ClientClosed,
    Close(u16, &'static str),
}

pub(crate) async fn run(socket: WebSocket, shared: Arc<Shared>, grant: Grant) {
    let identity = Identity {
        tenant: grant.tenant,
        client_id: ClientId::generate(),
        subject: grant.subject,
        role: grant.role,
        edge_id: shared.edge_id.clone(),
    };
    let (queue, mut outbound) = mpsc::channel(shared.config.outbound_queue as usize);
    let peer = Peer {
        client_id: identity.client_id.clone(),
        queue,
        too_slow: CancellationToken::new(),
    };
    shared.connections.insert(peer.clone());
    info!(client_id = %identity.client_id, tenant = %identity.tenant, "client connected");
    let mut connection = Connection {
        ingress_subject: subject::ingress(&identity.tenant),
        shared,
        socket,
        identity,
        peer,
        joined: HashSet::new(),
        sequence: 0,
        in_flight: None,
    };
    let end = connection.serve(&mut outbound).await;
    connection.finish(end).await;
}

impl Connection {
    async fn serve(&mut self, outbound: &mut mpsc::Receiver<Outbound>) -> End {
        let welcome = Envelope::welcome(&self.identity.client_id);
        if self.write_envelope(&welcome).await.is_err() {
            return End::ClientClosed;
        }
        let shutdown = self.shared.shutdown.clone();
        let too_slow = self.peer.too_slow.clone();
        loop {
            let deadline = self.in_flight.as_ref().map(|f| f.deadline);
            let reading = self.in_flight.is_none();
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => Event::Close(close_code::GOING_AWAY, "server shutting down"),
                () = too_slow.cancelled() => Event::Close(close_code::TOO_SLOW, "too slow: outbound queue full"),
                Some(first) = outbound.recv() => Event::Outbound(first),
                () = sleep_until(deadline), if deadline.is_some() => Event::Timeout,
                frame = self.socket.recv(), if reading => Event::Frame(frame),
            };
            let step = match event {
                Event::Close(code, reason) => return End::Close(code, reason),
                Event::Outbound(first) => self.write_outbound(first, outbound).await,
                Event::Timeout => self.time_out().await,
                Event::Frame(Some(Ok(Message::Text(text)))) => self.on_text(text).await,
                Event::Frame(Some(Ok(Message::Binary(_)))) => {
                    let reply = Envelope::error_reply(
                        None,
                        ErrorCode::ValidationError,
                        "Binary frames are not supported: send one JSON envelope per text frame",
                    );
                    self.write_envelope(&reply).await
                }
                Event::Frame(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => Ok(()),
                Event::Frame(Some(Ok(Message::Close(_))) | None) => return End::ClientClosed,
                Event::Frame(Some(Err(e))) => {
                    debug!(client_id = %self.identity.client_id, error = %e, "read failed");
                    return if is_too_big(e) {
                        End::Close(close_code::MESSAGE_TOO_BIG, "message too big")
                    } else {
                        End::ClientClosed
                    };
                }
            };
            if step.is_err() {
                return End::ClientClosed;
            }
        }
    }

    async fn on_text(&mut self, text: Utf8Bytes) -> Result<(), axum::Error> {
        let mut envelope = match Envelope::from_client_json(text.as_str()) {
            Ok(envelope) => envelope,
            Err(e) => return self.write_envelope(&e.to_envelope()).await,
        };
        // Identity comes from the connection, never from the frame.
        envelope.sender = Some(self.identity.client_id.as_str().to_owned());
        self.sequence += 1;
        let id = envelope.id.clone();
        let inbound = Inbound {
            identity: self.identity.clone(),
            envelope,
            received_at_unix_micros: unix_micros(),
            sequence: self.sequence,
        };
        let published = self
            .shared
            .bus
            .publish(self.ingress_subject.clone(), inbound.encode())
            .await;
        match published {
            Ok(()) => {
                self.in_flight = Some(InFlight {
                    sequence: self.sequence,
                    id,
                    deadline: Instant::now() + self.shared.config.pipeline_timeout(),
                });
                Ok(())
            }
            Err(e) => {
                warn!(client_id = %self.identity.client_id, error = %e, "ingress publish failed");
                let reply = Envelope::error_reply(
                    Some(id.as_str()),
                    ErrorCode::Unavailable,
                    "The bus is unavailable; the envelope was not accepted. Retry later.",
                );
                self.write_envelope(&reply).await
            }
        }
    }

    async fn time_out(&mut self) -> Result<(), axum::Error> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        warn!(client_id = %self.identity.client_id, id = %in_flight.id, "pipeline did not answer in time");
        let reply = Envelope::error_reply(
            Some(in_flight.id.as_str()),
            ErrorCode::Timeout,
            "The bus did not confirm the envelope in time; it may or may not have been delivered",
        );
        self.write_envelope(&reply).await
    }

    /// Writes `first` and whatever else is already queued, then flushes once.
    async fn write_outbound(
        &mut self,
        first: Outbound,
        outbound: &mut mpsc::Receiver<Outbound>,
    ) -> Result<(), axum::Error> {
        const BATCH: usize = 64;
        let mut next = Some(first);
        let mut written = 0;
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(frame) => self.socket.feed(Message::Text(frame)).await?,
                Outbound::Delivery(delivery) => self.deliver(delivery).await?,
            }
            written += 1;
            if written < BATCH {
                next = outbound.try_recv().ok();
            }
        }
        self.socket.flush().await
    }

    async fn deliver(&mut self, delivery: EdgeDelivery) -> Result<(), axum::Error> {
        let mut frames = delivery.frames;
        match delivery.membership {
            Some(MembershipChange::Join(topic)) if !self.joined.contains(&topic) => {
                let joined = self
                    .shared
                    .rooms
                    .join(&self.identity.tenant, &topic, self.peer.clone())
                    .await;
                match joined {
                    Ok(()) => {
                        self.joined.insert(topic);
                    }
                    Err(e) => {
                        warn!(client_id = %self.identity.client_id, error = %e, "join failed at the edge");
                        let request_id = self.in_flight.as_ref().map(|f| f.id.to_string());
                        let reply = CommandReply::error(
                            ErrorCode::JoinChannelError,
                            format!("Failed to join channel: {topic}: the bus is unavailable"),
                        );
                        frames = vec![
                            reply
                                .into_envelope(request_id.as_deref().unwrap_or(""))
                                .to_json()
                                .into(),
                        ];
                    }
                }
            }
            Some(MembershipChange::Leave(topic)) => {
                if self.joined.remove(&topic) {
                    self.shared.rooms.leave(
                        &self.identity.tenant,
                        &topic,
                        &self.identity.client_id,
                    );
                }
            }
            Some(MembershipChange::Join(_)) | None => {}
        }
        if let (Some(done), Some(in_flight)) = (delivery.completes, &self.in_flight)
            && done == in_flight.sequence
        {
            self.in_flight = None;
        }
        for frame in frames {
            match Utf8Bytes::try_from(frame) {
                Ok(text) => self.socket.feed(Message::Text(text)).await?,
                Err(_) => {
                    warn!(client_id = %self.identity.client_id, "delivery frame is not UTF-8")
                }
            }
        }
        Ok(())
    }

    async fn write_envelope(&mut self, envelope: &Envelope) -> Result<(), axum::Error> {
        self.socket
            .send(Message::Text(envelope.to_json().into()))
            .await
    }

    async fn finish(mut self, end: End) {
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
        for topic in self.joined.drain() {
            self.shared
                .rooms
                .leave(&self.identity.tenant, &topic, &self.identity.client_id);
        }
        self.shared.connections.remove(&self.identity.client_id);
        info!(client_id = %self.identity.client_id, "client disconnected");
    }
}

/// Whether a read failed because the message or a frame exceeded the configured limit.
fn is_too_big(error: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        error.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(_))
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
