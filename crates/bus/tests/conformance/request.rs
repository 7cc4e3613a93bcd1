//! Request/reply and flush.

use std::time::Duration;

use arqon_bus::{Bus, BusError, Bytes, Headers};
use tokio::task::JoinHandle;

use crate::support::{WAIT, recv, text};

conformance!(
    request_gets_the_reply,
    request_without_responders_fails_fast,
    request_without_an_answer_times_out,
    queue_group_answers_once,
    respond_needs_a_reply_subject,
    flush_succeeds,
    request_many_gathers_every_responder,
    request_many_stops_at_max_replies,
    request_many_without_a_limit_waits_the_whole_timeout,
    request_many_without_responders_returns_nothing_at_once,
    request_many_without_an_answer_returns_nothing_after_the_timeout,
    request_many_refuses_what_request_refuses,
);

/// Answers every request on `subject` with `reply: <payload>` and echoes `traceparent`.
async fn echo_responder(bus: &Bus, subject: &str, group: Option<&str>) -> JoinHandle<()> {
    let mut sub = match group {
        Some(group) => bus.queue_subscribe(subject, group).await.unwrap(),
        None => bus.subscribe(subject).await.unwrap(),
    };
    bus.flush().await.unwrap();
    let bus = bus.clone();
    tokio::spawn(async move {
        while let Some(request) = sub.next().await {
            let mut headers = Headers::new();
            if let Some(trace) = request.headers.get("traceparent") {
                headers.insert("traceparent", trace).unwrap();
            }
            let answer = format!("reply: {}", text(&request.payload));
            request
                .respond_with_headers(&bus, headers, Bytes::from(answer))
                .await
                .unwrap();
        }
    })
}

/// Answers every request on `subject` once with `<name>: <payload>`, echoing
/// `traceparent`.
async fn named_responder(
    bus: &Bus,
    subject: &str,
    group: Option<&str>,
    name: &str,
) -> JoinHandle<()> {
    let mut sub = match group {
        Some(group) => bus.queue_subscribe(subject, group).await.unwrap(),
        None => bus.subscribe(subject).await.unwrap(),
    };
    bus.flush().await.unwrap();
    let (bus, name) = (bus.clone(), name.to_owned());
    tokio::spawn(async move {
        while let Some(request) = sub.next().await {
            let mut headers = Headers::new();
            if let Some(trace) = request.headers.get("traceparent") {
                headers.insert("traceparent", trace).unwrap();
            }
            let answer = format!("{name}: {}", text(&request.payload));
            request
                .respond_with_headers(&bus, headers, Bytes::from(answer))
                .await
                .unwrap();
        }
    })
}

/// Reply payloads, sorted (replies from several responders come in any order).
fn sorted_payloads(replies: &[arqon_bus::Message]) -> Vec<String> {
    let mut payloads: Vec<String> = replies.iter().map(|m| text(&m.payload)).collect();
    payloads.sort();
    payloads
}

/// Longer than any test waits: a call that returns at all returned early.
const LONG: Duration = Duration::from_secs(60);

async fn request_many_gathers_every_responder(bus: Bus) {
    let responders = [
        named_responder(&bus, "svc.census", None, "a").await,
        named_responder(&bus, "svc.census", None, "b").await,
        named_responder(&bus, "svc.census", None, "c").await,
    ];
    let mut headers = Headers::new();
    headers.insert("traceparent", "00-abc-def-01").unwrap();
    let call =
        bus.request_many_with_headers("svc.census", headers, Bytes::from_static(b"who"), 3, LONG);
    let replies = tokio::time::timeout(WAIT, call)
        .await
        .expect("returns once max_replies arrived")
        .unwrap();
    assert_eq!(sorted_payloads(&replies), ["a: who", "b: who", "c: who"]);
    assert!(
        replies
            .iter()
            .all(|m| m.headers.get("traceparent") == Some("00-abc-def-01"))
    );
    assert!(
        replies.iter().all(|m| m.subject.starts_with("_INBOX.")),
        "{replies:?}"
    );
    assert!(
        replies.windows(2).all(|w| w[0].subject == w[1].subject),
        "one inbox per call"
    );
    // Each call has its own inbox: concurrent calls do not see each other's replies.
    let (x, y) = tokio::join!(
        bus.request_many("svc.census", Bytes::from_static(b"x"), 3, WAIT),
        bus.request_many("svc.census", Bytes::from_static(b"y"), 3, WAIT)
    );
    assert_eq!(sorted_payloads(&x.unwrap()), ["a: x", "b: x", "c: x"]);
    assert_eq!(sorted_payloads(&y.unwrap()), ["a: y", "b: y", "c: y"]);
    for responder in responders {
        responder.abort();
    }
}

async fn request_many_stops_at_max_replies(bus: Bus) {
    let responders = [
        named_responder(&bus, "svc.any", None, "a").await,
        named_responder(&bus, "svc.any", None, "b").await,
        named_responder(&bus, "svc.any", None, "c").await,
    ];
    let call = bus.request_many("svc.any", Bytes::from_static(b"?"), 2, LONG);
    let replies = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(replies.len(), 2, "{replies:?}");
    let call = bus.request_many("svc.any", Bytes::from_static(b"?"), 1, LONG);
    let replies = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(replies.len(), 1, "{replies:?}");
    for responder in responders {
        responder.abort();
    }
}

