//! The SDK's reconnecting session and the hello-world bot, against a whole bus.

use std::time::Duration;

use serde_json::json;

use arqon_e2e::{Cluster, Mode, Topology, WAIT};
use arqon_sdk::{ConnectOptions, Event, Session, SessionOptions};
use arqon_testkit::ClosedPort;

use crate::both_modes;

#[path = "../../crates/sdk/examples/hello_world_bot.rs"]
#[allow(dead_code, unreachable_pub)]
mod hello_world_bot;

both_modes!(the_hello_world_bot_is_heard_in_science_general);

async fn the_hello_world_bot_is_heard_in_science_general(cluster: &Cluster) {
    let observer = cluster.client("t-a").await;
    observer.join("science", "general").await.unwrap();
    let token = cluster.token("t-a", "user");
    hello_world_bot::run(&cluster.ws_url, Some(token), "science", "general")
        .await
        .unwrap();
    let heard = observer.recv(WAIT).await.unwrap();
    assert_eq!(
        heard.payload.get("content"),
        Some(json!(hello_world_bot::HELLO))
    );
}

/// The session's edge goes away mid-stream: it reconnects to the other edge, rejoins,
/// and recovers what was published meanwhile, so every message arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_the_loss_of_its_edge_and_recovers_what_it_missed() {
    let mut cluster = Cluster::launch(Topology {
        edges: 2,
        ..Topology::new(Mode::Distributed)
    })
    .await;
    let token = cluster.token("t-a", "user");
    let urls: Vec<String> = cluster.edges().iter().map(|e| e.ws_url.clone()).collect();
    // After losing its edge the session tries a closed port first, then waits its backoff
    // (a second or more) before the other edge: what is published meanwhile must come
    // from history.
    let closed = ClosedPort::new();
    let mut options = SessionOptions::new(urls[0].clone(), ConnectOptions::with_token(&token));
    options.urls.push(format!("ws://{}/ws", closed.addr()));
    options.urls.push(urls[1].clone());
    options.backoff_min = Duration::from_secs(2);
    let mut session = Session::connect(options).await.unwrap();
    session.join("feed", "live").await.unwrap();
    let publisher = cluster.client_on(1, &token).await;

    let mut received = Vec::new();
    let next_message = async |session: &mut Session, received: &mut Vec<i64>| match session
        .next_within(WAIT)
        .await
        .unwrap()
    {
        Event::Message(m) => received.push(m.payload.get("n").and_then(|n| n.as_i64()).unwrap()),
        other => panic!("unexpected {other:?}"),
    };
    for n in 0..5 {
        publisher
            .publish("feed", "live", json!({ "n": n }))
            .await
            .unwrap();
        next_message(&mut session, &mut received).await;
    }
    // The edge goes; messages keep coming while the session is away.
    cluster.stop_edge(0).await;
    for n in 5..15 {
        publisher
            .publish("feed", "live", json!({ "n": n }))
            .await
            .unwrap();
    }
    let mut saw = (false, false, None);
    while received.len() < 15 {
        match session.next_within(WAIT).await.unwrap() {
            Event::Message(m) => {
                received.push(m.payload.get("n").and_then(|n| n.as_i64()).unwrap())
            }
            Event::Disconnected { .. } => saw.0 = true,
            Event::Reconnected { .. } => saw.1 = true,
            Event::Rejoined {
                recovered,
                recovered_count,
                ..
            } => saw.2 = Some((recovered, recovered_count)),
        }
        if received.len() == 10 {
            // And the session keeps working after it came back.
            publisher
                .publish("feed", "live", json!({ "n": 15 }))
                .await
                .unwrap();
        }
    }
    next_message(&mut session, &mut received).await;
    assert_eq!(received, (0..16).collect::<Vec<i64>>());
    assert!(saw.0 && saw.1, "{saw:?}");
    let (recovered, count) = saw.2.expect("a rejoin");
    assert!(recovered);
    assert!(count >= 1, "something was recovered: {count}");
    assert_ne!(session.client_id().await.unwrap(), "");
    cluster.stop().await;
}
