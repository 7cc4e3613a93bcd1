//! What the bucket holds for a store key: the value and when it expires, or the mark
//! of a sweep that is deleting it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One stored record, as JSON: `{"value": …, "expires_at_ms": …}` for a value,
/// `{"swept_at_ms": …}` while a sweep deletes an expired one.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    swept_at_ms: Option<i64>,
}

/// A record, as of a given instant.
#[derive(Debug)]
pub(crate) enum Record {
    /// A value that has not expired.
    Live {
        value: Box<RawValue>,
        expires_at_ms: Option<i64>,
    },
    /// A value past its expiry: absent to every reader, not yet swept.
    Expired { expires_at_ms: i64 },
    /// A sweep claimed it (at `since_ms`) and is deleting it: absent too.
    Sweeping { since_ms: i64 },
}

impl Record {
    /// The record in `bytes` as of `now_ms`; `None` if it is not one this service wrote.
    pub(crate) fn read(bytes: &[u8], now_ms: i64) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        match (stored.value, stored.expires_at_ms, stored.swept_at_ms) {
            (Some(_), Some(at), None) if at <= now_ms => {
                Some(Record::Expired { expires_at_ms: at })
            }
            (Some(value), expires_at_ms, None) => Some(Record::Live {
                value,
                expires_at_ms,
            }),
            (None, None, Some(since_ms)) => Some(Record::Sweeping { since_ms }),
            _ => None,
        }
    }

    /// Whether a reader sees a value.
    pub(crate) fn is_live(&self) -> bool {
        matches!(self, Record::Live { .. })
    }
}

/// The record of `value` (JSON text), expiring at `expires_at_ms` if set.
pub(crate) fn value(value: &RawValue, expires_at_ms: Option<i64>) -> Bytes {
    encode(&Stored {
        value: Some(value.to_owned()),
        expires_at_ms,
        swept_at_ms: None,
    })
}

/// The mark of a sweep deleting an expired value.
pub(crate) fn sweeping(now_ms: i64) -> Bytes {
    encode(&Stored {
        value: None,
        expires_at_ms: None,
        swept_at_ms: Some(now_ms),
    })
}

fn encode(stored: &Stored) -> Bytes {
    // A struct of a raw JSON value and integers always serializes.
    Bytes::from(serde_json::to_vec(stored).unwrap_or_default())
}

/// Bytes a record adds around its value, at most.
pub(crate) const OVERHEAD: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn records_read_as_of_an_instant() {
        let forever = value(&raw(r#"{"a":[1,2]}"#), None);
        match Record::read(&forever, i64::MAX) {
            Some(Record::Live {
                value,
                expires_at_ms: None,
            }) => assert_eq!(value.get(), r#"{"a":[1,2]}"#),
            other => panic!("{other:?}"),
        }
        let expiring = value(&raw("\"v\""), Some(1_000));
        assert!(Record::read(&expiring, 999).unwrap().is_live());
        assert!(matches!(
            Record::read(&expiring, 1_000),
            Some(Record::Expired {
                expires_at_ms: 1_000
            })
        ));
        assert!(matches!(
            Record::read(&sweeping(5), 0),
            Some(Record::Sweeping { since_ms: 5 })
        ));
        assert!(Record::read(b"not json", 0).is_none());
        assert!(Record::read(b"{}", 0).is_none());
    }

    #[test]
    fn the_overhead_is_bounded() {
        let record = value(&raw("1"), Some(i64::MIN));
        assert!(record.len() - 1 <= OVERHEAD, "{}", record.len());
    }
}
