//! What the container tests share: clients through the load balancer, HTTP to a
//! container, which edge holds a client, bounded polling.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;

use arqon_protocol::ClientId;
use arqon_sdk::{Client, ConnectOptions, SdkError};

use crate::stack::Stack;

/// How long a test waits for anything it expects.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// How long a test listens before concluding that nothing more arrives.
pub(crate) const QUIET: Duration = Duration::from_millis(500);
/// Bound on recovering from a killed container or a restarted server.
pub(crate) const RECOVERY: Duration = Duration::from_secs(90);
/// The HTTP port of every service inside its container.
pub(crate) const HTTP_PORT: u16 = 8080;

/// A client through `url`, with its welcome read.
pub(crate) async fn client(url: &str, token: &str) -> Client {
    Client::connect(url, ConnectOptions::with_token(token))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// One GET: status and body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    arqon_testkit::http::get(addr, path, WAIT)
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// One GET on a container's HTTP port.
pub(crate) fn container_get(ip: IpAddr, path: &str) -> (u16, String) {
    http_get(SocketAddr::new(ip, HTTP_PORT), path)
}

/// The edge (its id) that holds the connection `client_id`.
pub(crate) fn edge_of(client_id: &str) -> String {
    ClientId::parse(client_id)
        .unwrap_or_else(|| panic!("not a client id: {client_id}"))
        .edge()
        .as_str()
        .to_owned()
}

/// Every running edge container by its edge id (from its `/status`).
pub(crate) fn edges(stack: &Stack) -> HashMap<String, String> {
    stack
        .containers("edge")
        .into_iter()
        .map(|container| {
            let (status, body) = container_get(stack.ip(&container), "/status");
            assert_eq!(status, 200, "{body}");
            let status: Value = serde_json::from_str(&body).expect("JSON status");
            let id = status["edge_id"].as_str().expect("edge_id").to_owned();
            (id, container)
        })
        .collect()
}

/// Polls `check` until it returns `Some`, for at most `within`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The number in a test message's payload (`{"n": …}`).
pub(crate) fn number(payload: &arqon_protocol::JsonObject) -> i64 {
    payload
        .get("n")
        .and_then(|n| n.as_i64())
        .unwrap_or_else(|| panic!("no n in {payload:?}"))
}

/// Publishes `{"n": n}`; the id if the bus acknowledged it, the refusal otherwise.
pub(crate) async fn publish_n(
    client: &Client,
    room: &str,
    channel: &str,
    n: i64,
) -> Result<String, SdkError> {
    client
        .publish(room, channel, serde_json::json!({ "n": n }))
        .await
}

/// The ids of a channel's stored messages (the `history` command).
pub(crate) async fn history_ids(client: &Client, room: &str, channel: &str) -> Vec<String> {
    let reply = crate::support::command(
        client,
        "history",
        serde_json::json!({"room": room, "channel": channel, "limit": 1000}),
    )
    .await;
    reply["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history in {reply}"))
        .iter()
        .map(|m| m["message_id"].as_str().expect("a message_id").to_owned())
        .collect()
}

/// Runs a command that must succeed; its `data`.
pub(crate) async fn command(client: &Client, name: &str, args: Value) -> Value {
    let reply = arqon_e2e::reply::run(client, name, args).await;
    assert_eq!(
        reply.status,
        Some(arqon_protocol::Status::Success),
        "{name}: {}",
        reply.to_json()
    );
    arqon_e2e::reply::data(&reply)
}
