//! The `arqon` binary against a running bus (`arqonbus standalone`, in this process, on
//! loopback ports): the original's behaviours (its acceptance scenarios 62-65) and the new commands.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use arqon_dispatcher::DispatcherConfig;
use arqon_edge::EdgeConfig;
use arqon_operators::OperatorsConfig;
use arqon_policy::PolicyConfig;
use arqonbus::{Listeners, Services, connect_bus, serve};

const SECRET: &str = "cli-test-secret";

struct Bus {
    ws: String,
    http: String,
    stop: CancellationToken,
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn bus() -> Bus {
    let websocket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (ws, http_addr): (SocketAddr, SocketAddr) =
        (websocket.local_addr().unwrap(), http.local_addr().unwrap());
    let edge = EdgeConfig {
        rate_limit_per_second: 0,
        ..EdgeConfig::with_secret(SECRET)
    };
    let services = Services::all(
        edge,
        PolicyConfig::default(),
        DispatcherConfig::default(),
        OperatorsConfig::default(),
    );
    let stop = CancellationToken::new();
    let bus = connect_bus(None, arqon_bus::NatsOptions::named("standalone"), true)
        .await
        .unwrap();
    let listeners = Listeners {
        websocket: Some(websocket),
        http,
        grpc: None,
    };
    tokio::spawn(serve("standalone", services, bus, listeners, stop.clone()));
    let bus = Bus {
        ws: format!("ws://{ws}/ws"),
        http: format!("http://{http_addr}"),
        stop,
    };
    // Ready when `/version` answers.
    for _ in 0..100 {
        if arqon(&["version", "--http-url", &bus.http])
            .await
            .status
            .success()
        {
            return bus;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the bus did not start");
}

async fn arqon(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arqon"));
    command.args(args);
    for (key, _) in std::env::vars() {
        if key.starts_with("ARQONBUS_") {
            command.env_remove(key);
        }
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn token(role: &str) -> String {
    let minted = arqon(&[
        "token", "--secret", SECRET, "--tenant", "t-a", "--role", role,
    ])
    .await;
    assert!(minted.status.success(), "{}", err(&minted));
    out(&minted).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_version_print_the_json_of_the_endpoints() {
    let bus = bus().await;
    let version = arqon(&["version", "--http-url", &bus.http]).await;
    assert!(version.status.success(), "{}", err(&version));
    let body: serde_json::Value = serde_json::from_str(&out(&version)).unwrap();
    assert_eq!(body["service"], "arqonbus");
    assert!(
        out(&version).contains("\n  \"component\""),
        "two-space indent"
    );
    let status = arqon(&["status", "--http-url", &format!("{}/", bus.http)]).await;
    assert!(status.status.success(), "{}", err(&status));
    assert!(out(&status).contains("connections"), "{}", out(&status));

    let down = arqon(&[
        "status",
        "--http-url",
        "http://127.0.0.1:1",
        "--timeout-seconds",
        "1",
    ])
    .await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        err(&down).starts_with("arqon: Failed to reach http://127.0.0.1:1/status"),
        "{}",
        err(&down)
    );
    let missing = arqon(&["status", "--http-url", &format!("{}/nothing", bus.http)]).await;
    assert!(
        err(&missing).contains("HTTP 404 calling"),
        "{}",
        err(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_the_welcome_and_refuses_bad_input() {
    let bus = bus().await;
    let jwt = token("user").await;
    let raw = arqon(&[
        "tail", "--ws-url", &bus.ws, "--jwt", &jwt, "--raw", "--limit", "1",
    ])
    .await;
    assert!(raw.status.success(), "{}", err(&raw));
    assert!(
        out(&raw).contains(r#""welcome": "Connected to ArqonBus""#),
        "{}",
        out(&raw)
    );

    let bad = arqon(&["tail", "--ws-url", &bus.ws, "--header", "bad-header"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        err(&bad).contains("Invalid header format 'bad-header'"),
        "{}",
        err(&bad)
    );
    let not_object = arqon(&["tail", "--ws-url", &bus.ws, "--jwt", &jwt, "--send", "[1]"]).await;
    assert!(
        err(&not_object).contains("--send payload must be a JSON object"),
        "{}",
        err(&not_object)
    );
    let usage = arqon(&["tail", "--limit", "many"]).await;
    assert_eq!(usage.status.code(), Some(2), "argument errors exit 2");
    let refused = arqon(&["tail", "--ws-url", &bus.ws]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(err(&refused).contains("--jwt"), "a hint: {}", err(&refused));

    // A ping sent with --send, its answer printed on one line.
    let ping = r#"{"type":"command","command":"ping"}"#;
    let line = arqon(&[
        "tail", "--ws-url", &bus.ws, "--jwt", &jwt, "--send", ping, "--limit", "2",
    ])
    .await;
    assert!(line.status.success(), "{}", err(&line));
    let second = out(&line).lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        second.contains(" type=response sender=arqonbus "),
        "{second}"
    );
    let waited = arqon(&[
        "tail",
        "--ws-url",
        &bus.ws,
        "--jwt",
        &jwt,
        "--limit",
        "2",
        "--timeout-seconds",
        "0.3",
    ])
    .await;
    assert!(
        err(&waited).contains("arqon: Timed out waiting for message"),
        "{}",
        err(&waited)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_join_history_channels_and_command() {
    let bus = bus().await;
    let jwt = token("user").await;
    let ws = bus.ws.clone();
    let listener_jwt = jwt.clone();
    let listening = tokio::spawn(async move {
        arqon(&[
            "join",
            "--ws-url",
            &ws,
            "--jwt",
            &listener_jwt,
            "lab:notes",
            "--limit",
            "1",
            "--json",
        ])
        .await
    });
    // The listener must have joined before the publish.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = arqon(&[
            "channels", "--ws-url", &bus.ws, "--jwt", &jwt, "lab", "--json",
        ])
        .await;
        if out(&listed).contains("\"member_count\": 1") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never joined: {}",
            err(&listed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = arqon(&[
        "publish",
        "--ws-url",
        &bus.ws,
        "--jwt",
        &jwt,
        "lab:notes",
        r#"{"content":"hi"}"#,
    ])
    .await;
    assert!(published.status.success(), "{}", err(&published));
    assert!(
        out(&published).starts_with("published arq_"),
        "{}",
        out(&published)
    );
    let joined = listening.await.unwrap();
    assert!(joined.status.success(), "{}", err(&joined));
    let frame: serde_json::Value = serde_json::from_str(out(&joined).trim()).unwrap();
    assert_eq!(frame["payload"]["content"], "hi");

    let history = arqon(&["history", "--ws-url", &bus.ws, "--jwt", &jwt, "lab:notes"]).await;
    assert!(history.status.success(), "{}", err(&history));
    assert!(
        out(&history).contains(r#"room=lab channel=notes payload={"content": "hi"}"#),
        "{}",
        out(&history)
    );
    let channels = arqon(&["channels", "--ws-url", &bus.ws, "--jwt", &jwt, "lab"]).await;
    let table = out(&channels);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        format!("{:<24} {:>8}  LAST ACTIVITY", "CHANNEL", "MEMBERS")
    );
    assert!(
        lines[1].starts_with(&format!("{:<24} {:>8}  ", "notes", "0")),
        "{table}"
    );

    let pong = arqon(&["command", "--ws-url", &bus.ws, "--jwt", &jwt, "ping"]).await;
    assert!(pong.status.success(), "{}", err(&pong));
    assert!(out(&pong).contains("latency_ms"), "{}", out(&pong));
    let refused = arqon(&[
        "command",
        "--ws-url",
        &bus.ws,
        "--jwt",
        &jwt,
        "create_channel",
        "--args",
        r#"{"room":"x","channel":"y"}"#,
    ])
    .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        err(&refused).contains("AUTHORIZATION_ERROR"),
        "{}",
        err(&refused)
    );
    let bad_target = arqon(&["publish", "--ws-url", &bus.ws, "--jwt", &jwt, "lab", "{}"]).await;
    assert!(
        err(&bad_target).contains("is not room:channel"),
        "{}",
        err(&bad_target)
    );
}
