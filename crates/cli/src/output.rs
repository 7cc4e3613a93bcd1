//! How results are printed: JSON as the original printed it, human lines, and colors
//! only on a terminal.

use std::io::IsTerminal;

use serde_json::Value;
use serde_json::ser::{CharEscape, Formatter, Serializer};

/// JSON the way Python's `json.dumps(value, sort_keys=True)` writes it: keys sorted,
/// `", "` and `": "` separators, non-ASCII escaped. The original's `tail --raw` printed
/// this, and scripts match on it (`"welcome": "Connected to ArqonBus"`).
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = Serializer::with_formatter(&mut out, PythonFormatter);
    // `serde_json::Map` keeps keys sorted, and writing to a Vec cannot fail.
    let _ = serde::Serialize::serialize(value, &mut serializer);
    String::from_utf8(out).unwrap_or_default()
}

struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> std::io::Result<()> {
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"\\/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => {
                return write!(writer, "\\u{byte:04x}");
            }
        };
        writer.write_all(text)
    }
}

/// Indented JSON with sorted keys (the original's `status` and `version`).
pub(crate) fn pretty_json(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// ANSI styles, only when stdout is a terminal and `NO_COLOR` is unset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    on: bool,
}

impl Style {
    pub(crate) fn detect() -> Self {
        Self {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// No styles: what a pipe gets.
    #[cfg(test)]
    pub(crate) fn plain() -> Self {
        Self { on: false }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub(crate) fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub(crate) fn red(self, text: &str) -> String {
        self.paint("31", text)
    }

    pub(crate) fn green(self, text: &str) -> String {
        self.paint("32", text)
    }
}

/// One frame on one line, as the original's `tail` printed it:
/// `<timestamp> type=<type> sender=<sender> room=<room> channel=<channel> payload=<JSON>`.
pub(crate) fn frame_line(frame: &Value, style: Style) -> String {
    let field = |name: &str| frame[name].as_str().unwrap_or_default().to_owned();
    let payload = frame.get("payload").cloned().unwrap_or(Value::Null);
    format!(
        "{} type={} sender={} room={} channel={} payload={}",
        style.dim(&field("timestamp")),
        style.bold(&field("type")),
        field("sender"),
        field("room"),
        field("channel"),
        python_json(&payload)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_written_as_python_writes_it() {
        let value = json!({"welcome": "Connected to ArqonBus", "b": [1, "é"], "a": {"x": null}});
        assert_eq!(
            python_json(&value),
            r#"{"a": {"x": null}, "b": [1, "\u00e9"], "welcome": "Connected to ArqonBus"}"#
        );
        assert_eq!(python_json(&json!("a\"b\n🙂")), r#""a\"b\n\ud83d\ude42""#);
    }

    #[test]
    fn a_frame_is_one_line() {
        let frame =
            json!({"timestamp": "t", "type": "message", "room": "r", "payload": {"b": 1, "a": 2}});
        assert_eq!(
            frame_line(&frame, Style::plain()),
            r#"t type=message sender= room=r channel= payload={"a": 2, "b": 1}"#
        );
    }
}
