//! Every limit of the edge gives a clear error or close code, and is counted.

use std::time::{Duration, Instant};

use futures_util::SinkExt as _;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

use arqon_e2e::{
    Cluster, RawSocket, WAIT, close_code, eventually, metric_value, next_json, send_json,
};
use arqon_edge::close_code as code;
use arqon_protocol::{ErrorCode, Status};
use arqon_sdk::token::{Claims, mint_hs256};

use crate::both_modes;

both_modes!(
    connections_above_the_limit_get_503: |c| EdgeConfig { max_connections: 2, ..c },
    senders_above_their_rate_are_refused_then_closed: |c| EdgeConfig {
        rate_limit_per_second: super::RATE,
        rate_limit_burst: super::BURST,
        rate_limit_strikes: 3,
        ..c
    },
    garbage_and_binary_frames_count_against_the_rate: |c| EdgeConfig {
        rate_limit_per_second: super::RATE,
        rate_limit_burst: super::BURST,
        rate_limit_strikes: 3,
        ..c
    },
    clients_that_stop_reading_are_disconnected_as_too_slow: |c| EdgeConfig { outbound_queue: 16, ..c },
    envelopes_nested_too_deep_are_refused,
    senders_above_their_byte_rate_are_refused: |c| EdgeConfig {
        max_message_size: 16 * 1024,
        rate_limit_bytes_per_second: 1024,
        rate_limit_strikes: 3,
        ..c
    },
    a_tenants_connections_share_its_byte_rate: |c| EdgeConfig {
        max_message_size: 16 * 1024,
        rate_limit_tenant_bytes_per_second: 1024,
        ..c
    },
    one_tenant_cannot_take_every_connection: |c| EdgeConfig {
        max_connections: 4,
        max_connections_per_tenant: 2,
        ..c
    },
    a_connection_is_in_a_bounded_number_of_channels: |c| EdgeConfig {
        max_channels_per_connection: 3,
        ..c
    },
    clients_that_do_not_answer_pings_are_closed: |c| EdgeConfig {
        ping_interval_seconds: 1,
        pong_timeout_seconds: 1,
        ..c
    },
    expired_tokens_close_the_connection_unless_refreshed: |c| EdgeConfig { jwt_leeway_seconds: 0, ..c },
);

/// The frame rate of the rate tests: a burst of 5, then one a second, and the third
/// refusal in a row closes. How many frames pass depends on how long the edge takes to
/// answer each (the bucket refills meanwhile), so the tests check bounds that hold
/// however slow the runner is, not a count: see [`check_rate`].
const RATE: u32 = 1;
const BURST: u32 = 5;
/// Frames sent at once: the close comes well before they run out unless answering them
/// took over 12 s.
const RATE_FRAMES: usize = 20;

/// One answer of the edge, in order: its `request_id`, and its `error_code` (`None` for
/// a command's `response`).
type Answer = (Option<String>, Option<String>);

/// Sends `frames` in one write, so that the edge finds each waiting as soon as it has
/// answered the one before, and reads the answers until the edge closes. Returns them
/// with the close code and the time from `since` (taken before the connection, whose
/// bucket starts full) to the close. All fit the edge's first read (2 KiB): it leaves
/// nothing unread, which would reset the connection before the close frame is read.
async fn answers_until_closed(
    socket: &mut RawSocket,
    frames: Vec<Message>,
    since: Instant,
) -> (Vec<Answer>, Option<u16>, Duration) {
    assert!(frames.iter().map(Message::len).sum::<usize>() < 1500);
    let sent = frames.len();
    for frame in frames {
        socket.feed(frame).await.unwrap();
    }
    socket.flush().await.unwrap();
    let mut answers = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(socket)).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                let request_id = frame["request_id"].as_str().map(str::to_owned);
                match frame["type"].as_str() {
                    Some("response") => answers.push((request_id, None)),
                    Some("error") => {
                        let code = frame["error_code"].as_str().map(str::to_owned);
                        answers.push((request_id, code));
                    }
                    Some("command_response") => {} // the legacy acknowledgement
                    _ => panic!("unexpected {frame}"),
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| u16::from(f.code));
                return (answers, code, since.elapsed());
            }
            Ok(Some(Ok(_))) => {}
            Err(_) if answers.len() == sent => panic!(
                "all {sent} frames answered and no close: the bucket refilled while the edge \
                 answered them ({:?}), the runner is far too slow for this test: {answers:?}",
                since.elapsed()
            ),
            other => panic!("expected answers then a close, got {other:?} after {answers:?}"),
        }
    }
}

