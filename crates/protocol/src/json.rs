//! A JSON object kept as its encoded text, and the writer that embeds it in a frame.

use std::fmt;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

mod writer;

pub use writer::ObjectWriter;

/// A JSON object (`{...}`) carried as its text.
///
/// Payloads, arguments and metadata are parsed once where they enter the system and then
/// travel as text: the dispatcher and the edges embed them in outbound frames without
/// re-encoding ([`ObjectWriter::object`]). Only the code that needs the fields (the
/// policy engine, a command handler) parses them again.
///
/// Text from a client or a backend is validated once, on the way in ([`Self::parse`], or
/// [`Self::from_raw`] on a value a decoder just parsed). Text this bus wrote itself and
/// carries between its services is taken back as it is ([`Self::from_trusted_text`]).
#[derive(Clone)]
pub struct JsonObject(Box<str>);

/// The value was valid JSON but not an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a JSON object")]
pub struct NotAnObject;

impl JsonObject {
    /// `{}`.
    pub fn empty() -> Self {
        Self("{}".into())
    }

    /// Validates `text` as one JSON object.
    pub fn parse(text: &str) -> Result<Self, JsonObjectError> {
        let raw: &RawValue = serde_json::from_str(text).map_err(JsonObjectError::Json)?;
        Self::from_raw(raw)
    }

    /// Validates UTF-8 `bytes` as one JSON object.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, JsonObjectError> {
        let raw: &RawValue = serde_json::from_slice(bytes).map_err(JsonObjectError::Json)?;
        Self::from_raw(raw)
    }

    /// Accepts a value its decoder has just parsed, and so validated, if it is an object.
    /// The text is copied, not parsed again.
    pub fn from_raw(raw: &RawValue) -> Result<Self, JsonObjectError> {
        if is_object_text(raw.get()) {
            Ok(Self(raw.get().into()))
        } else {
            Err(JsonObjectError::NotAnObject(NotAnObject))
        }
    }

    /// Takes the text of an object this bus wrote itself (a `JsonObject`'s own text,
    /// carried between the services in an internal message) as it is: **neither parsed
    /// nor validated**. Text from anyone else (a client's frame, a backend's gRPC call)
    /// goes through [`Self::parse`]: what this returns is written verbatim into the
    /// frames clients read.
    ///
    /// Its callers are listed with `clippy.toml`'s `disallowed-methods`: a new one must
    /// say, with an `allow`, why its text is the bus's own.
    pub fn from_trusted_text(text: &str) -> Self {
        Self(text.into())
    }

    /// Encodes a map.
    pub fn from_map(map: &Map<String, Value>) -> Self {
        // Encoding a map of `Value`s cannot fail: keys are strings and values are JSON.
        match serde_json::to_string(map) {
            Ok(text) => Self(text.into_boxed_str()),
            Err(_) => Self::empty(),
        }
    }

    /// Encodes a value if it is an object.
    pub fn from_value(value: &Value) -> Result<Self, NotAnObject> {
        match value {
            Value::Object(map) => Ok(Self::from_map(map)),
            _ => Err(NotAnObject),
        }
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JSON text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether this is `{}` (ignoring whitespace).
    pub fn is_empty(&self) -> bool {
        self.as_str()
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .eq("{}".bytes())
    }

    /// Parses the object into a map.
    pub fn to_map(&self) -> Map<String, Value> {
        // The text was validated as an object on construction.
        serde_json::from_str(self.as_str()).unwrap_or_default()
    }

    /// Parses the object into a value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// Parses one top-level field.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.to_map().remove(key)
    }

    /// How deeply objects and arrays nest in it: `{}` is 1, `{"a":[1]}` is 2. One pass
    /// over the bytes, no parse.
    pub fn depth(&self) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for byte in self.as_bytes() {
            if in_string {
                match (escaped, byte) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        deepest
    }

    /// Removes these top-level keys. The text is parsed only when it may hold one of
    /// them: when it contains one verbatim, or any escape (a key may be spelt with
    /// `\u` escapes).
    pub fn remove_keys(&mut self, keys: &[&str]) {
        let text = self.as_str();
        if !text.contains('\\') && !keys.iter().any(|key| text.contains(key)) {
            return;
        }
        let mut map = self.to_map();
        let before = map.len();
        for key in keys {
            map.remove(*key);
        }
        if map.len() != before {
            *self = Self::from_map(&map);
        }
    }
}

/// Why a text is not a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum JsonObjectError {
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    NotAnObject(NotAnObject),
}

fn is_object_text(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

impl Default for JsonObject {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Semantic equality: the same fields and values, whatever the formatting.
impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_map() == other.to_map()
    }
}

/// Verbatim, through serde_json's `RawValue`, which serde_json makes only by validating
/// the text: a pass over it. Frames are written by [`ObjectWriter`], without it.
impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.as_str()).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl From<Map<String, Value>> for JsonObject {
    fn from(map: Map<String, Value>) -> Self {
        Self::from_map(&map)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn depth_counts_nesting_outside_strings() {
        for (text, depth) in [
            ("{}", 1),
            (r#"{"a":[1,{"b":2}]}"#, 3),
            (r#"{"a":"[[[{{{\"]]]"}"#, 1),
            (r#"{"a":"\\","b":[[]]}"#, 3),
        ] {
            assert_eq!(JsonObject::parse(text).unwrap().depth(), depth, "{text}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(JsonObject::parse(&deep).map(|o| o.depth()).ok(), Some(201));
    }

    #[test]
    fn keys_are_removed_however_they_are_spelt() {
        let keys = ["casil", "iteration"];
        for text in [
            r#"{"casil": {"decision": "ALLOW"}, "iteration": 3, "k": "v"}"#,
            r#"{"cas\u0069l": 1, "k": "v"}"#,
            r#"{"k": "v"}"#,
        ] {
            let mut object = JsonObject::parse(text).unwrap();
            object.remove_keys(&keys);
            assert_eq!(
                object.to_map(),
                json!({"k": "v"}).as_object().unwrap().clone(),
                "{text}"
            );
        }
        // Untouched text stays as it was, byte for byte.
        let mut object = JsonObject::parse(r#"{ "k" : "v" }"#).unwrap();
        object.remove_keys(&keys);
        assert_eq!(object.as_str(), r#"{ "k" : "v" }"#);
    }
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_objects_and_refuses_other_values() {
        assert_eq!(
            JsonObject::parse(r#" {"a": 1}"#).unwrap().get("a"),
            Some(json!(1))
        );
        assert!(matches!(
            JsonObject::parse("[1]"),
            Err(JsonObjectError::NotAnObject(_))
        ));
        assert!(matches!(
            JsonObject::parse("\"x\""),
            Err(JsonObjectError::NotAnObject(_))
        ));
        assert!(matches!(
            JsonObject::parse("{"),
            Err(JsonObjectError::Json(_))
        ));
    }

    #[test]
    fn equality_ignores_formatting() {
        let a = JsonObject::parse(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b = JsonObject::parse(r#"{ "b": [1, 2], "a": 1 }"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, JsonObject::empty());
        assert!(JsonObject::parse("{ }").unwrap().is_empty());
        assert!(!a.is_empty());
    }

    #[test]
    fn serializes_verbatim() {
        let obj = JsonObject::parse(r#"{"z":1,"a":2}"#).unwrap();
        assert_eq!(serde_json::to_string(&obj).unwrap(), r#"{"z":1,"a":2}"#);
    }
}
