//! What only NATS can do: lose its server. Errors must be errors (not panics, not
//! hangs), and the client must come back by itself.

use std::future::Future;
use std::time::Duration;

use arqon_bus::{
    Bus, BusError, Bytes, DEFAULT_SUBSCRIPTION_CAPACITY, Headers, HistoryConfig, KvConfig,
    NatsOptions, ReadFrom,
};
use arqon_testkit::NatsServer;

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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
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
