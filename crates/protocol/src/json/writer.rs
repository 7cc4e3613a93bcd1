//! Writing a JSON object field by field, with the bus's own JSON text embedded verbatim.

use serde::Serialize;

use super::JsonObject;

/// One JSON object written as it is built, in serde_json's compact form: the same bytes
/// `serde_json::to_string` writes for a map of the same entries in the same order.
///
/// It embeds a [`JsonObject`] (or a frame of this bus) by copying its text, where serde
/// would have to validate it into a `RawValue` first.
#[derive(Debug)]
pub struct ObjectWriter {
    out: Vec<u8>,
}

impl ObjectWriter {
    /// An empty object, with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        Self { out }
    }

    /// A field whose value serde encodes (a number, an `Option`, …).
    pub fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> &mut Self {
        self.key(key);
        self.encode(value);
        self
    }

    /// A string field.
    pub fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        self.string(value);
        self
    }

    /// A field whose value is an object, copied as it is.
    pub fn object(&mut self, key: &str, value: &JsonObject) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(value.as_bytes());
        self
    }

    /// The object's text.
    pub fn finish(mut self) -> String {
        self.out.push(b'}');
        // Every piece is a `str` or serde_json's output.
        String::from_utf8(self.out).expect("the writer writes only UTF-8")
    }

    /// The object, as a [`JsonObject`] (valid by construction: nothing is parsed).
    pub fn into_object(self) -> JsonObject {
        JsonObject(self.finish().into_boxed_str())
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.string(key);
        self.out.push(b':');
    }

    /// A JSON string: copied between quotes when nothing in it needs an escape (keys,
    /// ids, names, timestamps), else escaped by serde_json.
    fn string(&mut self, text: &str) {
        if text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            self.encode(text);
        } else {
            self.out.push(b'"');
            self.out.extend_from_slice(text.as_bytes());
            self.out.push(b'"');
        }
    }

    fn encode<T: Serialize + ?Sized>(&mut self, value: &T) {
        // Writing into a `Vec` cannot fail, nor can encoding strings, numbers and options.
        serde_json::to_writer(&mut self.out, value).expect("a plain value encodes into a Vec");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use serde_json::{Map, Value};

    use super::*;

    /// What serde writes, field by field in this order.
    #[derive(Serialize)]
    struct Expected<'a> {
        text: &'a str,
        plain: &'a str,
        number: u64,
        none: Option<String>,
        object: &'a RawValue,
    }

    proptest! {
        #[test]
        fn writes_the_bytes_serde_json_writes(
            text in any::<String>(),
            plain in "[ -~]{0,12}",
            number in any::<u64>(),
            entries in prop::collection::btree_map("[a-z\"\\\\\u{1}é]{0,4}", any::<String>(), 0..4),
        ) {
            let map: Map<String, Value> =
                entries.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            let object = JsonObject::from_map(&map);
            let mut writer = ObjectWriter::with_capacity(0);
            writer
                .text("text", &text)
                .text("plain", &plain)
                .field("number", &number)
                .field("none", &None::<String>)
                .object("object", &object);
            let raw: &RawValue = serde_json::from_str(object.as_str()).unwrap();
            let expected = Expected { text: &text, plain: &plain, number, none: None, object: raw };
            prop_assert_eq!(writer.finish(), serde_json::to_string(&expected).unwrap());
        }
    }

    #[test]
    fn embeds_objects_as_they_are() {
        let mut writer = ObjectWriter::with_capacity(0);
        writer
            .text("a \"key\"", "a\"b\u{7}")
            .object("o", &JsonObject::parse(r#"{ "k" : [1, 2] }"#).unwrap());
        assert_eq!(
            writer.finish(),
            r#"{"a \"key\"":"a\"b\u0007","o":{ "k" : [1, 2] }}"#
        );
        assert_eq!(ObjectWriter::with_capacity(0).finish(), "{}");
    }
}
