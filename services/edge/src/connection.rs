//! One WebSocket connection: reads envelopes into the pipeline (a window of them at once,
//! ADR 022), publishes and writes what they lead to in the order they came, writes what
//! the bus sends it, applies the memberships the dispatcher decides, and enforces the
//! connection's limits (rate, queue, liveness, token lifetime).

use std::collections::HashSet;
use std::future::Future;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::future::OptionFuture;
use futures_util::{FutureExt as _, SinkExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::{Instant, Sleep};
use tracing::{Instrument as _, debug, error, info, warn};

use arqon_telemetry::traces;

use arqon_proto::model::{EdgeDelivery, Inbound, MembershipChange, Publication};
use arqon_protocol::{
    ClientId, CommandReply, Envelope, ErrorCode, Failed, Identity, MessageId, MessageType,
    SERVER_OWNED_METADATA, Topic, UserFacingError as _, subject,
};

use crate::Shared;
use crate::auth::Grant;
use crate::closing::Last;
use crate::metrics::{Disconnect, Route};
use crate::peer::{Outbound, Peer};
use crate::window::{Confirmed, Outgoing, Sent, Stored, Window};

/// Close codes the edge sends.
pub mod close_code {
    /// The server is shutting down: reconnect, possibly elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// The client kept sending above its rate limit.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// The client sent a message larger than `ARQONBUS_MAX_MESSAGE_SIZE`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The edge failed serving the connection (a bug); reconnecting is safe.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The token expired and no `refresh` replaced it.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// The client did not answer a ping in time.
    pub const PING_TIMEOUT: u16 = 4002;
    /// The client did not read its frames fast enough and its queue filled up.
    pub const TOO_SLOW: u16 = 4008;
}

/// The command a client sends to replace its token before it expires. The edge answers
/// it itself: the token never enters the pipeline.
const REFRESH_COMMAND: &str = "refresh";
/// The command whose answer adds a channel to the connection.
const JOIN_COMMAND: &str = "join_channel";

/// Frames written per flush when the queue holds many.
const WRITE_BATCH: usize = 64;
/// How long after a recovery a live copy of a message it wrote is still looked for. The
/// copies are of messages stored before the recovery's read; the room's fan-out task
/// queues them behind the recovery, but not necessarily before the queue is first found
/// empty, so the ids are kept this long and until the queue is empty after it.
const RECOVERED_COPIES: Duration = Duration::from_secs(2);

/// Bounds the last writes (the frames queued when the server shuts down) to a client
/// being closed; the close frame has its own bound (`closing::CLOSE_LINGER`).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// What woke the connection up.
enum Event {
    Shutdown,
    TooSlow,
    Outbound(Outbound),
    Timer,
    Frame(Option<Result<Message, axum::Error>>),
    /// The stream confirmed (or did not) the message whose frames are next in line.
    Confirmed(Confirmed),
}

/// What a text frame leads to.
enum Accepted {
    /// An error the edge answers itself.
    Reply(Bytes),
    /// The envelope goes into the pipeline, in its trace span: to the policy stage, or
    /// straight to the dispatcher when the live policy does not apply to it.
    Publish(Outgoing),
    /// A token refresh, answered by the edge.
    Refresh(Box<Envelope>),
    Close(End),
}

/// Why the connection ends.
enum End {
    /// The client's close frame arrived.
    ClientClosed,
    /// The connection failed without a close frame (the client went away, or a read or
    /// write failed).
    Lost,
    Close(Disconnect, u16, &'static str),
}

type Step = Result<Option<End>, axum::Error>;

struct Connection {
    shared: Arc<Shared>,
    socket: WebSocket,
    /// The TCP connection under the socket, shut down once the socket is done with.
    tcp: Option<crate::closing::Handle>,
    identity: Identity,
    ingress_subject: String,
    peer: Peer,
    joined: HashSet<Topic>,
    sequence: u64,
    window: Window,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Bytes per second, in the same way.
    byte_limiter: Option<DefaultDirectRateLimiter>,
    /// The byte rate of the connection's tenant on this edge, shared.
    tenant_bytes: Option<Arc<DefaultDirectRateLimiter>>,
    strikes: u32,
    /// After a recovery, the ids it wrote, and until when live copies of them may still
    /// come (see [`RECOVERED_COPIES`]).
    recovered_ids: Option<(HashSet<String>, Instant)>,
    /// One timer for every deadline; re-armed to the earliest.
    timer: Pin<Box<Sleep>>,
    next_ping: Instant,
    pong_due: Option<Instant>,
    expires_at: Option<Instant>,
}

/// Sets the connection up, then returns the future that serves it. Built this way (not
/// as an `async fn`) so the future holds only the boxed connection: every open connection
/// keeps its future in memory, and an `async fn` would also keep room for its arguments.
pub(crate) fn run(
    socket: WebSocket,
    tcp: Option<crate::closing::Handle>,
    shared: Arc<Shared>,
    grant: Grant,
) -> impl Future<Output = ()> + Send {
    let mut connection = Connection::new(socket, tcp, shared, grant);
    async move {
        // Whatever ends the connection, a bug included, it leaves presence and releases
        // what it held (`finish`).
        let served = AssertUnwindSafe(connection.serve()).catch_unwind().await;
        let end = ended(served, &connection.identity);
        // Boxed: it runs once, at the end, and would otherwise size the whole state.
        Box::pin(connection.finish(end)).await;
    }
}

/// How a connection ended: as it said, or, if serving it panicked, closed with 1011.
fn ended(served: std::thread::Result<End>, identity: &Identity) -> End {
    served.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error!(client_id = %identity.client_id, panic = %what, "a connection failed; closing it");
        End::Close(
            Disconnect::Internal,
            close_code::INTERNAL_ERROR,
            "internal error",
        )
    })
}