async fn request_many_without_a_limit_waits_the_whole_timeout(bus: Bus) {
    // A queue group answers once, a plain subscriber once more.
    let responders = [
        named_responder(&bus, "svc.all", Some("g"), "g1").await,
        named_responder(&bus, "svc.all", Some("g"), "g2").await,
        named_responder(&bus, "svc.all", None, "plain").await,
    ];
    let timeout = Duration::from_millis(500);
    let started = tokio::time::Instant::now();
    let replies = bus
        .request_many("svc.all", Bytes::from_static(b"?"), 0, timeout)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= timeout,
        "gathered for the whole timeout"
    );
    let payloads = sorted_payloads(&replies);
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    assert!(
        payloads[0].starts_with("g1: ") || payloads[0].starts_with("g2: "),
        "{payloads:?}"
    );
    assert_eq!(payloads[1], "plain: ?");
    for responder in responders {
        responder.abort();
    }
}

async fn request_many_without_responders_returns_nothing_at_once(bus: Bus) {
    let call = bus.request_many("svc.nobody", Bytes::new(), 3, LONG);
    let replies = tokio::time::timeout(WAIT, call)
        .await
        .expect("nobody subscribed: no waiting for the timeout")
        .unwrap();
    assert!(replies.is_empty());
    let call = bus.request_many("svc.nobody", Bytes::new(), 0, LONG);
    let replies = tokio::time::timeout(WAIT, call).await.unwrap().unwrap();
    assert!(replies.is_empty());
}

async fn request_many_without_an_answer_returns_nothing_after_the_timeout(bus: Bus) {
    let mut silent = bus.subscribe("svc.mute").await.unwrap();
    bus.flush().await.unwrap();
    let timeout = Duration::from_millis(300);
    let started = tokio::time::Instant::now();
    let replies = bus
        .request_many("svc.mute", Bytes::from_static(b"?"), 2, timeout)
        .await
        .unwrap();
    assert!(replies.is_empty());
    assert!(started.elapsed() >= timeout);
    // The request did arrive, with a reply subject; answering late is harmless.
    let request = recv(&mut silent).await;
    let reply = request.reply.clone().unwrap();
    assert!(reply.starts_with("_INBOX."), "{reply}");
    request
        .respond(&bus, Bytes::from_static(b"late"))
        .await
        .unwrap();
    // One that answers only some of what it got still counts.
    let echo = echo_responder(&bus, "svc.mute", None).await;
    let replies = bus
        .request_many("svc.mute", Bytes::from_static(b"now"), 5, timeout)
        .await
        .unwrap();
    assert_eq!(sorted_payloads(&replies), ["reply: now"]);
    echo.abort();
}

async fn request_many_refuses_what_request_refuses(bus: Bus) {
    for bad in ["", "svc.*", "svc.>", "a..b", "$SYS.x"] {
        let err = bus
            .request_many(bad, Bytes::new(), 1, WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "{bad:?}: {err:?}"
        );
    }
    let too_big = Bytes::from(vec![0u8; bus.max_payload() + 1]);
    let err = bus
        .request_many("svc.x", too_big, 1, WAIT)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::PayloadTooLarge { .. }), "{err:?}");
}

async fn request_gets_the_reply(bus: Bus) {
    let responder = echo_responder(&bus, "svc.echo", None).await;
    let reply = bus
        .request("svc.echo", Bytes::from_static(b"hi"), WAIT)
        .await
        .unwrap();
    assert_eq!(text(&reply.payload), "reply: hi");
    assert!(reply.subject.starts_with("_INBOX."), "{}", reply.subject);

    let mut headers = Headers::new();
    headers.insert("traceparent", "00-abc-def-01").unwrap();
    let reply = bus
        .request_with_headers("svc.echo", headers, Bytes::from_static(b"t"), WAIT)
        .await
        .unwrap();
    assert_eq!(reply.headers.get("traceparent"), Some("00-abc-def-01"));

    // Many requests in flight at once each get their own answer.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let reply = bus
                .request("svc.echo", Bytes::from(i.to_string()), WAIT)
                .await
                .unwrap();
            assert_eq!(text(&reply.payload), format!("reply: {i}"));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    responder.abort();
}

async fn request_without_responders_fails_fast(bus: Bus) {
    // A long timeout: the failure must come from "nobody listens", not from the clock.
    let err = bus
        .request("svc.nobody", Bytes::new(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err, BusError::NoResponders);
}

async fn request_without_an_answer_times_out(bus: Bus) {
    let mut silent = bus.subscribe("svc.silent").await.unwrap();
    bus.flush().await.unwrap();
    let err = bus
        .request(
            "svc.silent",
            Bytes::from_static(b"?"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert_eq!(err, BusError::Timeout);
    // The request did arrive, with a reply subject.
    let request = recv(&mut silent).await;
    assert!(request.reply.is_some());
}

async fn queue_group_answers_once(bus: Bus) {
    let first = echo_responder(&bus, "svc.q", Some("responders")).await;
    let second = echo_responder(&bus, "svc.q", Some("responders")).await;
    for i in 0..10 {
        let reply = bus
            .request("svc.q", Bytes::from(i.to_string()), WAIT)
            .await
            .unwrap();
        assert_eq!(text(&reply.payload), format!("reply: {i}"));
    }
    first.abort();
    second.abort();
}

async fn respond_needs_a_reply_subject(bus: Bus) {
    let mut sub = bus.subscribe("plain").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("plain", Bytes::new()).await.unwrap();
    let message = recv(&mut sub).await;
    let err = message.respond(&bus, Bytes::new()).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err:?}");
}

async fn flush_succeeds(bus: Bus) {
    bus.publish("f", Bytes::new()).await.unwrap();
    bus.flush().await.unwrap();
    bus.flush().await.unwrap();
}
