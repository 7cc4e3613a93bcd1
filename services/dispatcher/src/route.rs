//! Routing of one inbound envelope, and the one answer its edge waits for.

use bytes::Bytes;
use tracing::warn;

use arqon_bus::Message;
use arqon_proto::model::{EdgeDelivery, Inbound, MembershipChange, RoomDelivery};
use arqon_protocol::{Envelope, ErrorCode, Identity, MessageType, Topic, subject};

use crate::Context;
use crate::commands;

/// What goes back to the sender's edge.
struct Answer {
    frames: Vec<Envelope>,
    membership: Option<MembershipChange>,
}

impl Answer {
    fn frames(frames: Vec<Envelope>) -> Self {
        Self {
            frames,
            membership: None,
        }
    }

    fn silent() -> Self {
        Self::frames(Vec::new())
    }
}

pub(crate) async fn handle(context: &Context, message: Message) {
    let inbound = match Inbound::decode(message.payload) {
        Ok(inbound) => inbound,
        Err(e) => {
            context.metrics.rejected.inc();
            warn!(subject = %message.subject, error = %e, "undecodable inbound envelope");
            return;
        }
    };
    if subject::tenant_of(&message.subject).as_ref() != Some(&inbound.identity.tenant) {
        context.metrics.rejected.inc();
        warn!(subject = %message.subject, tenant = %inbound.identity.tenant, "tenant does not match the subject");
        return;
    }
    let answer = match inbound.envelope.kind {
        MessageType::Message => route_message(context, &inbound).await,
        MessageType::Telemetry => {
            // Telemetry is fanned out when it names a room, and never acknowledged.
            if topic_of(&inbound.envelope).is_some() {
                route_message(context, &inbound).await;
            }
            Answer::silent()
        }
        MessageType::Command => {
            context.metrics.commands.inc();
            let outcome = commands::execute(context, &inbound);
            let id = inbound.envelope.id.as_str();
            Answer {
                frames: vec![
                    outcome.reply.into_envelope(id),
                    inbound.envelope.command_ack(),
                ],
                membership: outcome.membership,
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
    answer_edge(context, &inbound, answer).await;
}

fn topic_of(envelope: &Envelope) -> Option<Topic> {
    Topic::parse(envelope.room.as_deref()?, envelope.channel.as_deref()?).ok()
}

async fn route_message(context: &Context, inbound: &Inbound) -> Answer {
    let envelope = &inbound.envelope;
    let Some(topic) = topic_of(envelope) else {
        return Answer::frames(vec![Envelope::error_reply(
            Some(envelope.id.as_str()),
            ErrorCode::ValidationError,
            "Fields 'room' and 'channel' are required to route a message",
        )]);
    };
    let delivery = RoomDelivery {
        frame: Bytes::from(envelope.to_json()),
        exclude: Some(inbound.identity.client_id.clone()),
    };
    let target = subject::room(&inbound.identity.tenant, &topic);
    match context.bus.publish(target, delivery.encode()).await {
        Ok(()) => {
            context.metrics.routed.inc();
            Answer::frames(vec![envelope.message_ack()])
        }
        Err(e) => {
            context.metrics.publish_errors.inc();
            warn!(client_id = %inbound.identity.client_id, error = %e, "room publish failed");
            Answer::frames(vec![Envelope::error_reply(
                Some(envelope.id.as_str()),
                ErrorCode::Unavailable,
                "The bus is unavailable; the message was not delivered. Retry later.",
            )])
        }
    }
}

async fn answer_edge(context: &Context, inbound: &Inbound, answer: Answer) {
    let Identity {
        client_id, edge_id, ..
    } = &inbound.identity;
    let delivery = EdgeDelivery {
        client_id: client_id.clone(),
        membership: answer.membership,
        frames: answer
            .frames
            .iter()
            .map(|f| Bytes::from(f.to_json()))
            .collect(),
        completes: Some(inbound.sequence),
    };
    if let Err(e) = context
        .bus
        .publish(subject::edge(edge_id), delivery.encode())
        .await
    {
        context.metrics.publish_errors.inc();
        // The edge tells the client when no answer arrives.
        warn!(%client_id, error = %e, "answer to edge failed");
    }
}
