//! A window of envelopes in flight per connection (ADR 022): one sender's envelopes,
//! sent back to back with the window full, through two policy and two dispatcher
//! replicas, are answered once each in the order sent, reach members on two edges in that
//! order, and are stored in it.

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use arqon_e2e::{Cluster, Mode, QUIET, Topology, WAIT, edge_config, metric_value, next_json};
use arqon_edge::EdgeConfig;
use arqon_proto::model::{EdgeDelivery, Inbound};
use arqon_protocol::{ClientId, EdgeId, Envelope, Identity, Role, Status, TenantId, subject};
use arqon_sdk::SdkError;

use crate::{both_modes, each_mode};

each_mode!(a_full_window_keeps_one_senders_order);
both_modes!(
    a_message_sent_right_after_a_command_is_handled_after_it,
    an_edge_of_the_previous_version_still_has_its_messages_published,
);

/// Messages the sender sends back to back.
const SENT: usize = 3000;
/// Every this many messages a command goes too: it goes alone, in its place.
const COMMAND_EVERY: usize = 700;

/// The `id` of message `n` (a ULID's form).
fn id(n: usize) -> String {
    format!("arq_01J{n:023}")
}

/// What the sender sends, in order: messages, and now and then a `ping`.
fn envelopes() -> Vec<Value> {
    let mut sent = Vec::new();
    for n in 0..SENT {
        if n % COMMAND_EVERY == COMMAND_EVERY / 2 {
            sent.push(json!({"id": id(SENT + n), "type": "command", "command": "ping"}));
        }
        sent.push(json!({
            "id": id(n), "type": "message", "room": "science", "channel": "general",
            "payload": {"n": n},
        }));
    }
    sent
}

/// The answers due, in order: a message's acknowledgement, a command's response and its
/// acknowledgement; as (type, id of the envelope answered).
fn answers_due(sent: &[Value]) -> Vec<(String, String)> {
    let mut due = Vec::new();
    for envelope in sent {
        let id = envelope["id"].as_str().unwrap_or_default().to_owned();
        if envelope["type"] == "command" {
            due.push(("response".to_owned(), id.clone()));
            due.push(("command_response".to_owned(), id));
        } else {
            due.push(("message_response".to_owned(), id));
        }
    }
    due
}

