//! `docker compose up`: the four services, NATS, the load balancer; then scaled edges, a
//! killed edge, a restarted NATS server, and Prometheus scraping it all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use arqon_sdk::{Client, ConnectOptions, Event, SdkError, Session, SessionOptions};

use crate::stack::Stack;
use crate::support::{
    QUIET, RECOVERY, WAIT, client, command, container_get, edge_of, edges, eventually, history_ids,
    http_get, number, publish_n,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the image: scripts/test-containers.sh"]
async fn the_bus_in_compose() {
    let stack = Stack::up("bus", &["docker-compose.yml"]);
    let url = stack.ws_url("lb");
    let admin = stack.token("edge", "acme", "admin");
    let user = stack.token("edge", "acme", "user");
    first_steps(&stack, &url, &admin).await;
    three_edges_deliver_every_message_once(&stack, &url, &user).await;
    prometheus_scrapes_every_service(&stack);
    a_killed_edge_loses_no_acknowledged_message(&stack, &url, &user).await;
    the_services_recover_from_a_nats_restart(&stack, &url, &user).await;
}

/// Through the load balancer: HTTP endpoints, join, publish, receive, commands, the
/// store, a CASIL reload that takes effect.
async fn first_steps(stack: &Stack, url: &str, admin: &str) {
    let lb = stack.published("lb", 9100);
    for path in ["/health", "/ready", "/version", "/status"] {
        let (status, body) = http_get(lb, path);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, status) = http_get(lb, "/status");
    assert!(status.contains("\"component\":\"edge\""), "{status}");

    let a = client(url, admin).await;
    let b = client(url, admin).await;
    a.join("compose", "general").await.expect("join");
    b.join("compose", "general").await.expect("join");
    let id = a
        .publish("compose", "general", json!({"content": "hello"}))
        .await
        .expect("publish");
    let got = b.recv(WAIT).await.expect("the message");
    assert_eq!(got.payload.get("content"), Some(json!("hello")));

    let status = command(&a, "status", json!({})).await;
    assert!(status.is_object(), "{status}");
    let history = history_ids(&a, "compose", "general").await;
    assert_eq!(history, vec![id]);

    command(
        &a,
        "op.store.set",
        json!({"key": "greeting", "value": "hi"}),
    )
    .await;
    let stored = command(&b, "op.store.get", json!({"key": "greeting"})).await;
    assert_eq!(stored["value"], "hi", "{stored}");

    // Monitor mode (the compose default) lets a secret through; after the reload the
    // policy replicas block it.
    let secret = json!({"content": "the key is AKIAIOSFODNN7EXAMPLE"});
    a.publish("compose", "general", secret.clone())
        .await
        .expect("monitor mode delivers");
    b.recv(WAIT).await.expect("delivered");
    // The operator reloads with the service token (a tenant's admin may not, ADR 015).
    let reloaded = stack.compose(&[
        "exec",
        "-T",
        "policy",
        "arqon",
        "policy",
        "reload",
        "--changes",
        r#"{"mode":"enforce","block_on_probable_secret":true}"#,
    ]);
    assert!(reloaded.contains("enforce"), "{reloaded}");
    eventually("the reload applies", WAIT, || {
        let (a, secret) = (&a, secret.clone());
        async move {
            match a.publish("compose", "general", secret).await {
                Err(SdkError::Rejected { code, .. }) if code == "CASIL_POLICY_BLOCKED_SECRET" => {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    stack.compose(&[
        "exec",
        "-T",
        "policy",
        "arqon",
        "policy",
        "reload",
        "--changes",
        r#"{"mode":"monitor"}"#,
    ]);
}

/// HAProxy's view: how many edge replicas are in rotation for WebSockets.
fn edges_in_rotation(stack: &Stack) -> usize {
    let (_, metrics) = http_get(
        std::net::SocketAddr::new(stack.ip(&stack.container("lb")), 8404),
        "/metrics",
    );
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("haproxy_server_status{")
                && l.contains("proxy=\"edge_ws\"")
                && l.contains("state=\"UP\"")
                && l.ends_with(" 1")
        })
        .count()
}

/// `--scale edge=3`: 300 clients spread over the three, one publishes, each of the
/// others gets every message exactly once, in order.
async fn three_edges_deliver_every_message_once(stack: &Stack, url: &str, user: &str) {
    stack.compose(&["up", "-d", "--wait", "--no-build", "--scale", "edge=3"]);
    eventually("the load balancer uses three edges", RECOVERY, || async {
        (edges_in_rotation(stack) == 3).then_some(())
    })
    .await;

    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..10 {
        let batch = join_all((0..30).map(|_| async {
            let c = client(url, user).await;
            c.join("load", "all").await.expect("join");
            c
        }))
        .await;
        clients.extend(batch);
    }
    let by_edge = edges(stack);
    let mut per_edge: HashMap<String, usize> = HashMap::new();
    for c in &clients {
        *per_edge.entry(edge_of(c.client_id())).or_default() += 1;
    }
    assert_eq!(per_edge.len(), 3, "clients per edge: {per_edge:?}");
    for (edge, count) in &per_edge {
        assert!(by_edge.contains_key(edge), "unknown edge {edge}");
        assert!(*count >= 50, "unbalanced: {per_edge:?}");
    }

    let publisher = &clients[0];
    for n in 0..20 {
        publish_n(publisher, "load", "all", n).await.expect("ack");
    }
    let received = join_all(clients[1..].iter().map(|c| async move {
        let mut got = Vec::new();
        while got.len() < 20 {
            let m = c.recv(WAIT).await.expect("every message arrives");
            got.push(number(&m.payload));
        }
        // Nothing more: no duplicates.
        assert_eq!(c.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
        got
    }))
    .await;
    for got in received {
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }
    for c in &clients {
        let _ = c.close().await;
    }
}

/// Prometheus (of the observability profile) finds every replica of every service and
/// the load balancer, and scrapes them.
fn prometheus_scrapes_every_service(stack: &Stack) {
    stack.compose(&["up", "-d", "--wait", "--no-build", "prometheus"]);
    let prometheus = std::net::SocketAddr::new(stack.ip(&stack.container("prometheus")), 9090);
    let deadline = std::time::Instant::now() + RECOVERY;
    loop {
        let (status, body) = http_get(prometheus, "/api/v1/targets");
        assert_eq!(status, 200, "{body}");
        let targets: Value = serde_json::from_str(&body).expect("JSON");
        let up: Vec<(String, String)> = targets["data"]["activeTargets"]
            .as_array()
            .expect("targets")
            .iter()
            .filter(|t| t["health"] == "up")
            .map(|t| {
                (
                    t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                    t["labels"]["service"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let count =
            |job: &str, service: &str| up.iter().filter(|(j, s)| j == job && s == service).count();
        if count("arqonbus", "edge") == 3
            && ["policy", "dispatcher", "operators"]
                .iter()
                .all(|s| count("arqonbus", s) == 1)
            && count("load-balancer", "") == 1
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "targets not all up: {up:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `docker kill` of one edge: the SDK sessions it held reconnect through the load
/// balancer, rejoin, and get what was published meanwhile (`recovered: true`); every
/// acknowledged message is in history.
async fn a_killed_edge_loses_no_acknowledged_message(stack: &Stack, url: &str, user: &str) {
    let (room, channel) = ("recover", "room");
    let publisher = client(url, user).await;
    publisher.join(room, channel).await.expect("join");
    let mut sessions = Vec::new();
    for _ in 0..30 {
        let mut options = SessionOptions::new(url, ConnectOptions::with_token(user));
        options.backoff_min = Duration::from_millis(200);
        options.backoff_max = Duration::from_secs(2);
        let session = Session::connect(options).await.expect("a session");
        session.join(room, channel).await.expect("join");
        sessions.push(session);
    }
    let mut held: HashMap<String, usize> = HashMap::new();
    for session in &sessions {
        let id = session.client_id().await.expect("client id");
        *held.entry(edge_of(&id)).or_default() += 1;
    }
    let spared = edge_of(publisher.client_id());
    let (victim, on_victim) = held
        .iter()
        .filter(|(edge, _)| **edge != spared)
        .max_by_key(|(_, count)| **count)
        .map(|(edge, count)| (edge.clone(), *count))
        .unwrap_or_else(|| panic!("every session is on the publisher's edge: {held:?}"));
    let container = edges(stack)
        .remove(&victim)
        .expect("the victim's container");

    let mut acked = Vec::new();
    for n in 0..5 {
        acked.push(publish_n(&publisher, room, channel, n).await.expect("ack"));
    }
    stack.docker(&["kill", &container]);
    for n in 5..35 {
        acked.push(publish_n(&publisher, room, channel, n).await.expect("ack"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let outcomes = join_all(sessions.iter_mut().map(|session| async move {
        let mut got = Vec::new();
        let mut rejoined = None;
        while got.len() < 35 {
            match session.next_within(RECOVERY).await.expect("an event") {
                Event::Message(m) => got.push(number(&m.payload)),
                Event::Rejoined { recovered, .. } => rejoined = Some(recovered),
                Event::Disconnected { .. } | Event::Reconnected { .. } => {}
            }
        }
        (got, rejoined)
    }))
    .await;
    let mut rejoins = 0;
    for (got, rejoined) in outcomes {
        assert_eq!(got, (0..35).collect::<Vec<_>>(), "rejoined: {rejoined:?}");
        if let Some(recovered) = rejoined {
            assert!(recovered, "a rejoin did not recover the gap");
            rejoins += 1;
        }
    }
    assert_eq!(rejoins, on_victim, "the sessions of the killed edge rejoin");
    let stored = history_ids(&publisher, room, channel).await;
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} is not in history");
    }
    stack.docker(&["start", &container]);
    stack.wait_healthy("edge");
}

/// `docker restart` of NATS: every service reports not ready, then ready again by
/// itself; messages flow again and history survived.
async fn the_services_recover_from_a_nats_restart(stack: &Stack, url: &str, user: &str) {
    let (room, channel) = ("restart", "room");
    let a = client(url, user).await;
    let b = client(url, user).await;
    b.join(room, channel).await.expect("join");
    let before = publish_n(&a, room, channel, 0).await.expect("ack");
    assert_eq!(number(&b.recv(WAIT).await.expect("message").payload), 0);

    let mut services = Vec::new();
    for service in ["edge", "policy", "dispatcher", "operators"] {
        for container in stack.containers(service) {
            services.push((service, stack.ip(&container)));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = services
        .iter()
        .map(|&(service, ip)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                // One last look after the stop: the state the test ended on.
                loop {
                    let stopping = stop.load(Ordering::Acquire);
                    let (status, _) = container_get(ip, "/ready");
                    if seen.last() != Some(&status) {
                        seen.push(status);
                    }
                    if stopping {
                        break (service, seen);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        })
        .collect();
    stack.docker(&["restart", "--time", "5", &stack.container("nats")]);
    eventually("every service is ready again", RECOVERY, || async {
        services
            .iter()
            .all(|&(_, ip)| container_get(ip, "/ready").0 == 200)
            .then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    for watcher in watchers {
        let (service, seen) = watcher.join().expect("watcher");
        assert_eq!(seen, vec![200, 503, 200], "{service}'s /ready");
    }

    // The same connections: the edges kept them through the outage.
    let n = eventually("a message is acknowledged again", RECOVERY, || async {
        publish_n(&a, room, channel, 1).await.ok()
    })
    .await;
    let got = b.recv(WAIT).await.expect("the message after the restart");
    assert_eq!(number(&got.payload), 1);
    let stored = history_ids(&a, room, channel).await;
    assert!(
        stored.contains(&before) && stored.contains(&n),
        "{stored:?}"
    );
}
