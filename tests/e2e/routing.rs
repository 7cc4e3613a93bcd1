//! Rooms: joining, fan-out without self-echo, tenant isolation, leaving.

use serde_json::json;

use arqon_e2e::{Cluster, QUIET, WAIT};
use arqon_protocol::{Envelope, JsonObject, MessageType, Status};
use arqon_sdk::SdkError;

use crate::both_modes;

both_modes!(
    room_echo_between_two_clients,
    other_tenants_receive_nothing,
    leaving_stops_delivery,
    join_answers_with_the_originals_fields,
    messages_from_one_sender_arrive_in_order,
);

async fn room_echo_between_two_clients(cluster: &Cluster) {
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-a").await;
    a.join("science", "general").await.unwrap();
    b.join("science", "general").await.unwrap();

    let id = a
        .publish("science", "general", json!({"content": "HELLO"}))
        .await
        .unwrap();

    let received = b.recv(WAIT).await.unwrap();
    assert_eq!(received.kind, MessageType::Message);
    assert_eq!(received.id.as_str(), id);
    assert_eq!(received.sender.as_deref(), Some(a.client_id()));
    assert_eq!(received.room.as_deref(), Some("science"));
    assert_eq!(received.channel.as_deref(), Some("general"));
    assert_eq!(received.payload.get("content"), Some(json!("HELLO")));
    // The sender gets its acknowledgement (consumed by `publish`), never its own message.
    assert_eq!(a.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
}

async fn other_tenants_receive_nothing(cluster: &Cluster) {
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-a").await;
    let outsider = cluster.client("t-b").await;
    for client in [&a, &b, &outsider] {
        client.join("science", "general").await.unwrap();
    }
    a.publish("science", "general", json!({"content": "for t-a only"}))
        .await
        .unwrap();
    // Same-tenant delivery proves the message was routed before checking the outsider.
    assert_eq!(
        b.recv(WAIT).await.unwrap().payload.get("content"),
        Some(json!("for t-a only"))
    );
    assert_eq!(outsider.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // And the other way round.
    let b_member = cluster.client("t-b").await;
    b_member.join("science", "general").await.unwrap();
    outsider
        .publish("science", "general", json!({"content": "for t-b only"}))
        .await
        .unwrap();
    assert_eq!(
        b_member.recv(WAIT).await.unwrap().payload.get("content"),
        Some(json!("for t-b only"))
    );
    assert_eq!(a.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    assert_eq!(b.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
}

async fn leaving_stops_delivery(cluster: &Cluster) {
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-a").await;
    let c = cluster.client("t-a").await;
    for client in [&a, &b, &c] {
        client.join("lab", "notes").await.unwrap();
    }
    b.leave("lab", "notes").await.unwrap();
    a.publish("lab", "notes", json!({"n": 1})).await.unwrap();
    assert_eq!(c.recv(WAIT).await.unwrap().payload.get("n"), Some(json!(1)));
    assert_eq!(b.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // Joining again resumes delivery; the room subscription is shared by b and c.
    b.join("lab", "notes").await.unwrap();
    a.publish("lab", "notes", json!({"n": 2})).await.unwrap();
    assert_eq!(b.recv(WAIT).await.unwrap().payload.get("n"), Some(json!(2)));
    assert_eq!(c.recv(WAIT).await.unwrap().payload.get("n"), Some(json!(2)));
}

async fn join_answers_with_the_originals_fields(cluster: &Cluster) {
    let a = cluster.client("t-a").await;
    let response = a.join("science", "general").await.unwrap();
    assert_eq!(response.status, Some(Status::Success));
    assert_eq!(response.sender.as_deref(), Some("arqonbus"));
    let data = response.payload.get("data").unwrap();
    assert_eq!(data["room_id"], "science");
    assert_eq!(data["channel_id"], "general");
    assert_eq!(data["channel_name"], "general");
    assert_eq!(data["joined_by"], a.client_id());
    assert!(response.payload.get("message").unwrap().is_string());
    assert_eq!(response.payload.get("metadata"), Some(json!({})));
}

/// Sent back to back without waiting: the services run several workers each, so only the
/// one-envelope-in-flight rule keeps them in order.
async fn messages_from_one_sender_arrive_in_order(cluster: &Cluster) {
    const COUNT: u64 = 100;
    let a = cluster.client("t-a").await;
    let b = cluster.client("t-a").await;
    a.join("order", "test").await.unwrap();
    b.join("order", "test").await.unwrap();
    for n in 0..COUNT {
        let mut envelope = Envelope::new(MessageType::Message);
        envelope.room = Some("order".into());
        envelope.channel = Some("test".into());
        envelope.payload = JsonObject::from_value(&json!({ "n": n })).unwrap();
        a.send(&envelope).await.unwrap();
    }
    for n in 0..COUNT {
        let received = b.recv(WAIT).await.unwrap();
        assert_eq!(received.payload.get("n"), Some(json!(n)));
    }
    for n in 0..COUNT {
        let ack = a.recv(WAIT).await.unwrap();
        assert_eq!(ack.kind, MessageType::MessageResponse);
        assert_eq!(ack.payload.get("n"), Some(json!(n)));
    }
}
