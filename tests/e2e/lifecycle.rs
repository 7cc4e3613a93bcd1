//! Shutdown and the loss of NATS.

use serde_json::{Map, Value, json};

use arqon_e2e::{
    Cluster, Ending, close_code, eventually, metric_value, next_json, read_to_end, send_json,
};
use arqon_edge::close_code as code;
use arqon_protocol::{ErrorCode, MessageType, Status};
use arqon_sdk::SdkError;

use crate::both_modes;

both_modes!(shutdown_writes_queued_frames_then_closes_with_1001_and_answers_upgrades_503);

async fn status(cluster: &Cluster) -> Value {
    let (code, body) = cluster.http_get("/status").await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// What a new upgrade gets: the refusal's status and headers, or how it failed.
async fn try_upgrade(cluster: &Cluster) -> Result<(u16, Option<String>, Option<String>), String> {
    let url = cluster.url_with_token(&cluster.token("t-a", "user"));
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => Err("the upgrade was accepted".to_owned()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            Ok((
                response.status().as_u16(),
                header("connection"),
                header("retry-after"),
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// On shutdown a client gets the frames queued for it, then 1001. While the edge drains,
/// an upgrade gets 503 (a clear answer for a load balancer, not a refused connection);
/// the listener closes once the drain has ended.
async fn shutdown_writes_queued_frames_then_closes_with_1001_and_answers_upgrades_503(
    cluster: &Cluster,
) {
    const COUNT: u64 = 50;
    let mut reader = cluster.raw_client("t-a").await;
    let join = json!({"type": "command", "command": "join_channel", "args": {"room": "drain", "channel": "c"}});
    send_json(&mut reader, &join).await;
    assert_eq!(next_json(&mut reader).await["status"], "success");
    assert_eq!(next_json(&mut reader).await["type"], "command_response");

    let publisher = cluster.client("t-a").await;
    for n in 0..COUNT {
        publisher
            .publish("drain", "c", json!({ "n": n }))
            .await
            .unwrap();
    }
    // Every message is queued for the reader, which has read none of them yet.
    eventually("all messages reach the reader's queue", || async {
        status(cluster).await["messages"]["fanout_deliveries"].as_u64() >= Some(COUNT)
    })
    .await;

    // It reads nothing until the end: the edge waits for its answer to the close (the
    // close linger), so the drain is still going on below.
    let mut idle = cluster.raw_client("t-a").await;

    cluster.begin_shutdown();
    for n in 0..COUNT {
        assert_eq!(next_json(&mut reader).await["payload"]["n"], n);
    }
    assert_eq!(close_code(&mut reader).await, Some(code::GOING_AWAY));
    // While the edge drains, an upgrade is answered 503, not refused.
    assert_eq!(
        try_upgrade(cluster).await,
        Ok((503, Some("close".to_owned()), Some("1".to_owned())))
    );
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"arqonbus_edge_upgrades_total{outcome="draining"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        read_to_end(&mut idle, |_| {}).await,
        Ending::Closed(code::GOING_AWAY, "server shutting down".to_owned())
    );
    // Once every connection is closed, the drain ends and the listener with it.
    eventually("the listener closes when the drain ends", || async {
        try_upgrade(cluster)
            .await
            .is_err_and(|e| e.contains("refused"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_keeps_sockets_tells_senders_and_recovers() {
    let mut cluster = Cluster::distributed().await;
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-a").await;
    a.join("science", "general").await.unwrap();
    b.join("science", "general").await.unwrap();
    a.publish("science", "general", json!({"content": "before"}))
        .await
        .unwrap();
    assert_eq!(
        b.recv(arqon_e2e::WAIT)
            .await
            .unwrap()
            .payload
            .get("content"),
        Some(json!("before"))
    );

    cluster.nats().stop();
    eventually("the edge reports not ready", || async {
        cluster.http_get("/ready").await.0 == 503
    })
    .await;
    let (_, ready) = cluster.http_get("/ready").await;
    assert!(ready.contains("bus is not connected"), "{ready}");

    // What a client sends now is refused with an error, never dropped in silence.
    match a
        .publish("science", "general", json!({"content": "lost?"}))
        .await
    {
        Err(SdkError::Rejected { code, .. }) => {
            assert!(
                code == ErrorCode::Unavailable.as_str() || code == ErrorCode::Timeout.as_str(),
                "{code}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The socket stays open: the edge still answers what it can answer alone.
    a.send_text("not json".to_owned()).await.unwrap();
    let reply = a.recv(arqon_e2e::WAIT).await.unwrap();
    assert_eq!(reply.kind, MessageType::Error);
    assert!(reply.has_error_code(ErrorCode::ValidationError));

    cluster.nats().restart();
    eventually("the edge is ready again", || async {
        cluster.http_get("/ready").await.0 == 200
    })
    .await;
    eventually("the pipeline answers again", || async {
        matches!(a.command("ping", Map::new()).await, Ok(r) if r.status == Some(Status::Success))
    })
    .await;
    // The room subscription came back by itself: nobody joined again.
    a.publish("science", "general", json!({"content": "after"}))
        .await
        .unwrap();
    assert_eq!(
        b.recv(arqon_e2e::WAIT)
            .await
            .unwrap()
            .payload
            .get("content"),
        Some(json!("after"))
    );
    cluster.stop().await;
}

/// When nothing answers an envelope (no dispatcher consumes), its sender gets exactly one
/// `TIMEOUT` error once the edge's pipeline timeout has passed, and the connection goes
/// on: the next envelope is read (and times out too), and once a dispatcher is back the
/// next one is answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_nobody_answers_times_out_and_the_connection_goes_on() {
    use std::time::{Duration, Instant};

    use futures_util::StreamExt as _;

    const TIMEOUT: Duration = Duration::from_millis(400);
    let edge = arqon_edge::EdgeConfig {
        pipeline_timeout_ms: 400,
        ..arqon_e2e::edge_config()
    };
    let mut cluster = Cluster::start(arqon_e2e::Mode::Distributed, edge).await;
    let member = cluster.client("t-a").await;
    member.join("lab", "c").await.unwrap();
    let mut socket = cluster.raw_client("t-a").await;
    cluster.stop_dispatcher(0).await;

    let unanswered = [
        json!({"type": "message", "room": "lab", "channel": "c", "payload": {"n": "lost"}}),
        json!({"type": "command", "command": "ping"}),
    ];
    for mut envelope in unanswered {
        let id = arqon_protocol::MessageId::generate().to_string();
        envelope["id"] = json!(id);
        let sent = Instant::now();
        send_json(&mut socket, &envelope).await;
        let answer = next_json(&mut socket).await;
        let waited = sent.elapsed();
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(
            answer["error_code"],
            ErrorCode::Timeout.as_str(),
            "{answer}"
        );
        assert_eq!(answer["request_id"], id.as_str(), "{answer}");
        // The edge's setting, not the 5 s default, and never before it.
        assert!(
            waited >= TIMEOUT && waited < Duration::from_secs(3),
            "answered after {waited:?}"
        );
    }
    // One answer per envelope: nothing follows.
    let more = tokio::time::timeout(arqon_e2e::QUIET, socket.next()).await;
    assert!(more.is_err(), "{more:?}");
    let timeouts = arqon_e2e::metric_value(
        &cluster.metrics().await,
        "arqonbus_edge_pipeline_timeouts_total",
    );
    assert_eq!(timeouts, Some(2.0));

    cluster.restart_dispatcher(0).await;
    let id = arqon_protocol::MessageId::generate().to_string();
    let message = json!({"id": id, "type": "message", "room": "lab", "channel": "c", "payload": {"n": "after"}});
    send_json(&mut socket, &message).await;
    let ack = next_json(&mut socket).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("message_response"), Some(id.as_str())),
        "{ack}"
    );
    // The one that timed out was never routed: nobody consumed it.
    let delivered = member.recv(arqon_e2e::WAIT).await.unwrap();
    assert_eq!(delivered.payload.get("n"), Some(json!("after")));
    cluster.stop().await;
}
