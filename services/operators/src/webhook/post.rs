//! One POST of one delivery, and what its answer means for the next step.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, redirect};

use arqon_telemetry::traces;

use super::rule::Rule;
use super::signature::{
    ATTEMPT_HEADER, DELIVERY_ID_HEADER, RULE_ID_HEADER, SIGNATURE_HEADER, sign,
};
use super::ssrf::{self, GuardedResolver, TargetError};

/// Bound on connecting (the rule's timeout bounds the whole attempt as well).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest error text kept for a dead letter.
const MAX_ERROR_LEN: usize = 300;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The endpoint answered 2xx.
    Delivered,
    /// It did not; `retry` when another attempt may succeed (connection failures,
    /// timeouts, 408, 429 and 5xx answers).
    Failed { error: String, retry: bool },
}

impl Attempt {
    fn retry(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retry: true,
        }
    }

    fn permanent(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            retry: false,
        }
    }
}

/// The HTTP client of one replica's deliveries.
#[derive(Debug, Clone)]
pub(crate) struct Poster {
    client: reqwest::Client,
    allow_private: bool,
}

impl Poster {
    /// No redirects (a redirect could lead anywhere), no proxies from the environment (a
    /// proxy would resolve names itself), and, unless private targets are allowed, names
    /// resolved through the SSRF guard.
    pub(crate) fn new(allow_private: bool, concurrency_per_rule: usize) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(concurrency_per_rule)
            .user_agent(concat!("arqonbus-webhook/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// POSTs `body` for `rule`, signed with its secret; `attempt` counts from 1.
    pub(crate) async fn post(
        &self,
        rule: &Rule,
        body: Vec<u8>,
        delivery_id: &str,
        attempt: u32,
    ) -> Attempt {
        let url = match url::Url::parse(&rule.url) {
            Ok(url) => url,
            Err(e) => return Attempt::permanent(format!("invalid URL: {e}")),
        };
        if !self.allow_private
            && let Err(refused) = ssrf::check_literal(&url)
        {
            return Attempt::permanent(refused.to_string());
        }
        let headers = match headers(rule, &body, delivery_id, attempt) {
            Ok(headers) => headers,
            Err(error) => return Attempt::permanent(error),
        };
        let mut headers = headers;
        // The receiver can continue the message's trace (W3C `traceparent`).
        traces::inject(&tracing::Span::current(), |name, value| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        });
        let timeout = Duration::from_secs_f64(rule.timeout_seconds);
        let sent = self
            .client
            .post(url)
            .timeout(timeout)
            .headers(headers)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                tracing::Span::current()
                    .record("http.response.status_code", response.status().as_u16());
                judge(response.status())
            }
            Err(error) => failure(&error),
        }
    }
}

/// `Content-Type`, then the rule's headers (which may replace it), then the bus's own.
fn headers(rule: &Rule, body: &[u8], delivery_id: &str, attempt: u32) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in &rule.headers {
        // Checked at registration; a stored rule that fails here cannot be sent.
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name '{name}'"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header '{name}'"))?;
        headers.insert(name, value);
    }
    let own = [
        (SIGNATURE_HEADER, sign(&rule.secret, body)),
        (RULE_ID_HEADER, rule.rule_id.clone()),
        (DELIVERY_ID_HEADER, delivery_id.to_owned()),
        (ATTEMPT_HEADER, attempt.to_string()),
    ];
    for (name, value) in own {
        let value = HeaderValue::from_str(&value).map_err(|_| format!("invalid {name}"))?;
        headers.insert(HeaderName::from_static(name), value);
    }
    Ok(headers)
}

/// What an answer's status means.
fn judge(status: StatusCode) -> Attempt {
    if status.is_success() {
        Attempt::Delivered
    } else if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Attempt::retry(format!("HTTP {status}"))
    } else if status.is_redirection() {
        Attempt::permanent(format!("HTTP {status} (redirects are not followed)"))
    } else {
        Attempt::permanent(format!("HTTP {status}"))
    }
}

/// What a request that got no answer means.
fn failure(error: &reqwest::Error) -> Attempt {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(inner) = cause {
        if let Some(refused) = inner.downcast_ref::<TargetError>() {
            return Attempt::permanent(refused.to_string());
        }
        cause = inner.source();
    }
    let what = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        describe(error)
    };
    Attempt::retry(what)
}

/// The error and its causes, shortened.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decide_between_success_retry_and_giving_up() {
        assert_eq!(judge(StatusCode::OK), Attempt::Delivered);
        assert_eq!(judge(StatusCode::NO_CONTENT), Attempt::Delivered);
        for retried in [500, 502, 503, 504, 408, 429] {
            let status = StatusCode::from_u16(retried).unwrap();
            assert!(
                matches!(judge(status), Attempt::Failed { retry: true, .. }),
                "{retried}"
            );
        }
        for permanent in [400, 401, 403, 404, 410, 422, 301, 302, 307] {
            let status = StatusCode::from_u16(permanent).unwrap();
            assert!(
                matches!(judge(status), Attempt::Failed { retry: false, .. }),
                "{permanent}"
            );
        }
    }

    #[test]
    fn rule_headers_may_replace_the_content_type_but_not_the_signature() {
        let rule = Rule {
            rule_id: "wh_0123456789ab".into(),
            tenant: "t-a".into(),
            owner_client_id: "c".into(),
            url: "http://h/".into(),
            room: None,
            channel: None,
            timeout_seconds: 2.0,
            headers: [
                (
                    "Content-Type".to_owned(),
                    "application/vnd.x+json".to_owned(),
                ),
                ("X-Custom".to_owned(), "1".to_owned()),
            ]
            .into(),
            persistent: false,
            secret: "key".into(),
            created_at: String::new(),
        };
        let headers = headers(&rule, b"{}", "7-wh_0123456789ab", 2).unwrap();
        assert_eq!(headers[CONTENT_TYPE], "application/vnd.x+json");
        assert_eq!(headers.get_all(CONTENT_TYPE).iter().count(), 1);
        assert_eq!(headers["x-custom"], "1");
        assert_eq!(headers[SIGNATURE_HEADER], sign("key", b"{}").as_str());
        assert_eq!(headers[RULE_ID_HEADER], "wh_0123456789ab");
        assert_eq!(headers[DELIVERY_ID_HEADER], "7-wh_0123456789ab");
        assert_eq!(headers[ATTEMPT_HEADER], "2");
    }
}
