//! `/console/feed?feed=<name>`: a WebSocket that forwards, as they happen, events no
//! command returns: `casil` (the policy stage's decision events) and `dead_letters`
//! (webhook deliveries that ran out of attempts). For a tenant admin its tenant's; for the
//! system authority every tenant's. Each frame is
//! `{"feed", "tenant", "event"}`; `{"feed", "dropped": n}` says events were dropped.
//!
//! Bounded three ways: feeds per edge (`ARQONBUS_CONSOLE_MAX_FEEDS`, then 503), events
//! per second per feed (`ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND`, then dropped and
//! counted), and a write that makes no progress (`ARQONBUS_WRITE_STALL_TIMEOUT_SECONDS`,
//! then the feed is closed). A feed ends with its credentials (4001), on shutdown (1001),
//! and when the console closes it.
//!
//! Who may open one is the one rule decided here rather than by the dispatcher: a feed is
//! neither a command nor a room, so no command path exists to reuse. It is the
//! dispatcher's own test of an admin (`Role::is_admin`, `Identity::system`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::debug;

use arqon_bus::Subscription;
use arqon_protocol::subject;

use super::metrics::{FeedRefusal, Forwarded};
use crate::auth::{self, Grant};
use crate::{Shared, close_code, unavailable};

/// Frames a feed's client may send are only closes and pings: anything larger is
/// refused by the WebSocket layer.
const MAX_INCOMING: usize = 1024;

/// How often a feed that dropped events says how many.
const DROPPED_NOTICE: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
pub(super) struct FeedQuery {
    feed: Option<String>,
}

/// A feed the console may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Casil,
    DeadLetters,
}

impl Feed {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "casil" => Some(Feed::Casil),
            "dead_letters" => Some(Feed::DeadLetters),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Feed::Casil => "casil",
            Feed::DeadLetters => "dead_letters",
        }
    }

    /// The subject it follows for `grant`.
    fn subject(self, grant: &Grant) -> String {
        match (self, grant.system) {
            (Feed::Casil, true) => subject::CASIL_EVENTS_ALL.to_owned(),
            (Feed::Casil, false) => subject::casil_events(&grant.tenant),
            (Feed::DeadLetters, true) => subject::WEBHOOK_DEAD_ALL.to_owned(),
            (Feed::DeadLetters, false) => subject::webhook_dead(&grant.tenant),
        }
    }

    /// What the console is shown of one event. A decision event is forwarded as the
    /// policy stage published it: it holds a payload only when the policy says decisions
    /// may carry one. A dead letter without the body it failed to deliver: its size only.
    fn event(self, payload: &[u8]) -> Option<Value> {
        let mut event: Value = serde_json::from_slice(payload).ok()?;
        if self == Feed::DeadLetters
            && let Value::Object(letter) = &mut event
            && let Some(body) = letter.remove("body")
        {
            letter.insert("body_bytes".to_owned(), Value::from(body.to_string().len()));
        }
        Some(event)
    }
}

fn refusal(status: StatusCode, details: &str) -> Response {
    let error = status.canonical_reason().unwrap_or("Refused");
    (status, Json(json!({ "error": error, "details": details }))).into_response()
}

pub(super) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<FeedQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let console = &shared.metrics.console;
    if shared.shutdown.is_cancelled() {
        return unavailable("Server is shutting down; connect again, possibly elsewhere");
    }
    let grant = match shared.authenticate(&headers, &uri).await {
        Ok(grant) => grant,
        Err(e) => {
            console.refused(FeedRefusal::Unauthorized);
            return e.into_response();
        }
    };
    let Some(feed) = query
        .ok()
        .and_then(|Query(q)| q.feed)
        .as_deref()
        .and_then(Feed::parse)
    else {
        console.refused(FeedRefusal::UnknownFeed);
        return refusal(
            StatusCode::BAD_REQUEST,
            "Name a feed: ?feed=casil or ?feed=dead_letters",
        );
    };
    if !(grant.system || grant.role.is_admin()) {
        console.refused(FeedRefusal::Forbidden);
        return refusal(
            StatusCode::FORBIDDEN,
            "Console feeds are for tenant admins and the system authority",
        );
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let max = shared.config.console_max_feeds as usize;
    if shared.feeds.fetch_add(1, Ordering::AcqRel) >= max {
        shared.feeds.fetch_sub(1, Ordering::AcqRel);
        console.refused(FeedRefusal::Full);
        return unavailable(
            "This edge has as many console feeds open as it may (ARQONBUS_CONSOLE_MAX_FEEDS); close one or try later",
        );
    }
    let place = Place(Arc::clone(&shared));
    let events = match shared.bus.subscribe(feed.subject(&grant)).await {
        Ok(events) => events,
        Err(e) => {
            debug!(error = %e, "cannot subscribe a console feed");
            return unavailable("The bus is unavailable; try again");
        }
    };
    let task = shared.tasks.token();
    ws.protocols([auth::PROTOCOL])
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| async move {
            run(socket, &place.0, feed, &grant, events).await;
            drop(place);
            drop(task);
        })
}

