//! Reading command arguments, with the original's error texts.

use serde_json::{Map, Value};

use arqon_protocol::{CommandReply, ErrorCode, Topic};

/// The `room` and `channel` arguments, as a validated topic.
pub(crate) fn topic(args: &Map<String, Value>) -> Result<Topic, CommandReply> {
    let room = args
        .get("room")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let channel = args
        .get("channel")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let missing: Vec<&str> = [("room", room), ("channel", channel)]
        .into_iter()
        .filter_map(|(name, value)| value.is_none().then_some(name))
        .collect();
    if !missing.is_empty() {
        return Err(validation(format!(
            "Missing required arguments: {}",
            missing.join(", ")
        )));
    }
    Topic::parse(room.unwrap_or_default(), channel.unwrap_or_default()).map_err(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        validation(text.join("; "))
    })
}

fn validation(detail: String) -> CommandReply {
    CommandReply::error(
        ErrorCode::ValidationError,
        format!("Validation error: {detail}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn reads_a_topic() {
        let topic = topic(&args(json!({"room": "science", "channel": "general"}))).unwrap();
        assert_eq!(topic.to_string(), "science:general");
    }

    #[test]
    fn names_every_missing_argument() {
        let reply = topic(&args(json!({"channel": ""}))).unwrap_err();
        assert_eq!(reply.error_code, Some(ErrorCode::ValidationError));
        assert_eq!(
            reply.message,
            "Validation error: Missing required arguments: room, channel"
        );
        let reply = topic(&args(json!({"room": 5, "channel": "c"}))).unwrap_err();
        assert_eq!(
            reply.message,
            "Validation error: Missing required arguments: room"
        );
    }

    #[test]
    fn refuses_unsafe_names() {
        let reply = topic(&args(json!({"room": "a.b", "channel": "c"}))).unwrap_err();
        assert!(
            reply
                .message
                .starts_with("Validation error: Invalid room name 'a.b'"),
            "{}",
            reply.message
        );
    }
}
