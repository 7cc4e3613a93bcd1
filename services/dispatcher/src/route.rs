//! Routing of one inbound envelope, and the one answer its edge waits for.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tracing::{Instrument as _, warn};

use arqon_bus::{BusError, Headers, Message, StoreConfirmation};
use arqon_proto::model::{
    DirectAck, DirectDelivery, EdgeDelivery, Inbound, MembershipChange, Publication, RoomDelivery,
};
use arqon_protocol::{
    ClientId, Envelope, ErrorCode, Failed, Identity, MessageType, Permission, TenantId, Topic,
    UserFacingError, recovery_slot, subject,
};
use arqon_telemetry::traces;

use crate::Context;
use crate::commands;
use crate::state::history::{NO_ROOM, StoreError};

/// What goes back to the sender's edge.
struct Answer {
    frames: Vec<Envelope>,
    membership: Option<MembershipChange>,
    /// Sent only once the history has stored the message: the frames acknowledge it.
    after: Option<StoreConfirmation>,
    /// What the edge publishes, in its connection's order, before the frames (ADR 022).
    publish: Option<Publication>,
}

impl Answer {
    fn frames(frames: Vec<Envelope>) -> Self {
        Self {
            frames,
            membership: None,
            after: None,
            publish: None,
        }
    }

    fn silent() -> Self {
        Self::frames(Vec::new())
    }
}

/// A decoded envelope from the dispatch subjects, in its trace's span.
pub(crate) struct Received {
    inbound: Inbound,
    span: tracing::Span,
}

impl Received {
    /// Commands take the command lane (`intake`); everything else the message lane.
    pub(crate) fn is_command(&self) -> bool {
        self.inbound.envelope.kind == MessageType::Command
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.inbound.identity.tenant
    }
}

/// Decodes `message` once and checks its tenant against its subject; `None` (counted
/// and logged) for anything else.
pub(crate) fn receive(context: &Context, message: Message) -> Option<Received> {
    let span = traces::continue_span(
        |key| message.headers.get(key),
        || {
            tracing::debug_span!(
                "dispatcher.route",
                otel.kind = "consumer",
                messaging.system = "arqonbus",
                messaging.operation = "process",
                messaging.destination.name = tracing::field::Empty,
                arqonbus.tenant = tracing::field::Empty,
                arqonbus.type = tracing::field::Empty,
                arqonbus.command = tracing::field::Empty,
            )
        },
    );
    let inbound = span.in_scope(|| decode(context, message))?;
    if !span.is_disabled() {
        let envelope = &inbound.envelope;
        span.record("arqonbus.tenant", inbound.identity.tenant.as_str());
        span.record("arqonbus.type", tracing::field::debug(envelope.kind));
        if let Some(topic) = topic_of(envelope) {
            span.record("messaging.destination.name", tracing::field::display(topic));
        }
        if let Some(command) = &envelope.command {
            span.record("arqonbus.command", command.as_str());
        }
    }
    Some(Received { inbound, span })
}

fn decode(context: &Context, message: Message) -> Option<Inbound> {
    let inbound = match Inbound::decode(message.payload) {
        Ok(inbound) => inbound,
        Err(e) => {
            context.metrics.rejected.inc();
            warn!(subject = %message.subject, error = %e, "undecodable inbound envelope");
            return None;
        }
    };
    if subject::tenant_of(&message.subject).as_ref() != Some(&inbound.identity.tenant) {
        context.metrics.rejected.inc();
        warn!(subject = %message.subject, tenant = %inbound.identity.tenant, "tenant does not match the subject");
        return None;
    }
    Some(inbound)
}

/// Routes a received envelope and sends the one answer its edge waits for.
pub(crate) async fn handle(context: &Arc<Context>, received: Received) {
    let Received { inbound, span } = received;
    route(context, inbound).instrument(span).await;
}

/// Answers an envelope that is not handled with `code` (the bus has no room for it now).
pub(crate) async fn refuse(context: &Context, received: Received, code: ErrorCode, text: &str) {
    let Received { inbound, span } = received;
    let answer = Answer::frames(vec![Envelope::error_reply(
        Some(inbound.envelope.id.as_str()),
        code,
        text,
    )]);
    answer_edge(context, &inbound, answer)
        .instrument(span)
        .await;
}