/// A feed's place on the edge, given back when dropped.
struct Place(Arc<Shared>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.feeds.fetch_sub(1, Ordering::AcqRel);
    }
}

/// When `grant`'s credentials run out, with the edge's leeway.
fn expiry(shared: &Shared, grant: &Grant) -> Option<Instant> {
    let exp = grant.expires_at?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Some(Instant::now() + Duration::from_secs(exp.saturating_sub(now)) + shared.config.leeway())
}

async fn run(
    mut socket: WebSocket,
    shared: &Shared,
    feed: Feed,
    grant: &Grant,
    mut events: Subscription,
) {
    let console = &shared.metrics.console;
    console.feeds.inc();
    let per_second =
        NonZeroU32::new(shared.config.console_feed_events_per_second).unwrap_or(NonZeroU32::MIN);
    let limiter = RateLimiter::direct(Quota::per_second(per_second));
    let stall = shared.config.write_stall_timeout();
    let expires = expiry(shared, grant);
    let expired = async {
        match expires {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let mut notices = tokio::time::interval(DROPPED_NOTICE);
    let mut dropped: u64 = 0;
    let scope = if grant.system {
        Value::from("fleet")
    } else {
        Value::from(grant.tenant.as_str())
    };
    let mut open = send(
        &mut socket,
        stall,
        &json!({"feed": feed.name(), "scope": scope}),
    )
    .await;
    let mut close = None;
    while open {
        tokio::select! {
            () = shared.shutdown.cancelled() => {
                close = Some((close_code::GOING_AWAY, "server shutting down"));
                break;
            }
            () = &mut expired => {
                close = Some((close_code::TOKEN_EXPIRED, "token expired"));
                break;
            }
            event = events.next() => {
                let Some(message) = event else { break };
                if limiter.check().is_err() {
                    dropped += 1;
                    console.forwarded(Forwarded::Dropped);
                    continue;
                }
                let Some(event) = feed.event(&message.payload) else { continue };
                let tenant = message.subject.rsplit('.').next().unwrap_or_default();
                open = send(
                    &mut socket,
                    stall,
                    &json!({"feed": feed.name(), "tenant": tenant, "event": event}),
                )
                .await;
                console.forwarded(Forwarded::Sent);
            }
            _ = notices.tick(), if dropped > 0 => {
                open = send(&mut socket, stall, &json!({"feed": feed.name(), "dropped": dropped})).await;
                dropped = 0;
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_) | Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(stall, socket.send(Message::Close(Some(frame)))).await;
    }
    console.feeds.dec();
}

/// Writes `frame`; false when the socket is gone or made no progress within `stall`.
async fn send(socket: &mut WebSocket, stall: Duration, frame: &Value) -> bool {
    let text = Message::Text(frame.to_string().into());
    matches!(
        tokio::time::timeout(stall, socket.send(text)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::{Role, TenantId};

    fn grant(system: bool) -> Grant {
        Grant {
            tenant: TenantId::parse("acme").unwrap(),
            subject: None,
            role: Role::admin(),
            expires_at: None,
            permissions: None,
            system,
        }
    }

    #[test]
    fn a_tenant_admin_follows_its_tenant_and_the_system_authority_every_tenant() {
        assert_eq!(Feed::parse("casil"), Some(Feed::Casil));
        assert_eq!(Feed::parse("dead_letters"), Some(Feed::DeadLetters));
        assert_eq!(Feed::parse("rooms"), None);
        assert_eq!(
            Feed::Casil.subject(&grant(false)),
            "arqon.telemetry.casil.acme"
        );
        assert_eq!(Feed::Casil.subject(&grant(true)), subject::CASIL_EVENTS_ALL);
        assert_eq!(
            Feed::DeadLetters.subject(&grant(false)),
            "arqon.webhook.dead.acme"
        );
        assert_eq!(
            Feed::DeadLetters.subject(&grant(true)),
            subject::WEBHOOK_DEAD_ALL
        );
    }

    #[test]
    fn a_dead_letter_is_shown_without_its_body() {
        let letter = br#"{"rule_id":"r","attempts":3,"body":{"payload":{"secret":"x"}}}"#;
        let shown = Feed::DeadLetters.event(letter).unwrap();
        assert_eq!(shown["rule_id"], "r");
        assert!(shown.get("body").is_none(), "{shown}");
        assert!(shown["body_bytes"].as_u64().unwrap() > 0);
        let decision = br#"{"event":"casil_decision","payload":{"a":1}}"#;
        assert_eq!(Feed::Casil.event(decision).unwrap()["payload"]["a"], 1);
        assert!(Feed::Casil.event(b"not json").is_none());
    }
}
