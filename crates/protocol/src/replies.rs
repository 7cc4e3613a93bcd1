//! Envelopes the server writes: welcome, errors, command responses and acknowledgements.

use serde_json::{Map, Value, json};

use crate::{ClientId, Envelope, ErrorCode, JsonObject, MessageType, Status, UserFacingError};

/// The `sender` of every server-originated envelope.
pub const SERVER_SENDER: &str = "arqonbus";

/// The text of the welcome frame's `payload.welcome`.
pub const WELCOME_TEXT: &str = "Connected to ArqonBus";

fn server(kind: MessageType) -> Envelope {
    let mut envelope = Envelope::new(kind);
    envelope.sender = Some(SERVER_SENDER.to_owned());
    envelope
}

pub(crate) fn validation_error(request_id: Option<String>, errors: &[String]) -> Envelope {
    let mut envelope = Envelope::error_reply(
        request_id.as_deref(),
        ErrorCode::ValidationError,
        "Message validation failed",
    );
    envelope.payload = JsonObject::from_value(&json!({ "errors": errors })).unwrap_or_default();
    envelope
}

impl Envelope {
    /// The first frame on every connection.
    pub fn welcome(client_id: &ClientId) -> Self {
        let mut envelope = server(MessageType::Message);
        envelope.payload = JsonObject::from_value(&json!({
            "welcome": WELCOME_TEXT,
            "client_id": client_id.as_str(),
        }))
        .unwrap_or_default();
        envelope
    }

    /// A flat error envelope: `type=error`, `error` (human text), `error_code`, and the id
    /// of the envelope it answers in `request_id`.
    pub fn error_reply(
        request_id: Option<&str>,
        code: ErrorCode,
        error: impl Into<String>,
    ) -> Self {
        let mut envelope = server(MessageType::Error);
        envelope.request_id = request_id.map(str::to_owned);
        envelope.error = Some(error.into());
        envelope.error_code = Some(code.as_str().to_owned());
        envelope
    }

    /// What the sender of an envelope CASIL blocked gets instead of any answer:
    /// `error="CASIL blocked message"`, the reason as `error_code` and `payload.reason`,
    /// the envelope's id as `request_id`, its room and channel echoed.
    pub fn casil_blocked(&self, reason: ErrorCode) -> Self {
        let mut envelope =
            Envelope::error_reply(Some(self.id.as_str()), reason, "CASIL blocked message");
        envelope.room = self.room.clone();
        envelope.channel = self.channel.clone();
        envelope.payload =
            JsonObject::from_value(&json!({ "reason": reason.as_str() })).unwrap_or_default();
        envelope
    }

    /// The legacy acknowledgement of an accepted `message`: same id, the payload as routed.
    pub fn message_ack(&self) -> Self {
        let mut envelope = server(MessageType::MessageResponse);
        envelope.id = self.id.clone();
        envelope.payload = self.payload.clone();
        envelope
    }

    /// The legacy acknowledgement of an accepted `command`, whatever its outcome.
    pub fn command_ack(&self) -> Self {
        let mut envelope = server(MessageType::CommandResponse);
        envelope.id = self.id.clone();
        envelope.command = self.command.clone();
        envelope.payload = JsonObject::from_value(&json!({ "result": "ok" })).unwrap_or_default();
        envelope
    }
}

/// The outcome of a command, before it becomes a `response` envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReply {
    pub error_code: Option<ErrorCode>,
    /// Human text: `payload.message`.
    pub message: String,
    /// `payload.data`.
    pub data: Map<String, Value>,
}

impl CommandReply {
    pub fn success(message: impl Into<String>, data: Map<String, Value>) -> Self {
        Self {
            error_code: None,
            message: message.into(),
            data,
        }
    }

    /// An error with empty `data`.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error_code: Some(code),
            message: message.into(),
            data: Map::new(),
        }
    }

    /// What a client is told of `error`, with empty `data`.
    pub fn failure(error: &dyn UserFacingError) -> Self {
        Self::error(error.code(), error.client_message())
    }

    /// An error whose `data` says what it was about (e.g. `{"rule_id": …}` for a
    /// `NOT_FOUND`), as the original's operators answered.
    pub fn error_with_data(
        code: ErrorCode,
        message: impl Into<String>,
        data: Map<String, Value>,
    ) -> Self {
        Self {
            error_code: Some(code),
            message: message.into(),
            data,
        }
    }

    pub fn is_success(&self) -> bool {
        self.error_code.is_none()
    }

    /// The `response` envelope answering the command `request_id`:
    /// `payload = {message, data, metadata: {}}`, `status`, and `error_code` on error.
    pub fn into_envelope(self, request_id: &str) -> Envelope {
        let mut envelope = server(MessageType::Response);
        envelope.request_id = Some(request_id.to_owned());
        envelope.status = Some(match self.error_code {
            None => Status::Success,
            Some(_) => Status::Error,
        });
        envelope.error_code = self.error_code.map(|c| c.as_str().to_owned());
        let mut payload = Map::new();
        payload.insert("message".to_owned(), Value::String(self.message));
        payload.insert("data".to_owned(), Value::Object(self.data));
        payload.insert("metadata".to_owned(), Value::Object(Map::new()));
        envelope.payload = JsonObject::from_map(&payload);
        envelope
    }
}

/// A join that recovers missed messages answers whether the recovery was complete and
/// how many it wrote (`data.recovered`, `data.recovered_count`), which only the edge
/// learns. The dispatcher writes these two fields with a placeholder, and says where they
/// are ([`recovery_slot`]); the edge writes its result there ([`fill_recovery_slot`]),
/// without parsing the frame.
const RECOVERY_PLACEHOLDER: &str = r#""recovered":false,"recovered_count":0"#;

impl CommandReply {
    /// Reserves a joins's recovery fields in `data`: they are filled in by the edge.
    pub fn reserve_recovery(&mut self) {
        self.data.insert("recovered".to_owned(), Value::Bool(false));
        self.data
            .insert("recovered_count".to_owned(), Value::from(0));
    }
}

/// Where a join's `response` frame, as the dispatcher just encoded it after
/// [`CommandReply::reserve_recovery`], holds the recovery fields: the byte offset of
/// `"recovered"`. In valid JSON, the placeholder's text (with its bare quotes) can only
/// be object keys and values, and `data`'s are the frame's only `recovered` key.
pub fn recovery_slot(frame: &[u8]) -> Option<usize> {
    let placeholder = RECOVERY_PLACEHOLDER.as_bytes();
    frame
        .windows(placeholder.len())
        .position(|window| window == placeholder)
}

/// The response `frame` with the recovery's result written at `slot`; `None` when
/// `slot` does not hold the placeholder.
pub fn fill_recovery_slot(
    frame: &[u8],
    slot: usize,
    complete: bool,
    count: usize,
) -> Option<Vec<u8>> {
    let rest = frame
        .get(slot..)?
        .strip_prefix(RECOVERY_PLACEHOLDER.as_bytes())?;
    let result = format!(r#""recovered":{complete},"recovered_count":{count}"#);
    let mut filled = Vec::with_capacity(frame.len() + result.len());
    filled.extend_from_slice(&frame[..slot]);
    filled.extend_from_slice(result.as_bytes());
    filled.extend_from_slice(rest);
    Some(filled)
}
