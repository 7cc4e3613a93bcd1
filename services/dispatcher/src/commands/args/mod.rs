//! Command arguments: the schema entries the catalog lists (and `help` shows), and the
//! one set of readers that parse a command's `args` into its typed request, once, before
//! the command runs.
//!
//! Two conventions, each documented where its commands are:
//! - the built-in commands (`docs/protocol.md`) take JSON types as they are: a name is a
//!   string, `force` a boolean, `limit` an integer ([`Reader::string`],
//!   [`Reader::flag`], [`Reader::limit`]);
//! - the operators' commands (`docs/operators-*.md`) convert as the original did: a
//!   number or boolean given for text is its text (`str()`), numbers may come as text
//!   (`float()`, `int()`), booleans as words ([`Reader::text`], [`Reader::number`],
//!   [`Reader::integer`], [`Reader::truthy`]).
//!
//! Absent and `null` are the same everywhere. Every refusal is `VALIDATION_ERROR` (but a
//! bad timestamp's, `INVALID_TIMESTAMP`), worded `Validation error: <detail>` or as the
//! bare detail, as the command's family words its refusals ([`Family::prefixes`]).

use std::cell::RefCell;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use arqon_protocol::{CommandReply, ErrorCode, RoomName, Timestamp, Topic};

use super::catalog::Family;

/// One argument of a command, as the catalog lists it.
#[derive(Debug)]
pub(crate) struct Arg {
    pub(crate) name: &'static str,
    pub(crate) required: bool,
    pub(crate) description: &'static str,
}

pub(crate) const fn arg(name: &'static str, required: bool, description: &'static str) -> Arg {
    Arg {
        name,
        required,
        description,
    }
}

