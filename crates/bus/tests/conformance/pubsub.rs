//! Publish/subscribe: delivery, wildcards, queue groups, unsubscribe, headers, order,
//! validation, size limits and slow consumers.

use std::collections::HashSet;
use std::time::Duration;

use arqon_bus::{Bus, BusError, Bytes, Headers};

use crate::support::{WAIT, assert_quiet, eventually, recv, recv_payloads, text};

conformance!(
    publish_and_receive,
    wildcards,
    queue_group_delivers_each_message_to_one_member,
    every_group_and_plain_subscriber_gets_a_copy,
    dropping_a_subscription_unsubscribes,
    headers_round_trip,
    order_is_preserved_per_publisher,
    invalid_subjects_are_refused,
    publishing_without_subscribers_is_fine,
    oversized_messages_are_refused,
    slow_consumer_drops_are_counted(capacity = 8),
);

async fn publish_and_receive(bus: Bus) {
    let mut sub = bus.subscribe("t.a").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("t.a", Bytes::from_static(b"one"))
        .await
        .unwrap();
    bus.publish("t.b", Bytes::from_static(b"other"))
        .await
        .unwrap();
    bus.publish(String::from("t.a"), Bytes::from_static(b"two"))
        .await
        .unwrap();
    let first = recv(&mut sub).await;
    assert_eq!(first.subject, "t.a");
    assert_eq!(first.reply, None);
    assert!(first.headers.is_empty());
    assert_eq!(text(&first.payload), "one");
    assert_eq!(text(&recv(&mut sub).await.payload), "two");
    assert_quiet(&mut sub).await;
    assert_eq!(sub.subject(), "t.a");
    assert!(bus.is_connected());
}

async fn wildcards(bus: Bus) {
    let mut star = bus.subscribe("w.*").await.unwrap();
    let mut tail = bus.subscribe("w.>").await.unwrap();
    let mut middle = bus.subscribe("w.*.c").await.unwrap();
    let mut first = bus.subscribe("*.a").await.unwrap();
    let mut all = bus.subscribe(">").await.unwrap();
    bus.flush().await.unwrap();
    for subject in ["w.a", "w.b.c", "w.b.c.d", "x.a", "w"] {
        bus.publish(subject, Bytes::from(subject.to_owned()))
            .await
            .unwrap();
    }
    assert_eq!(recv_payloads(&mut star, 1).await, ["w.a"]);
    assert_eq!(
        recv_payloads(&mut tail, 3).await,
        ["w.a", "w.b.c", "w.b.c.d"]
    );
    assert_eq!(recv_payloads(&mut middle, 1).await, ["w.b.c"]);
    assert_eq!(recv_payloads(&mut first, 2).await, ["w.a", "x.a"]);
    assert_eq!(
        recv_payloads(&mut all, 5).await,
        ["w.a", "w.b.c", "w.b.c.d", "x.a", "w"]
    );
    for sub in [&mut star, &mut tail, &mut middle, &mut first, &mut all] {
        assert_quiet(sub).await;
    }
    // A received message carries the literal subject, not the pattern.
    bus.publish("w.z", Bytes::new()).await.unwrap();
    assert_eq!(recv(&mut star).await.subject, "w.z");
}

