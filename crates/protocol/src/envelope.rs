//! The client envelope: one JSON object per WebSocket text frame, in both directions.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::{ErrorCode, JsonObject, MessageId, ObjectWriter, Timestamp};

mod decode;

pub use decode::DecodeError;

/// The only protocol version, written into every envelope.
pub const PROTOCOL_VERSION: &str = "1.0";

/// Metadata keys only the server writes: the policy's CASIL annotation and a cron
/// firing's job and iteration. The edge removes them from what a client sends, so they
/// never reach anyone as if the server had written them.
pub const SERVER_OWNED_METADATA: &[&str] = &["casil", "cron_job_id", "iteration"];

/// The `type` of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Message,
    Command,
    Response,
    Error,
    Telemetry,
    OperatorJoin,
    /// The server's acknowledgement of an accepted `message` (legacy, kept for clients
    /// of the original).
    MessageResponse,
    /// The server's acknowledgement of an accepted `command` (legacy).
    CommandResponse,
}

impl MessageType {
    pub const ALL: [MessageType; 8] = [
        MessageType::Message,
        MessageType::Command,
        MessageType::Response,
        MessageType::Error,
        MessageType::Telemetry,
        MessageType::OperatorJoin,
        MessageType::MessageResponse,
        MessageType::CommandResponse,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Message => "message",
            MessageType::Command => "command",
            MessageType::Response => "response",
            MessageType::Error => "error",
            MessageType::Telemetry => "telemetry",
            MessageType::OperatorJoin => "operator.join",
            MessageType::MessageResponse => "message_response",
            MessageType::CommandResponse => "command_response",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether a client may send this type. The acknowledgement types are server-only.
    pub const fn is_client_type(self) -> bool {
        !matches!(
            self,
            MessageType::MessageResponse | MessageType::CommandResponse
        )
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `status` of a `response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Success,
    Error,
    Pending,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Error => "error",
            Status::Pending => "pending",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Status::Success, Status::Error, Status::Pending]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One envelope, validated.
///
/// Outbound, `id`, `timestamp`, `type`, `version`, `payload`, `args` and `metadata` are
/// always written; the other fields only when set (the original's rule).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: MessageId,
    pub timestamp: Timestamp,
    pub kind: MessageType,
    pub room: Option<String>,
    pub channel: Option<String>,
    /// Who sent it. The edge overwrites whatever a client wrote with its `client_id`;
    /// server-originated envelopes use [`crate::SERVER_SENDER`].
    pub sender: Option<String>,
    pub from_client: Option<String>,
    pub to_client: Option<String>,
    pub command: Option<String>,
    pub request_id: Option<String>,
    pub status: Option<Status>,
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub payload: JsonObject,
    pub args: JsonObject,
    pub metadata: JsonObject,
}

impl Envelope {
    /// A new envelope of `kind` with a fresh id, the current time and empty objects.
    pub fn new(kind: MessageType) -> Self {
        Self {
            id: MessageId::generate(),
            timestamp: Timestamp::now(),
            kind,
            room: None,
            channel: None,
            sender: None,
            from_client: None,
            to_client: None,
            command: None,
            request_id: None,
            status: None,
            error: None,
            error_code: None,
            payload: JsonObject::empty(),
            args: JsonObject::empty(),
            metadata: JsonObject::empty(),
        }
    }

    /// Decodes and validates a frame sent by a client (the server-only acknowledgement
    /// types are refused).
    pub fn from_client_json(text: &str) -> Result<Self, DecodeError> {
        decode::decode(text, false)
    }

    /// Decodes a frame sent by the server (every type is accepted). Used by clients.
    pub fn from_server_json(text: &str) -> Result<Self, DecodeError> {
        decode::decode(text, true)
    }

    /// The envelope's optional text fields, in the order both writers put them (between
    /// `version` and `payload`), each with its value when it has one.
    fn optional_fields(&self) -> [(&'static str, Option<&str>); 10] {
        [
            ("room", self.room.as_deref()),
            ("channel", self.channel.as_deref()),
            ("sender", self.sender.as_deref()),
            ("from_client", self.from_client.as_deref()),
            ("to_client", self.to_client.as_deref()),
            ("command", self.command.as_deref()),
            ("request_id", self.request_id.as_deref()),
            ("status", self.status.map(|status| status.as_str())),
            ("error", self.error.as_deref()),
            ("error_code", self.error_code.as_deref()),
        ]
    }

    /// The JSON text of this envelope: the bytes its `Serialize` writes, with `payload`,
    /// `args` and `metadata` copied in as they are (serde would validate each first).
    pub fn to_json(&self) -> String {
        let optional = self.optional_fields();
        let texts: usize = optional
            .iter()
            .filter_map(|(_, value)| value.map(|v| v.len() + 16))
            .sum();
        let objects = self.payload.as_str().len() + self.args.as_str().len();
        let mut writer =
            ObjectWriter::with_capacity(160 + texts + objects + self.metadata.as_str().len());
        writer
            .text("id", self.id.as_str())
            .text("timestamp", &self.timestamp.to_rfc3339())
            .text("type", self.kind.as_str())
            .text("version", PROTOCOL_VERSION);
        for (key, value) in optional {
            if let Some(value) = value {
                writer.text(key, value);
            }
        }
        writer
            .object("payload", &self.payload)
            .object("args", &self.args)
            .object("metadata", &self.metadata);
        writer.finish()
    }

    /// Whether this error envelope carries `code`.
    pub fn has_error_code(&self, code: ErrorCode) -> bool {
        self.error_code.as_deref() == Some(code.as_str())
    }
}

/// The same text as [`Envelope::to_json`], for serde's other formats and for embedding in
/// a serde value (it validates `payload`, `args` and `metadata` on the way: see
/// [`JsonObject`]'s `Serialize`).
impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", self.id.as_str())?;
        map.serialize_entry("timestamp", &self.timestamp.to_rfc3339())?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry("version", PROTOCOL_VERSION)?;
        for (key, value) in self.optional_fields() {
            if let Some(value) = value {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry("payload", &self.payload)?;
        map.serialize_entry("args", &self.args)?;
        map.serialize_entry("metadata", &self.metadata)?;
        map.end()
    }
}

#[cfg(test)]
mod tests;
