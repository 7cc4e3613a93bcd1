//! Envelope timestamps: ISO 8601 in, RFC 3339 with an explicit offset out.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Utc};

/// An instant with the UTC offset it was written in.
///
/// Input accepts RFC 3339 (`Z` or `±hh:mm`) and naive ISO 8601 date-times, which are read
/// as UTC, as the original did. Output is always RFC 3339 with microseconds and an
/// explicit offset (`2026-02-18T12:00:00.123456+00:00`): a `Z` written by a client comes
/// back as `+00:00`, and the server's own timestamps are UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<FixedOffset>);

/// A timestamp that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("Timestamp must be an ISO 8601 date-time: {0}")]
    Unparsable(String),
    #[error("Timestamp is out of range")]
    OutOfRange,
}

const NAIVE_FORMATS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

impl Timestamp {
    /// The current time, in UTC.
    pub fn now() -> Self {
        Self(Utc::now().fixed_offset())
    }

    /// Reads an ISO 8601 date-time.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let text = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(Self(t));
        }
        NAIVE_FORMATS
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
            .map(|naive| Self(naive.and_utc().fixed_offset()))
            .ok_or_else(|| TimestampError::Unparsable(text.chars().take(64).collect()))
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The offset from UTC, in seconds east.
    pub fn offset_seconds(&self) -> i32 {
        self.0.offset().local_minus_utc()
    }

    /// Rebuilds a timestamp from its parts (as carried by the internal envelope).
    pub fn from_unix_micros(micros: i64, offset_seconds: i32) -> Result<Self, TimestampError> {
        let offset = FixedOffset::east_opt(offset_seconds).ok_or(TimestampError::OutOfRange)?;
        let utc = DateTime::from_timestamp_micros(micros).ok_or(TimestampError::OutOfRange)?;
        Ok(Self(utc.with_timezone(&offset)))
    }

    /// The instant in UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }

    /// RFC 3339 with microseconds and an explicit offset.
    pub fn to_rfc3339(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, false)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t.fixed_offset())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_is_accepted_and_emitted_as_an_offset() {
        let t = Timestamp::parse("2026-02-18T12:00:00.123456Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-02-18T12:00:00.123456+00:00");
    }

    #[test]
    fn explicit_offsets_are_kept() {
        let t = Timestamp::parse("2026-02-18T12:00:00+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-02-18T12:00:00.000000+02:00");
        assert_eq!(t.offset_seconds(), 7200);
    }

    #[test]
    fn naive_strings_are_utc() {
        for text in [
            "2026-02-18T12:00:00.5",
            "2026-02-18 12:00:00",
            "2026-02-18T12:00",
        ] {
            let t = Timestamp::parse(text).unwrap();
            assert_eq!(t.offset_seconds(), 0, "{text}");
            assert!(t.to_rfc3339().starts_with("2026-02-18T12:00:0"), "{text}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        for text in ["", "yesterday", "2026-13-01T00:00:00Z", "12:00"] {
            assert!(Timestamp::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn micros_round_trip() {
        let t = Timestamp::parse("2026-02-18T12:00:00.654321-05:30").unwrap();
        let back = Timestamp::from_unix_micros(t.unix_micros(), t.offset_seconds()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.to_rfc3339(), "2026-02-18T12:00:00.654321-05:30");
    }
}
