//! Bad input gets a clear error envelope and the connection stays usable.

use serde_json::{Map, json};

use arqon_e2e::{Cluster, WAIT};
use arqon_protocol::{ErrorCode, MessageType, Status};

use crate::both_modes;

both_modes!(
    invalid_envelopes_get_validation_errors,
    commands_are_answered_and_correlated,
    bad_command_arguments_are_refused,
    binary_frames_are_refused_and_oversized_ones_close_with_1009,
);

async fn invalid_envelopes_get_validation_errors(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    let cases = [
        (
            r#"{"id":"bad","type":"message","payload":{"a":1}}"#,
            Some("bad"),
            "Invalid message ID format: bad",
        ),
        (
            r#"{"type":"message","room":"r","channel":"c","payload":{},"from":"x"}"#,
            None,
            "Unknown field 'from'",
        ),
        (
            r#"{"type":"private","payload":{}}"#,
            None,
            "Unsupported message type: private",
        ),
        ("not json", None, "Invalid JSON"),
        (
            r#"{"type":"message","room":"a.b","channel":"c","payload":{}}"#,
            None,
            "Invalid room name 'a.b'",
        ),
    ];
    for (frame, request_id, reason) in cases {
        client.send_text(frame.to_owned()).await.unwrap();
        let error = client.recv(WAIT).await.unwrap();
        assert_eq!(error.kind, MessageType::Error, "{frame}");
        assert!(error.has_error_code(ErrorCode::ValidationError), "{frame}");
        if let Some(request_id) = request_id {
            assert_eq!(error.request_id.as_deref(), Some(request_id));
        }
        let reasons = error.payload.get("errors").unwrap();
        assert!(
            reasons
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().starts_with(reason)),
            "{frame}: {reasons}"
        );
    }
    // A message that names no room is refused by the router, also with a reason.
    client
        .send_text(
            json!({"type": "message", "payload": {"x": 1}, "id": "arq_1_1_abcdef"}).to_string(),
        )
        .await
        .unwrap();
    let error = client.recv(WAIT).await.unwrap();
    assert!(error.has_error_code(ErrorCode::ValidationError));
    assert_eq!(error.request_id.as_deref(), Some("arq_1_1_abcdef"));

    // Still usable.
    let pong = client.command("ping", Map::new()).await.unwrap();
    assert_eq!(pong.status, Some(Status::Success));
}

async fn commands_are_answered_and_correlated(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    let pong = client.command("ping", Map::new()).await.unwrap();
    assert_eq!(pong.kind, MessageType::Response);
    assert_eq!(pong.status, Some(Status::Success));
    let data = pong.payload.get("data").unwrap();
    assert_eq!(data["client_id"], client.client_id());
    assert!(data["latency_ms"].as_f64().unwrap() >= 0.0);

    let unknown = client.command("no.such.command", Map::new()).await.unwrap();
    assert_eq!(unknown.status, Some(Status::Error));
    assert!(unknown.has_error_code(ErrorCode::UnknownCommand));
    assert_eq!(
        unknown.payload.get("message"),
        Some(json!("Unknown command: no.such.command"))
    );

    // Raw frames see the response and then the legacy acknowledgement, same id.
    client
        .send_text(
            json!({"id": "arq_1_2_abcdef", "type": "command", "command": "ping"}).to_string(),
        )
        .await
        .unwrap();
    let response = client.recv(WAIT).await.unwrap();
    assert_eq!(response.request_id.as_deref(), Some("arq_1_2_abcdef"));
    let ack = client.recv(WAIT).await.unwrap();
    assert_eq!(ack.kind, MessageType::CommandResponse);
    assert_eq!(ack.id.as_str(), "arq_1_2_abcdef");
    assert_eq!(ack.payload.get("result"), Some(json!("ok")));
}

async fn bad_command_arguments_are_refused(cluster: &Cluster) {
    let client = cluster.client("t-a").await;
    let mut args = Map::new();
    args.insert("room".into(), json!("science"));
    let response = client.command("join_channel", args).await.unwrap();
    assert!(response.has_error_code(ErrorCode::ValidationError));
    assert_eq!(
        response.payload.get("message"),
        Some(json!(
            "Validation error: Missing required arguments: channel"
        ))
    );
    let mut args = Map::new();
    args.insert("room".into(), json!("science"));
    args.insert("channel".into(), json!("*"));
    let response = client.command("join_channel", args).await.unwrap();
    assert!(response.has_error_code(ErrorCode::ValidationError));
}

async fn binary_frames_are_refused_and_oversized_ones_close_with_1009(cluster: &Cluster) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let url = format!("{}?token={}", cluster.ws_url, cluster.token("t-a", "user"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let _welcome = tokio::time::timeout(WAIT, socket.next()).await.unwrap();

    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let reply = tokio::time::timeout(WAIT, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["error_code"], "VALIDATION_ERROR");

    // One byte over the default 1 MiB limit.
    let oversized = format!(
        "{{\"type\":\"message\",\"payload\":{{\"x\":\"{}\"}}}}",
        "a".repeat(1 << 20)
    );
    // The server may close before the whole frame is written; that is the point.
    let _ = socket.send(Message::text(oversized)).await;
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code, CloseCode::Size);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected close 1009, got {other:?}"),
        }
    }
    // Others are unaffected.
    let client = cluster.client("t-a").await;
    assert_eq!(
        client.command("ping", Map::new()).await.unwrap().status,
        Some(Status::Success)
    );
}
