//! Identifiers: message ids, client (connection) ids and edge ids.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest id accepted from a client. The original's ids are at most ~50 characters;
/// the bound keeps a hostile id from being echoed back in every reply at full size.
const MAX_MESSAGE_ID_LEN: usize = 128;

/// A message id: `arq_<start ns>_<counter>_<6 hex>` (generated here and by the original),
/// or `arq_<26-character ULID>` (accepted from clients).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

/// A client sent an id that is not in one of the accepted formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("Message ID is required")]
    Empty,
    #[error("Invalid message ID format: {0}")]
    Format(String),
}

struct Generator {
    start_ns: u128,
    counter: AtomicU64,
}

fn generator() -> &'static Generator {
    static GENERATOR: OnceLock<Generator> = OnceLock::new();
    GENERATOR.get_or_init(|| Generator {
        start_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
        counter: AtomicU64::new(0),
    })
}

impl MessageId {
    /// A new id, unique within this process and very likely across processes.
    pub fn generate() -> Self {
        let g = generator();
        let n = g.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let suffix = rand::random::<u32>() & 0x00ff_ffff;
        Self(format!("arq_{}_{n}_{suffix:06x}", g.start_ns))
    }

    /// Validates an id written by a client.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.len() <= MAX_MESSAGE_ID_LEN && is_valid_message_id(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(IdError::Format(
                text.chars().take(MAX_MESSAGE_ID_LEN).collect(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_valid_message_id(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("arq_") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    match parts.as_slice() {
        [ulid] => is_ulid(ulid),
        [start, counter, suffix] => {
            is_decimal(start)
                && is_decimal(counter)
                && suffix.len() == 6
                && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        }
        _ => false,
    }
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// 26 characters of Crockford base32 (no I, L, O, U), case-insensitive.
fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes().all(|b| {
            let b = b.to_ascii_uppercase();
            b.is_ascii_digit()
                || (b.is_ascii_uppercase() && !matches!(b, b'I' | b'L' | b'O' | b'U'))
        })
}

/// The id of one WebSocket connection: `arq_client_<32 lowercase hex>`, new per connection,
/// the format of the original.
///
/// The first 16 hex digits are those of the edge holding the connection, so anything that
/// knows a client id knows where to send it a frame (private messages), without a
/// directory to keep up to date. The last 16 are random. It is also a safe subject token.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

impl ClientId {
    pub const PREFIX: &'static str = "arq_client_";

    /// A new id for a connection held by `edge`.
    pub fn generate_on(edge: &EdgeId) -> Self {
        let edge_hex = &edge.0[EdgeId::PREFIX.len()..];
        Self(format!(
            "{}{edge_hex}{:016x}",
            Self::PREFIX,
            rand::random::<u64>()
        ))
    }

    /// The edge that holds (or held) this connection.
    pub fn edge(&self) -> EdgeId {
        EdgeId(format!(
            "{}{}",
            EdgeId::PREFIX,
            &self.0[Self::PREFIX.len()..Self::PREFIX.len() + 16]
        ))
    }

    /// Accepts a client id in the generated format.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(Self::PREFIX)?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of one edge process, used to address replies to the edge holding a connection.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeId(String);

impl EdgeId {
    pub const PREFIX: &'static str = "edge_";

    pub fn generate() -> Self {
        Self(format!("{}{:016x}", Self::PREFIX, rand::random::<u64>()))
    }

    /// Accepts an edge id in the generated format.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix(Self::PREFIX)?;
        (hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id_traits {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_id_traits!(MessageId, ClientId, EdgeId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptance_ids_of_the_original() {
        // Acceptance scenario 9 of the original.
        assert!(MessageId::parse("arq_1700000000000000000_7_c0ffee").is_ok());
        assert!(MessageId::parse("arq_01HZZZZZZZZZZZZZZZZZZZZZZZ").is_ok());
        assert_eq!(
            MessageId::parse("arq_invalid"),
            Err(IdError::Format("arq_invalid".into()))
        );
        assert!(MessageId::parse("arq_1700000000000000000_notint_c0ffee").is_err());
        // The documentation's examples were never valid.
        assert!(MessageId::parse("arq_msg_001").is_err());
        assert_eq!(MessageId::parse(""), Err(IdError::Empty));
    }

    #[test]
    fn near_misses_are_refused() {
        for id in [
            "arq_1_2_c0ffe",
            "arq_1_2_c0ffeee",
            "arq_1_2_g0ffee",
            "arq__2_c0ffee",
            "arq_1_2_c0ffee_",
            "arq_01HZZZZZZZZZZZZZZZZZZZZZZI",
            "xyz_1_2_c0ffee",
        ] {
            assert!(MessageId::parse(id).is_err(), "{id}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = MessageId::generate();
        let b = MessageId::generate();
        assert_ne!(a, b);
        assert!(MessageId::parse(a.as_str()).is_ok(), "{a}");
    }

    #[test]
    fn client_and_edge_ids_round_trip() {
        let e = EdgeId::generate();
        let c = ClientId::generate_on(&e);
        assert_eq!(c.as_str().len(), ClientId::PREFIX.len() + 32);
        assert_eq!(ClientId::parse(c.as_str()), Some(c.clone()));
        assert_eq!(c.edge(), e);
        assert_ne!(ClientId::generate_on(&e), c, "the random half differs");
        assert_eq!(ClientId::parse("arq_client_XYZ"), None);
        assert_eq!(EdgeId::parse(e.as_str()), Some(e));
        assert_eq!(EdgeId::parse("edge_.>"), None);
    }
}
