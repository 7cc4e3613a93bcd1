//! A webhook rule: what is stored (one JSON value per rule in the rules bucket, key
//! `<tenant>.<rule_id>`), how a request becomes one (checked once, on receipt), and what
//! it matches.

use std::collections::BTreeMap;

use rand::Rng;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use arqon_proto::layout;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::Timestamp;

use crate::caller::Caller;
use crate::error::{ApiError, validation};

/// `timeout_seconds` when the request has none.
pub(crate) const DEFAULT_TIMEOUT_SECONDS: f64 = 2.0;
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest room or channel filter.
const MAX_FILTER_LEN: usize = 256;
/// Most headers a rule may add, and their total size in bytes.
const MAX_HEADERS: usize = 32;
const MAX_HEADER_BYTES: usize = 8192;
/// Headers the bus sets on every POST (or the HTTP client owns), which rules may not.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];
const RESERVED_PREFIX: &str = "x-arqon-";

/// One stored rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Rule {
    pub(crate) rule_id: String,
    pub(crate) tenant: String,
    pub(crate) owner_client_id: String,
    pub(crate) url: String,
    pub(crate) room: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) timeout_seconds: f64,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) persistent: bool,
    /// The HMAC-SHA256 key of `X-Arqon-Signature` (hex); shown once, at registration.
    pub(crate) secret: String,
    /// RFC 3339.
    pub(crate) created_at: String,
}

/// `Validation error: <detail>`, the text every `op.*` validation error has.
pub(crate) fn invalid(detail: impl std::fmt::Display) -> ApiError {
    validation(format!("Validation error: {detail}"))
}

impl Rule {
    /// A new rule of `caller` from its request: the URL's form, the filters, the timeout
    /// (at most `max_timeout_seconds`) and the headers are checked here; where the URL
    /// points is checked by the SSRF guard.
    pub(crate) fn from_request(
        caller: &Caller,
        request: pb::RegisterWebhookRequest,
        max_timeout_seconds: f64,
    ) -> Result<(Rule, url::Url), ApiError> {
        let url_text = request.url.trim();
        if url_text.is_empty() {
            return Err(invalid("'url' is required"));
        }
        let lower = url_text.get(..8).unwrap_or(url_text).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(invalid("'url' must start with http:// or https://"));
        }
        if url_text.len() > MAX_URL_LEN {
            return Err(invalid(format!(
                "'url' must be at most {MAX_URL_LEN} characters"
            )));
        }
        let url = url::Url::parse(url_text)
            .map_err(|e| invalid(format!("'url' is not a valid URL: {e}")))?;
        if url.host().is_none() {
            return Err(invalid("'url' must name a host"));
        }
        let timeout_seconds = request.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        // NaN is refused here too: it is not > 0.
        if timeout_seconds.is_nan() || timeout_seconds <= 0.0 {
            return Err(invalid("'timeout_seconds' must be > 0"));
        }
        if timeout_seconds > max_timeout_seconds {
            return Err(invalid(format!(
                "'timeout_seconds' must be <= {max_timeout_seconds}"
            )));
        }
        let rule = Rule {
            rule_id: new_rule_id(),
            tenant: caller.tenant.to_string(),
            owner_client_id: caller.client_id.to_string(),
            url: url_text.to_owned(),
            room: filter("room", request.room)?,
            channel: filter("channel", request.channel)?,
            timeout_seconds,
            headers: headers(request.headers)?,
            persistent: request.persistent,
            secret: new_secret(),
            created_at: Timestamp::now().to_rfc3339(),
        };
        Ok((rule, url))
    }

    /// Its key in the rules bucket.
    pub(crate) fn key(&self) -> String {
        layout::tenant_key(&self.tenant, &self.rule_id)
    }

    /// Whether a message to `room:channel` of its tenant matches: each filter it has
    /// equals the message's field (no filter matches everything).
    pub(crate) fn matches(&self, room: &str, channel: &str) -> bool {
        self.room.as_deref().is_none_or(|r| r == room)
            && self.channel.as_deref().is_none_or(|c| c == channel)
    }

    /// The answer form; the secret only when asked (in the answer to Register).
    pub(crate) fn to_pb(&self, with_secret: bool) -> pb::WebhookRule {
        pb::WebhookRule {
            rule_id: self.rule_id.clone(),
            url: self.url.clone(),
            room: self.room.clone(),
            channel: self.channel.clone(),
            timeout_seconds: self.timeout_seconds,
            created_at: self.created_at.clone(),
            owner_client_id: self.owner_client_id.clone(),
            tenant: self.tenant.clone(),
            persistent: self.persistent,
            secret: if with_secret {
                self.secret.clone()
            } else {
                String::new()
            },
        }
    }
}

