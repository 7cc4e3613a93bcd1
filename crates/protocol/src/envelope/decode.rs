//! Decoding and validation of envelopes, with every problem reported at once.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::{Envelope, MessageType, PROTOCOL_VERSION, Status};
use crate::{ChannelName, ErrorCode, JsonObject, MessageId, RoomName, Timestamp, replies};

/// Why a frame is not an envelope. Both kinds are answered with a `VALIDATION_ERROR`
/// envelope and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON that is not an object. The original answered this with
    /// `INTERNAL_ERROR`; it is the client's mistake, so it is a validation error here.
    #[error("{detail}")]
    Malformed { detail: String },
    /// A JSON object that breaks the envelope rules.
    #[error("Message validation failed: {}", errors.join("; "))]
    Invalid {
        /// The id the client gave (even an invalid one), or a generated one.
        request_id: String,
        errors: Vec<String>,
    },
}

impl DecodeError {
    /// The reasons, as listed in the error envelope's `payload.errors`.
    pub fn reasons(&self) -> Vec<String> {
        match self {
            DecodeError::Malformed { detail } => vec![detail.clone()],
            DecodeError::Invalid { errors, .. } => errors.clone(),
        }
    }

    /// The error envelope sent back to the client.
    pub fn to_envelope(&self) -> Envelope {
        let request_id = match self {
            DecodeError::Malformed { .. } => None,
            DecodeError::Invalid { request_id, .. } => Some(request_id.clone()),
        };
        replies::validation_error(request_id, &self.reasons())
    }

    pub fn code(&self) -> ErrorCode {
        ErrorCode::ValidationError
    }
}

/// The top-level fields in the order the client wrote them, values left unparsed.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = Fields<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(access.size_hint().unwrap_or(8));
                while let Some(key) = access.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = access.next_value()?;
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

/// The raw fields of an envelope before the cross-field rules.
#[derive(Default)]
struct Raw {
    id: Option<String>,
    timestamp: Option<String>,
    kind: Option<String>,
    version: Option<String>,
    room: Option<String>,
    channel: Option<String>,
    sender: Option<String>,
    from_client: Option<String>,
    to_client: Option<String>,
    command: Option<String>,
    request_id: Option<String>,
    status: Option<String>,
    error: Option<String>,
    error_code: Option<String>,
    payload: Option<JsonObject>,
    args: Option<JsonObject>,
    metadata: Option<JsonObject>,
    /// Fields present with the wrong JSON type (already reported).
    mistyped: Vec<&'static str>,
}

pub(super) fn decode(text: &str, allow_server_types: bool) -> Result<Envelope, DecodeError> {
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| DecodeError::Malformed {
        detail: match e.classify() {
            Category::Data => "Envelope must be a JSON object".to_owned(),
            _ => format!("Invalid JSON: {e}"),
        },
    })?;
    let mut errors = Vec::new();
    let raw = read_fields(fields, &mut errors);
    build(raw, allow_server_types, errors)
}

fn read_fields(fields: Fields<'_>, errors: &mut Vec<String>) -> Raw {
    let mut raw = Raw::default();
    for (key, value) in fields.0 {
        let (name, slot) = match key.as_ref() {
            "id" => ("id", &mut raw.id),
            "timestamp" => ("timestamp", &mut raw.timestamp),
            "type" => ("type", &mut raw.kind),
            "version" => ("version", &mut raw.version),
            "room" => ("room", &mut raw.room),
            "channel" => ("channel", &mut raw.channel),
            "sender" => ("sender", &mut raw.sender),
            "from_client" => ("from_client", &mut raw.from_client),
            "to_client" => ("to_client", &mut raw.to_client),
            "command" => ("command", &mut raw.command),
            "request_id" => ("request_id", &mut raw.request_id),
            "status" => ("status", &mut raw.status),
            "error" => ("error", &mut raw.error),
            "error_code" => ("error_code", &mut raw.error_code),
            "payload" | "args" | "metadata" => {
                let (name, slot) = match key.as_ref() {
                    "payload" => ("payload", &mut raw.payload),
                    "args" => ("args", &mut raw.args),
                    _ => ("metadata", &mut raw.metadata),
                };
                read_object(name, value, slot, &mut raw.mistyped, errors);
                continue;
            }
            other => {
                errors.push(format!("Unknown field '{}'", shorten(other)));
                continue;
            }
        };
        read_string(name, value, slot, &mut raw.mistyped, errors);
    }
    raw
}

fn read_string(
    key: &'static str,
    value: &RawValue,
    slot: &mut Option<String>,
    mistyped: &mut Vec<&'static str>,
    errors: &mut Vec<String>,
) {
    match string_value(value) {
        Ok(v) => *slot = v,
        Err(_) => {
            mistyped.push(key);
            errors.push(format!("Field '{key}' must be a string"));
        }
    }
}

/// A string (or null) the frame's parse has just validated. Its text between the quotes
/// is the string itself unless it holds an escape (a bare `"` or control character would
/// not have passed the parse); only then is it decoded again.
fn string_value(value: &RawValue) -> Result<Option<String>, serde_json::Error> {
    let text = value.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains('\\')
    {
        return Ok(Some(inner.to_owned()));
    }
    serde_json::from_str(text)
}

fn read_object(
    key: &'static str,
    value: &RawValue,
    slot: &mut Option<JsonObject>,
    mistyped: &mut Vec<&'static str>,
    errors: &mut Vec<String>,
) {
    if value.get() == "null" {
        *slot = None;
        return;
    }
    match JsonObject::from_raw(value) {
        Ok(object) => *slot = Some(object),
        Err(_) => {
            mistyped.push(key);
            errors.push(format!("Field '{key}' must be an object"));
        }
    }
}

