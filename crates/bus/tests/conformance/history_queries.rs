//! History streams beyond append and read: the epoch of a stream, counts, purges and
//! tails by subject, and opening a stream another service owns.

use arqon_bus::{Bus, BusError, Bytes, Headers, MAX_READ_LIMIT, ReadFrom, Usage};

use crate::history::{b, config, seqs, stream};
use crate::support::text;

conformance!(
    history_epoch_identifies_the_stream,
    history_count_by_filter,
    history_purge_by_filter_keeps_sequences,
    history_tail_returns_the_last_messages_of_a_subject,
    history_tail_reads_past_one_batch,
    history_open_existing_leaves_the_stream_as_it_is,
    history_streams_are_listed_measured_and_deleted,
    history_keeps_a_subjects_newest_within_bytes,
);

async fn history_epoch_identifies_the_stream(bus: Bus) {
    let hist = stream(&bus, "EPOCH", &["epoch.>"]).await;
    let epoch = hist.epoch().to_owned();
    let parsed = chrono::DateTime::parse_from_rfc3339(&epoch)
        .unwrap_or_else(|err| panic!("{epoch:?} is not RFC 3339: {err}"));
    assert!(epoch.ends_with('Z'), "UTC: {epoch}");
    let fraction = epoch.rsplit_once('.').map(|(_, f)| f.trim_end_matches('Z'));
    assert_eq!(fraction.map(str::len), Some(9), "nanoseconds: {epoch}");
    let age = chrono::Utc::now().signed_duration_since(parsed);
    assert!(
        age < chrono::Duration::minutes(10),
        "created just now: {epoch}"
    );
    // Stable for the stream: appends, reopening and opening as-is do not change it.
    hist.append("epoch.a", Headers::new(), b("x"))
        .await
        .unwrap();
    assert_eq!(hist.epoch(), epoch);
    let mut changed = config("EPOCH", &["epoch.>"]);
    changed.max_msgs_per_subject = 10;
    assert_eq!(bus.history(changed).await.unwrap().epoch(), epoch);
    let opened = bus.open_history("EPOCH").await.unwrap().unwrap();
    assert_eq!(opened.epoch(), epoch);
    // Another stream has another one.
    let other = stream(&bus, "EPOCH2", &["epoch2.>"]).await;
    assert_ne!(other.epoch(), epoch);
    assert!(format!("{hist:?}").contains(&epoch));
}

async fn history_count_by_filter(bus: Bus) {
    let hist = stream(&bus, "COUNTS", &["n.>"]).await;
    assert_eq!(hist.count("n.>").await.unwrap(), 0);
    for subject in ["n.a", "n.b", "n.a", "n.c.d", "n.a", "n.b"] {
        hist.append(subject, Headers::new(), b("x")).await.unwrap();
    }
    let count = |filter: &'static str| {
        let hist = hist.clone();
        async move { hist.count(filter).await.unwrap() }
    };
    assert_eq!(count("n.a").await, 3);
    assert_eq!(count("n.*").await, 5);
    assert_eq!(count("n.>").await, 6);
    assert_eq!(count("n.c.*").await, 1);
    assert_eq!(count("*.b").await, 2);
    assert_eq!(count("n.none").await, 0);
    assert_eq!(count("elsewhere.>").await, 0);
    for bad in ["", "n..a", "n.>.a", "$JS.>"] {
        let err = hist.count(bad).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "{bad:?}: {err:?}"
        );
    }

    // Counts follow retention.
    let mut limited = config("COUNTS_LIMITED", &["m.>"]);
    limited.max_msgs_per_subject = 2;
    let limited = bus.history(limited).await.unwrap();
    for _ in 0..5 {
        limited.append("m.a", Headers::new(), b("x")).await.unwrap();
    }
    assert_eq!(limited.count("m.>").await.unwrap(), 2);
}

