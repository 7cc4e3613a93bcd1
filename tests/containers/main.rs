//! The bus as users run it in containers: the image built from the Dockerfile, the
//! compose files of the repository, a real Docker engine, clients through the load
//! balancer's published port.
//!
//! Ignored by a plain `cargo test`: `scripts/test-containers.sh` builds the base image
//! stand-ins and the image, then runs these one at a time. Each test starts its own
//! compose project and removes it (containers, networks, volumes) when it ends, also on
//! failure.

// Scenario helpers are plain async functions; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod bus;
mod cluster;
mod stack;
mod support;

use arqon_sdk::Client;
use serde_json::json;

use stack::Stack;
use support::{WAIT, client, http_get};

/// `docker compose -f docker-compose.standalone.yml up`: one container, the embedded bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Docker engine and the image: scripts/test-containers.sh"]
async fn standalone_runs_in_one_container() {
    let stack = Stack::up("standalone", &["docker-compose.standalone.yml"]);
    let http = stack.published("arqonbus", 8080);
    let (status, body) = http_get(http, "/ready");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(http, "/version");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(env!("CARGO_PKG_VERSION")), "{body}");

    let url = stack.ws_url("arqonbus");
    let token = stack.token("arqonbus", "laptop", "user");
    let a: Client = client(&url, &token).await;
    let b = client(&url, &token).await;
    b.join("desk", "notes").await.expect("join");
    a.publish("desk", "notes", json!({"content": "hello"}))
        .await
        .expect("publish");
    let got = b.recv(WAIT).await.expect("the message");
    assert_eq!(got.payload.get("content"), Some(json!("hello")));
}
