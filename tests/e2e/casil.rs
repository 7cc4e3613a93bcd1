//! CASIL over the wire: monitor and enforce, live reloads reaching every policy replica,
//! who may reload, what a blocked sender and its receivers see, redaction, and the
//! decision events.

use serde_json::{Map, Value, json};

use arqon_casil::{Mode, Policy};
use arqon_e2e::{Cluster, Mode as Deployment, QUIET, RawSocket, Topology, WAIT, eventually};
use arqon_e2e::{metric_value, next_json, send_json};
use arqon_policy::{CasilSettings, PolicyConfig};
use arqon_protocol::{ErrorCode, MessageId, Status, subject};
use arqon_sdk::{Client, SdkError};

fn args(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// A cluster whose policy stage starts from `policy`.
async fn launch(mode: Deployment, policies: usize, policy: &Policy) -> Cluster {
    Cluster::launch(Topology {
        policies,
        policy: PolicyConfig {
            casil: CasilSettings::from_policy(policy),
            ..PolicyConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

fn monitor() -> Policy {
    Policy {
        enabled: true,
        ..Policy::default()
    }
}

/// The fleet's operator: only it may reload the policy every tenant lives under.
async fn operator(cluster: &Cluster) -> Client {
    cluster.client_on(0, &cluster.system_token("t-a")).await
}

/// A message id of the required format.
fn id() -> String {
    MessageId::generate().to_string()
}

/// Sends `content` from a raw socket and returns the one answer.
async fn send(socket: &mut RawSocket, id: &str, content: &str) -> Value {
    let message = json!({"id": id, "type": "message", "room": "lab", "channel": "notes", "payload": {"content": content}});
    send_json(socket, &message).await;
    next_json(socket).await
}

async fn raw_sender(cluster: &Cluster) -> RawSocket {
    let mut socket = cluster.raw_client("t-a").await;
    let join = json!({"type": "command", "command": "join_channel", "args": {"room": "lab", "channel": "notes"}});
    send_json(&mut socket, &join).await;
    assert_eq!(next_json(&mut socket).await["status"], "success");
    next_json(&mut socket).await; // command_response
    socket
}

async fn reload(client: &Client, changes: Value) -> Result<Value, SdkError> {
    let response = client.command("op.casil.reload", args(changes)).await?;
    if response.status == Some(Status::Success) {
        Ok(response.payload.get("data").unwrap_or(Value::Null))
    } else {
        Err(SdkError::Rejected {
            code: response.error_code.clone().unwrap_or_default(),
            message: response.to_json(),
        })
    }
}

async fn live_mode(client: &Client) -> (String, u64) {
    let response = client.command("op.casil.get", Map::new()).await.unwrap();
    assert_eq!(
        response.status,
        Some(Status::Success),
        "{}",
        response.to_json()
    );
    let data = response.payload.get("data").unwrap();
    (
        data["mode"].as_str().unwrap().to_owned(),
        data["version"].as_u64().unwrap(),
    )
}

fn rejected_with(result: Result<Value, SdkError>, code: ErrorCode) -> String {
    match result {
        Err(SdkError::Rejected { code: got, message }) => {
            assert_eq!(got, code.as_str(), "{message}");
            message
        }
        other => panic!("expected {code}, got {other:?}"),
    }
}

fn block_count(metrics: &str) -> f64 {
    metric_value(
        metrics,
        r#"arqonbus_policy_decisions_total{decision="BLOCK",reason="CASIL_POLICY_BLOCKED_SECRET"}"#,
    )
    .unwrap_or(0.0)
}

/// The acceptance scenario: two policy replicas on nats-server, monitor then enforce,
/// refusals that leave the live policy alone, and a restarted replica that enforces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_enforce_reaches_every_policy_replica() {
    let mut cluster = launch(Deployment::Distributed, 2, &monitor()).await;
    let receiver = cluster.client("t-a").await;
    receiver.join("lab", "notes").await.unwrap();
    let mut sender = raw_sender(&cluster).await;
    let admin = operator(&cluster).await;
    let user = cluster.client("t-a").await;
    let tenant_admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;

    // Monitor mode delivers, and reports what it would have done.
    let first = id();
    let ack = send(&mut sender, &first, "token-value-123").await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("message_response"), Some(first.as_str()))
    );
    assert_eq!(
        receiver.recv(WAIT).await.unwrap().payload.get("content"),
        Some(json!("token-value-123"))
    );
    assert_eq!(live_mode(&admin).await, ("monitor".to_owned(), 1));

    // Refused reloads leave the live policy untouched: a tenant's admin, like a user,
    // cannot change what every tenant lives under.
    for refused in [&user, &tenant_admin] {
        let message = rejected_with(
            reload(refused, json!({"mode": "enforce"})).await,
            ErrorCode::AuthorizationError,
        );
        assert!(
            message.contains("Only the system authority can reload the CASIL policy"),
            "{message}"
        );
    }
    let message = rejected_with(
        reload(&admin, json!({"mode": "audit"})).await,
        ErrorCode::ValidationError,
    );
    assert!(message.contains("Invalid CASIL mode: audit"), "{message}");
    let message = rejected_with(
        reload(&admin, json!({"redaction_patterns": ["("]})).await,
        ErrorCode::ValidationError,
    );
    assert!(message.contains('('), "{message}");
    assert_eq!(live_mode(&user).await, ("monitor".to_owned(), 1));

    let data = reload(
        &admin,
        json!({"mode": "enforce", "block_on_probable_secret": true}),
    )
    .await
    .unwrap();
    assert_eq!(
        (data["mode"].as_str(), data["version"].as_u64()),
        (Some("enforce"), Some(2))
    );
    for i in 0..2 {
        let cluster = &cluster;
        eventually("every replica applies version 2", || async move {
            metric_value(&cluster.policy_metrics(i).await, "arqonbus_policy_version") == Some(2.0)
        })
        .await;
    }

    // Enforced, whichever replica inspects: enough messages that both do.
    for n in 0..24 {
        let id = id();
        let error = send(&mut sender, &id, &format!("token-value-456-{n}")).await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"], "CASIL blocked message");
        assert_eq!(error["error_code"], "CASIL_POLICY_BLOCKED_SECRET");
        assert_eq!(error["request_id"], id.as_str());
    }
    assert_eq!(receiver.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    for i in 0..2 {
        let blocks = block_count(&cluster.policy_metrics(i).await);
        assert!(blocks > 0.0, "replica {i} blocked nothing");
    }
    // A clean message still goes through.
    let ack = send(&mut sender, &id(), "hello").await;
    assert_eq!(ack["type"], "message_response", "{ack}");
    assert_eq!(
        receiver.recv(WAIT).await.unwrap().payload.get("content"),
        Some(json!("hello"))
    );

    // A replica started after the reload takes the stored version and enforces it.
    cluster.restart_policy(1).await;
    assert_eq!(
        metric_value(&cluster.policy_metrics(1).await, "arqonbus_policy_version"),
        Some(2.0)
    );
    let mut n = 0;
    while block_count(&cluster.policy_metrics(1).await) == 0.0 {
        n += 1;
        assert!(n < 64, "the restarted replica never inspected a message");
        let error = send(&mut sender, &id(), "token-value-789").await;
        assert_eq!(
            error["error_code"], "CASIL_POLICY_BLOCKED_SECRET",
            "{error}"
        );
    }
    assert_eq!(receiver.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    cluster.stop().await;
}

fn enforcing() -> Policy {
    let mut policy = monitor();
    policy.mode = Mode::Enforce;
    policy.policies.block_on_probable_secret = true;
    policy
}

/// A command with a secret in its arguments is blocked and not executed; so is client
/// telemetry bound for a room (the original inspected neither).
async fn commands_and_telemetry_are_inspected(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let blocked = member
        .command(
            "create_channel",
            args(json!({"room": "vault", "channel": "keys", "description": "password: hunter2"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&blocked, SdkError::Rejected { code, .. } if code == "CASIL_POLICY_BLOCKED_SECRET"),
        "{blocked:?}"
    );
    let listed = member
        .command("list_channels", args(json!({"room": "vault"})))
        .await
        .unwrap();
    assert!(
        listed.has_error_code(ErrorCode::RoomNotFound),
        "{}",
        listed.to_json()
    );

    let mut sender = raw_sender(cluster).await;
    let telemetry = json!({"id": id(), "type": "telemetry", "room": "lab", "channel": "notes", "payload": {"api_key": "abc"}});
    send_json(&mut sender, &telemetry).await;
    let error = next_json(&mut sender).await;
    assert_eq!(
        error["error_code"], "CASIL_POLICY_BLOCKED_SECRET",
        "{error}"
    );
    assert_eq!(member.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // The policy commands themselves are never inspected, so the operator can always
    // repair.
    let admin = operator(cluster).await;
    let data = reload(
        &admin,
        json!({"redaction_patterns": ["token"], "mode": "monitor"}),
    )
    .await
    .unwrap();
    assert_eq!(data["mode"], "monitor");
}

/// Defines `<name>::standalone` and `<name>::distributed` for a scenario run on a
/// cluster whose policy stage starts from `$policy()`.
macro_rules! with_policy {
    ($policy:ident: $($name:ident),* $(,)?) => {$(
        mod $name {
            use arqon_e2e::Mode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = super::launch(Mode::Standalone, 1, &super::$policy()).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                let cluster = super::launch(Mode::Distributed, 1, &super::$policy()).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }
        }
    )*};
}

with_policy!(enforcing:
    commands_and_telemetry_are_inspected,
    blocks_are_reported_on_the_decision_subject,
);

with_policy!(redacting:
    transport_redaction_replaces_what_receivers_and_history_see,
    every_copy_of_a_redacted_message_is_redacted,
);

with_policy!(size_limited: an_oversize_envelope_is_refused_and_shown_to_nobody);

with_policy!(guarded: nothing_a_client_writes_escapes_inspection);

with_policy!(monitor: cron_firings_pass_the_live_policy);

/// A cron job scheduled while the policy only monitors fires into the room; once the
/// policy enforces, each firing is inspected as it is published: the secret in it is
/// blocked (counted, and reported with the job as the sender), and no member gets it.
async fn cron_firings_pass_the_live_policy(cluster: &Cluster) {
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let owner = cluster.client("t-a").await;
    owner.join("lab", "notes").await.unwrap();
    let scheduled = owner
        .command(
            "op.cron.schedule",
            args(json!({"room": "lab", "channel": "notes",
                        "payload": {"content": "the key is AKIAIOSFODNN7EXAMPLE"},
                        "delay_seconds": 0.1, "interval_seconds": 1, "repeat_count": 10000})),
        )
        .await
        .unwrap();
    assert_eq!(
        scheduled.status,
        Some(Status::Success),
        "{}",
        scheduled.to_json()
    );
    let fired = member.recv(WAIT).await.unwrap();
    assert_eq!(fired.sender.as_deref(), Some("op-cron"));
    let bus = cluster.bus().await;
    let mut events = bus.subscribe(subject::CASIL_EVENTS_ALL).await.unwrap();
    bus.flush().await.unwrap();
    let admin = operator(cluster).await;
    reload(
        &admin,
        json!({"mode": "enforce", "block_on_probable_secret": true}),
    )
    .await
    .unwrap();
    let blocked = || async {
        metric_value(
            &cluster.operators_metrics(0).await,
            "arqonbus_cron_blocked_firings_total",
        )
        .unwrap_or(0.0)
    };
    eventually("firings are blocked", || async { blocked().await >= 1.0 }).await;
    // What was published before the reload has arrived by the time nothing comes for a
    // while; from then on every firing is blocked.
    while member.recv(QUIET).await.is_ok() {}
    let before = blocked().await;
    eventually("more firings are blocked", || async {
        blocked().await >= before + 2.0
    })
    .await;
    assert_eq!(member.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    let event = loop {
        let message = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("a decision event in time")
            .expect("the subscription is open");
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        if event["metadata"]["decision"] == "BLOCK" {
            break event;
        }
    };
    assert!(
        event["client_id"]
            .as_str()
            .is_some_and(|c| c.starts_with("cron:cron_")),
        "{event}"
    );
}

/// Enforcing on `lab:*` and `secure:*` only, reading at most 1 KiB of each part.
fn guarded() -> Policy {
    let mut policy = enforcing();
    policy.scope.include = vec!["lab:*".to_owned(), "secure:*".to_owned()];
    policy.limits.max_inspect_bytes = 1024;
    policy
}

/// Every part a client writes is inspected wherever it goes: metadata and a message's
/// arguments, bytes past the inspection window, a command whose arguments name a
/// protected room while its own room is out of scope. None of it reaches anyone.
async fn nothing_a_client_writes_escapes_inspection(cluster: &Cluster) {
    const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let mut sender = raw_sender(cluster).await;
    let padding = "x".repeat(2000);
    let cases = [
        (
            json!({"payload": {"content": "hi"}, "metadata": {"note": KEY}}),
            "CASIL_POLICY_BLOCKED_SECRET",
        ),
        (
            json!({"payload": {"content": "hi"}, "args": {"note": KEY}}),
            "CASIL_POLICY_BLOCKED_SECRET",
        ),
        (
            json!({"payload": {"a": padding, "b": KEY}}),
            "CASIL_POLICY_OVERSIZE",
        ),
    ];
    for (parts, code) in cases {
        let mut envelope =
            json!({"id": id(), "type": "message", "room": "lab", "channel": "notes"});
        for (key, value) in parts.as_object().unwrap() {
            envelope[key] = value.clone();
        }
        send_json(&mut sender, &envelope).await;
        let answer = next_json(&mut sender).await;
        assert_eq!(answer["error_code"], code, "{parts}: {answer}");
    }
    assert_eq!(member.recv(QUIET).await.unwrap_err(), SdkError::Timeout);

    // The command's own room is out of scope; the room it acts on is not.
    let create = json!({"id": id(), "type": "command", "command": "create_channel",
        "room": "public", "channel": "open",
        "args": {"room": "secure", "channel": "vault", "description": KEY}});
    send_json(&mut sender, &create).await;
    let answer = next_json(&mut sender).await;
    assert_eq!(
        answer["error_code"], "CASIL_POLICY_BLOCKED_SECRET",
        "{answer}"
    );
    let listed = member
        .command("list_channels", args(json!({"room": "secure"})))
        .await
        .unwrap();
    assert!(
        listed.has_error_code(ErrorCode::RoomNotFound),
        "{}",
        listed.to_json()
    );

    // Clean metadata passes: a trace context is not a secret.
    let traced = json!({"id": id(), "type": "message", "room": "lab", "channel": "notes",
        "payload": {"content": "clean"},
        "metadata": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}});
    send_json(&mut sender, &traced).await;
    assert_eq!(next_json(&mut sender).await["type"], "message_response");
    assert_eq!(
        member.recv(WAIT).await.unwrap().payload.get("content"),
        Some(json!("clean"))
    );
}

fn redacting() -> Policy {
    let mut policy = monitor();
    policy.mode = Mode::Enforce;
    policy.policies.redaction.transport_redaction = true;
    policy.metadata.to_envelope = true;
    policy
}

async fn transport_redaction_replaces_what_receivers_and_history_see(cluster: &Cluster) {
    let receiver = cluster.client("t-a").await;
    receiver.join("lab", "notes").await.unwrap();
    let sender = cluster.client("t-a").await;
    sender.join("lab", "notes").await.unwrap();
    sender
        .publish(
            "lab",
            "notes",
            json!({"user": "ada", "password": "hunter2", "note": "hi"}),
        )
        .await
        .unwrap();
    let delivered = receiver.recv(WAIT).await.unwrap();
    assert_eq!(
        delivered.payload.get("password"),
        Some(json!("***REDACTED***"))
    );
    assert_eq!(delivered.payload.get("note"), Some(json!("hi")));
    let casil = delivered.metadata.get("casil").unwrap();
    assert_eq!(casil["decision"], "ALLOW_WITH_REDACTION");
    // Stored before it was acknowledged (ADR 011): history keeps the redacted copy.
    let history = receiver
        .command("history", args(json!({"room": "lab", "channel": "notes"})))
        .await
        .unwrap();
    let data = history.payload.get("data").unwrap_or(Value::Null);
    assert_eq!(data["history"][0]["payload"]["password"], "***REDACTED***");
    // Switched to monitor, nothing delivered is altered any more.
    let admin = operator(cluster).await;
    reload(&admin, json!({"mode": "monitor"})).await.unwrap();
    sender
        .publish("lab", "notes", json!({"password": "hunter3"}))
        .await
        .unwrap();
    let delivered = receiver.recv(WAIT).await.unwrap();
    assert_eq!(delivered.payload.get("password"), Some(json!("hunter3")));
}

async fn blocks_are_reported_on_the_decision_subject(cluster: &Cluster) {
    let bus = cluster.bus().await;
    let mut events = bus.subscribe(subject::CASIL_EVENTS_ALL).await.unwrap();
    bus.flush().await.unwrap();
    let mut sender = raw_sender(cluster).await;
    let secret = id();
    let error = send(&mut sender, &secret, "the key is AKIAIOSFODNN7EXAMPLE").await;
    assert_eq!(error["error_code"], "CASIL_POLICY_BLOCKED_SECRET");
    let event = loop {
        let message = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("a decision event in time")
            .expect("the subscription is open");
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        if event["message_id"] == secret.as_str() {
            let tenant = arqon_protocol::TenantId::parse("t-a").unwrap();
            assert_eq!(message.subject, subject::casil_events(&tenant));
            break event;
        }
    };
    assert_eq!(event["event"], "casil_decision");
    assert_eq!(event["severity"], "warning");
    assert_eq!(event["metadata"]["decision"], "BLOCK");
    assert_eq!(
        event["metadata"]["reason_code"],
        "CASIL_POLICY_BLOCKED_SECRET"
    );
    // The event shows the redacted copy, never the secret.
    assert_eq!(event["payload"]["content"], "the key is ***REDACTED***");
}

/// The decision event of message `id` (others skipped), as text and as JSON.
async fn event_of(events: &mut arqon_bus::Subscription, id: &str) -> (String, Value) {
    loop {
        let message = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("a decision event in time")
            .expect("the subscription is open");
        let text = String::from_utf8(message.payload.to_vec()).unwrap();
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["message_id"] == id {
            return (text, event);
        }
    }
}

/// Asserts that `copy` (the text of one copy of a message) carries none of `secrets`.
fn carries_none(what: &str, copy: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!copy.contains(secret), "{what} carries {secret}: {copy}");
    }
}

/// With transport redaction, no copy of a redacted message carries what was redacted,
/// whether it was in the payload, the metadata or a message's arguments: not the
/// sender's acknowledgement, the members' frames, the decision event, nor the history.
async fn every_copy_of_a_redacted_message_is_redacted(cluster: &Cluster) {
    const SECRETS: [&str; 4] = [
        "hunter2",
        "AKIAIOSFODNN7EXAMPLE",
        "meta-value-7",
        "arg-value-9",
    ];
    let bus = cluster.bus().await;
    let mut events = bus.subscribe(subject::CASIL_EVENTS_ALL).await.unwrap();
    bus.flush().await.unwrap();
    let mut member = raw_sender(cluster).await;
    let mut sender = raw_sender(cluster).await;
    let id = id();
    let message = json!({"id": id, "type": "message", "room": "lab", "channel": "notes",
        "payload": {"user": "ada", "password": "hunter2", "note": "key AKIAIOSFODNN7EXAMPLE"},
        "metadata": {"secret": "meta-value-7"},
        "args": {"token": "arg-value-9"}});
    send_json(&mut sender, &message).await;

    let ack = next_json(&mut sender).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_str()),
        (Some("message_response"), Some(id.as_str())),
        "{ack}"
    );
    assert_eq!(ack["payload"]["password"], "***REDACTED***", "{ack}");
    assert_eq!(ack["payload"]["note"], "key ***REDACTED***", "{ack}");
    assert_eq!(ack["payload"]["user"], "ada", "{ack}");
    carries_none("the acknowledgement", &ack.to_string(), &SECRETS);

    let delivered = next_json(&mut member).await;
    assert_eq!(delivered["id"], id.as_str(), "{delivered}");
    assert_eq!(delivered["payload"], ack["payload"], "{delivered}");
    assert_eq!(
        delivered["metadata"]["secret"], "***REDACTED***",
        "{delivered}"
    );
    carries_none("the delivered frame", &delivered.to_string(), &SECRETS);

    let (text, event) = event_of(&mut events, &id).await;
    assert_eq!(
        event["metadata"]["decision"], "ALLOW_WITH_REDACTION",
        "{text}"
    );
    assert_eq!(event["payload"]["password"], "***REDACTED***", "{text}");
    carries_none("the decision event", &text, &SECRETS);

    let history = json!({"type": "command", "command": "history",
        "args": {"room": "lab", "channel": "notes"}});
    send_json(&mut member, &history).await;
    let stored = next_json(&mut member).await;
    assert_eq!(next_json(&mut member).await["type"], "command_response");
    let entries = stored["payload"]["data"]["history"].as_array().unwrap();
    assert!(
        entries.iter().any(|m| m["message_id"] == id.as_str()),
        "{stored}"
    );
    carries_none("the history", &stored.to_string(), &SECRETS);
}

/// Enforcing a payload limit of 1 KiB and reading at most 2 KiB of each part.
fn size_limited() -> Policy {
    let mut policy = redacting();
    policy.policies.max_payload_bytes = 1024;
    policy.limits.max_inspect_bytes = 2048;
    policy
}

/// A payload over `max_payload_bytes` gets one `CASIL_POLICY_OVERSIZE` error that echoes
/// nothing of it, reaches no member, and its decision event shows no secret: neither one
/// the inspection read (redacted) nor one past the inspection window, which nothing
/// read (the copy the event may carry must not hold bytes CASIL never looked at).
async fn an_oversize_envelope_is_refused_and_shown_to_nobody(cluster: &Cluster) {
    let late = format!("ghp_{}", "A".repeat(36));
    let secrets = ["hunter2", "AKIAIOSFODNN7EXAMPLE", late.as_str()];
    let bus = cluster.bus().await;
    let mut events = bus.subscribe(subject::CASIL_EVENTS_ALL).await.unwrap();
    bus.flush().await.unwrap();
    let member = cluster.client("t-a").await;
    member.join("lab", "notes").await.unwrap();
    let mut sender = raw_sender(cluster).await;
    let payloads = [
        // Over the limit, read whole.
        json!({"password": "hunter2", "key": "AKIAIOSFODNN7EXAMPLE", "pad": "x".repeat(1200)}),
        // Over the limit and the window: the token lies where nothing searched (the keys
        // are written in this order), while the window had something to redact.
        json!({"a": "my password", "b": "x".repeat(2500), "c": late, "password": "hunter2"}),
    ];
    for payload in payloads {
        let id = id();
        let message = json!({"id": id, "type": "message", "room": "lab", "channel": "notes",
            "payload": payload});
        send_json(&mut sender, &message).await;
        let error = next_json(&mut sender).await;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error_code"], "CASIL_POLICY_OVERSIZE", "{error}");
        assert_eq!(error["request_id"], id.as_str(), "{error}");
        assert_eq!(
            error["payload"],
            json!({"reason": "CASIL_POLICY_OVERSIZE"}),
            "{error}"
        );
        let echoed = error.to_string();
        carries_none("the error", &echoed, &secrets);
        assert!(!echoed.contains("xxxxxxxx"), "{echoed}");
        let (text, event) = event_of(&mut events, &id).await;
        assert_eq!(
            (
                event["metadata"]["decision"].as_str(),
                event["metadata"]["reason_code"].as_str(),
                event["severity"].as_str()
            ),
            (
                Some("BLOCK"),
                Some("CASIL_POLICY_OVERSIZE"),
                Some("warning")
            ),
            "{text}"
        );
        carries_none("the decision event", &text, &secrets);
    }
    assert_eq!(member.recv(QUIET).await.unwrap_err(), SdkError::Timeout);
    // The sender goes on.
    let ack = send(&mut sender, &id(), "small").await;
    assert_eq!(ack["type"], "message_response", "{ack}");
    assert_eq!(
        member.recv(WAIT).await.unwrap().payload.get("content"),
        Some(json!("small"))
    );
}
