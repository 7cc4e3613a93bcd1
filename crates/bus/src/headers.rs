//! Message headers: a small list of (name, value) string pairs.

use crate::error::BusError;

/// Message headers, e.g. the W3C `traceparent`.
///
/// Kept in one canonical form so that both backends hand back exactly what a service
/// would see from NATS: entries are sorted by name (byte order, case-sensitive), several
/// values of one name keep their insertion order, and values are trimmed of surrounding
/// whitespace (the NATS header parser trims them on receipt). Names are ASCII graphic
/// characters without `:`; values carry no CR or LF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

/// Header names with this prefix (any case) are set by the server (stream sequence,
/// timestamps, expectations); stored messages never return them.
const RESERVED_PREFIX: &str = "nats-";

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The W3C trace context of `span` (`traceparent`, `tracestate`), so the next hop
    /// continues its trace; empty when tracing is off or the span is not traced.
    pub fn trace_context(span: &tracing::Span) -> Headers {
        let mut headers = Headers::new();
        arqon_telemetry::traces::inject(span, |name, value| {
            // Trace context values are visible ASCII: always valid headers.
            let _ = headers.insert(name, value);
        });
        headers
    }

    /// [`Headers::trace_context`] of the current span.
    pub fn current_trace_context() -> Headers {
        Headers::trace_context(&tracing::Span::current())
    }

    /// Sets `name` to `value`, replacing any values it had.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<&mut Headers, BusError> {
        let name = name.into();
        let value = canonical_value(value.into())?;
        validate_name(&name)?;
        self.entries.retain(|(n, _)| *n != name);
        self.push_sorted(name, value);
        Ok(self)
    }

    /// Adds `value` to `name`, after any values it has.
    pub fn append(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<&mut Headers, BusError> {
        let name = name.into();
        let value = canonical_value(value.into())?;
        validate_name(&name)?;
        self.push_sorted(name, value);
        Ok(self)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in insertion order.
    pub fn get_all(&self, name: &str) -> impl Iterator<Item = &str> + use<'_> {
        let start = self.entries.partition_point(|(n, _)| n.as_str() < name);
        let end = self.entries.partition_point(|(n, _)| n.as_str() <= name);
        self.entries[start..end].iter().map(|(_, v)| v.as_str())
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n != name);
    }

    /// All (name, value) pairs, sorted by name.
    pub fn iter(&self) -> Iter<'_> {
        self.entries.iter().map(pair)
    }

    /// Number of (name, value) pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No headers at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push_sorted(&mut self, name: String, value: String) {
        let at = self.entries.partition_point(|(n, _)| *n <= name);
        self.entries.insert(at, (name, value));
    }

    /// Bytes the header block takes on the NATS wire (as async-nats counts it against
    /// the server's max payload); zero when there are no headers.
    pub(crate) fn wire_len(&self) -> usize {
        if self.entries.is_empty() {
            return 0;
        }
        let framing = "NATS/1.0\r\n".len() + "\r\n".len();
        framing
            + self
                .entries
                .iter()
                .map(|(n, v)| n.len() + ": ".len() + v.len() + "\r\n".len())
                .sum::<usize>()
    }

    /// Drops the server-set `Nats-*` headers (see [`RESERVED_PREFIX`]).
    pub(crate) fn without_reserved(mut self) -> Headers {
        self.entries.retain(|(n, _)| !is_reserved(n));
        self
    }

    pub(crate) fn to_nats(&self) -> async_nats::HeaderMap {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in &self.entries {
            // Both were validated on the way in, so these conversions cannot fail; a
            // header that somehow does not convert is left out rather than panicking.
            if let (Ok(name), Ok(value)) = (
                name.parse::<async_nats::HeaderName>(),
                value.parse::<async_nats::HeaderValue>(),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    pub(crate) fn from_nats(map: &async_nats::HeaderMap) -> Headers {
        let mut entries: Vec<(String, String)> = Vec::with_capacity(map.len());
        for (name, values) in map.iter() {
            let name: &str = name.as_ref();
            for value in values {
                entries.push((name.to_owned(), value.as_str().trim().to_owned()));
            }
        }
        // Stable: the values of one name stay in their order.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Headers { entries }
    }
}

/// Iterator over the (name, value) pairs of [`Headers`].
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, String)>,
    fn(&'a (String, String)) -> (&'a str, &'a str),
>;

fn pair(entry: &(String, String)) -> (&str, &str) {
    (entry.0.as_str(), entry.1.as_str())
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

fn is_reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len()
        && name.as_bytes()[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
}

fn validate_name(name: &str) -> Result<(), BusError> {
    if name.is_empty() || name.chars().any(|c| !c.is_ascii_graphic() || c == ':') {
        return Err(BusError::InvalidHeader(format!(
            "header name {name:?} must be non-empty ASCII without spaces, controls or ':'"
        )));
    }
    Ok(())
}

fn canonical_value(value: String) -> Result<String, BusError> {
    if value.contains(['\r', '\n']) {
        return Err(BusError::InvalidHeader(
            "header value must not contain CR or LF".into(),
        ));
    }
    let trimmed = value.trim();
    Ok(if trimmed.len() == value.len() {
        value
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_append_keeps_order_and_names_sort() {
        let mut h = Headers::new();
        h.insert("traceparent", "00-a-b-01").unwrap();
        h.append("b", "1").unwrap().append("b", "2").unwrap();
        h.insert("a", " spaced ").unwrap();
        assert_eq!(h.get("a"), Some("spaced"));
        assert_eq!(h.get_all("b").collect::<Vec<_>>(), vec!["1", "2"]);
        h.insert("b", "3").unwrap();
        assert_eq!(h.get_all("b").collect::<Vec<_>>(), vec!["3"]);
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["a", "b", "traceparent"]);
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.get("B"), None, "names are case-sensitive, as in NATS");
        h.remove("a");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn rejects_what_nats_cannot_carry() {
        let mut h = Headers::new();
        assert!(matches!(h.insert("", "v"), Err(BusError::InvalidHeader(_))));
        assert!(matches!(
            h.insert("a b", "v"),
            Err(BusError::InvalidHeader(_))
        ));
        assert!(matches!(
            h.insert("a:b", "v"),
            Err(BusError::InvalidHeader(_))
        ));
        assert!(matches!(
            h.insert("é", "v"),
            Err(BusError::InvalidHeader(_))
        ));
        assert!(matches!(
            h.insert("a", "x\r\ny"),
            Err(BusError::InvalidHeader(_))
        ));
        assert!(h.is_empty());
    }

    #[test]
    fn nats_round_trip_and_wire_len() {
        let mut h = Headers::new();
        h.insert("x-one", "1").unwrap();
        h.append("x-two", "a").unwrap();
        h.append("x-two", "b").unwrap();
        let map = h.to_nats();
        assert_eq!(Headers::from_nats(&map), h);
        let expected = "NATS/1.0\r\nx-one: 1\r\nx-two: a\r\nx-two: b\r\n\r\n".len();
        assert_eq!(h.wire_len(), expected);
        assert_eq!(Headers::new().wire_len(), 0);
    }

    #[test]
    fn reserved_headers_are_dropped() {
        let mut h = Headers::new();
        h.insert("Nats-Sequence", "4").unwrap();
        h.insert("NATS-Stream", "s").unwrap();
        h.insert("app", "x").unwrap();
        let h = h.without_reserved();
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("app", "x")]);
    }
}