async fn a_full_window_keeps_one_senders_order(mode: Mode) {
    let replicas = if mode == Mode::Distributed { 2 } else { 1 };
    let cluster = Cluster::launch(Topology {
        edges: replicas,
        policies: replicas,
        dispatchers: replicas,
        // Every envelope crosses the policy stage, so its replicas too.
        edge: EdgeConfig {
            policy_bypass: false,
            ..edge_config()
        },
        ..Topology::new(mode)
    })
    .await;
    let mut members = Vec::new();
    for edge in 0..replicas {
        let token = cluster.token_with(json!({"sub": format!("m{edge}"), "tenant_id": "t-a"}));
        let member = cluster.client_on(edge, &token).await;
        member.join("science", "general").await.unwrap();
        members.push(member);
    }

    let (mut write, mut read) = cluster.raw_client("t-a").await.split();
    let sent = envelopes();
    let due = answers_due(&sent);
    let sending = async {
        for envelope in &sent {
            write
                .send(Message::text(envelope.to_string()))
                .await
                .unwrap();
        }
    };
    let answering = async {
        let mut answers = Vec::new();
        while answers.len() < due.len() {
            let frame = tokio::time::timeout(WAIT, read.next())
                .await
                .expect("answers keep coming")
                .expect("the connection is open")
                .unwrap();
            if let Message::Text(text) = frame {
                let answer: Value = serde_json::from_str(text.as_str()).unwrap();
                answers.push(answer);
            }
        }
        answers
    };
    let ((), answers) = tokio::join!(sending, answering);
    let got: Vec<(String, String)> = answers
        .iter()
        .map(|a| {
            let kind = a["type"].as_str().unwrap_or_default();
            // A response names the command it answers in `request_id`.
            let of = if kind == "response" {
                "request_id"
            } else {
                "id"
            };
            (
                kind.to_owned(),
                a[of].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let first_wrong = got.iter().zip(&due).position(|(g, d)| g != d);
    assert_eq!(
        first_wrong,
        None,
        "answers in the order sent; around the first wrong one: {:?}",
        first_wrong.map(|at| &answers[at.saturating_sub(2)..(at + 3).min(answers.len())])
    );

    // Each member, on either edge, gets every message once, in the order sent.
    let expected: Vec<Value> = (0..SENT).map(|n| json!(n)).collect();
    for member in &members {
        let mut received = Vec::new();
        while received.len() < SENT {
            let message = member.recv(WAIT).await.unwrap();
            received.push(message.payload.get("n").unwrap_or(Value::Null));
        }
        assert_eq!(received, expected);
    }

    // The history stored them in that order (its last 1,000, the channel's bound).
    let history = members[0]
        .command(
            "history",
            json!({"room": "science", "channel": "general", "limit": 1000})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .await
        .unwrap();
    assert_eq!(history.status, Some(Status::Success));
    let stored: Vec<Value> = history.payload.get("data").unwrap()["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["n"].clone())
        .collect();
    assert_eq!(stored, expected[SENT - 1000..]);

    // The window was full, and the work spread over every replica.
    let edge = cluster.metrics().await;
    assert!(
        metric_value(&edge, "arqonbus_edge_window_full_total").unwrap_or(0.0) >= 1.0,
        "the sender filled its window"
    );
    if mode == Mode::Distributed {
        for i in 0..replicas {
            let policy = cluster.policy_metrics(i).await;
            let dispatcher = cluster.dispatcher_metrics(i).await;
            for (what, exposition, series) in [
                ("policy", &policy, "arqonbus_policy_forwarded_total"),
                (
                    "dispatcher",
                    &dispatcher,
                    "arqonbus_dispatcher_routed_total",
                ),
            ] {
                assert!(
                    metric_value(exposition, series).unwrap_or(0.0) >= 100.0,
                    "{what} replica {i} took its share: {series}"
                );
            }
        }
    }
    cluster.stop().await;
}

/// A command goes alone: an operator turns CASIL enforcement on and, without waiting for
/// the answer, sends secrets on the same connection. Every message before the reload is
/// delivered; every one after it is blocked, though the edge had them in hand before the
/// reload was answered (sent with the window, they would have skipped the policy stage
/// under the old version and been delivered).
async fn a_message_sent_right_after_a_command_is_handled_after_it(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let url = cluster.url_with_token(&cluster.system_token("t-a"));
    let (mut operator, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(
        next_json(&mut operator).await["payload"]["welcome"],
        "Connected to ArqonBus"
    );

    let message = |n: usize, content: &str| {
        json!({"id": id(n), "type": "message", "room": "lab", "channel": "notes",
               "payload": {"n": n, "content": content}})
    };
    let reload = json!({"id": id(9999), "type": "command", "command": "op.casil.reload",
        "args": {"enabled": true, "mode": "enforce", "block_on_probable_secret": true}});
    const EACH: usize = 20;
    let mut frames = Vec::new();
    frames.extend((0..EACH).map(|n| message(n, "hello")));
    frames.push(reload);
    frames.extend((EACH..2 * EACH).map(|n| message(n, "the key is AKIAIOSFODNN7EXAMPLE")));
    for frame in &frames {
        operator
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..2 * EACH + 2 {
        answers.push(next_json(&mut operator).await);
    }
    for (n, answer) in answers[..EACH].iter().enumerate() {
        assert_eq!(answer["type"], "message_response", "message {n}: {answer}");
    }
    assert_eq!(answers[EACH]["status"], "success", "{}", answers[EACH]);
    assert_eq!(answers[EACH + 1]["type"], "command_response");
    for answer in &answers[EACH + 2..] {
        assert_eq!(
            answer["error_code"], "CASIL_POLICY_BLOCKED_SECRET",
            "{answer}"
        );
    }

    let mut received = Vec::new();
    loop {
        match member.recv(QUIET).await {
            Ok(message) => received.push(message.payload.get("n").unwrap_or(Value::Null)),
            Err(SdkError::Timeout) => break,
            Err(e) => panic!("the member's connection failed: {e:?}"),
        }
    }
    let before: Vec<Value> = (0..EACH).map(|n| json!(n)).collect();
    assert_eq!(
        received, before,
        "nothing after the reload reached the member"
    );
}

/// An edge from before ADR 022 keeps one envelope in flight and publishes nothing (its
/// `Inbound` lacks `edge_publishes`): the dispatcher publishes its messages itself, as
/// before, and answers without publications. A rolling upgrade that updates the
/// dispatchers first relies on it.
async fn an_edge_of_the_previous_version_still_has_its_messages_published(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("lab", "old").await.unwrap();
    let bus = cluster.bus().await;
    let edge_id = EdgeId::generate();
    let mut answers = bus.subscribe(subject::edge(&edge_id)).await.unwrap();
    let client_id = ClientId::generate_on(&edge_id);
    let tenant = TenantId::parse("t-a").unwrap();
    let mut envelope = Envelope::from_client_json(
        r#"{"type":"message","room":"lab","channel":"old","payload":{"n":1}}"#,
    )
    .unwrap();
    envelope.sender = Some(client_id.to_string());
    envelope.from_client = envelope.sender.clone();
    let inbound = Inbound {
        identity: Identity {
            tenant: tenant.clone(),
            client_id,
            subject: Some("old-edge".to_owned()),
            role: Role::user(),
            edge_id,
            permissions: None,
            system: false,
        },
        envelope,
        received_at_unix_micros: 0,
        sequence: 1,
        edge_publishes: false,
        payload_rewritten: false,
    };
    bus.publish(subject::dispatch(&tenant), inbound.encode())
        .await
        .unwrap();
    let answer = tokio::time::timeout(WAIT, answers.next())
        .await
        .expect("an answer in time")
        .expect("the subscription is open");
    let answer = EdgeDelivery::decode(answer.payload).unwrap();
    assert_eq!(answer.completes, Some(1));
    assert!(answer.publish.is_none(), "the dispatcher published it");
    let ack: Value = serde_json::from_slice(&answer.frames[0]).unwrap();
    assert_eq!(ack["type"], "message_response", "{ack}");
    let delivered = member.recv(WAIT).await.unwrap();
    assert_eq!(delivered.payload.get("n"), Some(json!(1)));
}