async fn route(context: &Arc<Context>, inbound: Inbound) {
    let mut answer = match inbound.envelope.kind {
        // Publishing into a channel takes the right to join it.
        MessageType::Message | MessageType::Telemetry
            if !inbound.identity.may(Permission::ChannelAccess) =>
        {
            context.metrics.refused_publishes.inc();
            Answer::frames(vec![Envelope::error_reply(
                Some(inbound.envelope.id.as_str()),
                ErrorCode::AuthorizationError,
                "Authorization error: publishing needs the 'channel_access' permission (the right to join)",
            )])
        }
        MessageType::Message => route_message(context, &inbound).await,
        MessageType::Telemetry => {
            // Telemetry is fanned out when it names a room, and never acknowledged.
            let mut answer = Answer::silent();
            if topic_of(&inbound.envelope).is_some() {
                answer.publish = route_message(context, &inbound).await.publish;
            }
            answer
        }
        MessageType::Command => {
            context.metrics.commands.inc();
            let command = traces::child_span(|| {
                tracing::debug_span!(
                    "dispatcher.command",
                    arqonbus.command = inbound.envelope.command.as_deref().unwrap_or(""),
                )
            });
            let outcome = commands::execute(context, &inbound)
                .instrument(command)
                .await;
            let id = inbound.envelope.id.as_str();
            Answer {
                frames: vec![
                    outcome.reply.into_envelope(id),
                    inbound.envelope.command_ack(),
                ],
                membership: outcome.membership,
                ..Answer::silent()
            }
        }
        MessageType::OperatorJoin => Answer::frames(vec![Envelope::error_reply(
            Some(inbound.envelope.id.as_str()),
            ErrorCode::FeatureDisabled,
            "Worker groups (operator.join) are not supported by this bus",
        )]),
        // Results and errors a client reports are accepted without a reply, as before.
        MessageType::Response
        | MessageType::Error
        | MessageType::MessageResponse
        | MessageType::CommandResponse => Answer::silent(),
    };
    match answer.after.take() {
        None => answer_edge(context, &inbound, answer).await,
        Some(confirmation) => answer_when_stored(context, inbound, answer, confirmation).await,
    }
}

/// The acknowledgement of a stored message waits for the stream in a task of its own,
/// off the message lane: the message's permit is free for others meanwhile (the sender's
/// connection waits for this answer anyway). At most `MAX_UNCONFIRMED` wait at once;
/// beyond that the message's task waits too, holding its permit.
async fn answer_when_stored(
    context: &Arc<Context>,
    inbound: Inbound,
    answer: Answer,
    confirmation: StoreConfirmation,
) {
    let Ok(permit) = Arc::clone(&context.unconfirmed).acquire_owned().await else {
        return; // closed: shutting down
    };
    let tasks = context.tasks.clone();
    let context = Arc::clone(context);
    // The wait for the stream, in the message's trace.
    let span = traces::child_span(|| {
        tracing::debug_span!("dispatcher.stored", messaging.system = "arqonbus")
    });
    let task = async move {
        let answer = match confirmation.stored().await {
            Ok(_) => answer,
            Err(e) => {
                traces::set_error(&tracing::Span::current(), e.to_string());
                context.metrics.publish_errors.inc();
                warn!(client_id = %inbound.identity.client_id, error = %e, "a room message was not confirmed stored");
                Answer::frames(vec![Envelope::error_reply(
                    Some(inbound.envelope.id.as_str()),
                    ErrorCode::Timeout,
                    "The bus did not confirm that the message was stored; it may have been delivered. Retry only if a duplicate is acceptable.",
                )])
            }
        };
        answer_edge(&context, &inbound, answer).await;
        drop(permit);
    };
    tasks.spawn(task.instrument(span));
}

fn topic_of(envelope: &Envelope) -> Option<Topic> {
    Topic::parse(envelope.room.as_deref()?, envelope.channel.as_deref()?).ok()
}

async fn route_message(context: &Context, inbound: &Inbound) -> Answer {
    let envelope = &inbound.envelope;
    if let Some(target) = &envelope.to_client {
        return route_private(context, inbound, target).await;
    }
    let Some(topic) = topic_of(envelope) else {
        return Answer::frames(vec![Envelope::error_reply(
            Some(envelope.id.as_str()),
            ErrorCode::ValidationError,
            "Fields 'room' and 'channel' are required to route a message",
        )]);
    };
    let tenant = &inbound.identity.tenant;
    let payload = RoomDelivery::routed(inbound).encode();
    let headers = Headers::current_trace_context();
    let webhooks =
        envelope.kind == MessageType::Message && context.webhook_tenants.has_rules(tenant);
    let room = subject::room(tenant, &topic);
    // An edge that keeps a window of envelopes in flight publishes, in their order; an
    // edge of an earlier version keeps one in flight and leaves the publish to us.
    let routed = if inbound.edge_publishes {
        context
            .history
            .admit(tenant, &topic, &room, payload.len())
            .await
            .map(Routed::ByEdge)
    } else {
        context
            .history
            .publish(
                &context.bus,
                tenant,
                &topic,
                headers.clone(),
                payload.clone(),
            )
            .await
            .map(Routed::Published)
    };
    match routed {
        // The edge acknowledges the message once it has published it (and the stream has
        // stored it): no frames here, so the answer is no larger than the message (but
        // for a payload CASIL redacted).
        Ok(Routed::ByEdge(stored)) => {
            context.metrics.routed.inc();
            // The edge acknowledges with what the client sent, unless CASIL changed it.
            let frames = if inbound.payload_rewritten {
                vec![envelope.message_ack()]
            } else {
                Vec::new()
            };
            Answer {
                publish: Some(Publication {
                    subject: room,
                    payload,
                    stored,
                    headers,
                    copies: webhooks
                        .then(|| subject::webhook_queue(tenant))
                        .into_iter()
                        .collect(),
                }),
                ..Answer::frames(frames)
            }
        }
        Ok(Routed::Published(confirmation)) => {
            context.metrics.routed.inc();
            if webhooks {
                queue_for_webhooks(context, inbound, payload).await;
            }
            Answer {
                after: confirmation,
                ..Answer::frames(vec![envelope.message_ack()])
            }
        }
        Err(StoreError::NoRoom(tenants)) => {
            context.metrics.history_full.inc();
            warn!(%tenant, tenants, "no room in the history for another tenant's stream");
            Answer::frames(vec![Envelope::error_reply(
                Some(envelope.id.as_str()),
                ErrorCode::QuotaExceeded,
                NO_ROOM,
            )])
        }
        Err(StoreError::Bus(e)) => {
            context.metrics.publish_errors.inc();
            warn!(client_id = %inbound.identity.client_id, error = %e, "room publish failed");
            not_delivered(envelope, &e)
        }
    }
}

