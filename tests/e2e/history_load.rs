//! History read right after the acknowledgement, under load. ADR 011: the dispatcher
//! answers a message only once the history stream confirmed it stored it, so on one
//! nats-server (and on the embedded bus) a read that follows the acknowledgement finds
//! it: nothing here waits for history to catch up.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use arqon_e2e::Cluster;
use arqon_e2e::reply::{data, run};
use arqon_protocol::Status;
use arqon_sdk::Client;

const ROOM: &str = "load";
const CHANNEL: &str = "ledger";
/// Clients publishing at once.
const PUBLISHERS: usize = 8;
/// Messages each publishes.
const EACH: i64 = 40;
/// What each read after an acknowledgement asks for: more than every other publisher
/// can have stored between that acknowledgement and the read.
const RECENT: usize = 100;

mod every_acknowledged_message_is_in_history_at_once {
    use arqon_e2e::{Cluster, Mode, Topology};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn standalone() {
        let cluster = Cluster::start(Mode::Standalone, arqon_e2e::edge_config()).await;
        super::every_acknowledged_message_is_in_history_at_once(&cluster).await;
        cluster.stop().await;
    }

    /// Two dispatchers acknowledge, each for what it routed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn distributed_with_two_dispatchers() {
        let cluster = Cluster::launch(Topology {
            dispatchers: 2,
            ..Topology::new(Mode::Distributed)
        })
        .await;
        super::every_acknowledged_message_is_in_history_at_once(&cluster).await;
        cluster.stop().await;
    }
}

/// [`PUBLISHERS`] clients publish [`EACH`] messages each, all at once. Right after each
/// acknowledgement, the publisher reads the channel's newest messages: its message is
/// among them. Once all are acknowledged, one read has every message, each once, each
/// publisher's in its order.
async fn every_acknowledged_message_is_in_history_at_once(cluster: &Cluster) {
    let mut publishers = Vec::new();
    for _ in 0..PUBLISHERS {
        publishers.push(cluster.client("t-a").await);
    }
    publishers[0].join(ROOM, CHANNEL).await.unwrap();
    let runs = publishers
        .iter()
        .enumerate()
        .map(|(p, client)| publish_and_read_back(client, p));
    futures_util::future::join_all(runs).await;

    let history = read(&publishers[0], PUBLISHERS * EACH as usize).await;
    let mut each: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for stored in &history {
        let (p, n) = (&stored["payload"]["p"], &stored["payload"]["n"]);
        each.entry(p.as_i64().unwrap())
            .or_default()
            .push(n.as_i64().unwrap());
    }
    assert_eq!(each.len(), PUBLISHERS);
    for (p, ns) in each {
        assert_eq!(ns, (0..EACH).collect::<Vec<_>>(), "publisher {p}");
    }
}

/// Publishes `{"p": p, "n": n}` for each `n`, and reads the newest messages right after
/// each acknowledgement.
async fn publish_and_read_back(client: &Client, p: usize) {
    for n in 0..EACH {
        let id = client
            .publish(ROOM, CHANNEL, json!({"p": p, "n": n}))
            .await
            .unwrap_or_else(|e| panic!("publisher {p}, message {n}: {e}"));
        let recent = read(client, RECENT).await;
        assert!(
            recent.iter().any(|stored| stored["message_id"] == id),
            "publisher {p}, message {n} ({id}) acknowledged but not in history"
        );
    }
}

/// The channel's newest `limit` stored messages, oldest first.
async fn read(client: &Client, limit: usize) -> Vec<Value> {
    let reply = run(
        client,
        "history",
        json!({"room": ROOM, "channel": CHANNEL, "limit": limit}),
    )
    .await;
    assert_eq!(reply.status, Some(Status::Success), "{}", reply.to_json());
    data(&reply)["history"].as_array().unwrap().clone()
}