/// What holds whatever the timing: the burst passes; at most the burst and what refilled
/// until the close pass; refusals come in runs of at most two, and the run of two that
/// ends the answers is followed by the close (the third strike). Returns how many passed
/// and how many were refused.
fn check_rate(answers: &[Answer], code: Option<u16>, elapsed: Duration) -> (usize, usize) {
    let refused = |a: &Answer| a.1.as_deref() == Some(ErrorCode::RateLimited.as_str());
    assert_eq!(code, Some(code::POLICY_VIOLATION), "{answers:?}");
    let burst = BURST as usize;
    assert!(
        answers.len() >= burst + 2 && !answers[..burst].iter().any(refused),
        "the burst passes: {answers:?}"
    );
    // A little slack for the limiter's clock (quanta) against the test's.
    let refilled = (elapsed.as_secs_f64() * 1.01 + 0.01) * f64::from(RATE);
    let passed = answers.iter().filter(|a| !refused(a)).count();
    assert!(
        passed as f64 <= burst as f64 + refilled.floor(),
        "{passed} passed in {elapsed:?}: {answers:?}"
    );
    let runs: Vec<usize> = answers
        .split(|a| !refused(a))
        .map(<[Answer]>::len)
        .collect();
    assert!(
        runs.iter().all(|&run| run <= 2) && runs.last() == Some(&2),
        "refused twice in a row, then closed: {answers:?}"
    );
    (passed, answers.len() - passed)
}

/// Frames the edge cannot use cost the sender its rate like any other: a client cannot
/// make the edge parse garbage (or read binary frames) forever.
async fn garbage_and_binary_frames_count_against_the_rate(cluster: &Cluster) {
    for binary in [false, true] {
        let since = Instant::now();
        let mut socket = cluster.raw_client("t-a").await;
        let frames = (0..RATE_FRAMES)
            .map(|n| {
                if binary {
                    Message::binary(vec![0u8; 32])
                } else {
                    Message::text(format!("{{\"id\": \"arq_1_{n}_abcdef\", not json"))
                }
            })
            .collect();
        let (answers, code, elapsed) = answers_until_closed(&mut socket, frames, since).await;
        check_rate(&answers, code, elapsed);
        for (_, error) in &answers {
            assert!(
                matches!(
                    error.as_deref(),
                    Some("RATE_LIMITED" | "VALIDATION_ERROR" | "INVALID_JSON")
                ),
                "binary: {binary}: {answers:?}"
            );
        }
    }
}

/// Deeper than `ARQONBUS_MAX_JSON_DEPTH` (32): refused at the door, since nothing after
/// it could inspect it; at the limit: accepted.
async fn envelopes_nested_too_deep_are_refused(cluster: &Cluster) {
    let mut socket = cluster.raw_client("t-a").await;
    let nested = |depth: usize| {
        // `{"v": [[...]]}`: the object is one level, each array another.
        let text = format!(
            r#"{{"v":{}1{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        serde_json::from_str::<Value>(&text).unwrap()
    };
    let deep = json!({"type": "message", "id": "arq_1_1_abcdef", "room": "lab", "channel": "deep",
                      "payload": {"content": "x"}, "metadata": nested(33)});
    send_json(&mut socket, &deep).await;
    let answer = next_json(&mut socket).await;
    assert_eq!(
        answer["error_code"],
        ErrorCode::ValidationError.as_str(),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 32"),
        "{answer}"
    );
    let fits = json!({"type": "message", "id": "arq_1_2_abcdef", "room": "lab", "channel": "deep",
                      "payload": nested(32)});
    send_json(&mut socket, &fits).await;
    assert_eq!(next_json(&mut socket).await["type"], "message_response");
}

/// Bytes count too: a sender of large frames is refused once it has used its burst (the
/// largest message), then closed.
async fn senders_above_their_byte_rate_are_refused(cluster: &Cluster) {
    let mut socket = cluster.raw_client("t-a").await;
    let filler = "x".repeat(5 * 1024);
    // Exactly as many as it takes: three pass, the third refusal closes. A frame sent
    // after the close would meet a reset connection.
    for n in 0..6 {
        send_json(
            &mut socket,
            &json!({"id": format!("arq_1_{n}_abcdef"), "type": "command", "command": "ping",
                    "args": {"filler": filler}}),
        )
        .await;
    }
    let (mut answered, mut limited) = (0, 0);
    let code = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut socket)).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                match (frame["type"].as_str(), frame["error_code"].as_str()) {
                    (Some("error"), Some("RATE_LIMITED")) => limited += 1,
                    (Some("response"), _) => answered += 1,
                    _ => {}
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                break frame.map(|f| u16::from(f.code));
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("expected frames then a close, got {other:?}"),
        }
    };
    assert_eq!(code, Some(code::POLICY_VIOLATION));
    // 16 KiB of burst: three 5 KiB frames pass, then refusals until the third strike.
    assert_eq!((answered, limited), (3, 2));
}