/// Whether `text` has the form of a rule id (`wh_` and 12 lowercase hex digits), so it
/// is safe as a key and subject token.
pub(crate) fn is_rule_id(text: &str) -> bool {
    text.strip_prefix("wh_").is_some_and(|hex| {
        hex.len() == 12
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn new_rule_id() -> String {
    let bytes: [u8; 6] = rand::rng().random();
    format!("wh_{}", hex::encode(bytes))
}

fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// A room or channel filter: trimmed; empty is no filter.
fn filter(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > MAX_FILTER_LEN {
        return Err(invalid(format!(
            "'{name}' must be at most {MAX_FILTER_LEN} characters"
        )));
    }
    Ok(Some(value))
}

/// The rule's own headers: valid HTTP names and values, not the bus's own.
fn headers(
    headers: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let headers: BTreeMap<String, String> = headers.into_iter().collect();
    if headers.len() > MAX_HEADERS {
        return Err(invalid(format!(
            "'headers' may have at most {MAX_HEADERS} entries"
        )));
    }
    let size: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if size > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "'headers' must be at most {MAX_HEADER_BYTES} bytes"
        )));
    }
    for (name, value) in &headers {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("Invalid header name '{name}'")))?;
        if RESERVED_HEADERS.contains(&parsed.as_str())
            || parsed.as_str().starts_with(RESERVED_PREFIX)
        {
            return Err(invalid(format!(
                "Header '{name}' is set by the bus and cannot be overridden"
            )));
        }
        HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("Invalid value for header '{name}'")))?;
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{ClientId, EdgeId, TenantId};

    fn caller() -> Caller {
        Caller {
            tenant: TenantId::parse("t-a").unwrap(),
            client_id: ClientId::generate_on(&EdgeId::generate()),
            admin: false,
            subject: None,
            system: false,
        }
    }

    fn request(url: &str) -> pb::RegisterWebhookRequest {
        pb::RegisterWebhookRequest {
            url: url.into(),
            ..Default::default()
        }
    }

    fn refusal(request: pb::RegisterWebhookRequest) -> String {
        Rule::from_request(&caller(), request, 30.0)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_request_becomes_a_rule() {
        let mut req = request("  https://hooks.example.com/in  ");
        req.room = Some(" science ".into());
        req.channel = Some(String::new());
        req.headers
            .insert("Authorization".into(), "Bearer x".into());
        let (rule, url) = Rule::from_request(&caller(), req, 30.0).unwrap();
        assert!(is_rule_id(&rule.rule_id), "{}", rule.rule_id);
        assert_eq!(rule.url, "https://hooks.example.com/in");
        assert_eq!(url.host_str(), Some("hooks.example.com"));
        assert_eq!(rule.room.as_deref(), Some("science"));
        assert_eq!(rule.channel, None);
        assert_eq!(rule.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
        assert_eq!(rule.secret.len(), 64);
        assert_eq!(rule.key(), format!("t-a.{}", rule.rule_id));
        assert!(rule.matches("science", "anything"));
        assert!(!rule.matches("Science", "anything"));
        assert!(rule.to_pb(false).secret.is_empty());
        assert_eq!(rule.to_pb(true).secret, rule.secret);
        let stored: Rule = serde_json::from_slice(&serde_json::to_vec(&rule).unwrap()).unwrap();
        assert_eq!(stored, rule);
    }

    #[test]
    fn bad_requests_are_refused_with_the_original_texts() {
        assert_eq!(
            refusal(request("  ")),
            "Validation error: 'url' is required"
        );
        for bad in [
            "ftp://x",
            "example.com",
            "javascript:alert(1)",
            "file:///etc",
        ] {
            assert_eq!(
                refusal(request(bad)),
                "Validation error: 'url' must start with http:// or https://"
            );
        }
        assert!(
            refusal(request("http://")).starts_with("Validation error: 'url' is not a valid URL")
        );
        for timeout in [0.0, -1.0, f64::NAN] {
            let mut req = request("http://h");
            req.timeout_seconds = Some(timeout);
            assert_eq!(
                refusal(req),
                "Validation error: 'timeout_seconds' must be > 0"
            );
        }
        let mut req = request("http://h");
        req.timeout_seconds = Some(31.0);
        assert_eq!(
            refusal(req),
            "Validation error: 'timeout_seconds' must be <= 30"
        );
        for (name, message) in [
            (
                "bad name",
                "Validation error: Invalid header name 'bad name'",
            ),
            (
                "X-Arqon-Signature",
                "Validation error: Header 'X-Arqon-Signature' is set by the bus and cannot be overridden",
            ),
            (
                "Host",
                "Validation error: Header 'Host' is set by the bus and cannot be overridden",
            ),
        ] {
            let mut req = request("http://h");
            req.headers.insert(name.into(), "v".into());
            assert_eq!(refusal(req), message);
        }
        let mut req = request("http://h");
        req.headers.insert("X-Ok".into(), "line\nbreak".into());
        assert_eq!(
            refusal(req),
            "Validation error: Invalid value for header 'X-Ok'"
        );
    }

    #[test]
    fn rule_ids_are_checked() {
        assert!(is_rule_id("wh_0123456789ab"));
        for bad in [
            "wh_0123456789AB",
            "wh_0123",
            "xx_0123456789ab",
            "wh_0123456789ab.x",
        ] {
            assert!(!is_rule_id(bad), "{bad}");
        }
    }
}
