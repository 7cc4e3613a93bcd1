//! Reading command arguments, with the original's error texts.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use arqon_proto::model::Recovery;
use arqon_protocol::{CommandReply, ErrorCode, RoomName, Timestamp, Topic};

/// A command's `args`.
pub(crate) struct Args(Map<String, Value>);

pub(crate) fn validation(detail: impl std::fmt::Display) -> CommandReply {
    CommandReply::error(
        ErrorCode::ValidationError,
        format!("Validation error: {detail}"),
    )
}

/// Lenient readers for the operators' commands, which convert as the original did
/// (`str(...)`, `float(...)`, truthy words). Each gives the problem as a detail, for the
/// caller to word as its command family does.
///
/// A string as given; a number or boolean as its text; absent or null is `None`.
pub(crate) fn scalar_text(args: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(scalar @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(scalar.to_string())),
        Some(_) => Err(format!("'{name}' must be a string")),
    }
}

/// A number, or a string holding one; absent or null is `None`.
pub(crate) fn number(args: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("'{name}' must be a number, not '{s}'")),
        Some(_) => Err(format!("'{name}' must be a number")),
    }
}

/// A boolean, a number (non-zero is true), or true/false/yes/no/on/off/1/0 as text;
/// absent or null is false.
pub(crate) fn boolean(args: &Map<String, Value>, name: &str) -> Result<bool, String> {
    let refused = || format!("'{name}' must be a boolean");
    match args.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(Value::Number(n)) => n.as_f64().map(|n| n != 0.0).ok_or_else(refused),
        Some(Value::String(text)) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(refused()),
        },
        Some(_) => Err(refused()),
    }
}

fn missing(names: &[&str]) -> CommandReply {
    validation(format!("Missing required arguments: {}", names.join(", ")))
}

