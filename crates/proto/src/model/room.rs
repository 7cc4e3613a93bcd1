//! What a dispatcher publishes to a room: one frame for every member, and the frame's
//! head, the fields of it that its other readers need.

use bytes::Bytes;
use prost::Message as _;

use arqon_protocol::{ClientId, Envelope, MessageType};

use super::{Inbound, ModelError, invalid, type_from_pb, type_to_pb};
use crate::envelope::v1 as pb;

/// A frame for every member of one `room:channel` on an edge.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomDelivery {
    /// The encoded JSON envelope, written as-is to every member.
    pub frame: Bytes,
    /// The sender, which does not receive its own message.
    pub exclude: Option<ClientId>,
    /// The channel was deleted: after the frame, every local member leaves it.
    pub close_room: bool,
    /// When the sender's edge received it (microseconds since the Unix epoch); `None`
    /// for messages the server originates.
    pub received_at_unix_micros: Option<i64>,
    /// The frame's head, as received: read it with [`RoomDelivery::frame_head`]. `None`
    /// in a delivery written before heads existed.
    pub head: Option<EncodedHead>,
}

impl RoomDelivery {
    /// The delivery of `envelope` to every member of its room: the frame, encoded once,
    /// and its head.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            frame: Bytes::from(envelope.to_json()),
            exclude: None,
            close_room: false,
            received_at_unix_micros: None,
            head: Some(FrameHead::of(envelope).encode()),
        }
    }

    /// A client's envelope routed to its room: every member but its sender gets it.
    pub fn routed(inbound: &Inbound) -> Self {
        let envelope = &inbound.envelope;
        Self {
            frame: Bytes::from(envelope.to_json()),
            exclude: Some(inbound.identity.client_id.clone()),
            close_room: false,
            received_at_unix_micros: Some(inbound.received_at_unix_micros),
            head: Some(
                FrameHead::of(envelope)
                    .with_sequence(inbound.sequence)
                    .encode(),
            ),
        }
    }

    /// What the frame says of itself: its head, or, in a delivery written before heads
    /// existed, what the frame's own text says (the one place a frame is parsed for
    /// these). `None` when neither says (a frame that is not an envelope).
    pub fn frame_head(&self) -> Option<FrameHead> {
        match self.head.as_ref().map(EncodedHead::decode) {
            Some(Ok(head)) => Some(head),
            Some(Err(_)) | None => FrameHead::read(&self.frame),
        }
    }

    /// The envelope's id, from the head (decoding nothing else of it), or from the frame
    /// of a delivery written before heads existed (parsed).
    pub fn message_id(&self) -> Option<String> {
        message_id(self.head.as_ref(), &self.frame)
    }

    pub fn encode(&self) -> Bytes {
        let message = Wire {
            frame: self.frame.clone(),
            exclude_client_id: self
                .exclude
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            close_room: self.close_room,
            received_at_unix_micros: self.received_at_unix_micros.unwrap_or(0),
            head: self.head.as_ref().map(|head| head.0.clone()),
        };
        Bytes::from(message.encode_to_vec())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, ModelError> {
        let message = Wire::decode(bytes)?;
        let exclude = match message.exclude_client_id.as_str() {
            "" => None,
            id => Some(ClientId::parse(id).ok_or_else(|| invalid("exclude_client_id", id))?),
        };
        Ok(Self {
            frame: message.frame,
            exclude,
            close_room: message.close_room,
            received_at_unix_micros: (message.received_at_unix_micros > 0)
                .then_some(message.received_at_unix_micros),
            head: message.head.map(EncodedHead),
        })
    }
}

/// The id of the envelope `frame` with its `head` (see [`RoomDelivery::message_id`]), for
/// a reader that kept only these.
pub fn message_id(head: Option<&EncodedHead>, frame: &[u8]) -> Option<String> {
    match head.map(EncodedHead::id) {
        Some(Some(id)) => Some(id),
        Some(None) | None => FrameHead::read(frame).map(|head| head.id),
    }
}

