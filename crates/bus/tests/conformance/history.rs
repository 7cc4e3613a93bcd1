//! History streams: append/get/read/last, retention by count and age, capture of core
//! publishes (room subjects included), create-or-open and configuration.

use std::time::Duration;

use arqon_bus::{
    Bus, BusError, Bytes, Headers, HistoryConfig, HistoryStore, MAX_READ_LIMIT, ReadFrom, Storage,
};

use crate::support::{EXPIRY_WAIT, WAIT, eventually, text};

conformance!(
    history_append_get_last,
    history_read_by_sequence,
    history_read_by_time,
    history_retention_by_count,
    history_retention_by_age,
    history_retention_by_bytes,
    history_refuses_foreign_and_invalid_subjects,
    history_captures_core_publishes,
    history_overlapping_streams_are_refused,
    history_reopen_updates_retention,
    history_create_or_open_is_idempotent,
    history_stores_core_publishes_on_room_subjects,
    history_confirms_a_stored_publish,
);

pub(crate) fn config(name: &str, subjects: &[&str]) -> HistoryConfig {
    let mut config = HistoryConfig::new(name, subjects.iter().map(|s| (*s).to_owned()).collect());
    config.storage = Storage::Memory;
    config
}

pub(crate) async fn stream(bus: &Bus, name: &str, subjects: &[&str]) -> HistoryStore {
    bus.history(config(name, subjects)).await.unwrap()
}

pub(crate) fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

