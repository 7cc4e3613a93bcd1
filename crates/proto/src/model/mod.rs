//! Domain forms of the internal messages, encoded and decoded at the NATS boundary.

use arqon_bus::Headers;
use bytes::Bytes;
use prost::Message as _;

use arqon_protocol::{
    ClientId, EdgeId, Envelope, Identity, JsonObject, MessageId, MessageType, NotAnObject, Role,
    Status, TenantId, Timestamp, Topic,
};

use crate::envelope::v1 as pb;

/// An internal message that could not be decoded. Only a misbehaving service can cause
/// it, so it is logged and counted, never shown to a client.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("undecodable protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("invalid field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub(crate) fn invalid(field: &'static str, reason: impl ToString) -> ModelError {
    ModelError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

/// An envelope accepted by an edge, on its way through policy to a dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub identity: Identity,
    pub envelope: Envelope,
    /// When the edge read the frame, in microseconds since the Unix epoch.
    pub received_at_unix_micros: i64,
    /// The connection's number for this envelope (from 1); see [`EdgeDelivery::completes`].
    pub sequence: u64,
    /// The edge publishes what the envelope leads to ([`EdgeDelivery::publish`]), in the
    /// order of `sequence` (ADR 022). False from an edge of an earlier version: the
    /// dispatcher publishes itself.
    pub edge_publishes: bool,
    /// The policy stage replaced the payload (CASIL redaction), so the answer carries the
    /// acknowledgement with the payload as routed (ADR 022).
    pub payload_rewritten: bool,
}

impl Inbound {
    pub fn encode(&self) -> Bytes {
        let message = pb::Inbound {
            identity: Some(identity_to_pb(&self.identity)),
            envelope: Some(envelope_to_pb(&self.envelope)),
            received_at_unix_micros: self.received_at_unix_micros,
            sequence: self.sequence,
            edge_publishes: self.edge_publishes,
            payload_rewritten: self.payload_rewritten,
        };
        Bytes::from(message.encode_to_vec())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        Self::try_from(pb::Inbound::decode(bytes)?)
    }
}

impl TryFrom<pb::Inbound> for Inbound {
    type Error = ModelError;

    fn try_from(message: pb::Inbound) -> Result<Self, Self::Error> {
        Ok(Self {
            identity: identity_from_pb(message.identity.ok_or(ModelError::Missing("identity"))?)?,
            envelope: envelope_from_pb(message.envelope.ok_or(ModelError::Missing("envelope"))?)?,
            received_at_unix_micros: message.received_at_unix_micros,
            sequence: message.sequence,
            edge_publishes: message.edge_publishes,
            payload_rewritten: message.payload_rewritten,
        })
    }
}

fn identity_to_pb(identity: &Identity) -> pb::Identity {
    pb::Identity {
        tenant: identity.tenant.as_str().to_owned(),
        client_id: identity.client_id.as_str().to_owned(),
        subject: identity.subject.clone().unwrap_or_default(),
        role: identity.role.as_str().to_owned(),
        edge_id: identity.edge_id.as_str().to_owned(),
        permissions: identity.permissions.clone().unwrap_or_default(),
        has_permissions: identity.permissions.is_some(),
        system: identity.system,
    }
}

fn identity_from_pb(identity: pb::Identity) -> Result<Identity, ModelError> {
    Ok(Identity {
        tenant: TenantId::parse(&identity.tenant).map_err(|e| invalid("tenant", e))?,
        client_id: ClientId::parse(&identity.client_id)
            .ok_or_else(|| invalid("client_id", &identity.client_id))?,
        subject: Some(identity.subject).filter(|s| !s.is_empty()),
        role: Role::new(identity.role),
        edge_id: EdgeId::parse(&identity.edge_id)
            .ok_or_else(|| invalid("edge_id", &identity.edge_id))?,
        permissions: identity.has_permissions.then_some(identity.permissions),
        system: identity.system,
    })
}

pub(crate) fn type_to_pb(kind: MessageType) -> pb::MessageType {
    match kind {
        MessageType::Message => pb::MessageType::Message,
        MessageType::Command => pb::MessageType::Command,
        MessageType::Response => pb::MessageType::Response,
        MessageType::Error => pb::MessageType::Error,
        MessageType::Telemetry => pb::MessageType::Telemetry,
        MessageType::OperatorJoin => pb::MessageType::OperatorJoin,
        MessageType::MessageResponse => pb::MessageType::MessageResponse,
        MessageType::CommandResponse => pb::MessageType::CommandResponse,
    }
}