/// How a room message was routed.
enum Routed {
    /// Left to the sender's edge to publish; whether it is stored.
    ByEdge(bool),
    /// Published here; the stream's confirmation, with history on.
    Published(Option<StoreConfirmation>),
}

/// Hands a routed message of a tenant with webhook rules to the webhook queue, where the
/// operators service picks it up. Nothing waits for the webhooks: the publish only
/// queues the message, and a failure costs the webhooks this message, never its
/// delivery to the room.
async fn queue_for_webhooks(context: &Context, inbound: &Inbound, payload: Bytes) {
    let tenant = &inbound.identity.tenant;
    if let Err(e) = context
        .bus
        .publish_with_headers(
            subject::webhook_queue(tenant),
            Headers::current_trace_context(),
            payload,
        )
        .await
    {
        context.metrics.publish_errors.inc();
        warn!(client_id = %inbound.identity.client_id, error = %e, "webhook queue publish failed");
    }
}

/// How long the target's edge has to take a private message.
const DIRECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A private message: to the edge that holds the target (its client id says which),
/// which writes it only if the target is connected there in the sender's tenant. Not
/// stored in history.
async fn route_private(context: &Context, inbound: &Inbound, target: &str) -> Answer {
    let envelope = &inbound.envelope;
    let not_found = || {
        Answer::frames(vec![Envelope::error_reply(
            Some(envelope.id.as_str()),
            ErrorCode::TargetNotFound,
            format!("Client '{target}' is not connected"),
        )])
    };
    let Some(client_id) = ClientId::parse(target) else {
        return not_found();
    };
    let direct = DirectDelivery {
        tenant: inbound.identity.tenant.clone(),
        client_id: client_id.clone(),
        frame: Bytes::from(envelope.to_json()),
    };
    let answer = context
        .bus
        .request_with_headers(
            subject::edge_direct(&client_id.edge()),
            Headers::current_trace_context(),
            direct.encode(),
            DIRECT_TIMEOUT,
        )
        .await;
    match answer.map(|m| DirectAck::decode(m.payload)) {
        Ok(Ok(DirectAck { delivered: true })) => {
            context.metrics.routed.inc();
            Answer::frames(vec![envelope.message_ack()])
        }
        // No such connection, another tenant's, or an edge that is gone.
        Ok(Ok(_)) | Ok(Err(_)) | Err(BusError::NoResponders | BusError::Timeout) => not_found(),
        Err(e) => {
            context.metrics.publish_errors.inc();
            warn!(error = %e, "private delivery failed");
            not_delivered(envelope, &e)
        }
    }
}

/// The one answer to a message the bus did not take.
fn not_delivered(envelope: &Envelope, error: &BusError) -> Answer {
    let failed = Failed::new("deliver the message", error);
    Answer::frames(vec![Envelope::error_reply(
        Some(envelope.id.as_str()),
        failed.code(),
        failed.client_message(),
    )])
}

async fn answer_edge(context: &Context, inbound: &Inbound, answer: Answer) {
    let Identity {
        client_id, edge_id, ..
    } = &inbound.identity;
    let frames: Vec<Bytes> = answer
        .frames
        .iter()
        .map(|f| Bytes::from(f.to_json()))
        .collect();
    let membership = answer.membership.map(|change| match change {
        // The edge writes what its recovery finds where the join's response (the first
        // frame) holds its place.
        MembershipChange::Join {
            topic,
            recover: Some(recover),
            ..
        } => MembershipChange::Join {
            topic,
            recover: Some(recover),
            recovery_slot: frames
                .first()
                .and_then(|response| recovery_slot(response))
                .and_then(|at| u32::try_from(at).ok()),
        },
        other => other,
    });
    let delivery = EdgeDelivery {
        client_id: client_id.clone(),
        membership,
        frames,
        completes: Some(inbound.sequence),
        publish: answer.publish,
    };
    if let Err(e) = context
        .bus
        .publish_with_headers(
            subject::edge(edge_id),
            Headers::current_trace_context(),
            delivery.encode(),
        )
        .await
    {
        context.metrics.publish_errors.inc();
        // The edge tells the client when no answer arrives.
        warn!(%client_id, error = %e, "answer to edge failed");
    }
}