/// All of a tenant's connections on an edge draw on one byte rate: once they have used
/// its burst (the largest message), the next frame of any of them is refused, while
/// another tenant's connection still sends.
async fn a_tenants_connections_share_its_byte_rate(cluster: &Cluster) {
    let filler = "x".repeat(5 * 1024);
    let ping = async |socket: &mut RawSocket, n: usize| {
        send_json(
            socket,
            &json!({"id": format!("arq_1_{n}_abcdef"), "type": "command", "command": "ping",
                    "args": {"filler": filler}}),
        )
        .await;
        // The acknowledgement, then the command's answer; or a refusal.
        loop {
            let frame = next_json(socket).await;
            if matches!(frame["type"].as_str(), Some("command_response" | "error")) {
                break frame;
            }
        }
    };
    let (mut first, mut second) = (
        cluster.raw_client("t-a").await,
        cluster.raw_client("t-a").await,
    );
    let mut other = cluster.raw_client("t-b").await;
    // 16 KiB of burst for the tenant: three frames of 5 KiB, from either connection.
    assert_eq!(ping(&mut first, 1).await["type"], "command_response");
    assert_eq!(ping(&mut first, 2).await["type"], "command_response");
    assert_eq!(ping(&mut second, 3).await["type"], "command_response");
    let refused = ping(&mut second, 4).await;
    assert_eq!(
        (&refused["type"], &refused["error_code"]),
        (&json!("error"), &json!("RATE_LIMITED")),
        "{refused}"
    );
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("this tenant's connections")),
        "{refused}"
    );
    for n in 5..8 {
        assert_eq!(
            ping(&mut other, n).await["type"],
            "command_response",
            "t-b is apart"
        );
    }
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(&metrics, "arqonbus_edge_tenant_rate_limited_total"),
        Some(1.0),
        "{metrics}"
    );
}

