//! How the edge closes connections: every close it starts completes the close handshake
//! of RFC 6455, so the client reads everything sent before the close frame, the close
//! frame itself, and then a clean end of the stream; never a reset.

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use arqon_e2e::{
    Cluster, Ending, RawSocket, eventually, metric_value, next_json, read_to_end, send_json,
};
use arqon_edge::close_code as code;

use crate::both_modes;

both_modes!(
    a_flooding_client_reads_its_refusals_then_1008: |c| EdgeConfig {
        rate_limit_per_second: 5,
        rate_limit_burst: 5,
        rate_limit_strikes: 3,
        ..c
    },
    an_oversized_message_is_closed_cleanly_with_1009,
    a_reader_over_the_byte_bound_is_closed_with_4008: |c| EdgeConfig {
        outbound_queue_bytes: 1024 * 1024,
        ..c
    },
    a_reader_whose_writes_stall_is_closed_with_4008: |c| EdgeConfig {
        outbound_queue_bytes: 64 * 1024 * 1024,
        write_stall_timeout_seconds: 1,
        ..c
    },
);

/// Each scenario runs this many times: a reset came in some runs only.
const RUNS: usize = 5;

/// Frames a flooding client sends before it reads anything.
const FLOOD: usize = 3000;

/// A client that floods without reading (a runaway bot) is refused, then closed with
/// 1008 while most of its flood is still unread. It finds its refusals and the 1008, and
/// the connection ends cleanly, because the edge reads and drops the rest of the flood
/// until the client answers the close.
async fn a_flooding_client_reads_its_refusals_then_1008(cluster: &Cluster) {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let mut socket = cluster.raw_client("t-a").await;
        let mut sent = 0;
        for n in 0..FLOOD {
            let ping =
                json!({"id": format!("arq_1_{n}_abcdef"), "type": "command", "command": "ping"});
            if socket.feed(Message::text(ping.to_string())).await.is_err() {
                break;
            }
            sent += 1;
        }
        let flushed = socket.flush().await.is_ok();
        let mut limited = 0;
        let ending = read_to_end(&mut socket, |text| {
            let frame: Value = serde_json::from_str(text).unwrap();
            if frame["error_code"] == "RATE_LIMITED" {
                limited += 1;
            }
        })
        .await;
        runs.push((sent, flushed, limited, ending));
    }
    // The burst (5) passes, two refusals, and the third strike closes.
    let clean = (
        FLOOD,
        true,
        2,
        Ending::Closed(code::POLICY_VIOLATION, "rate limit exceeded".to_owned()),
    );
    assert!(
        runs.iter().all(|run| *run == clean),
        "(sent, flushed, RATE_LIMITED read, ending) of each run: {runs:#?}"
    );
}

/// A message over `ARQONBUS_MAX_MESSAGE_SIZE` is refused at its header, with most of it
/// still on its way: the client still sends it whole, then finds 1009 and a clean end.
async fn an_oversized_message_is_closed_cleanly_with_1009(cluster: &Cluster) {
    // Twice the limit (1 MiB).
    let oversized = format!(
        r#"{{"type":"message","room":"r","channel":"c","payload":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let mut socket = cluster.raw_client("t-a").await;
        let sent = socket.send(Message::text(oversized.clone())).await.is_ok();
        let ending = read_to_end(&mut socket, |_| {}).await;
        runs.push((sent, ending));
    }
    let clean = (
        true,
        Ending::Closed(code::MESSAGE_TOO_BIG, "message too big".to_owned()),
    );
    assert!(
        runs.iter().all(|run| *run == clean),
        "(sent, ending) of each run: {runs:#?}"
    );
}

/// A raw client in `room`/`c`, with the join's answers read.
async fn member(cluster: &Cluster, room: &str) -> RawSocket {
    let mut socket = cluster.raw_client("t-a").await;
    let join = json!({"type": "command", "command": "join_channel", "args": {"room": room, "channel": "c"}});
    send_json(&mut socket, &join).await;
    assert_eq!(next_json(&mut socket).await["status"], "success");
    assert_eq!(next_json(&mut socket).await["type"], "command_response");
    socket
}

/// Messages of 512 KiB [`flood`] publishes: 16 MiB, far more than the kernel's buffers
/// between the edge and a client hold (about 4 MiB on loopback).
const FLOODED: usize = 32;

/// Publishes `count` messages of 512 KiB to `room`/`c`.
async fn flood(cluster: &Cluster, room: &str, count: usize) {
    let publisher = cluster.client("t-a").await;
    let chunk = "x".repeat(512 * 1024);
    for n in 0..count {
        publisher
            .publish(room, "c", json!({"n": n, "data": chunk}))
            .await
            .unwrap();
    }
}

/// Floods `slow`'s room while watching it: once the edge has closed it as too slow, it
/// reads again (within the close linger) to the end. Returns how it ended, the frames it
/// read and the edge's queue drops.
async fn flood_until_closed(
    cluster: &Cluster,
    slow: &mut RawSocket,
    room: &str,
) -> (Ending, usize, f64) {
    let closed = async {
        eventually("the slow client is disconnected", || async {
            metric_value(
                &cluster.metrics().await,
                r#"arqonbus_edge_disconnects_total{reason="too_slow"}"#,
            ) == Some(1.0)
        })
        .await;
        let mut frames = 0;
        let ending = read_to_end(slow, |_| frames += 1).await;
        (ending, frames)
    };
    let ((), (ending, frames)) = tokio::join!(flood(cluster, room, FLOODED), closed);
    let drops = metric_value(&cluster.metrics().await, "arqonbus_edge_queue_drops_total");
    (ending, frames, drops.unwrap_or(0.0))
}

/// A reader that stops reading, sent few but large frames, fills its queue by bytes
/// (`ARQONBUS_OUTBOUND_QUEUE_BYTES`, 1 MiB) long before its frame bound (1024): it is
/// closed with 4008, and finds the close frame behind what the buffers held once it
/// reads again (within the close linger).
async fn a_reader_over_the_byte_bound_is_closed_with_4008(cluster: &Cluster) {
    let mut slow = member(cluster, "bytes").await;
    let (ending, frames, drops) = flood_until_closed(cluster, &mut slow, "bytes").await;
    assert_eq!(
        ending,
        Ending::Closed(code::TOO_SLOW, "too slow: outbound queue full".to_owned())
    );
    assert!(frames < FLOODED, "{frames}");
    assert!(drops >= 1.0, "the queue overflowed");
}

/// A reader that stops reading while its queue stays within its bounds (64 MiB here) is
/// closed with 4008 once a write has made no progress for
/// `ARQONBUS_WRITE_STALL_TIMEOUT_SECONDS` (1 s here).
async fn a_reader_whose_writes_stall_is_closed_with_4008(cluster: &Cluster) {
    let mut slow = member(cluster, "stall").await;
    let (ending, frames, drops) = flood_until_closed(cluster, &mut slow, "stall").await;
    assert_eq!(
        ending,
        Ending::Closed(code::TOO_SLOW, "too slow: writes stalled".to_owned())
    );
    assert!(frames < FLOODED, "{frames}");
    assert_eq!(drops, 0.0, "no queue overflowed");
}
