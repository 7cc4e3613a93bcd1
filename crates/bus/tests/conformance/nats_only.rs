//! What only NATS can do: lose its server. Errors must be errors (not panics, not
//! hangs), and the client must come back by itself.

use std::future::Future;
use std::time::Duration;

use arqon_bus::{
    Bus, BusError, Bytes, DEFAULT_SUBSCRIPTION_CAPACITY, Headers, HistoryConfig, HistorySource,
    KvConfig, NatsOptions, ReadFrom,
};
use arqon_testkit::{ClosedPort, NatsServer};

use crate::support::{WAIT, eventually, nats_options, recv, text};

/// Bound on the client noticing a restarted server (its reconnect backoff is at most 4 s).
const RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// Runs an operation that must fail while the server is down, and fail in bounded time.
async fn fails<T: std::fmt::Debug>(
    what: &str,
    operation: impl Future<Output = Result<T, BusError>>,
) -> BusError {
    match tokio::time::timeout(WAIT, operation).await {
        Ok(Ok(value)) => panic!("{what} succeeded without a server: {value:?}"),
        Ok(Err(err)) => err,
        Err(_) => panic!("{what} hung for {WAIT:?} without a server"),
    }
}

#[tokio::test]
async fn outage_is_reported_and_the_client_recovers() {
    let mut server = NatsServer::start();
    let options = NatsOptions {
        request_timeout: Duration::from_secs(2),
        ..nats_options(DEFAULT_SUBSCRIPTION_CAPACITY)
    };
    let bus = Bus::connect_nats(&server.url(), options).await.unwrap();
    assert_eq!(bus.backend(), "nats");
    let kv = bus.key_value(KvConfig::new("durable")).await.unwrap();
    kv.put("k", Bytes::from_static(b"before")).await.unwrap();
    let hist = bus
        .history(HistoryConfig::new("DURABLE", vec!["dur.>".into()]))
        .await
        .unwrap();
    let seq = hist
        .append("dur.a", Headers::new(), Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let mut sub = bus.subscribe("live.x").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("live.x", Bytes::from_static(b"up"))
        .await
        .unwrap();
    assert_eq!(text(&recv(&mut sub).await.payload), "up");

    server.stop();
    eventually(WAIT, "disconnect noticed", || async {
        (!bus.is_connected()).then_some(())
    })
    .await;
    let payload = || Bytes::from_static(b"down");
    let err = fails("publish", bus.publish("live.x", payload())).await;
    assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
    let err = fails("request", bus.request("svc", payload(), WAIT)).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("flush", bus.flush()).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("kv get", kv.get("k")).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("kv put", kv.put("k", payload())).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails(
        "history append",
        hist.append("dur.a", Headers::new(), payload()),
    )
    .await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails(
        "history read",
        hist.read("dur.>", ReadFrom::Sequence(1), 10),
    )
    .await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("open bucket", bus.key_value(KvConfig::new("other"))).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("kv keys matching", kv.keys_matching("k.>")).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("request many", bus.request_many("svc", payload(), 0, WAIT)).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("history tail", hist.tail("dur.a", 5)).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("history count", hist.count("dur.>")).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("history purge", hist.purge("dur.x")).await;
    assert!(err.is_transient(), "{err:?}");
    let err = fails("open history", bus.open_history("DURABLE")).await;
    assert!(err.is_transient(), "{err:?}");
    let stats = bus.stats();
    assert!(stats.disconnects() >= 1);
    assert!(
        stats.publish_errors() >= 2,
        "publish and append failures counted"
    );

    server.restart();
    eventually(RECONNECT_WAIT, "client reconnected", || async {
        bus.is_connected().then_some(())
    })
    .await;
    // The existing subscription was renewed by the client: it receives again.
    let deadline = tokio::time::Instant::now() + WAIT;
    let resumed = loop {
        if bus
            .publish("live.x", Bytes::from_static(b"after"))
            .await
            .is_ok()
            && let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
        {
            break message;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription did not resume within {WAIT:?}"
        );
    };
    assert_eq!(text(&resumed.payload), "after");
    // File-backed JetStream state survived the restart.
    let kept = eventually(WAIT, "JetStream back", || async { kv.get("k").await.ok() }).await;
    assert_eq!(kept.map(|e| e.value), Some(Bytes::from_static(b"before")));
    assert_eq!(
        hist.get(seq).await.unwrap().map(|m| m.payload),
        Some(Bytes::from_static(b"kept"))
    );
    kv.put("k", Bytes::from_static(b"again")).await.unwrap();
}

#[tokio::test]
async fn connect_fails_clearly_when_nothing_listens() {
    let closed = ClosedPort::new();
    let port = closed.port();
    let options = NatsOptions {
        connect_timeout: Duration::from_secs(1),
        ..NatsOptions::default()
    };
    let url = format!("nats://user:secret@127.0.0.1:{port}");
    let result = tokio::time::timeout(WAIT, Bus::connect_nats(&url, options))
        .await
        .expect("connect is bounded by connect_timeout");
    let err = result.unwrap_err();
    assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("secret"), "credentials leak: {message}");
}