pub(crate) fn seqs(messages: &[arqon_bus::StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

async fn history_append_get_last(bus: Bus) {
    let hist = stream(&bus, "HIST", &["hist.>"]).await;
    assert_eq!(hist.name(), "HIST");
    let mut headers = Headers::new();
    headers.insert("traceparent", "00-t-s-01").unwrap();
    let s1 = hist
        .append("hist.a", headers.clone(), b("a1"))
        .await
        .unwrap();
    let s2 = hist
        .append("hist.b", Headers::new(), b("b1"))
        .await
        .unwrap();
    let s3 = hist
        .append("hist.a", Headers::new(), b("a2"))
        .await
        .unwrap();
    assert_eq!((s1, s2, s3), (1, 2, 3), "one sequence across subjects");

    let first = hist.get(s1).await.unwrap().unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.subject, "hist.a");
    assert_eq!(text(&first.payload), "a1");
    assert_eq!(
        first.headers, headers,
        "only the caller's headers come back"
    );
    let second = hist.get(s2).await.unwrap().unwrap();
    assert!(second.headers.is_empty());
    assert!(first.time <= second.time);

    assert_eq!(hist.get(0).await.unwrap(), None);
    assert_eq!(hist.get(99).await.unwrap(), None);
    let last = hist.last("hist.a").await.unwrap().unwrap();
    assert_eq!((last.seq, text(&last.payload)), (s3, "a2".to_owned()));
    assert_eq!(hist.last("hist.none").await.unwrap(), None);
}

async fn history_read_by_sequence(bus: Bus) {
    let hist = stream(&bus, "READ", &["r.>"]).await;
    for i in 1..=10 {
        let subject = if i % 2 == 0 { "r.even" } else { "r.odd" };
        hist.append(subject, Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let all = hist.read("r.>", ReadFrom::Sequence(1), 100).await.unwrap();
    assert_eq!(seqs(&all), (1..=10).collect::<Vec<_>>());
    assert_eq!(text(&all[4].payload), "5");
    let even = hist
        .read("r.even", ReadFrom::Sequence(0), 100)
        .await
        .unwrap();
    assert_eq!(seqs(&even), [2, 4, 6, 8, 10]);
    assert!(even.iter().all(|m| m.subject == "r.even"));
    let page = hist.read("r.even", ReadFrom::Sequence(5), 2).await.unwrap();
    assert_eq!(seqs(&page), [6, 8]);
    let wild = hist.read("r.*", ReadFrom::Sequence(9), 100).await.unwrap();
    assert_eq!(seqs(&wild), [9, 10]);
    assert!(
        hist.read("r.>", ReadFrom::Sequence(11), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        hist.read("r.none", ReadFrom::Sequence(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        hist.read("r.>", ReadFrom::Sequence(1), 0)
            .await
            .unwrap()
            .is_empty()
    );

    // A full page of the largest size, in order.
    for i in 0..MAX_READ_LIMIT + 5 {
        hist.append("r.bulk", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let bulk = hist
        .read("r.bulk", ReadFrom::Sequence(1), MAX_READ_LIMIT + 100)
        .await
        .unwrap();
    assert_eq!(bulk.len(), MAX_READ_LIMIT, "the limit is capped");
    assert!(bulk.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    assert_eq!(text(&bulk[0].payload), "0");
    let rest = hist
        .read(
            "r.bulk",
            ReadFrom::Sequence(bulk[MAX_READ_LIMIT - 1].seq + 1),
            100,
        )
        .await
        .unwrap();
    assert_eq!(rest.len(), 5);
}

async fn history_read_by_time(bus: Bus) {
    let hist = stream(&bus, "TIME", &["t.>"]).await;
    for i in 1..=4 {
        hist.append("t.x", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    // Start at the stored time of message 3: it and everything after it.
    let third = hist.get(3).await.unwrap().unwrap();
    let from = hist
        .read("t.>", ReadFrom::Time(third.time), 10)
        .await
        .unwrap();
    assert!(seqs(&from).ends_with(&[3, 4]), "{:?}", seqs(&from));
    assert!(from.iter().all(|m| m.time >= third.time));
    let everything = hist
        .read("t.x", ReadFrom::Time(chrono::DateTime::UNIX_EPOCH), 10)
        .await
        .unwrap();
    assert_eq!(seqs(&everything), [1, 2, 3, 4]);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert!(
        hist.read("t.>", ReadFrom::Time(future), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn history_retention_by_count(bus: Bus) {
    let mut config = config("COUNT", &["c.>"]);
    config.max_msgs_per_subject = 3;
    let hist = bus.history(config).await.unwrap();
    for i in 1..=5 {
        hist.append("c.a", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let other = hist.append("c.b", Headers::new(), b("b")).await.unwrap();
    let kept = hist.read("c.a", ReadFrom::Sequence(1), 10).await.unwrap();
    assert_eq!(seqs(&kept), [3, 4, 5], "the oldest are discarded first");
    assert_eq!(hist.get(1).await.unwrap(), None);
    assert_eq!(hist.get(2).await.unwrap(), None);
    assert!(hist.get(3).await.unwrap().is_some());
    assert!(
        hist.get(other).await.unwrap().is_some(),
        "limits are per subject"
    );
    assert_eq!(
        seqs(&hist.read("c.>", ReadFrom::Sequence(1), 10).await.unwrap()),
        [3, 4, 5, 6]
    );
}

async fn history_retention_by_bytes(bus: Bus) {
    let mut config = config("BYTES", &["y.>"]);
    config.max_bytes = 10_000;
    let hist = bus.history(config).await.unwrap();
    let payload = Bytes::from(vec![b'x'; 1000]);
    for i in 0..30 {
        let subject = if i % 3 == 0 { "y.a" } else { "y.b" };
        hist.append(subject, Headers::new(), payload.clone())
            .await
            .unwrap();
    }
    let kept = seqs(&hist.read("y.>", ReadFrom::Sequence(1), 100).await.unwrap());
    // Each message is 1,003 bytes and some overhead (the server's own, on NATS): the
    // newest that fit in 10,000 bytes, across subjects, oldest discarded first.
    assert!((7..=9).contains(&kept.len()), "{kept:?}");
    assert_eq!(kept.last(), Some(&30));
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    assert_eq!(
        hist.count("y.>").await.unwrap(),
        kept.len() as u64,
        "the count agrees"
    );
}

async fn history_retention_by_age(bus: Bus) {
    let mut config = config("AGE", &["age.>"]);
    config.max_age = Duration::from_secs(1);
    let hist = bus.history(config).await.unwrap();
    let seq = hist.append("age.a", Headers::new(), b("x")).await.unwrap();
    eventually(EXPIRY_WAIT, "message aged out", || async {
        hist.get(seq).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        hist.read("age.>", ReadFrom::Sequence(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(hist.last("age.a").await.unwrap(), None);
    // Sequences are never reused.
    let next = hist.append("age.a", Headers::new(), b("y")).await.unwrap();
    assert_eq!(next, seq + 1);
}

async fn history_refuses_foreign_and_invalid_subjects(bus: Bus) {
    let hist = stream(&bus, "ONLY", &["only.*"]).await;
    for subject in ["other.a", "only.a.b", "only"] {
        let err = hist
            .append(subject, Headers::new(), b("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "{subject}: {err:?}"
        );
    }
    for subject in ["only.*", "only.>", "", "only..a"] {
        let err = hist
            .append(subject, Headers::new(), b("x"))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::InvalidSubject(_)), "{subject:?}");
    }
    let err = hist
        .read("only..x", ReadFrom::Sequence(1), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)));
    let err = hist.last("only.*").await.unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)));
    let too_big = Bytes::from(vec![0u8; bus.max_payload() + 1]);
    let err = hist
        .append("only.a", Headers::new(), too_big)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::PayloadTooLarge { .. }), "{err:?}");
    assert_eq!(bus.stats().publish_errors(), 0);
}

async fn history_captures_core_publishes(bus: Bus) {
    let hist = stream(&bus, "CAP", &["cap.>"]).await;
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();
    bus.publish_with_headers("cap.x", headers.clone(), b("live"))
        .await
        .unwrap();
    let stored = eventually(WAIT, "core publish stored", || async {
        hist.last("cap.x").await.unwrap()
    })
    .await;
    assert_eq!(text(&stored.payload), "live");
    assert_eq!(stored.headers, headers);
    let next = hist
        .append("cap.x", Headers::new(), b("appended"))
        .await
        .unwrap();
    assert_eq!(next, stored.seq + 1);
}

async fn history_overlapping_streams_are_refused(bus: Bus) {
    stream(&bus, "FIRST", &["ov.>"]).await;
    let err = bus.history(config("SECOND", &["ov.x"])).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidConfig(_)), "{err:?}");
    let err = bus
        .history(config("THIRD", &["ow.a", "ov.*"]))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidConfig(_)), "{err:?}");
    // Disjoint subjects are fine.
    stream(&bus, "FOURTH", &["ow.>"]).await;
    // Invalid configurations never reach the backend.
    // A leading wildcard would capture the server's own `$` subjects.
    for bad in [
        config("bad.name", &["x"]),
        config("NOSUBJ", &[]),
        config("S", &["a..b"]),
        config("S", &["*.y"]),
        config("S", &[">"]),
    ] {
        let err = bus.history(bad).await.unwrap_err();
        assert!(
            matches!(
                err,
                BusError::InvalidConfig(_) | BusError::InvalidSubject(_)
            ),
            "{err:?}"
        );
    }
}

async fn history_reopen_updates_retention(bus: Bus) {
    let hist = stream(&bus, "REOPEN", &["re.>"]).await;
    for i in 1..=5 {
        hist.append("re.a", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    let mut tighter = config("REOPEN", &["re.>"]);
    tighter.max_msgs_per_subject = 2;
    let reopened = bus.history(tighter).await.unwrap();
    // A lowered per-subject limit applies to a subject at its next append (NATS 2.11
    // does not trim on the update itself; which one is retained until then is not
    // something to rely on).
    let six = reopened
        .append("re.a", Headers::new(), b("6"))
        .await
        .unwrap();
    assert_eq!(six, 6);
    let kept = reopened
        .read("re.a", ReadFrom::Sequence(1), 10)
        .await
        .unwrap();
    assert_eq!(seqs(&kept), [5, 6]);
    // The old handle sees the same stream.
    assert_eq!(hist.get(4).await.unwrap(), None);
}

async fn history_create_or_open_is_idempotent(bus: Bus) {
    // Two services opening the same stream at once, with the same configuration.
    let (first, second) = tokio::join!(
        bus.history(config("SHARED", &["shared.>"])),
        bus.history(config("SHARED", &["shared.>"]))
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.epoch(), second.epoch(), "one stream, not two");
    let seq = first
        .append("shared.a", Headers::new(), b("x"))
        .await
        .unwrap();
    assert_eq!(
        second.get(seq).await.unwrap().map(|m| m.payload),
        Some(b("x"))
    );
    // Opening it again later changes nothing either.
    let again = stream(&bus, "SHARED", &["shared.>"]).await;
    assert_eq!(again.epoch(), first.epoch());
    assert_eq!(again.count("shared.>").await.unwrap(), 1);

    // Racing with different configurations: both succeed (one of them is applied).
    let mut tight = config("RACE", &["race.>"]);
    tight.max_msgs_per_subject = 2;
    let (a, b) = tokio::join!(bus.history(config("RACE", &["race.>"])), bus.history(tight));
    assert_eq!(a.unwrap().epoch(), b.unwrap().epoch());
}

async fn history_stores_core_publishes_on_room_subjects(bus: Bus) {
    let hist = stream(&bus, "ROOMS", &["arqon.room.>"]).await;
    let mut live = bus.subscribe("arqon.room.>").await.unwrap();
    bus.flush().await.unwrap();
    for i in 1..=3 {
        bus.publish("arqon.room.t1.lobby", Bytes::from(format!("m{i}")))
            .await
            .unwrap();
    }
    bus.publish("arqon.room.t2.lobby", b("other tenant"))
        .await
        .unwrap();
    bus.publish("arqon.rooms.t1", b("not a room subject"))
        .await
        .unwrap();
    // Delivered live, and stored.
    assert_eq!(
        crate::support::recv_payloads(&mut live, 4).await,
        ["m1", "m2", "m3", "other tenant"]
    );
    eventually(WAIT, "core publishes stored", || async {
        (hist.count("arqon.room.>").await.unwrap() == 4).then_some(())
    })
    .await;
    let tail = hist.tail("arqon.room.t1.lobby", 2).await.unwrap();
    let payloads: Vec<String> = tail.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(payloads, ["m2", "m3"]);
    assert_eq!(seqs(&tail), [2, 3]);
    assert_eq!(hist.count("arqon.room.t1.>").await.unwrap(), 3);
    assert_eq!(hist.count("arqon.rooms.>").await.unwrap(), 0);
}

/// `publish_stored`: subscribers receive the message as any publish, and once the
/// confirmation is in, the stream has it under the confirmed sequence (no waiting). On a
/// subject no stream captures the confirmation is `NoResponders`; the message was still
/// delivered.
async fn history_confirms_a_stored_publish(bus: Bus) {
    let hist = stream(&bus, "CONF", &["conf.>"]).await;
    let mut sub = bus.subscribe("conf.a").await.unwrap();
    let mut loose = bus.subscribe("loose.a").await.unwrap();
    bus.flush().await.unwrap();
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();
    let mut seqs = Vec::new();
    for i in 0..3 {
        let confirmation = bus
            .publish_stored("conf.a", headers.clone(), Bytes::from(i.to_string()))
            .await
            .unwrap();
        seqs.push(confirmation.stored().await.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for (i, seq) in seqs.iter().enumerate() {
        let stored = hist
            .get(*seq)
            .await
            .unwrap()
            .expect("stored when confirmed");
        assert_eq!(text(&stored.payload), i.to_string());
        assert_eq!(stored.headers, headers);
        let live = crate::support::recv(&mut sub).await;
        assert_eq!(text(&live.payload), i.to_string());
    }

    let confirmation = bus
        .publish_stored("loose.a", Headers::new(), b("nowhere"))
        .await
        .unwrap();
    let err = confirmation.stored().await.unwrap_err();
    assert!(
        matches!(err, BusError::NoResponders | BusError::Timeout),
        "{err:?}"
    );
    assert_eq!(
        text(&crate::support::recv(&mut loose).await.payload),
        "nowhere"
    );

    let err = bus
        .publish_stored("conf.>", Headers::new(), b("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err:?}");
}