async fn queue_group_delivers_each_message_to_one_member(bus: Bus) {
    const N: usize = 200;
    let mut a = bus.queue_subscribe("work.>", "workers").await.unwrap();
    let mut b = bus.queue_subscribe("work.>", "workers").await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..N {
        bus.publish(format!("work.{}", i % 3), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let mut seen = HashSet::new();
    let (mut from_a, mut from_b) = (0, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < N {
        let message = tokio::select! {
            Some(m) = a.next() => { from_a += 1; m }
            Some(m) = b.next() => { from_b += 1; m }
            _ = tokio::time::sleep_until(deadline) => panic!("only {} of {N} delivered", seen.len()),
        };
        assert!(
            seen.insert(text(&message.payload)),
            "delivered twice: {message:?}"
        );
    }
    assert_eq!(from_a + from_b, N);
    assert!(
        from_a > 0 && from_b > 0,
        "both members work: {from_a}/{from_b}"
    );
    assert_quiet(&mut a).await;
    assert_quiet(&mut b).await;
}

async fn every_group_and_plain_subscriber_gets_a_copy(bus: Bus) {
    const N: usize = 50;
    let mut g1 = [
        bus.queue_subscribe("jobs", "g1").await.unwrap(),
        bus.queue_subscribe("jobs", "g1").await.unwrap(),
    ];
    // Members of one group may use different patterns: the group is per name.
    let mut g2 = [
        bus.queue_subscribe("jobs", "g2").await.unwrap(),
        bus.queue_subscribe("*", "g2").await.unwrap(),
    ];
    let mut plain = bus.subscribe("jobs").await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..N {
        bus.publish("jobs", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    for group in [&mut g1, &mut g2] {
        let mut seen = HashSet::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        let [x, y] = group;
        while seen.len() < N {
            let message = tokio::select! {
                Some(m) = x.next() => m,
                Some(m) = y.next() => m,
                _ = tokio::time::sleep_until(deadline) => panic!("group got {} of {N}", seen.len()),
            };
            assert!(
                seen.insert(text(&message.payload)),
                "group got a copy twice"
            );
        }
        assert_quiet(x).await;
        assert_quiet(y).await;
    }
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(recv_payloads(&mut plain, N).await, expected);
}

async fn dropping_a_subscription_unsubscribes(bus: Bus) {
    let only = bus.subscribe("svc.gone").await.unwrap();
    let mut wild = bus.subscribe("svc.*").await.unwrap();
    bus.flush().await.unwrap();
    drop(only);
    drop(wild);
    bus.flush().await.unwrap();
    // Nobody is left: a request finds no responders (the server, or the embedded
    // registry, has forgotten both subscriptions).
    let err = bus
        .request("svc.gone", Bytes::new(), WAIT)
        .await
        .unwrap_err();
    assert_eq!(err, BusError::NoResponders);

    // Others on the same subject are unaffected.
    let keep = bus.subscribe("svc.gone").await.unwrap();
    wild = bus.subscribe("svc.*").await.unwrap();
    let dropped = bus.subscribe("svc.gone").await.unwrap();
    drop(dropped);
    let mut keep = keep;
    bus.flush().await.unwrap();
    bus.publish("svc.gone", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut keep).await.payload), "x");
    assert_eq!(text(&recv(&mut wild).await.payload), "x");
}

async fn headers_round_trip(bus: Bus) {
    let mut sub = bus.subscribe("h.x").await.unwrap();
    bus.flush().await.unwrap();
    let mut headers = Headers::new();
    headers
        .insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .unwrap();
    headers.append("X-Multi", "first").unwrap();
    headers.append("X-Multi", "second").unwrap();
    headers.insert("x-padded", "  value  ").unwrap();
    bus.publish_with_headers("h.x", headers.clone(), Bytes::from_static(b"p"))
        .await
        .unwrap();
    let message = recv(&mut sub).await;
    assert_eq!(message.headers, headers);
    assert_eq!(
        message.headers.get("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
    assert_eq!(
        message.headers.get_all("X-Multi").collect::<Vec<_>>(),
        ["first", "second"]
    );
    assert_eq!(message.headers.get("x-padded"), Some("value"));
    assert_eq!(text(&message.payload), "p");

    // Publishing with empty headers is the same as without.
    bus.publish_with_headers("h.x", Headers::new(), Bytes::new())
        .await
        .unwrap();
    assert!(recv(&mut sub).await.headers.is_empty());
}

async fn order_is_preserved_per_publisher(bus: Bus) {
    const N: usize = 2000;
    let mut sub = bus.subscribe("ord.>").await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..N {
        bus.publish(format!("ord.{}", i % 7), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(recv_payloads(&mut sub, N).await, expected);
}

async fn invalid_subjects_are_refused(bus: Bus) {
    let payload = || Bytes::from_static(b"x");
    for subject in [
        "",
        "a.*",
        "a.>",
        ">",
        "a..b",
        ".a",
        "a.",
        "a b",
        "a\nb",
        "$JS.API.INFO",
    ] {
        let err = bus.publish(subject, payload()).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "publish {subject:?}: {err:?}"
        );
        let err = bus
            .publish_with_headers(subject, Headers::new(), payload())
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::InvalidSubject(_)), "{subject:?}");
        let err = bus
            .request(subject, payload(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::InvalidSubject(_)), "{subject:?}");
    }
    for subject in ["", "a.>.b", "a..b", "a b", "$SYS.>"] {
        let err = bus.subscribe(subject).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "subscribe {subject:?}"
        );
    }
    for group in ["", "a b"] {
        let err = bus.queue_subscribe("ok", group).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "group {group:?}"
        );
    }
    // Validation failures are the caller's, not the bus's.
    assert_eq!(bus.stats().publish_errors(), 0);
    // The bus still works.
    let mut sub = bus.subscribe("ok.*").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("ok.1", payload()).await.unwrap();
    recv(&mut sub).await;
}

async fn publishing_without_subscribers_is_fine(bus: Bus) {
    for i in 0..10 {
        bus.publish(format!("nobody.{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    assert_eq!(bus.stats().publish_errors(), 0);
    assert_eq!(bus.stats().slow_consumer_drops(), 0);
}

async fn oversized_messages_are_refused(bus: Bus) {
    let max = bus.max_payload();
    assert!(
        max >= 1024 * 1024,
        "NATS default and embedded default agree"
    );
    let mut sub = bus.subscribe("big").await.unwrap();
    bus.flush().await.unwrap();
    let err = bus
        .publish("big", Bytes::from(vec![0u8; max + 1]))
        .await
        .unwrap_err();
    assert_eq!(err, BusError::PayloadTooLarge { size: max + 1, max });
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();
    let err = bus
        .publish_with_headers("big", headers, Bytes::from(vec![0u8; max]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BusError::PayloadTooLarge { .. }),
        "headers count"
    );
    bus.publish("big", Bytes::from(vec![7u8; max]))
        .await
        .unwrap();
    assert_eq!(recv(&mut sub).await.payload.len(), max);
}

async fn slow_consumer_drops_are_counted(bus: Bus) {
    // Both buses were built with 8-message subscription buffers.
    const SENT: usize = 100;
    let mut slow = bus.subscribe("slow").await.unwrap();
    bus.flush().await.unwrap();
    for i in 0..SENT {
        bus.publish("slow", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    bus.flush().await.unwrap();
    let stats = bus.stats();
    eventually(WAIT, "slow-consumer drops counted", || async {
        (stats.slow_consumer_drops() > 0).then_some(())
    })
    .await;
    // The buffer kept the oldest messages, in order; the rest were dropped.
    let kept = recv_payloads(&mut slow, 8).await;
    let expected: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    assert_eq!(kept, expected);
    assert_quiet(&mut slow).await;
    assert!(stats.slow_consumer_drops() <= (SENT - 8) as u64);
    // A subscriber that reads again gets new messages.
    bus.publish("slow", Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut slow).await.payload), "again");
}
