//! How the edge closes connections: every close it starts completes the close handshake
//! of RFC 6455, so the client reads everything sent before the close frame, the close
//! frame itself, and then a clean end of the stream; never a reset.

use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use arqon_e2e::{Cluster, Ending, read_to_end};
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
