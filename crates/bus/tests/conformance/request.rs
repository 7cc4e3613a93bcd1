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