/// `envelope.v1.RoomDelivery` on the wire, its head left encoded: an edge's fan-out,
/// which reads every delivery, never reads the head, so it neither decodes nor copies
/// it. The same bytes as the generated type, both ways (a test checks).
#[derive(Clone, PartialEq, prost::Message)]
struct Wire {
    #[prost(bytes = "bytes", tag = "1")]
    frame: Bytes,
    #[prost(string, tag = "2")]
    exclude_client_id: String,
    #[prost(bool, tag = "3")]
    close_room: bool,
    #[prost(int64, tag = "4")]
    received_at_unix_micros: i64,
    /// An encoded `envelope.v1.FrameHead`.
    #[prost(bytes = "bytes", optional, tag = "5")]
    head: Option<Bytes>,
}

/// A frame's head as it travels, decoded only by the readers that need it
/// ([`EncodedHead::decode`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedHead(Bytes);

impl EncodedHead {
    pub fn decode(&self) -> Result<FrameHead, ModelError> {
        FrameHead::from_pb(pb::FrameHead::decode(self.0.clone())?)
    }

    /// The envelope's id alone (what recovery and cron look for): the head's other
    /// fields are skipped, not decoded.
    pub fn id(&self) -> Option<String> {
        /// `envelope.v1.FrameHead`'s first field.
        #[derive(Clone, PartialEq, prost::Message)]
        struct Id {
            #[prost(string, tag = "1")]
            id: String,
        }
        Id::decode(self.0.clone())
            .ok()
            .map(|head| head.id)
            .filter(|id| !id.is_empty())
    }
}

/// The fields of a frame its readers need (recovery, webhooks, cron), carried beside it
/// so that none of them parses the frame. Written from the envelope the frame was
/// encoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHead {
    /// The envelope's `id`.
    pub id: String,
    /// The envelope's `type`.
    pub kind: MessageType,
    pub room: Option<String>,
    pub channel: Option<String>,
    pub sender: Option<String>,
    /// The sending connection's number for the envelope ([`Inbound::sequence`]); `None`
    /// for an envelope the server originates.
    pub sequence: Option<u64>,
}

impl FrameHead {
    /// The head of the frame encoded from `envelope`.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            id: envelope.id.as_str().to_owned(),
            kind: envelope.kind,
            room: envelope.room.clone(),
            channel: envelope.channel.clone(),
            sender: envelope.sender.clone(),
            sequence: None,
        }
    }

    /// With the sending connection's number for the envelope.
    pub fn with_sequence(self, sequence: u64) -> Self {
        Self {
            sequence: Some(sequence).filter(|s| *s != 0),
            ..self
        }
    }

    /// The head a frame's own text gives, for a frame that came without one (written
    /// before heads existed): it parses the frame. `None` when it is not an envelope.
    pub fn read(frame: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(frame).ok()?;
        let envelope = Envelope::from_server_json(text).ok()?;
        Some(Self::of(&envelope))
    }

    pub fn encode(&self) -> EncodedHead {
        let head = pb::FrameHead {
            id: self.id.clone(),
            r#type: type_to_pb(self.kind).into(),
            room: self.room.clone(),
            channel: self.channel.clone(),
            sender: self.sender.clone(),
            sequence: self.sequence.unwrap_or(0),
        };
        EncodedHead(Bytes::from(head.encode_to_vec()))
    }

    fn from_pb(head: pb::FrameHead) -> Result<Self, ModelError> {
        if head.id.is_empty() {
            return Err(ModelError::Missing("head.id"));
        }
        Ok(Self {
            id: head.id,
            kind: type_from_pb(head.r#type)?,
            room: head.room,
            channel: head.channel,
            sender: head.sender,
            sequence: Some(head.sequence).filter(|s| *s != 0),
        })
    }
}
