//! Envelopes the live CASIL policy does not apply to skip the policy stage (ADR 019): what
//! skips and what does not, a reload while a client publishes, and an edge that cannot
//! follow the policy (no bucket yet, the bus gone, the bucket lost) sending everything
//! through the stage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use arqon_casil::{Mode, Policy, Scope};
use arqon_dispatcher::DispatcherConfig;
use arqon_e2e::{Cluster, Mode as Deployment, QUIET, SECRET, Topology, WAIT, eventually};
use arqon_e2e::{edge_config, metric_value};
use arqon_edge::EdgeConfig;
use arqon_policy::{CasilSettings, PolicyConfig};
use arqon_proto::layout;
use arqon_sdk::token::{Claims, mint_hs256};
use arqon_sdk::{Client, ConnectOptions, SdkError};
use arqon_testkit::NatsServer;
use arqonbus::{Listeners, Services, connect_bus, serve};

use crate::{both_modes, each_mode};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Envelopes the edge sent `to` the policy stage or the dispatcher, in an exposition.
fn routed(metrics: &str, to: &str) -> f64 {
    let series = format!("arqonbus_edge_envelopes_routed_total{{to=\"{to}\"}}");
    metric_value(metrics, &series).unwrap_or(0.0)
}

/// Every decision the policy stage made, whatever it was.
fn decisions(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("arqonbus_policy_decisions_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What the edge and the policy stage counted: sent to the stage, sent to the
/// dispatcher, decided by the stage.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counts {
    to_policy: f64,
    to_dispatcher: f64,
    decided: f64,
}

impl Counts {
    async fn of(cluster: &Cluster) -> Self {
        let edge = cluster.metrics().await;
        Counts {
            to_policy: routed(&edge, "policy"),
            to_dispatcher: routed(&edge, "dispatcher"),
            decided: decisions(&cluster.policy_metrics(0).await),
        }
    }

    fn since(self, before: Counts) -> Counts {
        Counts {
            to_policy: self.to_policy - before.to_policy,
            to_dispatcher: self.to_dispatcher - before.to_dispatcher,
            decided: self.decided - before.decided,
        }
    }
}

fn counts(to_policy: u32, to_dispatcher: u32, decided: u32) -> Counts {
    Counts {
        to_policy: f64::from(to_policy),
        to_dispatcher: f64::from(to_dispatcher),
        decided: f64::from(decided),
    }
}

/// Waits until the (first) edge routes by policy `version`.
async fn wait_routing_by(cluster: &Cluster, version: u64) {
    eventually("the edge routes by the stored policy", || async move {
        metric_value(&cluster.metrics().await, "arqonbus_edge_casil_version")
            == Some(version as f64)
    })
    .await;
}

fn rejected(result: Result<impl std::fmt::Debug, SdkError>) -> String {
    match result {
        Err(SdkError::Rejected { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

both_modes!(
    with_casil_off_nothing_goes_through_the_policy_stage,
    with_the_bypass_off_everything_goes_through_the_policy_stage: super::bypass_off,
);

fn bypass_off(config: EdgeConfig) -> EdgeConfig {
    EdgeConfig {
        policy_bypass: false,
        ..config
    }
}

/// Sends a message (delivered), a command and a ping (answered); what was counted.
async fn send_three(cluster: &Cluster) -> Counts {
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let sender = cluster.client("t-a").await;
    let before = Counts::of(cluster).await;
    sender
        .publish("lab", "notes", json!({"content": "hello"}))
        .await
        .unwrap();
    let delivered = member.recv(WAIT).await.unwrap();
    assert_eq!(delivered.payload.get("content"), Some(json!("hello")));
    sender
        .command(
            "create_channel",
            args(json!({"room": "lab", "channel": "more"})),
        )
        .await
        .unwrap();
    sender.command("ping", Map::new()).await.unwrap();
    Counts::of(cluster).await.since(before)
}

async fn with_casil_off_nothing_goes_through_the_policy_stage(cluster: &Cluster) {
    wait_routing_by(cluster, 1).await;
    assert_eq!(
        send_three(cluster).await,
        counts(0, 3, 0),
        "CASIL is off: all three skip the stage"
    );
}

async fn with_the_bypass_off_everything_goes_through_the_policy_stage(cluster: &Cluster) {
    assert_eq!(
        send_three(cluster).await,
        counts(3, 0, 3),
        "the bypass is off: all three are inspected"
    );
    let metrics = cluster.metrics().await;
    assert_eq!(
        metric_value(&metrics, "arqonbus_edge_casil_version"),
        Some(0.0)
    );
}

/// A cluster whose policy stage starts from `policy`.
async fn launch(mode: Deployment, policy: &Policy) -> Cluster {
    Cluster::launch(Topology {
        policy: PolicyConfig {
            casil: CasilSettings::from_policy(policy),
            ..PolicyConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

fn enforcing_in(rooms: &[&str]) -> Policy {
    let mut policy = Policy {
        enabled: true,
        mode: Mode::Enforce,
        scope: Scope {
            include: rooms.iter().map(|r| (*r).to_owned()).collect(),
            exclude: Vec::new(),
        },
        ..Policy::default()
    };
    policy.policies.block_on_probable_secret = true;
    policy
}

each_mode!(a_scoped_policy_inspects_its_rooms_and_the_others_skip_the_stage);

/// Enforcing in `room-a*` only: a secret there is blocked as before; the same secret to
/// `room-b` is delivered as sent, without the policy stage; a command is inspected when
/// its arguments name `room-a`.
async fn a_scoped_policy_inspects_its_rooms_and_the_others_skip_the_stage(mode: Deployment) {
    let cluster = launch(mode, &enforcing_in(&["room-a*"])).await;
    wait_routing_by(&cluster, 1).await;
    let in_a = cluster.client("t-a").await;
    in_a.join("room-a", "c").await.unwrap();
    let in_b = cluster.client("t-a").await;
    in_b.join("room-b", "c").await.unwrap();
    let sender = cluster.client("t-a").await;

    let before = Counts::of(&cluster).await;
    let secret = json!({"content": "the key is AKIAIOSFODNN7EXAMPLE"});
    let blocked = sender.publish("room-a", "c", secret.clone()).await;
    assert_eq!(rejected(blocked), "CASIL_POLICY_BLOCKED_SECRET");
    sender.publish("room-b", "c", secret.clone()).await.unwrap();
    let delivered = in_b.recv(WAIT).await.unwrap();
    assert_eq!(
        delivered.payload.get("content"),
        secret.get("content").cloned()
    );
    assert_eq!(in_a.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    let create =
        |room: &str| args(json!({"room": room, "channel": "new", "description": "password: x"}));
    let blocked = sender.command("create_channel", create("room-a")).await;
    assert_eq!(rejected(blocked), "CASIL_POLICY_BLOCKED_SECRET");
    sender
        .command("create_channel", create("room-b"))
        .await
        .unwrap();
    assert_eq!(
        Counts::of(&cluster).await.since(before),
        counts(2, 2, 2),
        "room-a's message and command are inspected, room-b's skip the stage"
    );
    cluster.stop().await;
}

both_modes!(a_reload_to_enforce_stops_secrets_from_the_first_message_after_its_answer);

/// A client publishes secrets without pause while the operator turns enforcement on:
/// they are delivered and stored before, and from the first message sent after the
/// reload is answered on, every one is refused and none reaches the member or the
/// history (the answer waits until every edge routes by the new version).
async fn a_reload_to_enforce_stops_secrets_from_the_first_message_after_its_answer(
    cluster: &Cluster,
) {
    wait_routing_by(cluster, 1).await;
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let sender = cluster.client("t-a").await;
    sender.join("lab", "notes").await.unwrap();
    let admin = cluster.client_on(0, &cluster.system_token("t-a")).await;

    let reloaded = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let sent_after = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn({
        let (reloaded, done, sent_after) = (reloaded.clone(), done.clone(), sent_after.clone());
        async move {
            let mut sent = Vec::new();
            for n in 0u64.. {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                // Read before the message is sent: `after` means sent after the answer.
                let after = reloaded.load(Ordering::SeqCst);
                let payload = json!({"n": n, "content": format!("token-{n}")});
                let result = sender.publish("lab", "notes", payload).await;
                if after {
                    sent_after.fetch_add(1, Ordering::SeqCst);
                }
                sent.push((n, after, result));
            }
            sent
        }
    });
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = tokio::spawn({
        let (received, done) = (received.clone(), done.clone());
        async move {
            loop {
                match member.recv(QUIET).await {
                    Ok(message) => {
                        let n = message.payload.get("n").and_then(|n| n.as_u64());
                        received
                            .lock()
                            .unwrap()
                            .push(n.expect("a numbered message"));
                    }
                    Err(SdkError::Timeout) if done.load(Ordering::SeqCst) => return,
                    Err(SdkError::Timeout) => {}
                    Err(e) => panic!("the member's connection failed: {e:?}"),
                }
            }
        }
    });

    eventually("secrets flow before the reload", || async {
        received.lock().unwrap().len() >= 5
    })
    .await;
    let reload = admin
        .command(
            "op.casil.reload",
            args(json!({"enabled": true, "mode": "enforce", "block_on_probable_secret": true})),
        )
        .await
        .unwrap();
    assert_eq!(
        reload.payload.get("data").unwrap()["version"],
        2,
        "{}",
        reload.to_json()
    );
    reloaded.store(true, Ordering::SeqCst);
    // Answered once the edge routes by it (it applies a version before reporting it).
    assert_eq!(
        metric_value(&cluster.metrics().await, "arqonbus_edge_casil_version"),
        Some(2.0)
    );
    eventually("the client goes on publishing after the reload", || async {
        sent_after.load(Ordering::SeqCst) >= 20
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let sent = publisher.await.unwrap();
    reader.await.unwrap();

    let first_after = sent
        .iter()
        .find(|(_, after, _)| *after)
        .map(|(n, _, _)| *n)
        .unwrap();
    for (n, after, result) in &sent {
        if *after {
            assert!(
                matches!(result, Err(SdkError::Rejected { code, .. }) if code == "CASIL_POLICY_BLOCKED_SECRET"),
                "message {n}, sent after the reload's answer: {result:?}"
            );
        }
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.iter().filter(|n| **n < first_after).count() >= 5,
        "{received:?}"
    );
    let late: Vec<&u64> = received.iter().filter(|n| **n >= first_after).collect();
    assert!(late.is_empty(), "delivered after the reload: {late:?}");
    let history = admin
        .command(
            "history",
            args(json!({"room": "lab", "channel": "notes", "limit": 1000})),
        )
        .await
        .unwrap();
    let data = history.payload.get("data").unwrap();
    let stored: Vec<u64> = data["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["payload"]["n"].as_u64())
        .collect();
    assert!(!stored.is_empty());
    let late: Vec<&u64> = stored.iter().filter(|n| **n >= first_after).collect();
    assert!(late.is_empty(), "stored after the reload: {late:?}");
}

// ---------------------------------------------------------------------------------------
// nats-server only: an edge without the policy to follow.

/// A service of a hand-made cluster, with its HTTP address.
struct Node {
    http: SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn start(
    nats: &NatsServer,
    name: &'static str,
    services: Services,
    websocket: Option<TcpListener>,
    stop: &CancellationToken,
) -> Node {
    let bus = connect_bus(
        Some(&nats.url()),
        arqon_bus::NatsOptions::named(name),
        false,
    )
    .await
    .unwrap();
    let http = listener().await;
    let addr = http.local_addr().unwrap();
    let listeners = Listeners {
        websocket,
        http,
        grpc: None,
    };
    let task = tokio::spawn(serve(name, services, bus, listeners, stop.clone()));
    eventually("the service is ready", || async move {
        tokio::task::spawn_blocking(move || arqon_testkit::http::get(addr, "/ready", WAIT))
            .await
            .unwrap()
            .is_ok_and(|(status, _)| status == 200)
    })
    .await;
    Node { http: addr, task }
}

async fn metrics_of(node: &Node) -> String {
    let addr = node.http;
    let (_, body) =
        tokio::task::spawn_blocking(move || arqon_testkit::http::get(addr, "/metrics", WAIT))
            .await
            .unwrap()
            .unwrap();
    body
}

/// The edge starts on a bus without a policy service: it must not create the policy's
/// bucket, and sends every envelope to the policy stage (nobody answers it, so the
/// client is told TIMEOUT). Once a policy service stores the policy, the edge reads it
/// and envelopes skip the stage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_before_the_policy_sends_through_the_stage_until_it_reads_it() {
    let nats = NatsServer::start();
    let stop = CancellationToken::new();
    let dispatcher = Services {
        dispatcher: Some(DispatcherConfig::default()),
        ..Services::default()
    };
    let dispatcher = start(&nats, "dispatcher", dispatcher, None, &stop).await;
    let websocket = listener().await;
    let ws_url = format!("ws://{}/ws", websocket.local_addr().unwrap());
    let edge = Services {
        edge: Some(EdgeConfig {
            pipeline_timeout_ms: 500,
            ..edge_config()
        }),
        ..Services::default()
    };
    let edge = start(&nats, "edge", edge, Some(websocket), &stop).await;
    let token = mint_hs256(
        SECRET.as_bytes(),
        &Claims::new("e2e", "t-a", "user", Duration::from_secs(3600)),
    )
    .unwrap();
    let options = ConnectOptions {
        request_timeout: WAIT,
        connect_timeout: WAIT,
        ..ConnectOptions::with_token(token)
    };
    let client = Client::connect(&ws_url, options).await.unwrap();

    let unanswered = client.command("ping", Map::new()).await;
    assert_eq!(rejected(unanswered), "TIMEOUT");
    let metrics = metrics_of(&edge).await;
    assert_eq!(routed(&metrics, "policy"), 1.0, "{metrics}");
    assert_eq!(routed(&metrics, "dispatcher"), 0.0);
    assert_eq!(
        metric_value(&metrics, "arqonbus_edge_casil_version"),
        Some(0.0)
    );
    let observer = connect_bus(
        Some(&nats.url()),
        arqon_bus::NatsOptions::named("observer"),
        false,
    )
    .await
    .unwrap();
    let bucket = observer
        .existing_key_value(layout::casil(&observer))
        .await
        .unwrap();
    assert!(bucket.is_none(), "the edge created the policy's bucket");

    let policy = Services {
        policy: Some(PolicyConfig::default()),
        ..Services::default()
    };
    let policy = start(&nats, "policy", policy, None, &stop).await;
    let edge_http = &edge;
    eventually("the edge reads the stored policy", || async move {
        metric_value(&metrics_of(edge_http).await, "arqonbus_edge_casil_version") == Some(1.0)
    })
    .await;
    let answered = client.command("ping", Map::new()).await.unwrap();
    assert_eq!(answered.status, Some(arqon_protocol::Status::Success));
    let metrics = metrics_of(&edge).await;
    assert_eq!(
        (routed(&metrics, "policy"), routed(&metrics, "dispatcher")),
        (1.0, 1.0)
    );
    assert_eq!(decisions(&metrics_of(&policy).await), 0.0);

    stop.cancel();
    for node in [dispatcher, edge, policy] {
        tokio::time::timeout(WAIT, node.task)
            .await
            .expect("stopped in time")
            .unwrap()
            .unwrap();
    }
}

/// The directory of stream `name` in a stopped server's store.
fn stream_dir(store: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(store).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == name) {
                return Some(path);
            }
            if let Some(found) = stream_dir(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

/// While the bus is gone, and after it comes back without the policy's bucket, the edge
/// cannot follow the policy: every envelope goes through the policy stage. Once a policy
/// replica stores the policy again, envelopes skip the stage again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_cannot_follow_the_policy_sends_through_the_stage() {
    let mut cluster = Cluster::distributed().await;
    wait_routing_by(&cluster, 1).await;
    let client = cluster.client("t-a").await;
    client.join("lab", "notes").await.unwrap();

    cluster.nats().stop();
    eventually("the edge sees the bus gone", || async {
        cluster.http_get("/ready").await.0 == 503
    })
    .await;
    let before = cluster.metrics().await;
    let refused = client
        .publish("lab", "notes", json!({"content": "lost"}))
        .await;
    let code = rejected(refused);
    assert!(code == "UNAVAILABLE" || code == "TIMEOUT", "{code}");
    let after = cluster.metrics().await;
    assert_eq!(routed(&after, "policy") - routed(&before, "policy"), 1.0);
    assert_eq!(routed(&after, "dispatcher"), routed(&before, "dispatcher"));

    // Back without the policy's bucket: nothing to follow.
    let store = cluster.nats().store_dir();
    let bucket = stream_dir(&store, "KV_arqon_casil").expect("the policy's stream on disk");
    std::fs::remove_dir_all(bucket).unwrap();
    cluster.nats().restart();
    eventually("the pipeline answers again", || async {
        client.command("ping", Map::new()).await.is_ok()
    })
    .await;
    let before = Counts::of(&cluster).await;
    client
        .publish("lab", "notes", json!({"content": "inspected"}))
        .await
        .unwrap();
    assert_eq!(Counts::of(&cluster).await.since(before), counts(1, 0, 1));
    eventually("the edge reports routing by no version", || async {
        metric_value(&cluster.metrics().await, "arqonbus_edge_casil_version") == Some(0.0)
    })
    .await;

    // A new policy replica stores the policy: the edge follows it again.
    cluster.restart_policy(0).await;
    wait_routing_by(&cluster, 1).await;
    let before = Counts::of(&cluster).await;
    client
        .publish("lab", "notes", json!({"content": "skips"}))
        .await
        .unwrap();
    assert_eq!(Counts::of(&cluster).await.since(before), counts(0, 1, 0));
    cluster.stop().await;
}