pub(crate) fn type_from_pb(kind: i32) -> Result<MessageType, ModelError> {
    Ok(
        match pb::MessageType::try_from(kind).map_err(|e| invalid("type", e))? {
            pb::MessageType::Unspecified => return Err(ModelError::Missing("type")),
            pb::MessageType::Message => MessageType::Message,
            pb::MessageType::Command => MessageType::Command,
            pb::MessageType::Response => MessageType::Response,
            pb::MessageType::Error => MessageType::Error,
            pb::MessageType::Telemetry => MessageType::Telemetry,
            pb::MessageType::OperatorJoin => MessageType::OperatorJoin,
            pb::MessageType::MessageResponse => MessageType::MessageResponse,
            pb::MessageType::CommandResponse => MessageType::CommandResponse,
        },
    )
}

fn status_to_pb(status: Option<Status>) -> pb::Status {
    match status {
        None => pb::Status::Unspecified,
        Some(Status::Success) => pb::Status::Success,
        Some(Status::Error) => pb::Status::Error,
        Some(Status::Pending) => pb::Status::Pending,
    }
}

fn status_from_pb(status: i32) -> Result<Option<Status>, ModelError> {
    Ok(
        match pb::Status::try_from(status).map_err(|e| invalid("status", e))? {
            pb::Status::Unspecified => None,
            pb::Status::Success => Some(Status::Success),
            pb::Status::Error => Some(Status::Error),
            pb::Status::Pending => Some(Status::Pending),
        },
    )
}

fn envelope_to_pb(envelope: &Envelope) -> pb::ClientEnvelope {
    pb::ClientEnvelope {
        id: envelope.id.as_str().to_owned(),
        timestamp_unix_micros: envelope.timestamp.unix_micros(),
        timestamp_offset_seconds: envelope.timestamp.offset_seconds(),
        r#type: type_to_pb(envelope.kind).into(),
        room: envelope.room.clone(),
        channel: envelope.channel.clone(),
        sender: envelope.sender.clone(),
        from_client: envelope.from_client.clone(),
        to_client: envelope.to_client.clone(),
        command: envelope.command.clone(),
        request_id: envelope.request_id.clone(),
        status: status_to_pb(envelope.status).into(),
        error: envelope.error.clone(),
        error_code: envelope.error_code.clone(),
        payload: Bytes::copy_from_slice(envelope.payload.as_bytes()),
        args: Bytes::copy_from_slice(envelope.args.as_bytes()),
        metadata: Bytes::copy_from_slice(envelope.metadata.as_bytes()),
    }
}

/// A payload, arguments or metadata of an envelope between the services: the text of a
/// `JsonObject` the sending service encoded, validated when it entered the bus (the
/// edge parsed the client's frame once). It is taken back as it is, not parsed again:
/// only the services publish on the subjects these messages travel (ADR 001).
fn object_from_pb(field: &'static str, bytes: &[u8]) -> Result<JsonObject, ModelError> {
    if bytes.is_empty() {
        return Ok(JsonObject::empty());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(field, e))?;
    // Its first byte only: what a JsonObject's text always starts with.
    if !text.starts_with('{') {
        return Err(invalid(field, NotAnObject));
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "the text of a JsonObject of the bus"
    )]
    Ok(JsonObject::from_trusted_text(text))
}

fn envelope_from_pb(envelope: pb::ClientEnvelope) -> Result<Envelope, ModelError> {
    Ok(Envelope {
        id: MessageId::parse(&envelope.id).map_err(|e| invalid("id", e))?,
        timestamp: Timestamp::from_unix_micros(
            envelope.timestamp_unix_micros,
            envelope.timestamp_offset_seconds,
        )
        .map_err(|e| invalid("timestamp", e))?,
        kind: type_from_pb(envelope.r#type)?,
        room: envelope.room,
        channel: envelope.channel,
        sender: envelope.sender,
        from_client: envelope.from_client,
        to_client: envelope.to_client,
        command: envelope.command,
        request_id: envelope.request_id,
        status: status_from_pb(envelope.status)?,
        error: envelope.error,
        error_code: envelope.error_code,
        payload: object_from_pb("payload", &envelope.payload)?,
        args: object_from_pb("args", &envelope.args)?,
        metadata: object_from_pb("metadata", &envelope.metadata)?,
    })
}

/// Where a joining client left off, to recover what it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// After the message with this id.
    AfterId(String),
    /// After this history offset, valid only in this history epoch.
    AfterOffset { epoch: String, offset: u64 },
}

/// A join or leave decided by a dispatcher and applied by the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    Join {
        topic: Topic,
        recover: Option<Recovery>,
        /// With `recover`: where, in the first frame (the join's response), the edge
        /// writes what its recovery found (`arqon_protocol::recovery_slot`). `None` from
        /// a dispatcher that predates it.
        recovery_slot: Option<u32>,
    },
    Leave(Topic),
}