async fn upgrade_as(cluster: &Cluster, tenant: &str) -> Result<RawSocket, u16> {
    let url = cluster.url_with_token(&cluster.token(tenant, "user"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

/// A tenant holds at most its quota of an edge's connections (429 beyond); the others
/// still get in, and a closed connection frees its place.
async fn one_tenant_cannot_take_every_connection(cluster: &Cluster) {
    let mut first = upgrade_as(cluster, "t-a").await.expect("first");
    let _second = upgrade_as(cluster, "t-a").await.expect("second");
    assert_eq!(upgrade_as(cluster, "t-a").await.err(), Some(429));
    let _other = upgrade_as(cluster, "t-b")
        .await
        .expect("another tenant gets in");
    first.close(None).await.unwrap();
    // Until the edge has seen the close, the place is still taken: count those refusals.
    let refused = std::sync::atomic::AtomicUsize::new(1);
    eventually("the closed connection frees its place", || async {
        match upgrade_as(cluster, "t-a").await {
            Ok(_) => true,
            Err(429) => {
                refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
            Err(status) => panic!("unexpected {status}"),
        }
    })
    .await;
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"arqonbus_edge_quota_refusals_total{quota="connections_per_tenant"}"#
        ),
        Some(refused.into_inner() as f64),
        "{metrics}"
    );
}

/// A connection is in at most `ARQONBUS_MAX_CHANNELS_PER_CONNECTION` channels: one more
/// join gets `QUOTA_EXCEEDED`, joining one it is in is fine, and leaving frees a place.
async fn a_connection_is_in_a_bounded_number_of_channels(cluster: &Cluster) {
    let mut socket = cluster.raw_client("t-a").await;
    let mut command = async |name: &str, channel: &str| {
        send_json(
            &mut socket,
            &json!({"type": "command", "command": name, "args": {"room": "lab", "channel": channel}}),
        )
        .await;
        let reply = next_json(&mut socket).await;
        if reply["type"] != "error" {
            assert_eq!(next_json(&mut socket).await["type"], "command_response");
        }
        reply
    };
    for channel in ["a", "b", "c"] {
        assert_eq!(command("join_channel", channel).await["status"], "success");
    }
    let refused = command("join_channel", "d").await;
    assert_eq!(refused["error_code"], "QUOTA_EXCEEDED", "{refused}");
    assert_eq!(command("join_channel", "a").await["status"], "success");
    assert_eq!(command("leave_channel", "a").await["status"], "success");
    assert_eq!(command("join_channel", "d").await["status"], "success");
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"arqonbus_edge_quota_refusals_total{quota="channels_per_connection"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

async fn upgrade_status(cluster: &Cluster) -> Result<RawSocket, u16> {
    let url = cluster.url_with_token(&cluster.token("t-a", "user"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

async fn connections_above_the_limit_get_503(cluster: &Cluster) {
    // The cluster's own readiness probe has come and gone; two slots are free.
    eventually("the probe connection is released", || async {
        metric_value(&cluster.metrics().await, "arqonbus_edge_connections") == Some(0.0)
    })
    .await;
    let first = cluster.raw_client("t-a").await;
    let _second = cluster.raw_client("t-a").await;
    assert_eq!(upgrade_status(cluster).await.err(), Some(503));
    drop(first);
    // The slot comes back once the first connection is cleaned up.
    eventually("a slot is free again", || async {
        upgrade_status(cluster).await.is_ok()
    })
    .await;
    let metrics = cluster.metrics().await;
    let refused = metric_value(
        &metrics,
        r#"arqonbus_edge_upgrades_total{outcome="over_capacity"}"#,
    );
    assert!(refused >= Some(1.0), "{metrics}");
}

/// Above its frame rate a sender is refused, then closed on the third refusal in a row;
/// every frame until then is answered exactly once, in order.
async fn senders_above_their_rate_are_refused_then_closed(cluster: &Cluster) {
    let since = Instant::now();
    let mut socket = cluster.raw_client("t-a").await;
    let id = |n: usize| format!("arq_1_{n}_abcdef");
    let frames = (0..RATE_FRAMES)
        .map(|n| {
            Message::text(json!({"id": id(n), "type": "command", "command": "ping"}).to_string())
        })
        .collect();
    let (answers, code, elapsed) = answers_until_closed(&mut socket, frames, since).await;
    let (_, refused) = check_rate(&answers, code, elapsed);
    let ids: Vec<Option<String>> = answers.iter().map(|a| a.0.clone()).collect();
    let expected: Vec<Option<String>> = (0..answers.len()).map(|n| Some(id(n))).collect();
    assert_eq!(ids, expected, "{answers:?}");
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(&metrics, "arqonbus_edge_rate_limited_total"),
        Some(refused as f64 + 1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"arqonbus_edge_disconnects_total{reason="rate_limited"} 1"#),
        "{metrics}"
    );
}

async fn clients_that_stop_reading_are_disconnected_as_too_slow(cluster: &Cluster) {
    let mut slow = cluster.raw_client("t-a").await;
    let join = json!({"type": "command", "command": "join_channel", "args": {"room": "flood", "channel": "c"}});
    send_json(&mut slow, &join).await;
    assert_eq!(next_json(&mut slow).await["status"], "success");
    // From here on the slow client reads nothing. 60 frames of 512 KiB are far more than
    // the kernel buffers hold, so its queue (16 frames) fills up.
    let publisher = cluster.client("t-a").await;
    let chunk = "x".repeat(512 * 1024);
    let publish = async {
        for n in 0..60 {
            publisher
                .publish("flood", "c", json!({"n": n, "data": chunk}))
                .await
                .unwrap();
        }
    };
    // Watched while the publisher goes on: once closed, the client reads again, within
    // the close linger, and finds what fitted in the buffers, then the close frame.
    let closed = async {
        eventually("the slow client is disconnected", || async {
            cluster
                .metrics()
                .await
                .contains(r#"arqonbus_edge_disconnects_total{reason="too_slow"} 1"#)
        })
        .await;
        close_code(&mut slow).await
    };
    let ((), code) = tokio::join!(publish, closed);
    assert_eq!(code, Some(code::TOO_SLOW));
    let metrics = cluster.metrics().await;
    assert!(
        !metrics.contains("arqonbus_edge_queue_drops_total 0"),
        "{metrics}"
    );
    // The publisher was never slowed down or disconnected.
    let pong = publisher.command("ping", Map::new()).await.unwrap();
    assert_eq!(pong.status, Some(Status::Success));
}

async fn clients_that_do_not_answer_pings_are_closed(cluster: &Cluster) {
    let mut silent = cluster.raw_client("t-a").await;
    // An SDK client reads all the time, so it answers pings.
    let alive = cluster.client("t-a").await;
    // Not reading means not answering: after a ping (1 s) and the timeout (1 s), closed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(close_code(&mut silent).await, Some(code::PING_TIMEOUT));
    let pong = alive.command("ping", Map::new()).await.unwrap();
    assert_eq!(pong.status, Some(Status::Success));
    let metrics = cluster.metrics().await;
    assert!(
        metrics.contains(r#"arqonbus_edge_disconnects_total{reason="ping_timeout"} 1"#),
        "{metrics}"
    );
}

fn token(cluster: &Cluster, tenant: &str, ttl: Duration) -> String {
    let _ = cluster;
    mint_hs256(
        arqon_e2e::SECRET.as_bytes(),
        &Claims::new("e2e", tenant, "user", ttl),
    )
    .unwrap()
}

async fn connect(cluster: &Cluster, token: &str) -> RawSocket {
    let (mut socket, _) = tokio_tungstenite::connect_async(cluster.url_with_token(token))
        .await
        .unwrap();
    next_json(&mut socket).await;
    socket
}

async fn refresh(socket: &mut RawSocket, token: &str) -> Value {
    send_json(
        socket,
        &json!({"type": "command", "command": "refresh", "args": {"token": token}}),
    )
    .await;
    let response = next_json(socket).await;
    assert_eq!(next_json(socket).await["type"], "command_response");
    response
}

async fn expired_tokens_close_the_connection_unless_refreshed(cluster: &Cluster) {
    let short = Duration::from_secs(2);
    let mut expiring = connect(cluster, &token(cluster, "t-a", short)).await;
    let mut refreshed = connect(cluster, &token(cluster, "t-a", short)).await;

    let foreign = refresh(
        &mut refreshed,
        &token(cluster, "t-b", Duration::from_secs(3600)),
    )
    .await;
    assert_eq!(
        foreign["error_code"],
        ErrorCode::AuthorizationError.as_str()
    );
    let garbage = refresh(&mut refreshed, "invalid.token.value").await;
    assert_eq!(
        garbage["error_code"],
        ErrorCode::AuthenticationFailed.as_str()
    );
    let fresh = refresh(
        &mut refreshed,
        &token(cluster, "t-a", Duration::from_secs(3600)),
    )
    .await;
    assert_eq!(fresh["status"], "success", "{fresh}");
    assert!(fresh["payload"]["data"]["expires_at"].as_u64().is_some());

    assert_eq!(close_code(&mut expiring).await, Some(code::TOKEN_EXPIRED));
    // The refreshed connection outlives its first token.
    send_json(
        &mut refreshed,
        &json!({"type": "command", "command": "ping"}),
    )
    .await;
    assert_eq!(next_json(&mut refreshed).await["status"], "success");
}
