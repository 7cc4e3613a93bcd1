//! Commands and their replies: run one, and check what came back.

use serde_json::{Map, Value};

use arqon_protocol::{Envelope, ErrorCode, Status};
use arqon_sdk::Client;

/// A JSON object as command arguments (anything else: none).
pub fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Runs command `name` with the arguments in `value` and returns the reply.
pub async fn run(client: &Client, name: &str, value: Value) -> Envelope {
    client
        .command(name, args(value))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The reply's `data`.
pub fn data(response: &Envelope) -> Value {
    response.payload.get("data").unwrap_or(Value::Null)
}

/// The reply's `message`.
pub fn message(response: &Envelope) -> String {
    response
        .payload
        .get("message")
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Asserts a success with `text` as its message; returns its `data`.
pub fn ok(response: &Envelope, text: &str) -> Value {
    assert_eq!(
        response.status,
        Some(Status::Success),
        "{}",
        response.to_json()
    );
    assert_eq!(message(response), text, "{}", response.to_json());
    data(response)
}

/// Asserts a refusal with `code`; returns its message and `data`.
pub fn refused(response: &Envelope, code: ErrorCode) -> (String, Value) {
    assert_eq!(
        response.status,
        Some(Status::Error),
        "{}",
        response.to_json()
    );
    assert!(
        response.has_error_code(code),
        "expected {code}: {}",
        response.to_json()
    );
    (message(response), data(response))
}

/// Asserts a refusal with `code` and `text` as its message.
pub fn assert_refused(response: &Envelope, code: ErrorCode, text: &str) {
    assert_eq!(refused(response, code).0, text, "{}", response.to_json());
}