/// A command's typed request, read from its `args`.
pub(crate) trait Parse: Sized {
    fn parse(args: &Reader<'_>) -> Result<Self, CommandReply>;
}

/// The commands that take nothing.
impl Parse for () {
    fn parse(_: &Reader<'_>) -> Result<Self, CommandReply> {
        Ok(())
    }
}

/// Reads one command's `args`.
pub(crate) struct Reader<'a> {
    args: &'a Map<String, Value>,
    prefixed: bool,
    /// The arguments asked for, so a test can hold each command's parser to its schema.
    read: RefCell<Vec<&'static str>>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(args: &'a Map<String, Value>, family: Family) -> Self {
        Self {
            args,
            prefixed: family.prefixes(),
            read: RefCell::new(Vec::new()),
        }
    }

    /// The names read so far, in order.
    #[cfg(test)]
    pub(crate) fn read(&self) -> Vec<&'static str> {
        self.read.borrow().clone()
    }

    /// `VALIDATION_ERROR` with `detail`, as this family words it.
    pub(crate) fn refuse(&self, detail: impl std::fmt::Display) -> CommandReply {
        let message = if self.prefixed {
            format!("Validation error: {detail}")
        } else {
            detail.to_string()
        };
        CommandReply::error(ErrorCode::ValidationError, message)
    }

    /// The value of `arg`; `None` when absent or null.
    fn get(&self, arg: &Arg) -> Option<&'a Value> {
        self.read.borrow_mut().push(arg.name);
        self.args.get(arg.name).filter(|value| !value.is_null())
    }

    /// A JSON string; `""` counts as absent.
    pub(crate) fn string(&self, arg: &Arg) -> Result<Option<&'a str>, CommandReply> {
        match self.get(arg) {
            None => Ok(None),
            Some(Value::String(text)) if text.is_empty() => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.refuse(format!("'{}' must be a string", arg.name))),
        }
    }

    /// A string as given, or a number or boolean as its text (the original's `str()`).
    pub(crate) fn text(&self, arg: &Arg) -> Result<Option<String>, CommandReply> {
        match self.get(arg) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(scalar @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(scalar.to_string())),
            Some(_) => Err(self.refuse(format!("'{}' must be a string", arg.name))),
        }
    }

    /// Anything, as text: a string as given, any other value as its JSON. For a service
    /// that judges the argument itself, after checks of its own that come first.
    pub(crate) fn any_text(&self, arg: &Arg) -> Option<String> {
        self.get(arg).map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    /// Any value, as its JSON text.
    pub(crate) fn json(&self, arg: &Arg) -> Option<String> {
        self.get(arg).map(Value::to_string)
    }

    /// A JSON object.
    pub(crate) fn object(&self, arg: &Arg) -> Result<Option<&'a Map<String, Value>>, CommandReply> {
        match self.get(arg) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(object)),
            Some(_) => Err(self.refuse(format!("'{}' must be an object", arg.name))),
        }
    }

    /// A number, or a string holding one (the original's `float()`).
    pub(crate) fn number(&self, arg: &Arg) -> Result<Option<f64>, CommandReply> {
        let name = arg.name;
        match self.get(arg) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(text)) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| self.refuse(format!("'{name}' must be a number, not '{text}'"))),
            Some(_) => Err(self.refuse(format!("'{name}' must be a number"))),
        }
    }

    /// A whole number, or a string holding one (the original's `int()`); one beyond the
    /// range of an `i64` is its nearest bound.
    pub(crate) fn integer(&self, arg: &Arg) -> Result<Option<i64>, CommandReply> {
        let name = arg.name;
        let not = |shown: &dyn std::fmt::Display| {
            self.refuse(format!("'{name}' must be an integer, not '{shown}'"))
        };
        match self.get(arg) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Ok(Some(i)),
                (None, Some(_), _) => Ok(Some(i64::MAX)),
                // `as` saturates.
                (None, None, Some(f)) if f.is_finite() && f.fract() == 0.0 => Ok(Some(f as i64)),
                _ => Err(not(n)),
            },
            Some(Value::String(text)) => text.trim().parse().map(Some).map_err(|_| not(text)),
            Some(_) => Err(self.refuse(format!("'{name}' must be an integer"))),
        }
    }

    /// A JSON integer of zero or more.
    pub(crate) fn count(&self, arg: &Arg) -> Result<Option<u64>, CommandReply> {
        match self.get(arg) {
            None => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                self.refuse(format!("'{}' must be a non-negative integer", arg.name))
            }),
        }
    }

    /// A JSON integer from 1 to `max`; `default` when absent.
    pub(crate) fn limit(
        &self,
        arg: &Arg,
        default: usize,
        max: usize,
    ) -> Result<usize, CommandReply> {
        match self.get(arg) {
            None => Ok(default),
            Some(value) => match value.as_u64() {
                Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
                _ => Err(self.refuse(format!("'{}' must be an integer from 1 to {max}", arg.name))),
            },
        }
    }

    /// `true` or `false`; absent is false.
    pub(crate) fn flag(&self, arg: &Arg) -> Result<bool, CommandReply> {
        match self.get(arg) {
            None => Ok(false),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(_) => Err(self.refuse(format!("'{}' must be a boolean", arg.name))),
        }
    }

    /// A boolean, a number (non-zero is true), or true/false/yes/no/on/off/1/0 as text;
    /// absent is false.
    pub(crate) fn truthy(&self, arg: &Arg) -> Result<bool, CommandReply> {
        let refused = || self.refuse(format!("'{}' must be a boolean", arg.name));
        match self.get(arg) {
            None => Ok(false),
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

    /// An ISO 8601 timestamp (`Z` or an offset; naive means UTC); `INVALID_TIMESTAMP`
    /// otherwise.
    pub(crate) fn timestamp(&self, arg: &Arg) -> Result<Option<DateTime<Utc>>, CommandReply> {
        let invalid = || {
            CommandReply::error(
                ErrorCode::InvalidTimestamp,
                format!("Invalid '{}' timestamp format", arg.name),
            )
        };
        match self.get(arg) {
            None => Ok(None),
            Some(Value::String(text)) => Timestamp::parse(text)
                .map(|t| Some(t.to_utc()))
                .map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    /// `Missing required arguments: <names>`.
    pub(crate) fn missing(&self, args: &[&Arg]) -> CommandReply {
        let names: Vec<&str> = args.iter().map(|arg| arg.name).collect();
        self.refuse(format!("Missing required arguments: {}", names.join(", ")))
    }

    /// A room name.
    pub(crate) fn room(&self, room: &Arg) -> Result<RoomName, CommandReply> {
        let name = self.string(room)?.ok_or_else(|| self.missing(&[room]))?;
        RoomName::parse(name).map_err(|e| self.refuse(e))
    }

    /// A room and a channel: the first of `channel`'s spellings given. Every missing one
    /// is named, and every problem with the names.
    pub(crate) fn topic(&self, room: &Arg, channel: &[&Arg]) -> Result<Topic, CommandReply> {
        let room_name = self.string(room)?;
        let mut channel_name = None;
        for spelling in channel {
            if channel_name.is_none() {
                channel_name = self.string(spelling)?;
            }
        }
        let channel = channel.first().copied().unwrap_or(room);
        match (room_name, channel_name) {
            (Some(room), Some(channel)) => Topic::parse(room, channel).map_err(|errors| {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                self.refuse(text.join("; "))
            }),
            (None, None) => Err(self.missing(&[room, channel])),
            (None, Some(_)) => Err(self.missing(&[room])),
            (Some(_), None) => Err(self.missing(&[channel])),
        }
    }
}

/// `args` parsed as `R` by a command of `family`.
#[cfg(test)]
pub(crate) fn parse_as<R: Parse>(family: Family, args: Value) -> Result<R, CommandReply> {
    let args = args.as_object().cloned().unwrap_or_default();
    R::parse(&Reader::new(&args, family))
}

#[cfg(test)]
mod tests;
