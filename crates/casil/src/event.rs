//! The telemetry event for an inspection, with the original's fields.

use serde_json::{Map, Value, json};

use crate::inspect::{Decision, Outcome};

/// The `event` name of [`decision_event`].
pub const DECISION_EVENT: &str = "casil_decision";

/// `{"event": "casil_decision", "client_id", "message_id", "severity", "metadata":
/// {decision, reason_code, flags, room, channel}}`, plus `"payload"` (the observed copy,
/// parsed back to JSON) when the outcome has one. Severity is `warning` for a block,
/// `info` otherwise. Meant for inspected outcomes; for others `flags` is `{}`.
pub fn decision_event(
    outcome: &Outcome,
    client_id: &str,
    message_id: &str,
    room: Option<&str>,
    channel: Option<&str>,
) -> Value {
    let severity = if outcome.decision == Decision::Block {
        "warning"
    } else {
        "info"
    };
    let flags = outcome
        .classification
        .map_or_else(|| Value::Object(Map::new()), |c| c.flags.to_json());
    let mut event = json!({
        "event": DECISION_EVENT,
        "client_id": client_id,
        "message_id": message_id,
        "severity": severity,
        "metadata": {
            "decision": outcome.decision.as_str(),
            "reason_code": outcome.reason.as_str(),
            "flags": flags,
            "room": room,
            "channel": channel,
        },
    });
    if let (Some(observed), Value::Object(map)) = (&outcome.observed_payload, &mut event) {
        // The observed copy is JSON text made by this crate; should it ever not parse,
        // carry nothing rather than risk carrying the original.
        let payload =
            serde_json::from_str(observed).unwrap_or_else(|_| Value::from(crate::REDACTED));
        map.insert("payload".to_owned(), payload);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::REDACTED;
    use crate::test_support::{engine, message};

    #[test]
    fn an_allowed_message_is_an_info_event_without_payload() {
        let e = engine("enabled: true\npolicies: {redaction: {paths: []}}");
        let outcome = e.inspect(&message(Some("r"), Some("c"), r#"{"content":"hi"}"#));
        let event = decision_event(&outcome, "client-1", "arq_1", Some("r"), Some("c"));
        assert_eq!(
            event,
            json!({
                "event": "casil_decision", "client_id": "client-1", "message_id": "arq_1",
                "severity": "info",
                "metadata": {"decision": "ALLOW", "reason_code": "CASIL_POLICY_ALLOWED",
                    "flags": {"contains_probable_secret": false, "oversize_payload": false,
                              "redacted_paths": false},
                    "room": "r", "channel": "c"},
            })
        );
    }

    #[test]
    fn a_block_is_a_warning_and_carries_the_redacted_copy() {
        let e = engine("enabled: true\nmode: enforce\npolicies: {block_on_probable_secret: true}");
        let outcome = e.inspect(&message(None, None, r#"{"password":"hunter2"}"#));
        let event = decision_event(&outcome, "c", "m", None, None);
        assert_eq!(event["severity"], "warning");
        assert_eq!(event["metadata"]["decision"], "BLOCK");
        assert_eq!(
            event["metadata"]["reason_code"],
            "CASIL_POLICY_BLOCKED_SECRET"
        );
        assert_eq!(event["metadata"]["flags"]["contains_probable_secret"], true);
        assert_eq!(event["metadata"]["room"], Value::Null);
        assert_eq!(event["payload"], json!({"password": REDACTED}));
        assert!(!event.to_string().contains("hunter2"));
    }

    #[test]
    fn a_never_logged_payload_is_the_bare_token() {
        let e = engine("enabled: true\npolicies: {redaction: {never_log_payload_for: [pii-*]}}");
        let outcome = e.inspect(&message(
            Some("pii-payroll"),
            Some("updates"),
            r#"{"salary":1}"#,
        ));
        let event = decision_event(&outcome, "c", "m", Some("pii-payroll"), Some("updates"));
        assert_eq!(event["payload"], REDACTED);
    }

    #[test]
    fn an_outcome_that_was_not_inspected_has_empty_flags() {
        let e = engine("enabled: false");
        let outcome = e.inspect(&message(None, None, "{}"));
        let event = decision_event(&outcome, "c", "m", None, None);
        assert_eq!(event["metadata"]["flags"], json!({}));
        assert_eq!(event["metadata"]["reason_code"], "CASIL_DISABLED");
        assert!(event.get("payload").is_none());
    }
}