/// Keeps error messages bounded when a client sends huge keys or values.
fn shorten(text: &str) -> String {
    const MAX: usize = 128;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

fn build(
    mut raw: Raw,
    allow_server_types: bool,
    mut errors: Vec<String>,
) -> Result<Envelope, DecodeError> {
    // 1. id: optional, generated when absent, validated when given.
    let id = match raw.id.as_deref() {
        None => Some(MessageId::generate()),
        Some(text) => MessageId::parse(text)
            .map_err(|e| errors.push(e.to_string()))
            .ok(),
    };
    let request_id = match (&id, &raw.id) {
        (_, Some(given)) if !given.is_empty() => shorten(given),
        (Some(id), _) => id.as_str().to_owned(),
        (None, _) => MessageId::generate().as_str().to_owned(),
    };

    // 2. type.
    let kind = match raw.kind.as_deref() {
        None | Some("") => {
            errors.push("Message type is required".to_owned());
            None
        }
        Some(text) => match MessageType::parse(text) {
            Some(kind) if allow_server_types || kind.is_client_type() => Some(kind),
            _ => {
                errors.push(format!("Unsupported message type: {}", shorten(text)));
                None
            }
        },
    };

    // 3. version.
    match raw.version.as_deref() {
        None | Some(PROTOCOL_VERSION) => {}
        Some("") => errors.push("Protocol version is required".to_owned()),
        Some(other) => errors.push(format!("Unsupported protocol version: {}", shorten(other))),
    }

    // 4. timestamp.
    let timestamp = match raw.timestamp.as_deref() {
        None => Some(Timestamp::now()),
        Some("") => {
            errors.push("Timestamp is required".to_owned());
            None
        }
        Some(text) => Timestamp::parse(text)
            .map_err(|e| errors.push(e.to_string()))
            .ok(),
    };

    // The legacy command shape: the name (and arguments) inside the payload.
    if kind == Some(MessageType::Command)
        && non_empty(raw.command.clone()).is_none()
        && let Some(payload) = &raw.payload
    {
        let mut map = payload.to_map();
        if let Some(Value::String(name)) = map.remove("command") {
            raw.command = Some(name);
        }
        if raw.args.is_none() {
            match map.remove("parameters") {
                Some(Value::Object(params)) => raw.args = Some(JsonObject::from_map(&params)),
                Some(Value::Null) | None => {}
                Some(_) => errors.push("Field 'parameters' must be an object".to_owned()),
            }
        }
    }

    // 5 and 6. Fields each type requires (null and "" count as missing).
    if let Some(kind) = kind {
        let mistyped = std::mem::take(&mut raw.mistyped);
        let missing = |present: bool, field: &str, errors: &mut Vec<String>| {
            if !present && !mistyped.contains(&field) {
                errors.push(format!("Field '{field}' is required for {kind} messages"));
            }
        };
        match kind {
            MessageType::Message | MessageType::OperatorJoin => {
                missing(raw.payload.is_some(), "payload", &mut errors);
            }
            MessageType::Command => {
                missing(
                    non_empty(raw.command.clone()).is_some(),
                    "command",
                    &mut errors,
                );
            }
            MessageType::Response => {
                let has_request = non_empty(raw.request_id.clone()).is_some();
                missing(has_request, "request_id", &mut errors);
                if has_request && non_empty(raw.status.clone()).is_none() {
                    errors.push("Response messages must include status".to_owned());
                }
            }
            MessageType::Error => {
                missing(non_empty(raw.error.clone()).is_some(), "error", &mut errors);
            }
            MessageType::Telemetry
            | MessageType::MessageResponse
            | MessageType::CommandResponse => {}
        }
    }
    let status = match non_empty(raw.status) {
        None => None,
        Some(text) => {
            let status = Status::parse(&text);
            if status.is_none() {
                errors.push(format!("Unsupported response status: {}", shorten(&text)));
            }
            status
        }
    };

    // Room and channel become subject tokens: refuse unsafe names here, at the door.
    if let Some(Err(e)) = raw.room.as_deref().map(RoomName::parse) {
        errors.push(e.to_string());
    }
    if let Some(Err(e)) = raw.channel.as_deref().map(ChannelName::parse) {
        errors.push(e.to_string());
    }

    match (id, kind, timestamp) {
        (Some(id), Some(kind), Some(timestamp)) if errors.is_empty() => {
            let sender = raw.sender.or_else(|| raw.from_client.clone());
            let metadata = match (raw.metadata, &raw.to_client) {
                (Some(metadata), _) => metadata,
                (None, Some(to)) => {
                    let mut map = serde_json::Map::new();
                    map.insert("to_client".to_owned(), Value::String(to.clone()));
                    JsonObject::from_map(&map)
                }
                (None, None) => JsonObject::empty(),
            };
            Ok(Envelope {
                id,
                timestamp,
                kind,
                room: raw.room,
                channel: raw.channel,
                sender,
                from_client: raw.from_client,
                to_client: raw.to_client,
                command: non_empty(raw.command),
                request_id: raw.request_id,
                status,
                error: raw.error,
                error_code: raw.error_code,
                payload: raw.payload.unwrap_or_default(),
                args: raw.args.unwrap_or_default(),
                metadata,
            })
        }
        _ => Err(DecodeError::Invalid { request_id, errors }),
    }
}