impl Connection {
    fn new(
        socket: WebSocket,
        tcp: Option<crate::closing::Handle>,
        shared: Arc<Shared>,
        grant: Grant,
    ) -> Box<Self> {
        let identity = Identity {
            tenant: grant.tenant,
            client_id: ClientId::generate_on(&shared.edge_id),
            subject: grant.subject,
            role: grant.role,
            edge_id: shared.edge_id.clone(),
            permissions: grant.permissions,
            system: grant.system,
        };
        let config = &shared.config;
        let peer = Peer::new(
            &identity,
            config.outbound_queue as usize,
            config.outbound_queue_bytes as usize,
            shared.metrics.queue_drops.clone(),
        );
        let limiter = NonZeroU32::new(config.rate_limit_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        let byte_limiter = NonZeroU32::new(config.rate_limit_bytes_per_second).map(|rate| {
            let burst = NonZeroU32::new(config.max_message_size.max(rate.get())).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        let tenant_bytes = shared.tenant_byte_rate(&identity.tenant);
        let next_ping = Instant::now() + config.ping_interval();
        let expires_at = grant.expires_at.map(|exp| deadline(exp, config.leeway()));
        shared.connections.insert(peer.clone());
        debug!(client_id = %identity.client_id, tenant = %identity.tenant, "client connected");
        Box::new(Connection {
            ingress_subject: subject::ingress(&identity.tenant),
            shared,
            socket,
            tcp,
            identity,
            peer,
            joined: HashSet::new(),
            sequence: 0,
            window: Window::default(),
            limiter,
            byte_limiter,
            tenant_bytes,
            strikes: 0,
            recovered_ids: None,
            timer: Box::pin(tokio::time::sleep_until(next_ping)),
            next_ping,
            pong_due: None,
            expires_at,
        })
    }
}

/// The instant a token expiring at `exp` (Unix seconds) stops being accepted.
fn deadline(exp: u64, leeway: Duration) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // A token may claim any `exp`; past a century it counts as a century.
    let left = Duration::from_secs(exp)
        .saturating_sub(now)
        .saturating_add(leeway)
        .min(LONGEST_TOKEN);
    let now = Instant::now();
    now.checked_add(left).unwrap_or(now + LONGEST_TOKEN / 1000)
}

/// A frame above the rate is parsed for its `id` only up to this size.
const REFUSAL_ID_SCAN_BYTES: usize = 4096;

/// The `id` of a frame, for the refusal of one above the rate.
#[derive(serde::Deserialize)]
struct IdOnly {
    id: Option<String>,
}

/// The longest a token's expiry is honoured for.
const LONGEST_TOKEN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Connection {
    async fn serve(&mut self) -> End {
        let welcome = Envelope::welcome(&self.identity.client_id).to_json().into();
        if self.reply(vec![welcome]).await.is_err() {
            return End::Lost;
        }
        let shutdown = self.shared.shutdown.clone();
        let peer = self.peer.clone();
        let too_slow = peer.too_slow().clone();
        let stall_timeout = self.shared.config.write_stall_timeout();
        loop {
            let next = self.next_deadline();
            if self.timer.deadline() != next {
                self.timer.as_mut().reset(next);
            }
            let config = &self.shared.config;
            let reading = self.window.may_read(
                config.pipeline_window as usize,
                config.pipeline_window_bytes as usize,
            );
            let confirming = self.window.awaits_confirmation();
            // Registered before looking at the queue, so nothing queued in between is
            // missed.
            let ready = peer.ready();
            tokio::pin!(ready);
            ready.as_mut().enable();
            // Shutting down or too slow: `finish` decides what is still written.
            let event = if shutdown.is_cancelled() {
                Event::Shutdown
            } else if too_slow.is_cancelled() {
                Event::TooSlow
            } else if let Some(first) = peer.pop() {
                Event::Outbound(first)
            } else {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => Event::Shutdown,
                    () = too_slow.cancelled() => Event::TooSlow,
                    () = &mut ready => continue,
                    () = &mut self.timer => Event::Timer,
                    // Boxed, and made only while a confirmation is awaited: inline, its
                    // timer would be part of every connection's state all the time.
                    confirmed = OptionFuture::from(confirming.then(|| Box::pin(self.window.confirmed()))), if confirming => match confirmed {
                        Some(confirmed) => Event::Confirmed(confirmed),
                        None => continue,
                    },
                    frame = self.socket.recv(), if reading => Event::Frame(frame),
                }
            };
            // Boxed: it lives only while one event is handled, where inline it would be
            // part of every connection's state all the time.
            let handled = Box::pin(async {
                match event {
                    Event::Shutdown => Ok(Some(End::Close(
                        Disconnect::Shutdown,
                        close_code::GOING_AWAY,
                        "server shutting down",
                    ))),
                    Event::TooSlow => Ok(Some(End::Close(
                        Disconnect::TooSlow,
                        close_code::TOO_SLOW,
                        "too slow: outbound queue full",
                    ))),
                    Event::Outbound(first) => self.write_outbound(first).await.map(|()| None),
                    Event::Timer => self.on_timer().await,
                    Event::Frame(frame) => self.on_frame(frame).await,
                    Event::Confirmed(confirmed) => {
                        self.on_confirmed(confirmed).await.map(|()| None)
                    }
                }
            });
            // A write to a client that does not read blocks; it must not block the
            // edge from closing that client.
            let step = tokio::select! {
                biased;
                step = handled => step,
                () = too_slow.cancelled() => {
                    return End::Close(Disconnect::TooSlow, close_code::TOO_SLOW, "too slow: outbound queue full");
                }
                () = shutdown.cancelled() => {
                    return End::Close(Disconnect::Shutdown, close_code::GOING_AWAY, "server shutting down");
                }
                () = tokio::time::sleep(stall_timeout) => {
                    return End::Close(Disconnect::TooSlow, close_code::TOO_SLOW, "too slow: writes stalled");
                }
            };
            match step {
                Ok(None) => {}
                Ok(Some(end)) => return end,
                Err(_) => return End::Lost,
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let in_flight = self.window.deadline(self.shared.config.pipeline_timeout());
        [
            Some(self.next_ping),
            self.pong_due,
            self.expires_at,
            in_flight,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_ping)
    }

    async fn on_timer(&mut self) -> Step {
        let now = Instant::now();
        if self.expires_at.is_some_and(|t| t <= now) {
            return Ok(Some(End::Close(
                Disconnect::TokenExpired,
                close_code::TOKEN_EXPIRED,
                "token expired",
            )));
        }
        if self.pong_due.is_some_and(|t| t <= now) {
            return Ok(Some(End::Close(
                Disconnect::PingTimeout,
                close_code::PING_TIMEOUT,
                "ping timeout",
            )));
        }
        self.time_out(now).await?;
        if self.next_ping <= now {
            self.next_ping = now + self.shared.config.ping_interval();
            self.pong_due
                .get_or_insert(now + self.shared.config.pong_timeout());
            self.socket.send(Message::Ping(Default::default())).await?;
        }
        Ok(None)
    }

    async fn on_frame(&mut self, frame: Option<Result<Message, axum::Error>>) -> Step {
        // Any frame shows the client is alive.
        self.pong_due = None;
        match frame {
            Some(Ok(Message::Text(text))) => self.on_text(text).await,
            Some(Ok(Message::Binary(bytes))) => {
                let metrics = &self.shared.metrics;
                metrics.frames_in.inc();
                metrics.bytes_in.inc_by(bytes.len() as u64);
                // Counted against the rate like any frame, before anything else.
                if let Some(refusal) = self.over_rate(None, bytes.len()) {
                    return self.on_accepted(refusal).await;
                }
                self.shared.metrics.invalid_frames.inc();
                let reply = Envelope::error_reply(
                    None,
                    ErrorCode::ValidationError,
                    "Binary frames are not supported: send one JSON envelope per text frame",
                );
                self.reply(vec![reply.to_json().into()])
                    .await
                    .map(|()| None)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
            Some(Ok(Message::Close(_))) => Ok(Some(End::ClientClosed)),
            None => Ok(Some(End::Lost)),
            Some(Err(e)) => {
                debug!(client_id = %self.identity.client_id, error = %e, "read failed");
                Ok(Some(if is_too_big(e) {
                    End::Close(
                        Disconnect::TooBig,
                        close_code::MESSAGE_TOO_BIG,
                        "message too big",
                    )
                } else {
                    End::Lost
                }))
            }
        }
    }

    async fn on_text(&mut self, text: Utf8Bytes) -> Step {
        let accepted = self.accept(text.as_str());
        self.on_accepted(accepted).await
    }

    async fn on_accepted(&mut self, accepted: Accepted) -> Step {
        match accepted {
            Accepted::Reply(reply) => self.reply(vec![reply]).await.map(|()| None),
            Accepted::Close(end) => Ok(Some(end)),
            // Boxed: a rare path whose future (token verification, maybe a JWKS fetch)
            // would otherwise enlarge every connection's state.
            Accepted::Refresh(command) => {
                let frames = Box::pin(self.refresh(*command)).await;
                self.reply(frames).await.map(|()| None)
            }
            Accepted::Publish(outgoing) if outgoing.alone && !self.window.is_empty() => {
                self.window.hold(outgoing);
                Ok(None)
            }
            Accepted::Publish(outgoing) => self.send(outgoing).await.map(|()| None),
        }
    }

    /// Publishes an envelope into the pipeline, where it joins the window.
    async fn send(&mut self, outgoing: Outgoing) -> Result<(), axum::Error> {
        // The trace continues in the next stage: its context goes along.
        let headers = arqon_bus::Headers::trace_context(&outgoing.span);
        let (target, route) = if outgoing.to_dispatcher {
            (subject::dispatch(&self.identity.tenant), Route::Dispatcher)
        } else {
            (self.ingress_subject.clone(), Route::Policy)
        };
        self.shared.metrics.routed(route);
        let published = self
            .shared
            .bus
            .publish_with_headers(target, headers, outgoing.payload.clone())
            .instrument(outgoing.span.clone())
            .await;
        if let Err(e) = &published {
            traces::set_error(&outgoing.span, e.to_string());
        }
        let trace = traces::exemplar(&outgoing.span);
        match published {
            Ok(()) => {
                self.window.push(Sent::envelope(outgoing, trace));
                let config = &self.shared.config;
                if self.window.is_full(
                    config.pipeline_window as usize,
                    config.pipeline_window_bytes as usize,
                ) {
                    self.shared.metrics.window_full.inc();
                }
                Ok(())
            }
            Err(e) => {
                self.shared.metrics.publish_errors.inc();
                warn!(client_id = %self.identity.client_id, error = %e, "ingress publish failed");
                let reply = Envelope::error_reply(
                    Some(outgoing.id.as_str()),
                    ErrorCode::Unavailable,
                    "The bus is unavailable; the envelope was not accepted. Retry later.",
                );
                self.reply(vec![reply.to_json().into()]).await
            }
        }
    }

    /// The refusal of a frame above the connection's rate (a strike; the last strike
    /// closes), or `None` when the frame is within it. A small text frame's `id` is read
    /// for the refusal; a large one is not parsed at all.
    fn over_rate(&mut self, text: Option<&str>, len: usize) -> Option<Accepted> {
        let n = NonZeroU32::new(u32::try_from(len).unwrap_or(u32::MAX));
        let bytes_within =
            |l: &DefaultDirectRateLimiter| n.is_none_or(|n| matches!(l.check_n(n), Ok(Ok(()))));
        let frames_ok = self.limiter.as_ref().is_none_or(|l| l.check().is_ok());
        let bytes_ok = self.byte_limiter.as_ref().is_none_or(bytes_within);
        // The tenant's share is spent only by frames within the connection's own rates.
        let tenant_ok =
            !(frames_ok && bytes_ok) || self.tenant_bytes.as_deref().is_none_or(bytes_within);
        if frames_ok && bytes_ok && tenant_ok {
            self.strikes = 0;
            return None;
        }
        self.shared.metrics.rate_limited.inc();
        if !tenant_ok {
            self.shared.metrics.tenant_rate_limited.inc();
        }
        self.strikes += 1;
        if self.strikes >= self.shared.config.rate_limit_strikes {
            return Some(Accepted::Close(End::Close(
                Disconnect::RateLimited,
                close_code::POLICY_VIOLATION,
                "rate limit exceeded",
            )));
        }
        let id = text
            .filter(|t| t.len() <= REFUSAL_ID_SCAN_BYTES)
            .and_then(|t| serde_json::from_str::<IdOnly>(t).ok())
            .and_then(|probe| probe.id);
        let message = if tenant_ok {
            "Rate limit exceeded: the frame was dropped; slow down and retry"
        } else {
            "Rate limit exceeded: this tenant's connections send more bytes than it may on this edge; the frame was dropped; slow down and retry"
        };
        let reply = Envelope::error_reply(id.as_deref(), ErrorCode::RateLimited, message);
        Some(Accepted::Reply(reply.to_json().into()))
    }

    /// The refusal of a `join_channel` that would put the connection in more channels
    /// than it may be in (joining one it is in already is fine).
    fn over_channel_quota(&self, envelope: &Envelope) -> Option<Accepted> {
        let limit = self.shared.config.max_channels_per_connection as usize;
        if envelope.kind != MessageType::Command
            || envelope.command.as_deref() != Some(JOIN_COMMAND)
            || self.joined.len() < limit
        {
            return None;
        }
        let args = envelope.args.to_map();
        let named = |key: &str| args.get(key).and_then(|v| v.as_str());
        if let (Some(room), Some(channel)) = (named("room"), named("channel"))
            && let Ok(topic) = Topic::parse(room, channel)
            && self.joined.contains(&topic)
        {
            return None;
        }
        self.shared
            .metrics
            .quota_refused(crate::metrics::Quota::ChannelsPerConnection);
        let reply = Envelope::error_reply(
            Some(envelope.id.as_str()),
            ErrorCode::QuotaExceeded,
            format!(
                "A connection may be in at most {limit} channels (ARQONBUS_MAX_CHANNELS_PER_CONNECTION): leave one first"
            ),
        );
        Some(Accepted::Reply(reply.to_json().into()))
    }

    /// Decides what a text frame leads to. Synchronous on purpose: envelopes are large,
    /// and nothing that lives across an await may be, since every open connection keeps
    /// its state in memory.
    fn accept(&mut self, text: &str) -> Accepted {
        let metrics = &self.shared.metrics;
        metrics.frames_in.inc();
        metrics.bytes_in.inc_by(text.len() as u64);
        // Every frame counts against the rate before it is parsed: garbage costs a
        // client its budget like anything else.
        if let Some(refusal) = self.over_rate(Some(text), text.len()) {
            return refusal;
        }
        let mut envelope = match Envelope::from_client_json(text) {
            Ok(envelope) => envelope,
            Err(e) => {
                self.shared.metrics.invalid_frames.inc();
                return Accepted::Reply(e.to_envelope().to_json().into());
            }
        };
        // A part cannot nest deeper than the frame has brackets: the exact depth is
        // measured only for the rare frame with more of them than the limit.
        let limit = self.shared.config.max_json_depth as usize;
        let brackets = text.bytes().filter(|b| matches!(b, b'{' | b'[')).count();
        let deepest = if brackets > limit {
            [&envelope.payload, &envelope.args, &envelope.metadata]
                .iter()
                .map(|part| part.depth())
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        if deepest > limit {
            self.shared.metrics.invalid_frames.inc();
            let reply = Envelope::error_reply(
                Some(envelope.id.as_str()),
                ErrorCode::ValidationError,
                format!(
                    "Validation error: the envelope nests {deepest} levels deep; at most {limit} are accepted"
                ),
            );
            return Accepted::Reply(reply.to_json().into());
        }
        if envelope.kind == MessageType::Command
            && envelope.command.as_deref() == Some(REFRESH_COMMAND)
        {
            return Accepted::Refresh(Box::new(envelope));
        }
        if let Some(refusal) = self.over_channel_quota(&envelope) {
            return refusal;
        }
        // Identity comes from the connection, never from the frame; so do the fields the
        // server writes (docs/protocol.md, "Server-owned fields").
        envelope.sender = Some(self.identity.client_id.as_str().to_owned());
        envelope.from_client = envelope.sender.clone();
        envelope.metadata.remove_keys(SERVER_OWNED_METADATA);
        self.sequence += 1;
        let id = envelope.id.clone();
        let span = receive_span(&self.identity, &envelope);
        // Decided under the policy version loaded now, as the envelope arrives.
        let to_dispatcher = self.shared.route.skips_policy(&envelope);
        if !span.is_disabled() {
            span.record("arqonbus.casil.skipped", to_dispatcher);
        }
        // A command changes what the envelopes after it find; a private message is
        // delivered by the dispatcher, not published here in turn (ADR 022).
        let alone = envelope.kind == MessageType::Command || envelope.to_client.is_some();
        // Written once the message is published: the answer then carries no copy of it.
        let ack = (envelope.kind == MessageType::Message && !alone)
            .then(|| envelope.message_ack().to_json().into());
        let inbound = Inbound {
            identity: self.identity.clone(),
            envelope,
            received_at_unix_micros: unix_micros(),
            sequence: self.sequence,
            edge_publishes: true,
            payload_rewritten: false,
        };
        Accepted::Publish(Outgoing {
            sequence: self.sequence,
            id,
            payload: inbound.encode(),
            span,
            to_dispatcher,
            ack,
            bytes: text.len(),
            alone,
        })
    }

    /// Replaces the connection's token: same tenant and subject, a later expiry.
    async fn refresh(&mut self, command: Envelope) -> Vec<Bytes> {
        let reply = match verify_refresh(&self.shared, &self.identity, &command).await {
            Ok(grant) => {
                // Every claim the connection acts on comes from the new token: a narrower
                // token narrows the connection at once.
                self.identity.role = grant.role;
                self.identity.permissions = grant.permissions;
                self.identity.system = grant.system;
                self.expires_at = grant
                    .expires_at
                    .map(|exp| deadline(exp, self.shared.config.leeway()));
                let mut data = serde_json::Map::new();
                data.insert("expires_at".into(), serde_json::json!(grant.expires_at));
                CommandReply::success("Token refreshed", data)
            }
            Err(reply) => reply,
        };
        vec![
            reply.into_envelope(command.id.as_str()).to_json().into(),
            command.command_ack().to_json().into(),
        ]
    }

    /// Answers the envelopes that have waited too long with `TIMEOUT`, in their turn.
    /// What their answers would have published, should they still come, is not.
    async fn time_out(&mut self, now: Instant) -> Result<(), axum::Error> {
        let timeout = self.shared.config.pipeline_timeout();
        let mut written = 0;
        while let Some(sent) = self.window.expired(now, timeout) {
            self.shared.metrics.pipeline_timeouts.inc();
            let id = sent.id.as_ref().map(MessageId::as_str);
            warn!(client_id = %self.identity.client_id, id, "pipeline did not answer in time");
            let reply = Envelope::error_reply(
                id,
                ErrorCode::Timeout,
                "The bus did not confirm the envelope in time; it may or may not have been delivered",
            );
            written += self
                .write_in_turn(sent.id, vec![reply.to_json().into()], sent.bytes)
                .await?;
        }
        written += self.advance().await?;
        self.flush(written).await
    }

    /// Takes the pipeline's answer to an envelope; an answer that completes nothing in the
    /// window (a channel's deletion, or an answer after its envelope's `TIMEOUT`) is
    /// applied at once, but never published.
    async fn on_answer(&mut self, delivery: Box<EdgeDelivery>) -> Result<u64, axum::Error> {
        match self.window.answer(delivery) {
            Ok(()) => self.advance().await,
            Err(delivery) if delivery.publish.is_none() => self.deliver(*delivery, None).await,
            Err(_) => {
                self.shared.metrics.late_answers.inc();
                debug!(client_id = %self.identity.client_id, "an answer came after its envelope timed out; not published");
                Ok(0)
            }
        }
    }

    /// Completes the envelopes whose turn has come (the oldest ones, answered), then
    /// writes the frames that wait for nothing, then sends a held envelope once nothing
    /// is left before it. Feeds frames; the caller flushes.
    async fn advance(&mut self) -> Result<u64, axum::Error> {
        let mut written = 0;
        while let Some(mut sent) = self.window.next_answered() {
            if sent.sequence != 0 {
                self.shared.metrics.pipeline_latency.observe(
                    sent.sent_at.elapsed().as_secs_f64(),
                    sent.trace.take(),
                    None,
                );
            }
            if let Some(answer) = sent.take_answer() {
                written += self.complete(*answer, sent).await?;
            }
        }
        written += self.write_ready().await?;
        if let Some(held) = self.window.take_held() {
            self.send(held).await?;
        }
        Ok(written)
    }

    /// Publishes the message an envelope leads to, in its turn, and writes its frames (and
    /// the edge's acknowledgement of a message) or lines them up: behind frames still
    /// waiting, and after the stream confirms the message. If the message cannot be
    /// published, the client is told it was not delivered; a copy that cannot be published
    /// (the webhook queue's) costs only itself.
    async fn complete(&mut self, answer: EdgeDelivery, sent: Sent) -> Result<u64, axum::Error> {
        let Sent { id, ack, bytes, .. } = sent;
        let Some(publication) = answer.publish else {
            if self.window.is_writing() && answer.membership.is_none() {
                return self.write_in_turn(id, answer.frames, bytes).await;
            }
            return self
                .deliver(answer, id.as_ref().map(MessageId::as_str))
                .await;
        };
        let Publication {
            subject,
            payload,
            stored,
            headers,
            copies,
        } = publication;
        // The publish, in the message's trace (its context came with the answer).
        let span = publish_span(&subject, &headers);
        let bus = &self.shared.bus;
        let published = if stored {
            bus.publish_stored(subject, headers.clone(), payload.clone())
                .instrument(span.clone())
                .await
                .map(Some)
        } else {
            bus.publish_with_headers(subject, headers.clone(), payload.clone())
                .instrument(span.clone())
                .await
                .map(|()| None)
        };
        let confirmation = match published {
            Ok(confirmation) => confirmation,
            Err(e) => {
                self.shared.metrics.publish_errors.inc();
                traces::set_error(&span, e.to_string());
                warn!(client_id = %self.identity.client_id, error = %e, "publish failed");
                let failed = Failed::new("deliver the message", &e);
                let reply = Envelope::error_reply(
                    id.as_ref().map(MessageId::as_str),
                    failed.code(),
                    failed.client_message(),
                );
                return self
                    .write_in_turn(id, vec![reply.to_json().into()], bytes)
                    .await;
            }
        };
        for copy in copies {
            let copied = bus
                .publish_with_headers(copy, headers.clone(), payload.clone())
                .instrument(span.clone())
                .await;
            if let Err(e) = copied {
                self.shared.metrics.publish_errors.inc();
                warn!(client_id = %self.identity.client_id, error = %e, "a copy of a message was not published");
            }
        }
        // The answer's frames: the acknowledgement of a payload CASIL changed. Otherwise
        // the one written from what the client sent.
        let frames = if answer.frames.is_empty() {
            ack.into_iter().collect()
        } else {
            answer.frames
        };
        if !frames.is_empty() {
            let deadline = Instant::now() + self.shared.config.pipeline_timeout();
            let stored = confirmation.map(|confirmation| Stored {
                confirmation,
                deadline,
                span,
            });
            self.window.write_later(id, frames, stored, bytes);
        }
        Ok(0)
    }

    /// The stream confirmed the message whose frames are next in line, or did not in
    /// time: the frames, or a `TIMEOUT`; then whatever waited behind them.
    async fn on_confirmed(&mut self, confirmed: Confirmed) -> Result<(), axum::Error> {
        let Confirmed {
            id,
            frames,
            stored,
            span,
        } = confirmed;
        let frames = match stored {
            Ok(_) => frames,
            Err(e) => {
                self.shared.metrics.publish_errors.inc();
                traces::set_error(&span, e.to_string());
                let id = id.as_ref().map(MessageId::as_str);
                warn!(client_id = %self.identity.client_id, id, error = %e, "a room message was not confirmed stored");
                let reply = Envelope::error_reply(
                    id,
                    ErrorCode::Timeout,
                    "The bus did not confirm that the message was stored; it may have been delivered. Retry only if a duplicate is acceptable.",
                );
                vec![reply.to_json().into()]
            }
        };
        let mut written = self.feed(frames).await?;
        written += self.advance().await?;
        self.flush(written).await
    }

    /// Frames the edge answers with itself (errors): written now, or after the answers
    /// to the envelopes before them.
    async fn reply(&mut self, frames: Vec<Bytes>) -> Result<(), axum::Error> {
        if self.window.is_empty() {
            let written = self.feed(frames).await?;
            return self.flush(written).await;
        }
        let delivery = EdgeDelivery {
            client_id: self.identity.client_id.clone(),
            membership: None,
            frames,
            completes: None,
            publish: None,
        };
        self.window.push(Sent::reply(delivery));
        Ok(())
    }

    /// Writes frames now if nothing waits before them, or lines them up.
    /// `bytes` are the client's bytes they stand for (see `Window::write_later`).
    async fn write_in_turn(
        &mut self,
        id: Option<MessageId>,
        frames: Vec<Bytes>,
        bytes: usize,
    ) -> Result<u64, axum::Error> {
        if self.window.is_writing() {
            self.window.write_later(id, frames, None, bytes);
            return Ok(0);
        }
        self.feed(frames).await
    }

    /// Writes the frames at the head of the line that wait for nothing.
    async fn write_ready(&mut self) -> Result<u64, axum::Error> {
        let mut written = 0;
        while let Some(frames) = self.window.next_ready() {
            written += self.feed(frames).await?;
        }
        Ok(written)
    }

    /// Feeds frames to the socket (the bus's own JSON); returns how many.
    async fn feed(&mut self, frames: Vec<Bytes>) -> Result<u64, axum::Error> {
        let mut written = 0;
        for frame in frames {
            match Utf8Bytes::try_from(frame) {
                Ok(text) => {
                    self.socket.feed(Message::Text(text)).await?;
                    written += 1;
                }
                Err(_) => {
                    warn!(client_id = %self.identity.client_id, "delivery frame is not UTF-8")
                }
            }
        }
        Ok(written)
    }

    /// Flushes what was fed, and counts it.
    async fn flush(&mut self, written: u64) -> Result<(), axum::Error> {
        self.socket.flush().await?;
        self.shared.metrics.frames_out.inc_by(written);
        Ok(())
    }

    /// Writes `first` and whatever else is already queued (up to a batch), then flushes.
    async fn write_outbound(&mut self, first: Outbound) -> Result<(), axum::Error> {
        let (mut frames, mut bytes) = (0u64, 0u64);
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(item) = next.take() {
            let len = item.len();
            match item {
                Outbound::Room(frame) if self.is_recovered_duplicate(&frame) => {}
                Outbound::Room(frame) => {
                    self.socket.feed(Message::Text(frame.text.clone())).await?;
                    frames += 1;
                }
                Outbound::Frame(frame) => {
                    self.socket.feed(Message::Text(frame)).await?;
                    frames += 1;
                }
                Outbound::Delivery(delivery) => frames += self.on_answer(delivery).await?,
            }
            bytes += len as u64;
            taken += 1;
            if taken < WRITE_BATCH {
                next = self.peer.pop();
                if next.is_none()
                    && self
                        .recovered_ids
                        .as_ref()
                        .is_some_and(|(_, until)| Instant::now() >= *until)
                {
                    // Every live copy of a recovered message has been queued, and seen.
                    self.recovered_ids = None;
                }
            }
        }
        self.socket.flush().await?;
        self.shared.metrics.frames_out.inc_by(frames);
        self.shared.metrics.bytes_out.inc_by(bytes);
        Ok(())
    }

    /// Whether a live frame was already written by the last recovery (each is dropped
    /// once: a message has one live copy).
    fn is_recovered_duplicate(&mut self, frame: &crate::peer::RoomFrame) -> bool {
        self.recovered_ids
            .as_mut()
            .is_some_and(|(ids, _)| frame.id().is_some_and(|id| ids.remove(&id)))
    }

    /// Applies a delivery's membership change and feeds its frames; returns how many.
    /// `request_id` is the envelope it answers.
    async fn deliver(
        &mut self,
        delivery: EdgeDelivery,
        request_id: Option<&str>,
    ) -> Result<u64, axum::Error> {
        let mut frames = delivery.frames;
        match delivery.membership {
            Some(MembershipChange::Join {
                topic,
                recover,
                recovery_slot,
            }) => {
                let joined = if self.joined.contains(&topic) {
                    Ok(())
                } else {
                    // Boxed: joins are rare, and their future would size every connection.
                    Box::pin(self.shared.rooms.join(
                        &self.identity.tenant,
                        &topic,
                        self.peer.clone(),
                    ))
                    .await
                };
                match joined {
                    Ok(()) => {
                        if let Some(from) = recover {
                            // After subscribing: what follows is queued behind us.
                            let recovered = Box::pin(self.shared.history.recover(
                                &self.identity.tenant,
                                &topic,
                                &from,
                            ))
                            .await;
                            frames = with_recovery(frames, recovery_slot, &recovered);
                            self.recovered_ids =
                                Some((recovered.ids, Instant::now() + RECOVERED_COPIES));
                        }
                        Box::pin(crate::cluster::announce(
                            &self.shared,
                            &self.identity,
                            &topic,
                            "join",
                        ))
                        .await;
                        self.joined.insert(topic);
                    }
                    Err(e) => {
                        warn!(client_id = %self.identity.client_id, error = %e, "join failed at the edge");
                        let reply = CommandReply::error(
                            ErrorCode::JoinChannelError,
                            format!("Failed to join channel: {topic}: the bus is unavailable"),
                        );
                        frames = vec![
                            reply
                                .into_envelope(request_id.unwrap_or(""))
                                .to_json()
                                .into(),
                        ];
                    }
                }
            }
            Some(MembershipChange::Leave(topic)) if self.joined.remove(&topic) => {
                self.shared
                    .rooms
                    .leave(&self.identity.tenant, &topic, &self.identity.client_id);
                Box::pin(crate::cluster::announce(
                    &self.shared,
                    &self.identity,
                    &topic,
                    "leave",
                ))
                .await;
            }
            Some(MembershipChange::Leave(_)) | None => {}
        }
        self.feed(frames).await
    }

    /// Ends the connection: the last frames (on shutdown), then everything it held on
    /// the edge and the bus, then the close handshake and the TCP shutdown
    /// (`closing::close`). The caller still holds its admission meanwhile: a connection
    /// being closed counts as open until its socket is.
    async fn finish(mut self: Box<Self>, end: End) {
        let (reason, last) = match end {
            End::ClientClosed => (Disconnect::ByClient, Last::ClientClosed),
            End::Lost => (Disconnect::ByClient, Last::Lost),
            End::Close(reason, code, text) => {
                if reason == Disconnect::Shutdown {
                    // Frames already queued go out before the close.
                    let last_writes = async {
                        while let Some(item) = self.peer.pop() {
                            if self.write_outbound(item).await.is_err() {
                                return;
                            }
                        }
                    };
                    if tokio::time::timeout(CLOSE_TIMEOUT, last_writes)
                        .await
                        .is_err()
                    {
                        debug!(client_id = %self.identity.client_id, "client did not take its last frames");
                    }
                }
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(text),
                };
                (reason, Last::Close(frame))
            }
        };
        self.shared.metrics.closed(reason);
        self.peer.close();
        for topic in std::mem::take(&mut self.joined) {
            self.shared
                .rooms
                .leave(&self.identity.tenant, &topic, &self.identity.client_id);
            crate::cluster::announce(&self.shared, &self.identity, &topic, "leave").await;
        }
        self.shared.connections.remove(&self.identity.client_id);
        crate::cluster::say_gone(&self.shared, &self.identity).await;
        debug!(client_id = %self.identity.client_id, reason = reason.as_str(), "client disconnected");
        let Connection { socket, tcp, .. } = *self;
        crate::closing::close(socket, last, tcp).await;
    }
}

/// The join's frames (the response, then its acknowledgement) with the recovery: the
/// response says whether it was complete, and the recovered messages follow.
fn with_recovery(
    mut frames: Vec<bytes::Bytes>,
    slot: Option<u32>,
    recovered: &crate::recovery::Recovered,
) -> Vec<bytes::Bytes> {
    if let Some(first) = frames.first_mut()
        && let Some(annotated) = crate::recovery::annotate_response(first, slot, recovered)
    {
        *first = annotated;
    }
    frames.extend(recovered.frames.iter().cloned());
    frames
}

/// Checks a `refresh` command's token: valid, and for the same tenant and subject.
async fn verify_refresh(
    shared: &Shared,
    identity: &Identity,
    command: &Envelope,
) -> Result<Grant, CommandReply> {
    let Some(auth) = &shared.auth else {
        return Err(CommandReply::error(
            ErrorCode::FeatureDisabled,
            "Authentication is off: there is no token to refresh",
        ));
    };
    let token = command
        .args
        .get("token")
        .and_then(|t| t.as_str().map(str::to_owned))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CommandReply::error(
                ErrorCode::ValidationError,
                "Validation error: Missing required arguments: token",
            )
        })?;
    let grant = auth.verify(&token).await.map_err(|e| {
        shared.metrics.auth_failure(e.reason);
        info!(client_id = %identity.client_id, reason = %e, "refresh refused");
        CommandReply::error(ErrorCode::AuthenticationFailed, "Invalid token")
    })?;
    if grant.tenant != identity.tenant || grant.subject != identity.subject {
        return Err(CommandReply::error(
            ErrorCode::AuthorizationError,
            "A refreshed token must be for the same tenant and subject",
        ));
    }
    Ok(grant)
}

/// Whether a read failed because the message or a frame exceeded the configured limit.
fn is_too_big(error: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        error.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(_))
    )
}

