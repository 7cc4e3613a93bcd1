//! Tenant, room and channel names: the tokens that become parts of NATS subjects.
//!
//! A name is either a safe subject token or refused. It is never escaped or rewritten:
//! rewriting (as the original shield did, `a.b` → `a_b`) makes two different names share
//! one subject, which is how one tenant ends up in another's space.

use std::fmt;

/// Why a name was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {kind} name '{shown}': use 1-{max} characters from A-Z, a-z, 0-9, '-' and '_'")]
pub struct NameError {
    kind: &'static str,
    shown: String,
    max: usize,
}

fn check(kind: &'static str, max: usize, text: &str) -> Result<(), NameError> {
    let ok = !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            shown: text.chars().take(max).collect(),
            max,
        })
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted name, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Accepts `text` if it is a safe subject token.
            pub fn parse(text: &str) -> Result<Self, NameError> {
                check($kind, $max, text).map(|()| Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A tenant: the isolation boundary. Taken from the verified token, never from a frame.
    TenantId,
    "tenant",
    64
);
name_type!(
    /// A room name, unique within a tenant.
    RoomName,
    "room",
    128
);
name_type!(
    /// A channel name, unique within a room.
    ChannelName,
    "channel",
    128
);

impl TenantId {
    /// The tenant of connections whose token names none (or when authentication is off).
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }
}

/// A `room:channel` pair: what clients join and publish to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic {
    pub room: RoomName,
    pub channel: ChannelName,
}

impl Topic {
    pub fn new(room: RoomName, channel: ChannelName) -> Self {
        Self { room, channel }
    }

    /// Parses both names, reporting every problem.
    pub fn parse(room: &str, channel: &str) -> Result<Self, Vec<NameError>> {
        match (RoomName::parse(room), ChannelName::parse(channel)) {
            (Ok(room), Ok(channel)) => Ok(Self { room, channel }),
            (room, channel) => Err([room.err(), channel.err()].into_iter().flatten().collect()),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.room, self.channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_accepted() {
        for name in [
            "science",
            "general",
            "secure-room",
            "pii_payroll",
            "A1",
            "x",
        ] {
            assert_eq!(RoomName::parse(name).unwrap().as_str(), name);
        }
        assert!(TenantId::parse(&"t".repeat(64)).is_ok());
        assert!(RoomName::parse(&"r".repeat(128)).is_ok());
    }

    #[test]
    fn unsafe_names_are_refused_not_rewritten() {
        for name in [
            "",
            "a.b",
            "a b",
            "*",
            ">",
            "a>",
            "room:chan",
            "é",
            "a\nb",
            "$JS",
            "a/b",
        ] {
            assert!(RoomName::parse(name).is_err(), "{name:?}");
            assert!(TenantId::parse(name).is_err(), "{name:?}");
        }
        assert!(TenantId::parse(&"t".repeat(65)).is_err());
        assert!(ChannelName::parse(&"c".repeat(129)).is_err());
    }

    #[test]
    fn errors_name_the_kind_and_the_rule() {
        let err = ChannelName::parse("a.b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid channel name 'a.b': use 1-128 characters from A-Z, a-z, 0-9, '-' and '_'"
        );
        assert_eq!(Topic::parse("a.b", "c d").unwrap_err().len(), 2);
    }
}
