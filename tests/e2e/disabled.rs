//! What a bus answers for what it was not configured to do: `FEATURE_DISABLED` from a
//! dispatcher given no policy URL or no operators URL, and for `operator.join`, which this
//! bus never supports. Each refusal leaves the connection serving.

use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request};

use arqon_e2e::reply::{refused, run};
use arqon_e2e::{Cluster, Mode, QUIET, SERVICE_TOKEN, Topology, WAIT, next_json, send_json};
use arqon_proto::dispatcher::v1 as pb;
use arqon_proto::dispatcher::v1::bus_client::BusClient;
use arqon_protocol::{ErrorCode, MessageId, Status};
use arqon_sdk::Client;

use crate::each_mode;

/// One command of each family the operators serve, then one the dispatcher runs itself.
const OPERATORS_COMMANDS: [(&str, &str); 4] = [
    ("op.store.set", r#"{"key": "k", "value": 1}"#),
    (
        "op.webhook.register",
        r#"{"url": "http://127.0.0.1:9/hook"}"#,
    ),
    (
        "op.cron.schedule",
        r#"{"room": "lab", "channel": "c", "payload": {"n": 1}, "delay_seconds": 60}"#,
    ),
    ("op.omega.status", "{}"),
];

async fn assert_disabled(client: &Client, name: &str, args: &str, names: &str) {
    let reply = run(client, name, serde_json::from_str(args).unwrap()).await;
    let (message, _) = refused(&reply, ErrorCode::FeatureDisabled);
    assert!(message.contains(names), "{name}: {message}");
}

/// A gRPC `Publish` to `lab:c` of tenant `t-a`, with the service token.
async fn grpc_publish(
    cluster: &Cluster,
    payload: Value,
) -> Result<pb::PublishResponse, tonic::Status> {
    let channel = tokio::time::timeout(
        WAIT,
        Channel::from_shared(cluster.grpc_endpoint())
            .unwrap()
            .connect(),
    )
    .await
    .expect("gRPC connect in time")
    .expect("gRPC connect");
    let mut request = Request::new(pb::PublishRequest {
        tenant: "t-a".into(),
        room: "lab".into(),
        channel: "c".into(),
        payload_json: serde_json::to_vec(&payload).unwrap().into(),
        metadata_json: None,
    });
    let bearer = format!("Bearer {SERVICE_TOKEN}").parse().unwrap();
    request.metadata_mut().insert("authorization", bearer);
    BusClient::new(channel)
        .publish(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn still_serves(client: &Client) {
    let ping = run(client, "ping", json!({})).await;
    assert_eq!(ping.status, Some(Status::Success), "{}", ping.to_json());
}

/// A dispatcher without `ARQONBUS_OPERATORS_URL`: every operators family is
/// `FEATURE_DISABLED` (the setting named), nothing else is; `op.casil.*` still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_operators_url_operators_commands_are_disabled() {
    let cluster = Cluster::launch(Topology {
        dispatcher_calls_operators: false,
        ..Topology::new(Mode::Distributed)
    })
    .await;
    let client = cluster.client("t-a").await;
    for (name, args) in OPERATORS_COMMANDS {
        assert_disabled(&client, name, args, "ARQONBUS_OPERATORS_URL").await;
    }
    let policy = run(&client, "op.casil.get", json!({})).await;
    assert_eq!(policy.status, Some(Status::Success), "{}", policy.to_json());
    still_serves(&client).await;
    cluster.stop().await;
}

/// A dispatcher without `ARQONBUS_POLICY_URL`: `op.casil.get` and `op.casil.reload` (even
/// by the fleet's operator) and gRPC `Publish` are `FEATURE_DISABLED`; clients' messages
/// still pass the policy stage, and the operators still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_policy_url_casil_control_and_grpc_publish_are_disabled() {
    let cluster = Cluster::launch(Topology {
        dispatcher_calls_policy: false,
        ..Topology::new(Mode::Distributed)
    })
    .await;
    let client = cluster.client("t-a").await;
    let operator = cluster.client_on(0, &cluster.system_token("t-a")).await;
    assert_disabled(&client, "op.casil.get", "{}", "ARQONBUS_POLICY_URL").await;
    assert_disabled(
        &operator,
        "op.casil.reload",
        r#"{"mode": "enforce"}"#,
        "ARQONBUS_POLICY_URL",
    )
    .await;

    let member = cluster.client("t-a").await;
    member.join("lab", "c").await.unwrap();
    let status = grpc_publish(&cluster, json!({"n": 1})).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        arqon_proto::grpc::error_code(&status),
        Some(ErrorCode::FeatureDisabled),
        "{status:?}"
    );
    assert!(
        status.message().contains("ARQONBUS_POLICY_URL"),
        "{status:?}"
    );
    assert_eq!(
        member.recv(QUIET).await.unwrap_err(),
        arqon_sdk::SdkError::Timeout
    );

    client
        .publish("lab", "c", json!({"from": "a client"}))
        .await
        .unwrap();
    let delivered = member.recv(WAIT).await.unwrap();
    assert_eq!(delivered.payload.get("from"), Some(json!("a client")));
    let stored = run(&client, "op.store.set", json!({"key": "k", "value": 1})).await;
    assert_eq!(stored.status, Some(Status::Success), "{}", stored.to_json());
    cluster.stop().await;
}

/// `operator.join` (the original's Redis worker groups) is one `FEATURE_DISABLED` error
/// naming the envelope, and nothing else; the connection goes on.
async fn operator_join_is_disabled(mode: Mode) {
    let cluster = Cluster::launch(Topology::new(mode)).await;
    let mut socket = cluster.raw_client("t-a").await;
    let id = MessageId::generate().to_string();
    send_json(
        &mut socket,
        &json!({"id": id, "type": "operator.join", "payload": {"group": "workers"}}),
    )
    .await;
    let error = next_json(&mut socket).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error_code"], "FEATURE_DISABLED", "{error}");
    assert_eq!(error["request_id"], id.as_str(), "{error}");
    // Exactly one answer: the next frame answers the next envelope.
    send_json(&mut socket, &json!({"type": "command", "command": "ping"})).await;
    let pong = next_json(&mut socket).await;
    assert_eq!(
        (pong["type"].as_str(), pong["status"].as_str()),
        (Some("response"), Some("success")),
        "{pong}"
    );
    cluster.stop().await;
}

each_mode!(operator_join_is_disabled);