/// Microseconds since the Unix epoch (the unit of `received_at_unix_micros`).
pub(crate) fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// The span of the publish of a message the dispatcher routed (and of the wait for the
/// history to store it), in the message's trace; none when it is not traced.
fn publish_span(subject: &str, headers: &arqon_bus::Headers) -> tracing::Span {
    traces::continue_span(
        |key| headers.get(key),
        || {
            tracing::debug_span!(
                "edge.publish",
                otel.kind = "producer",
                messaging.system = "arqonbus",
                messaging.operation = "publish",
                messaging.destination.name = %subject,
            )
        },
    )
}

/// The span of one envelope on its way in: the root of the message's trace, or the child
/// of the context the client sent in `metadata.traceparent` (and `tracestate`); none when
/// the message is not traced (the sampling decision for every later hop).
fn receive_span(identity: &Identity, envelope: &Envelope) -> tracing::Span {
    if !traces::enabled() {
        return tracing::Span::none();
    }
    // The metadata is parsed only when it may hold a context.
    let metadata = envelope
        .metadata
        .as_str()
        .contains(traces::TRACEPARENT)
        .then(|| envelope.metadata.to_map());
    let field = |key: &str| {
        metadata
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
    };
    let span = traces::start_span(field, || {
        tracing::debug_span!(
            "edge.receive",
            arqonbus.entry = true,
            otel.kind = "producer",
            messaging.system = "arqonbus",
            messaging.operation = "publish",
            messaging.destination.name = tracing::field::Empty,
            messaging.message.id = %envelope.id,
            arqonbus.tenant = %identity.tenant,
            arqonbus.client_id = %identity.client_id,
            arqonbus.type = ?envelope.kind,
            arqonbus.command = envelope.command.as_deref().unwrap_or(""),
            arqonbus.casil.skipped = tracing::field::Empty,
        )
    });
    if let (false, Some(room), Some(channel)) =
        (span.is_disabled(), &envelope.room, &envelope.channel)
    {
        span.record(
            "messaging.destination.name",
            tracing::field::display(format_args!("{room}:{channel}")),
        );
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::tests::identity;

    #[test]
    fn a_panic_ends_the_connection_like_any_end_so_it_is_cleaned_up() {
        let panicked = std::panic::catch_unwind(|| -> End { panic!("boom") });
        assert!(matches!(
            ended(panicked, &identity()),
            End::Close(Disconnect::Internal, close_code::INTERNAL_ERROR, _)
        ));
        assert!(matches!(
            ended(Ok(End::ClientClosed), &identity()),
            End::ClientClosed
        ));
    }

    #[test]
    fn a_deadline_never_overflows() {
        let leeway = Duration::from_secs(5);
        let far = deadline(u64::MAX, leeway);
        assert!(far > Instant::now() + Duration::from_secs(50 * 365 * 24 * 3600));
        let past = deadline(0, leeway);
        assert!(past <= Instant::now() + leeway);
    }
}