/// A round trip on a subscription made before: the message comes back through the
/// server the client uses now.
async fn round_trip(bus: &Bus, sub: &mut arqon_bus::Subscription, payload: &'static str) {
    eventually(RECONNECT_WAIT, "connected again", || async {
        bus.is_connected().then_some(())
    })
    .await;
    // The subscription is sent again on reconnect, just after the connection is up:
    // publish until one comes back.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sent = bus
            .publish(sub.subject(), Bytes::from_static(payload.as_bytes()))
            .await;
        if sent.is_ok()
            && let Ok(Some(message)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            && text(&message.payload) == payload
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no round trip of {payload:?} within {WAIT:?}"
        );
    }
}

/// A seed list (`url,url`, as a cluster's clients are given) connects although its first
/// server is down, and the client moves to the other server when the one it uses goes.
#[tokio::test]
async fn a_seed_list_connects_and_fails_over() {
    let closed = ClosedPort::new();
    let mut a = NatsServer::start();
    let mut b = NatsServer::start();
    let seeds = format!("nats://{}, {} ,{}", closed.addr(), a.url(), b.url());
    let bus = Bus::connect_nats(&seeds, nats_options(DEFAULT_SUBSCRIPTION_CAPACITY))
        .await
        .unwrap();
    let mut sub = bus.subscribe("seeds.x").await.unwrap();
    bus.flush().await.unwrap();
    round_trip(&bus, &mut sub, "first").await;

    // Whichever server it used, after each loss it works through the other.
    a.stop();
    round_trip(&bus, &mut sub, "without a").await;
    a.restart();
    b.stop();
    round_trip(&bus, &mut sub, "without b").await;
}

/// Replicas beyond one need a JetStream cluster; on a single server opening a bucket
/// fails with the server's reason rather than quietly keeping one copy.
#[tokio::test]
async fn replicas_need_a_cluster() {
    let server = NatsServer::start();
    let options = NatsOptions {
        jetstream_replicas: 3,
        ..nats_options(DEFAULT_SUBSCRIPTION_CAPACITY)
    };
    let bus = Bus::connect_nats(&server.url(), options).await.unwrap();
    let err = bus
        .key_value(KvConfig::new("replicated"))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cannot open bucket replicated"),
        "{message}"
    );
    assert!(message.contains("replicas"), "{message}");

    let invalid = NatsOptions {
        jetstream_replicas: 0,
        ..nats_options(DEFAULT_SUBSCRIPTION_CAPACITY)
    };
    let err = Bus::connect_nats(&server.url(), invalid).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidConfig(_)), "{err:?}");
}

/// A raw JetStream context on the test server, standing for another service (or an
/// operator with the `nats` CLI) managing streams behind our back.
async fn raw_jetstream(server: &NatsServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(server.url()).await.unwrap();
    async_nats::jetstream::new(client)
}