/// Frames for one connection, with the membership change to apply before writing them.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeDelivery {
    pub client_id: ClientId,
    pub membership: Option<MembershipChange>,
    pub frames: Vec<Bytes>,
    /// The [`Inbound::sequence`] this delivery answers. The pipeline answers every
    /// inbound envelope exactly once (with frames or without).
    pub completes: Option<u64>,
    /// The message the edge publishes for the envelope before it writes the frames, in
    /// the order of the connection's envelopes (ADR 022).
    pub publish: Option<Publication>,
}

/// A message the edge publishes for the dispatcher (ADR 022).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub subject: String,
    pub payload: Bytes,
    /// A JetStream publish, confirmed by its stream (ADR 011) before the answer's
    /// frames are written.
    pub stored: bool,
    /// The trace context.
    pub headers: Headers,
    /// Subjects that get a copy after it (the webhook queue's); a lost copy costs only
    /// itself.
    pub copies: Vec<String>,
}

impl Publication {
    fn to_pb(&self) -> pb::Publication {
        pb::Publication {
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            stored: self.stored,
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            copies: self.copies.clone(),
        }
    }

    fn from_pb(message: pb::Publication) -> Result<Self, ModelError> {
        let mut headers = Headers::new();
        for (name, value) in message.headers {
            headers
                .append(name, value)
                .map_err(|e| invalid("headers", e))?;
        }
        Ok(Self {
            subject: message.subject,
            payload: message.payload,
            stored: message.stored,
            headers,
            copies: message.copies,
        })
    }
}

impl EdgeDelivery {
    pub fn encode(&self) -> Bytes {
        use pb::membership_change::Action;
        let membership = self.membership.as_ref().map(|change| {
            let (action, topic, recover, recovery_slot) = match change {
                MembershipChange::Join {
                    topic,
                    recover,
                    recovery_slot,
                } => (Action::Join, topic, recover.as_ref(), *recovery_slot),
                MembershipChange::Leave(topic) => (Action::Leave, topic, None, None),
            };
            pb::MembershipChange {
                action: action.into(),
                room: topic.room.as_str().to_owned(),
                channel: topic.channel.as_str().to_owned(),
                recover: recover.map(|r| match r {
                    Recovery::AfterId(id) => pb::Recovery {
                        after_id: id.clone(),
                        ..Default::default()
                    },
                    Recovery::AfterOffset { epoch, offset } => pb::Recovery {
                        after_offset: *offset,
                        epoch: epoch.clone(),
                        ..Default::default()
                    },
                }),
                recovery_slot: recovery_slot.unwrap_or(0),
            }
        });
        let message = pb::EdgeDelivery {
            client_id: self.client_id.as_str().to_owned(),
            membership,
            frames: self.frames.clone(),
            completes_sequence: self.completes.unwrap_or(0),
            publish: self.publish.as_ref().map(Publication::to_pb),
        };
        Bytes::from(message.encode_to_vec())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        use pb::membership_change::Action;
        let message = pb::EdgeDelivery::decode(bytes)?;
        let membership = match message.membership {
            None => None,
            Some(change) => {
                let topic = Topic::parse(&change.room, &change.channel)
                    .map_err(|e| invalid("membership", format!("{e:?}")))?;
                let recover = change.recover.map(|r| {
                    if r.after_id.is_empty() {
                        Recovery::AfterOffset {
                            epoch: r.epoch,
                            offset: r.after_offset,
                        }
                    } else {
                        Recovery::AfterId(r.after_id)
                    }
                });
                match Action::try_from(change.action).map_err(|e| invalid("action", e))? {
                    Action::Join => Some(MembershipChange::Join {
                        topic,
                        recover,
                        recovery_slot: Some(change.recovery_slot).filter(|at| *at != 0),
                    }),
                    Action::Leave => Some(MembershipChange::Leave(topic)),
                    Action::Unspecified => return Err(ModelError::Missing("action")),
                }
            }
        };
        Ok(Self {
            client_id: ClientId::parse(&message.client_id)
                .ok_or_else(|| invalid("client_id", &message.client_id))?,
            membership,
            frames: message.frames,
            completes: Some(message.completes_sequence).filter(|s| *s != 0),
            publish: message.publish.map(Publication::from_pb).transpose()?,
        })
    }
}

mod presence;
mod room;

pub use room::{EncodedHead, FrameHead, RoomDelivery, message_id};

pub use presence::{
    ChannelPresence, DirectAck, DirectDelivery, Member, PresenceQuery, PresenceReply, wire_len,
};

#[cfg(test)]
mod tests;
