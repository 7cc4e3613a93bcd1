//! `arqon policy` against a real policy stage (on the embedded bus) serving its gRPC API
//! on a loopback port.

// Test helpers: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use arqon_bus::{Bus, EmbeddedOptions};
use arqon_policy::{PolicyConfig, PolicyMetrics};
use arqon_proto::grpc::ServiceToken;

const TOKEN: &str = "cli-test-token-0123456789";

async fn policy_service(shutdown: &CancellationToken) -> String {
    let config = PolicyConfig {
        service_token: Some(ServiceToken::new(TOKEN)),
        ..PolicyConfig::default()
    };
    let bus = Bus::embedded(EmbeddedOptions::default());
    let policy = arqon_policy::start(config, bus, PolicyMetrics::default(), shutdown.clone())
        .await
        .unwrap();
    let mut routes = tonic::service::RoutesBuilder::default();
    policy.add_grpc(&mut routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(arqon_proto::grpc::serve(
        routes.routes(),
        listener,
        shutdown.clone().cancelled_owned(),
    ));
    url
}

async fn arqon(url: &str, token: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arqon"));
    command
        .args(["policy", "--grpc-url", url, "--token", token])
        .args(args)
        .env_remove("ARQONBUS_POLICY_URL")
        .env_remove("ARQONBUS_SERVICE_TOKEN");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_validate_and_reload() {
    let shutdown = CancellationToken::new();
    let url = policy_service(&shutdown).await;

    let live = arqon(&url, TOKEN, &["get"]).await;
    assert!(live.status.success(), "{}", stderr(&live));
    assert!(
        stdout(&live).starts_with("# version 1 "),
        "{}",
        stdout(&live)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "enabled: true\nmode: enforce\npolicies: {redaction: {patterns: ['(']}}\n",
    )
    .unwrap();
    let checked = arqon(&url, TOKEN, &["validate", bad.to_str().unwrap()]).await;
    assert!(!checked.status.success());
    assert!(
        stderr(&checked).contains("invalid policy"),
        "{}",
        stderr(&checked)
    );
    let refused = arqon(&url, TOKEN, &["reload", "--file", bad.to_str().unwrap()]).await;
    assert!(
        stderr(&refused).contains("VALIDATION_ERROR"),
        "{}",
        stderr(&refused)
    );

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "enabled: true\nmode: enforce\n").unwrap();
    let checked = arqon(&url, TOKEN, &["validate", good.to_str().unwrap()]).await;
    assert!(checked.status.success(), "{}", stderr(&checked));
    let reloaded = arqon(&url, TOKEN, &["reload", "--file", good.to_str().unwrap()]).await;
    assert!(reloaded.status.success(), "{}", stderr(&reloaded));
    assert!(
        stdout(&reloaded).contains("version 2 "),
        "{}",
        stdout(&reloaded)
    );
    assert!(
        stdout(&reloaded).contains(r#""mode": "enforce""#),
        "{}",
        stdout(&reloaded)
    );

    let changed = arqon(
        &url,
        TOKEN,
        &[
            "reload",
            "--changes",
            r#"{"mode":"monitor"}"#,
            "--expected-version",
            "1",
        ],
    )
    .await;
    assert!(
        stderr(&changed).contains("CONFLICT"),
        "{}",
        stderr(&changed)
    );

    let wrong = arqon(&url, "not-the-token", &["get"]).await;
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("AUTHENTICATION_FAILED"),
        "{}",
        stderr(&wrong)
    );
    shutdown.cancel();
}
