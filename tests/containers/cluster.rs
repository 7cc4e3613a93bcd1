//! The three-node NATS cluster (docker-compose.nats-cluster.yml): every stream has three
//! replicas, and losing the node that leads the history stream loses no acknowledged
//! message.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::Stack;
use crate::support::{
    RECOVERY, WAIT, client, eventually, history_ids, http_get, number, publish_n,
};

/// The compose service of each NATS node, by server name.
const NODES: [(&str, &str); 3] = [
    ("nats-1", "nats"),
    ("nats-2", "nats-2"),
    ("nats-3", "nats-3"),
];

/// Every stream a NATS node holds: name, replicas configured, leader.
fn streams(stack: &Stack, service: &str) -> Vec<(String, usize, String)> {
    let monitor = SocketAddr::new(stack.ip(&stack.container(service)), 8222);
    let (status, body) = http_get(monitor, "/jsz?accounts=true&streams=true&config=true");
    assert_eq!(status, 200, "{body}");
    let jsz: Value = serde_json::from_str(&body).expect("JSON");
    jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| {
            account["stream_detail"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|stream| {
            (
                stream["name"].as_str().unwrap_or_default().to_owned(),
                stream["config"]["num_replicas"]
                    .as_u64()
                    .unwrap_or_default() as usize,
                stream["cluster"]["leader"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the image: scripts/test-containers.sh"]
async fn a_nats_cluster_loses_a_node_and_no_acknowledged_message() {
    let stack = Stack::up(
        "cluster",
        &["docker-compose.yml", "docker-compose.nats-cluster.yml"],
    );
    let url = stack.ws_url("lb");
    let user = stack.token("edge", "acme", "user");
    let (room, channel) = ("cluster", "room");
    let member = client(&url, &user).await;
    member.join(room, channel).await.expect("join");
    let publisher = client(&url, &user).await;
    publisher.join(room, channel).await.expect("join");
    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push(publish_n(&publisher, room, channel, n).await.expect("ack"));
    }
    for n in 0..10 {
        assert_eq!(
            number(&member.recv(WAIT).await.expect("message").payload),
            n
        );
    }

    // Every stream and bucket the bus made has three replicas.
    let held = streams(&stack, "nats");
    for name in [
        "ARQON_HISTORY_acme",
        "KV_arqon_channels",
        "KV_arqon_casil",
        "KV_arqon_edges",
    ] {
        assert!(
            held.iter().any(|(s, _, _)| s == name),
            "no {name}: {held:?}"
        );
    }
    for (name, replicas, _) in &held {
        assert_eq!(*replicas, 3, "{name} has {replicas} replicas");
    }
    // Kill the node that leads the history: the hardest one to lose.
    let leader = held
        .iter()
        .find(|(name, _, _)| name == "ARQON_HISTORY_acme")
        .map(|(_, _, leader)| leader.clone())
        .expect("the history stream");
    let (_, service) = NODES
        .iter()
        .find(|(server, _)| *server == leader)
        .unwrap_or_else(|| panic!("unknown leader {leader:?}"));
    let victim = stack.container(service);

    // Publishing goes on across the loss; a refused message is the client's to retry,
    // an acknowledged one must be kept.
    stack.docker(&["kill", &victim]);
    let killed = Instant::now();
    let mut refused = 0;
    let mut n = 10;
    let mut acked_after = 0;
    while acked_after < 20 {
        match publish_n(&publisher, room, channel, n).await {
            Ok(id) => {
                acked.push(id);
                acked_after += 1;
            }
            Err(_) => refused += 1,
        }
        n += 1;
        assert!(killed.elapsed() < RECOVERY, "publishing did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "killed {service} ({leader}); {refused} publishes refused, resumed within {:?}",
        killed.elapsed()
    );
    // The member still receives what is published after the failover.
    let last = acked.len();
    let id = publish_n(&publisher, room, channel, n).await.expect("ack");
    acked.push(id);
    eventually("the member receives new messages", WAIT, || async {
        match member.recv(WAIT).await {
            Ok(m) if number(&m.payload) == n => Some(()),
            _ => None,
        }
    })
    .await;

    stack.docker(&["start", &victim]);
    stack.wait_healthy(service);
    let stored = history_ids(&publisher, room, channel).await;
    for (i, id) in acked.iter().enumerate() {
        assert!(
            stored.contains(id),
            "acknowledged message {i} of {} ({id}) is not in history",
            last + 1
        );
    }
    for (name, replicas, _) in streams(&stack, service) {
        assert_eq!(replicas, 3, "{name} after the node returned");
    }
}