async fn history_purge_by_filter_keeps_sequences(bus: Bus) {
    let hist = stream(&bus, "PURGE", &["p.>"]).await;
    for subject in ["p.a", "p.b", "p.a", "p.c.d", "p.a", "p.b"] {
        hist.append(subject, Headers::new(), b("x")).await.unwrap();
    }
    assert_eq!(hist.purge("p.a").await.unwrap(), 3);
    assert_eq!(hist.count("p.a").await.unwrap(), 0);
    assert_eq!(hist.count("p.>").await.unwrap(), 3);
    assert_eq!(hist.get(1).await.unwrap(), None);
    assert_eq!(hist.last("p.a").await.unwrap(), None);
    assert!(
        hist.read("p.a", ReadFrom::Sequence(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        seqs(&hist.read("p.>", ReadFrom::Sequence(1), 10).await.unwrap()),
        [2, 4, 6]
    );
    // Sequences go on: a purged one is never handed out again.
    let next = hist.append("p.a", Headers::new(), b("y")).await.unwrap();
    assert_eq!(next, 7);
    assert_eq!(
        hist.purge("p.*").await.unwrap(),
        3,
        "p.a and p.b, not p.c.d"
    );
    assert_eq!(hist.purge("p.none").await.unwrap(), 0);
    assert_eq!(hist.purge("elsewhere.>").await.unwrap(), 0);
    assert_eq!(hist.purge("p.>").await.unwrap(), 1);
    assert_eq!(hist.count("p.>").await.unwrap(), 0);
    assert_eq!(hist.purge("p.>").await.unwrap(), 0);
    assert_eq!(hist.append("p.a", Headers::new(), b("z")).await.unwrap(), 8);
    assert_eq!(hist.tail("p.a", 5).await.unwrap().len(), 1);
    let err = hist.purge("p..a").await.unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err:?}");
}

async fn history_tail_returns_the_last_messages_of_a_subject(bus: Bus) {
    let hist = stream(&bus, "TAIL", &["tail.>"]).await;
    assert!(hist.tail("tail.a", 5).await.unwrap().is_empty());
    let mut headers = Headers::new();
    headers.insert("traceparent", "00-t-s-01").unwrap();
    for i in 1..=10 {
        hist.append("tail.a", headers.clone(), Bytes::from(format!("a{i}")))
            .await
            .unwrap();
        hist.append("tail.b", Headers::new(), Bytes::from(format!("b{i}")))
            .await
            .unwrap();
    }
    let last3 = hist.tail("tail.a", 3).await.unwrap();
    assert_eq!(seqs(&last3), [15, 17, 19], "oldest first");
    let payloads: Vec<String> = last3.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(payloads, ["a8", "a9", "a10"]);
    assert!(
        last3
            .iter()
            .all(|m| m.subject == "tail.a" && m.headers == headers)
    );
    assert_eq!(
        hist.tail("tail.a", 1).await.unwrap()[0],
        hist.last("tail.a").await.unwrap().unwrap()
    );
    assert_eq!(seqs(&hist.tail("tail.b", 2).await.unwrap()), [18, 20]);
    let all = hist.tail("tail.a", 100).await.unwrap();
    assert_eq!(all.len(), 10, "fewer when the subject has fewer");
    assert_eq!(all[0].seq, 1);
    assert_eq!(hist.tail("tail.a", 10).await.unwrap(), all);
    assert!(hist.tail("tail.a", 0).await.unwrap().is_empty());
    assert!(hist.tail("tail.none", 5).await.unwrap().is_empty());
    assert!(hist.tail("tail", 5).await.unwrap().is_empty());
    for bad in ["tail.*", "tail.>", "", "tail..a"] {
        let err = hist.tail(bad, 1).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(_)),
            "{bad:?}: {err:?}"
        );
    }

    // Retention and purges are seen.
    let mut config = config("TAIL_LIMITED", &["tl.>"]);
    config.max_msgs_per_subject = 4;
    let limited = bus.history(config).await.unwrap();
    for i in 1..=9 {
        limited
            .append("tl.a", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    assert_eq!(seqs(&limited.tail("tl.a", 10).await.unwrap()), [6, 7, 8, 9]);
    assert_eq!(seqs(&limited.tail("tl.a", 2).await.unwrap()), [8, 9]);
    limited.purge("tl.a").await.unwrap();
    assert!(limited.tail("tl.a", 2).await.unwrap().is_empty());
}

async fn history_tail_reads_past_one_batch(bus: Bus) {
    let hist = stream(&bus, "TAILBULK", &["tb.>"]).await;
    let total = MAX_READ_LIMIT + 205;
    for i in 0..total {
        hist.append("tb.a", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
        if i % 100 == 0 {
            hist.append("tb.b", Headers::new(), b("other"))
                .await
                .unwrap();
        }
    }
    let two = hist.tail("tb.a", 2).await.unwrap();
    let payloads: Vec<String> = two.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(payloads, [(total - 2).to_string(), (total - 1).to_string()]);
    let most = hist.tail("tb.a", MAX_READ_LIMIT + 100).await.unwrap();
    assert_eq!(most.len(), MAX_READ_LIMIT, "n is capped");
    assert_eq!(text(&most[0].payload), (total - MAX_READ_LIMIT).to_string());
    assert_eq!(
        text(&most[MAX_READ_LIMIT - 1].payload),
        (total - 1).to_string()
    );
    assert!(most.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(most.iter().all(|m| m.subject == "tb.a"));
}

async fn history_open_existing_leaves_the_stream_as_it_is(bus: Bus) {
    assert!(bus.open_history("MISSING").await.unwrap().is_none());
    for bad in ["", "a.b", "a b", "a*"] {
        let err = bus.open_history(bad).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidConfig(_)),
            "{bad:?}: {err:?}"
        );
    }
    let mut owned = config("OWNED", &["owned.>", "audit.*"]);
    owned.max_msgs_per_subject = 3;
    let owner = bus.history(owned).await.unwrap();
    owner
        .append("owned.a", Headers::new(), b("from owner"))
        .await
        .unwrap();

    let opened = bus.open_history("OWNED").await.unwrap().unwrap();
    assert_eq!(opened.name(), "OWNED");
    assert_eq!(opened.epoch(), owner.epoch());
    let first = opened.get(1).await.unwrap().unwrap();
    assert_eq!(text(&first.payload), "from owner");
    assert_eq!(opened.last("owned.a").await.unwrap(), Some(first));
    // Appends work, on any of its subjects, and the owner sees them.
    for i in 2..=6 {
        let seq = opened
            .append("owned.a", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
        assert_eq!(seq, i);
    }
    let audit = opened
        .append("audit.x", Headers::new(), b("audit"))
        .await
        .unwrap();
    assert_eq!(
        owner.get(audit).await.unwrap().map(|m| m.payload),
        Some(b("audit"))
    );
    let err = opened
        .append("elsewhere.a", Headers::new(), b("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err:?}");
    // Its configuration was kept: the owner's per-subject limit still applies.
    assert_eq!(
        seqs(
            &opened
                .read("owned.a", ReadFrom::Sequence(1), 10)
                .await
                .unwrap()
        ),
        [4, 5, 6]
    );
    assert_eq!(opened.count("owned.>").await.unwrap(), 3);
    assert_eq!(seqs(&opened.tail("owned.a", 2).await.unwrap()), [5, 6]);
}

async fn history_streams_are_listed_measured_and_deleted(bus: Bus) {
    let first = stream(&bus, "LISTED_A", &["la.>"]).await;
    let second = stream(&bus, "LISTED_B", &["lb.>"]).await;
    stream(&bus, "OTHER", &["other.>"]).await;
    let mut names = bus.history_names("LISTED_").await.unwrap();
    names.sort();
    assert_eq!(names, ["LISTED_A", "LISTED_B"]);

    assert_eq!(first.usage().await.unwrap(), Usage::default());
    for subject in ["la.x", "la.y", "la.x"] {
        first
            .append(subject, Headers::new(), b("12345"))
            .await
            .unwrap();
    }
    let usage = first.usage().await.unwrap();
    assert_eq!(usage.messages, 3);
    // Each message counts its subject and payload at least.
    assert!(usage.bytes >= 3 * (4 + 5), "{usage:?}");
    let mut subjects = first.subjects("la.>").await.unwrap();
    subjects.sort();
    assert_eq!(subjects, [("la.x".to_owned(), 2), ("la.y".to_owned(), 1)]);
    assert_eq!(first.subjects("la.y").await.unwrap().len(), 1);
    assert!(first.subjects("lb.>").await.unwrap().is_empty());

    assert!(bus.delete_history("LISTED_A").await.unwrap());
    assert!(!bus.delete_history("LISTED_A").await.unwrap());
    assert!(bus.open_history("LISTED_A").await.unwrap().is_none());
    assert_eq!(bus.history_names("LISTED_").await.unwrap(), ["LISTED_B"]);
    // A deleted stream's subjects can be taken by another.
    stream(&bus, "LISTED_C", &["la.>"]).await;
    drop(second);
    let err = bus.delete_history("bad name").await.unwrap_err();
    assert!(matches!(err, BusError::InvalidConfig(_)), "{err:?}");
}

async fn history_keeps_a_subjects_newest_within_bytes(bus: Bus) {
    let hist = stream(&bus, "TRIM", &["tr.>"]).await;
    let payload = "x".repeat(100);
    for n in 0..10 {
        hist.append("tr.a", Headers::new(), Bytes::from(format!("{n}{payload}")))
            .await
            .unwrap();
    }
    hist.append("tr.b", Headers::new(), b("other"))
        .await
        .unwrap();
    // Each message on tr.a counts 4 (subject) + 101 (payload) = 105 bytes.
    assert_eq!(hist.keep_newest_within("tr.a", 350).await.unwrap(), 7);
    let kept = hist.tail("tr.a", 100).await.unwrap();
    let firsts: Vec<char> = kept
        .iter()
        .map(|m| text(&m.payload).chars().next().unwrap())
        .collect();
    assert_eq!(firsts, ['7', '8', '9']);
    assert_eq!(
        hist.count("tr.b").await.unwrap(),
        1,
        "other subjects untouched"
    );
    // Within the bound already: nothing to remove.
    assert_eq!(hist.keep_newest_within("tr.a", 350).await.unwrap(), 0);
    // The newest stays, whatever the bound.
    assert_eq!(hist.keep_newest_within("tr.a", 1).await.unwrap(), 2);
    assert_eq!(seqs(&hist.tail("tr.a", 100).await.unwrap()), [10]);
    assert_eq!(hist.keep_newest_within("tr.none", 1).await.unwrap(), 0);
    let err = hist.keep_newest_within("tr.*", 1).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidSubject(_)), "{err:?}");
}