impl Args {
    pub(crate) fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// A string argument; absent, null and "" are `None`; another type is an error.
    pub(crate) fn text(&self, name: &str) -> Result<Option<&str>, CommandReply> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(validation(format!("'{name}' must be a string"))),
        }
    }

    pub(crate) fn flag(&self, name: &str) -> Result<bool, CommandReply> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(validation(format!("'{name}' must be a boolean"))),
        }
    }

    /// The `room` argument.
    pub(crate) fn room(&self) -> Result<RoomName, CommandReply> {
        let room = self.text("room")?.ok_or_else(|| missing(&["room"]))?;
        RoomName::parse(room).map_err(validation)
    }

    /// `room` and `channel` (or, for `create_channel`, `name` in place of `channel`).
    pub(crate) fn topic(&self, channel_aliases: &[&str]) -> Result<Topic, CommandReply> {
        let room = self.text("room")?;
        let mut channel = self.text("channel")?;
        for alias in channel_aliases {
            if channel.is_none() {
                channel = self.text(alias)?;
            }
        }
        match (room, channel) {
            (Some(room), Some(channel)) => Topic::parse(room, channel).map_err(|errors| {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                validation(text.join("; "))
            }),
            (None, None) => Err(missing(&["room", "channel"])),
            (None, Some(_)) => Err(missing(&["room"])),
            (Some(_), None) => Err(missing(&["channel"])),
        }
    }

    /// A positive integer no larger than `max`, `default` when absent.
    pub(crate) fn limit(&self, default: usize, max: usize) -> Result<usize, CommandReply> {
        match self.0.get("limit") {
            None | Some(Value::Null) => Ok(default),
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
                _ => Err(validation(format!(
                    "'limit' must be an integer from 1 to {max}"
                ))),
            },
        }
    }

    /// An ISO 8601 timestamp (`Z` accepted; naive means UTC).
    pub(crate) fn timestamp(&self, name: &str) -> Result<Option<DateTime<Utc>>, CommandReply> {
        let invalid = || {
            CommandReply::error(
                ErrorCode::InvalidTimestamp,
                format!("Invalid '{name}' timestamp format"),
            )
        };
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Timestamp::parse(text)
                .map(|t| Some(t.to_utc()))
                .map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    /// Where a joining client left off: `since_id`, or `since_offset` with `epoch`.
    pub(crate) fn recovery(&self) -> Result<Option<Recovery>, CommandReply> {
        if let Some(id) = self.text("since_id")? {
            return Ok(Some(Recovery::AfterId(id.to_owned())));
        }
        match (self.0.get("since_offset"), self.text("epoch")?) {
            (None | Some(Value::Null), None) => Ok(None),
            (None | Some(Value::Null), Some(_)) => Err(missing(&["since_offset"])),
            (Some(offset), Some(epoch)) => match offset.as_u64() {
                Some(offset) => Ok(Some(Recovery::AfterOffset {
                    epoch: epoch.to_owned(),
                    offset,
                })),
                None => Err(validation("'since_offset' must be a non-negative integer")),
            },
            (Some(_), None) => Err(missing(&["epoch"])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::{DEFAULT_LIMIT, MAX_LIMIT};
    use serde_json::json;

    fn args(value: Value) -> Args {
        Args::new(value.as_object().unwrap().clone())
    }

    #[test]
    fn reads_a_topic_with_aliases() {
        let topic = args(json!({"room": "science", "channel": "general"}))
            .topic(&[])
            .unwrap();
        assert_eq!(topic.to_string(), "science:general");
        let topic = args(json!({"room": "science", "name": "lab"}))
            .topic(&["name"])
            .unwrap();
        assert_eq!(topic.to_string(), "science:lab");
    }

    #[test]
    fn names_every_missing_argument() {
        let reply = args(json!({"channel": ""})).topic(&[]).unwrap_err();
        assert_eq!(reply.error_code, Some(ErrorCode::ValidationError));
        assert_eq!(
            reply.message,
            "Validation error: Missing required arguments: room, channel"
        );
        let reply = args(json!({"room": 5, "channel": "c"}))
            .topic(&[])
            .unwrap_err();
        assert_eq!(reply.message, "Validation error: 'room' must be a string");
        let reply = args(json!({"room": "r"})).topic(&[]).unwrap_err();
        assert_eq!(
            reply.message,
            "Validation error: Missing required arguments: channel"
        );
    }

    #[test]
    fn refuses_unsafe_names() {
        let reply = args(json!({"room": "a.b", "channel": "c"}))
            .topic(&[])
            .unwrap_err();
        assert!(
            reply
                .message
                .starts_with("Validation error: Invalid room name 'a.b'"),
            "{}",
            reply.message
        );
    }

    #[test]
    fn limits_timestamps_and_recovery() {
        let limit = |value: Value| args(value).limit(DEFAULT_LIMIT, MAX_LIMIT);
        assert_eq!(limit(json!({})).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(json!({"limit": 7})).unwrap(), 7);
        assert_eq!(limit(json!({ "limit": MAX_LIMIT })).unwrap(), MAX_LIMIT);
        for bad in [json!(0), json!(MAX_LIMIT + 1), json!("7"), json!(-1)] {
            let reply = limit(json!({ "limit": bad })).unwrap_err();
            assert_eq!(
                reply.message,
                format!("Validation error: 'limit' must be an integer from 1 to {MAX_LIMIT}"),
                "{bad}"
            );
        }
        assert!(
            args(json!({"since": "2026-01-01T00:00:00Z"}))
                .timestamp("since")
                .unwrap()
                .is_some()
        );
        let reply = args(json!({"since": "yesterday"}))
            .timestamp("since")
            .unwrap_err();
        assert_eq!(reply.error_code, Some(ErrorCode::InvalidTimestamp));
        assert_eq!(reply.message, "Invalid 'since' timestamp format");
        assert_eq!(
            args(json!({"since_id": "arq_1_1_abcdef"}))
                .recovery()
                .unwrap(),
            Some(Recovery::AfterId("arq_1_1_abcdef".into()))
        );
        assert_eq!(
            args(json!({"since_offset": 9, "epoch": "e"}))
                .recovery()
                .unwrap(),
            Some(Recovery::AfterOffset {
                epoch: "e".into(),
                offset: 9
            })
        );
        assert!(args(json!({"since_offset": 9})).recovery().is_err());
        assert_eq!(args(json!({})).recovery().unwrap(), None);
    }
}