#[tokio::test]
async fn epoch_changes_when_the_stream_is_recreated() {
    let server = NatsServer::start();
    let bus = Bus::connect_nats(&server.url(), nats_options(DEFAULT_SUBSCRIPTION_CAPACITY))
        .await
        .unwrap();
    let config = HistoryConfig::new("REBORN", vec!["reborn.>".into()]);
    let first = bus.history(config.clone()).await.unwrap();
    let seq = first
        .append("reborn.a", Headers::new(), Bytes::from_static(b"old"))
        .await
        .unwrap();
    assert_eq!(seq, 1);
    let js = raw_jetstream(&server).await;
    let created = js.get_stream("REBORN").await.unwrap().cached_info().created;
    let created = chrono::DateTime::from_timestamp_nanos(
        i64::try_from(created.unix_timestamp_nanos()).unwrap(),
    );
    assert_eq!(
        first.epoch(),
        created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "the stream's `created` time"
    );

    js.delete_stream("REBORN").await.unwrap();
    assert!(bus.open_history("REBORN").await.unwrap().is_none());
    let second = bus.history(config).await.unwrap();
    assert_ne!(second.epoch(), first.epoch(), "a new incarnation");
    // Sequences start over: the same number now names another message, which is what
    // the epoch tells apart.
    let again = second
        .append("reborn.a", Headers::new(), Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(again, 1);
    let opened = bus.open_history("REBORN").await.unwrap().unwrap();
    assert_eq!(opened.epoch(), second.epoch());
    // The epoch survives a server restart (file storage keeps `created`).
    let mut server = server;
    server.restart();
    let reopened = eventually(RECONNECT_WAIT, "stream back after restart", || async {
        bus.open_history("REBORN").await.ok().flatten()
    })
    .await;
    assert_eq!(reopened.epoch(), second.epoch());
}

#[tokio::test]
async fn open_history_reads_a_stream_configured_elsewhere() {
    use async_nats::jetstream::stream;

    let server = NatsServer::start();
    let js = raw_jetstream(&server).await;
    // Owned by another service: no direct gets, settings we do not know about.
    js.create_stream(stream::Config {
        name: "FOREIGN".into(),
        subjects: vec!["foreign.>".into()],
        description: Some("owned by someone else".into()),
        max_messages_per_subject: 2,
        max_messages: 1000,
        duplicate_window: Duration::from_secs(30),
        storage: stream::StorageType::Memory,
        allow_direct: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = js
        .get_stream("FOREIGN")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();

    let bus = Bus::connect_nats(&server.url(), nats_options(DEFAULT_SUBSCRIPTION_CAPACITY))
        .await
        .unwrap();
    let hist = bus.open_history("FOREIGN").await.unwrap().unwrap();
    for i in 1..=3 {
        hist.append("foreign.a", Headers::new(), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    // `get` and `last` work without direct gets.
    assert_eq!(
        hist.get(1).await.unwrap(),
        None,
        "max 2 per subject applies"
    );
    let second = hist.get(2).await.unwrap().unwrap();
    assert_eq!(text(&second.payload), "2");
    assert_eq!(
        hist.last("foreign.a").await.unwrap().map(|m| m.seq),
        Some(3)
    );
    assert_eq!(hist.last("foreign.none").await.unwrap(), None);
    assert_eq!(hist.get(99).await.unwrap(), None);
    assert_eq!(
        hist.read("foreign.>", ReadFrom::Sequence(1), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(hist.tail("foreign.a", 5).await.unwrap().len(), 2);
    assert_eq!(hist.count("foreign.>").await.unwrap(), 2);

    let after = js
        .get_stream("FOREIGN")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(after, before, "opening it changed nothing");
}

/// A stream with a source copies the source's matching messages, subjects and order kept,
/// without publishing them: a subscriber to those subjects sees none of them. The embedded
/// bus refuses sources.
#[tokio::test]
async fn a_history_copies_from_its_sources_without_publishing() {
    let server = NatsServer::start();
    let bus = crate::support::nats_bus(&server, DEFAULT_SUBSCRIPTION_CAPACITY).await;
    let old = bus
        .history(HistoryConfig::new("OLD", vec!["src.>".into()]))
        .await
        .unwrap();
    for (subject, text) in [("src.a.x", "1"), ("src.b.x", "2"), ("src.a.y", "3")] {
        old.append(subject, Headers::new(), Bytes::from(text))
            .await
            .unwrap();
    }
    // The old stream stops capturing, so the new one may.
    bus.history(HistoryConfig::new("OLD", vec!["retired".into()]))
        .await
        .unwrap();
    let mut live = bus.subscribe("src.>").await.unwrap();
    bus.flush().await.unwrap();
    let new = bus
        .history(HistoryConfig {
            sources: vec![HistorySource {
                stream: "OLD".into(),
                filter: "src.a.>".into(),
            }],
            ..HistoryConfig::new("NEW_A", vec!["src.a.>".into()])
        })
        .await
        .unwrap();
    eventually(WAIT, "the copy", || async {
        (new.count("src.a.>").await.unwrap() == 2).then_some(())
    })
    .await;
    let copied = new.read("src.>", ReadFrom::Sequence(1), 10).await.unwrap();
    let copied: Vec<_> = copied
        .iter()
        .map(|m| (m.subject.as_str(), text(&m.payload)))
        .collect();
    assert_eq!(
        copied,
        [("src.a.x", "1".to_owned()), ("src.a.y", "3".to_owned())]
    );
    assert_eq!(
        new.config().sources,
        [HistorySource {
            stream: "OLD".into(),
            filter: "src.a.>".into()
        }]
    );
    let reopened = bus.open_history("NEW_A").await.unwrap().unwrap();
    assert_eq!(reopened.config().sources, new.config().sources);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), live.next())
            .await
            .is_err(),
        "a copy is not a publish"
    );

    let embedded = Bus::embedded(Default::default());
    let err = embedded
        .history(HistoryConfig {
            sources: vec![HistorySource {
                stream: "OLD".into(),
                filter: ">".into(),
            }],
            ..HistoryConfig::new("NEW", vec!["n.>".into()])
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::InvalidConfig(_)), "{err:?}");
}
