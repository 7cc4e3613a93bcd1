//! `op.webhook` over the wire, against real HTTP receivers on 127.0.0.1: signed POSTs
//! with the exact body, retries then success, dead letters, tenant isolation, the SSRF
//! guard, every reply and error of the original's `op.webhook`, rules that end with their owner, two operators
//! replicas sharing the queue, and a tenant whose endpoint hangs filling only its share.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as Frame;

use arqon_e2e::reply::{assert_refused, data, ok, run};
use arqon_e2e::{
    Cluster, Mode, QUIET, RawSocket, Topology, WAIT, eventually, metric_value, next_json, send_json,
};
use arqon_operators::{OperatorsConfig, WebhookSettings};
use arqon_protocol::{Envelope, ErrorCode, MessageType, TenantId, subject};
use arqon_sdk::Client;

/// Delivery settings of these tests: internal targets allowed (the receivers listen on
/// 127.0.0.1), three attempts, short backoffs, two rules per tenant.
fn settings() -> WebhookSettings {
    WebhookSettings {
        allow_private_targets: true,
        max_attempts: 3,
        backoff_base_ms: 50,
        backoff_max_ms: 200,
        max_rules_per_tenant: 2,
        outcomes_flush_ms: 200,
        ..WebhookSettings::default()
    }
}

async fn launch(mode: Mode, operators: usize, webhook: WebhookSettings) -> Cluster {
    Cluster::launch(Topology {
        operators,
        operator: OperatorsConfig {
            webhook,
            ..OperatorsConfig::default()
        },
        ..Topology::new(mode)
    })
    .await
}

/// `<name>::standalone` and `<name>::distributed` for a scenario run on a cluster with
/// [`settings`].
macro_rules! webhook_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use arqon_e2e::Mode;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = super::launch(Mode::Standalone, 1, super::settings()).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn distributed() {
                let cluster = super::launch(Mode::Distributed, 1, super::settings()).await;
                super::$name(&cluster).await;
                cluster.stop().await;
            }
        }
    )*};
}

webhook_modes!(
    a_matching_message_is_posted_once_signed_with_the_exact_body,
    a_receiver_that_fails_twice_receives_the_message_once_more,
    a_receiver_that_never_succeeds_produces_a_dead_letter,
    messages_of_another_tenant_are_never_posted,
    rules_are_registered_listed_and_unregistered_with_every_error,
    a_rule_ends_with_its_owner_unless_persistent,
    a_hanging_receiver_delays_neither_the_room_nor_other_rules,
    each_rules_outcomes_are_counted_for_whoever_may_see_the_rule,
);

// ---------------------------------------------------------------------------------------
// A real HTTP receiver.

/// One POST as the receiver got it.
#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Script {
    /// Statuses to answer with, in order; then `then`.
    statuses: Arc<Mutex<VecDeque<u16>>>,
    then: u16,
    received: mpsc::Sender<Received>,
    /// When set, every request is recorded, then left unanswered until this turns true.
    hold: Option<watch::Receiver<bool>>,
}

/// An HTTP server on 127.0.0.1 that records every POST and answers as scripted.
struct Receiver {
    url: String,
    requests: mpsc::Receiver<Received>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receiver(statuses: &[u16], then: u16) -> Receiver {
    serve(statuses, then, None).await
}

/// A receiver that records each POST and answers none until `hold` turns true.
async fn hanging_receiver(hold: watch::Receiver<bool>) -> Receiver {
    serve(&[], 200, Some(hold)).await
}

async fn serve(statuses: &[u16], then: u16, hold: Option<watch::Receiver<bool>>) -> Receiver {
    async fn hook(State(script): State<Script>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let status = script
            .statuses
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(script.then);
        script
            .received
            .try_send(Received { headers, body })
            .unwrap();
        if let Some(mut hold) = script.hold {
            // An error: the test is over and dropped the sender.
            let _ = hold.wait_for(|released| *released).await;
        }
        StatusCode::from_u16(status).unwrap()
    }
    let (sender, requests) = mpsc::channel(1024);
    let script = Script {
        statuses: Arc::new(Mutex::new(statuses.iter().copied().collect())),
        then,
        received: sender,
        hold,
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        requests,
        server,
    }
}

impl Receiver {
    /// The next POST (bounded).
    async fn next(&mut self) -> Received {
        tokio::time::timeout(3 * WAIT, self.requests.recv())
            .await
            .expect("a POST in time")
            .expect("the receiver is running")
    }

    /// Asserts that nothing more is POSTed for `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(Some(request)) = tokio::time::timeout(quiet, self.requests.recv()).await {
            panic!(
                "unexpected POST: {}",
                String::from_utf8_lossy(&request.body)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// Registers a rule and returns its data.
async fn register(client: &Client, rule: Value) -> Value {
    let response = run(client, "op.webhook.register", rule).await;
    ok(&response, "Webhook rule registered");
    data(&response)
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A raw member of `science:general` of `tenant`, to read frames exactly as sent.
async fn member(cluster: &Cluster, tenant: &str) -> RawSocket {
    let mut socket = cluster.raw_client(tenant).await;
    let join = json!({"type": "command", "command": "join_channel", "args": {"room": "science", "channel": "general"}});
    send_json(&mut socket, &join).await;
    assert_eq!(next_json(&mut socket).await["status"], "success");
    next_json(&mut socket).await; // command_response
    socket
}

/// The text of the frame of message `id`, exactly as it was sent (other frames skipped).
async fn frame_of(socket: &mut RawSocket, id: &str) -> String {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        if let Frame::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"] == id {
                return text.as_str().to_owned();
            }
        }
    }
}

async fn outcome_count(cluster: &Cluster, replica: usize, outcome: &str) -> f64 {
    let metrics = cluster.operators_metrics(replica).await;
    let series = format!("arqonbus_webhook_deliveries_total{{outcome=\"{outcome}\"}}");
    metric_value(&metrics, &series).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// Scenarios.

/// The original's acceptance scenario 40: a rule for `science:general` receives a POST whose body has the sender's
/// client id and the envelope; here also: exactly as the room's members got it, signed
/// with the rule's secret, once, and only for matching messages.
async fn a_matching_message_is_posted_once_signed_with_the_exact_body(cluster: &Cluster) {
    let mut hooks = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    let rule = register(
        &owner,
        json!({"url": hooks.url, "room": "science", "channel": "general", "headers": {"X-Team": "lab", "X-Version": 2}}),
    )
    .await;
    let rule_id = rule["rule_id"].as_str().unwrap().to_owned();
    let secret = rule["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);

    let mut watcher = member(cluster, "t-a").await;
    let sender = cluster.client("t-a").await;
    // Not matching the filter, and not messages: never posted.
    sender
        .publish("science", "other", json!({"content": "elsewhere"}))
        .await
        .unwrap();
    let mut telemetry = Envelope::new(MessageType::Telemetry);
    telemetry.room = Some("science".into());
    telemetry.channel = Some("general".into());
    sender.send(&telemetry).await.unwrap();
    let id = sender
        .publish("science", "general", json!({"content": "hello hooks"}))
        .await
        .unwrap();

    // The room's members see the telemetry (fanned out) and the message.
    frame_of(&mut watcher, telemetry.id.as_str()).await;
    let frame = frame_of(&mut watcher, &id).await;
    let request = hooks.next().await;
    let expected = format!(
        r#"{{"rule_version":"v1","sender_client_id":"{}","envelope":{frame}}}"#,
        sender.client_id()
    );
    assert_eq!(String::from_utf8_lossy(&request.body), expected);
    let body = request.json();
    assert_eq!(body["envelope"]["id"], id.as_str());
    assert_eq!(body["envelope"]["payload"]["content"], "hello hooks");
    assert_eq!(body["sender_client_id"], sender.client_id());
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(
        request.header("x-arqon-signature"),
        signature(&secret, &request.body)
    );
    assert_ne!(
        request.header("x-arqon-signature"),
        signature("not-the-secret", &request.body)
    );
    assert_eq!(request.header("x-arqon-rule-id"), rule_id);
    assert!(request.header("x-arqon-delivery-id").ends_with(&rule_id));
    assert_eq!(request.header("x-arqon-attempt"), "1");
    assert_eq!(request.header("x-team"), "lab");
    assert_eq!(request.header("x-version"), "2");
    hooks.assert_quiet(QUIET * 3).await;
    eventually("the success is counted", || async {
        outcome_count(cluster, 0, "success").await == 1.0
    })
    .await;
}

/// Two 503s, then 200: the receiver gets the message three times (the same delivery,
/// attempts 1 to 3), and nothing after the success.
async fn a_receiver_that_fails_twice_receives_the_message_once_more(cluster: &Cluster) {
    let mut hooks = receiver(&[503, 503], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hooks.url})).await;
    let id = owner
        .publish("science", "general", json!({"content": "retry me"}))
        .await
        .unwrap();

    let attempts = [hooks.next().await, hooks.next().await, hooks.next().await];
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.json()["envelope"]["id"], id.as_str());
        assert_eq!(attempt.header("x-arqon-attempt"), (n + 1).to_string());
        assert_eq!(
            attempt.body, attempts[0].body,
            "every attempt has the same body"
        );
        assert_eq!(
            attempt.header("x-arqon-delivery-id"),
            attempts[0].header("x-arqon-delivery-id")
        );
    }
    // Longer than the longest backoff: a fourth POST would have come by then.
    hooks.assert_quiet(Duration::from_secs(1)).await;
    eventually("two retries and one success are counted", || async {
        outcome_count(cluster, 0, "retry").await == 2.0
            && outcome_count(cluster, 0, "success").await == 1.0
    })
    .await;
}

/// The data of `op.webhook.outcomes`.
async fn outcomes(client: &Client) -> Value {
    let response = run(client, "op.webhook.outcomes", json!({})).await;
    ok(&response, "Webhook outcomes retrieved");
    data(&response)
}

/// `op.webhook.outcomes`: per rule, what its deliveries came to (two 503s then a 200:
/// two retries and a delivery; a 404: a failure), with the last error; shown to whoever
/// may list the rule (its owner, the tenant's admin), and gone with the rule.
async fn each_rules_outcomes_are_counted_for_whoever_may_see_the_rule(cluster: &Cluster) {
    let mut flaky = receiver(&[503, 503], 200).await;
    let mut refusing = receiver(&[], 404).await;
    let owner = cluster.client("t-a").await;
    let other = cluster.client("t-a").await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let foreign_admin = cluster.client_on(0, &cluster.token("t-b", "admin")).await;
    let flaky_rule = register(&owner, json!({"url": flaky.url, "persistent": true})).await;
    let refusing_rule = register(&owner, json!({"url": refusing.url, "persistent": true})).await;
    owner
        .publish("science", "general", json!({"content": "count me"}))
        .await
        .unwrap();
    for _ in 0..3 {
        flaky.next().await;
    }
    refusing.next().await;

    let rule = |answer: &Value, id: &Value| -> Value {
        answer["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["rule_id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    eventually("each rule's outcomes are counted", || async {
        let answer = outcomes(&owner).await;
        let flaky = rule(&answer, &flaky_rule["rule_id"]);
        let refusing = rule(&answer, &refusing_rule["rule_id"]);
        flaky["delivered"] == 1
            && flaky["retried"] == 2
            && refusing["failed"] == 1
            && refusing["delivered"] == 0
    })
    .await;
    let answer = outcomes(&admin).await;
    assert_eq!(answer["count"], 2, "{answer}");
    let flaky_figures = rule(&answer, &flaky_rule["rule_id"]);
    assert_eq!(flaky_figures["dead_lettered"], 0);
    assert_eq!(flaky_figures["url"], flaky.url.as_str());
    assert!(
        flaky_figures["last_error"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{flaky_figures}"
    );
    assert!(flaky_figures["last_error_at"].is_string());
    assert!(flaky_figures["last_delivered_at"].is_string());
    let refusing_figures = rule(&answer, &refusing_rule["rule_id"]);
    assert!(
        refusing_figures["last_error"]
            .as_str()
            .unwrap()
            .contains("404"),
        "{refusing_figures}"
    );
    assert!(refusing_figures["last_delivered_at"].is_null());
    // Another user of the tenant and another tenant's admin see no rule of the owner.
    assert_eq!(outcomes(&other).await["count"], 0);
    assert_eq!(outcomes(&foreign_admin).await["count"], 0);

    // Unregistered, a rule's outcomes go with it.
    let removed = run(
        &owner,
        "op.webhook.unregister",
        json!({"rule_id": flaky_rule["rule_id"]}),
    )
    .await;
    ok(&removed, "Webhook rule removed");
    let answer = outcomes(&owner).await;
    assert_eq!(answer["count"], 1, "{answer}");
    assert_eq!(answer["rules"][0]["rule_id"], refusing_rule["rule_id"]);
}

/// Always 500: after the three attempts, a dead letter on the tenant's dead-letter
/// subject; a 404 is not retried and becomes a dead letter at once.
async fn a_receiver_that_never_succeeds_produces_a_dead_letter(cluster: &Cluster) {
    let tenant = TenantId::parse("t-a").unwrap();
    let bus = cluster.bus().await;
    let mut dead = bus.subscribe(subject::webhook_dead(&tenant)).await.unwrap();
    let mut other_dead = bus.subscribe(subject::WEBHOOK_DEAD_ALL).await.unwrap();
    bus.flush().await.unwrap();

    let mut failing = receiver(&[], 500).await;
    let owner = cluster.client("t-a").await;
    let rule = register(&owner, json!({"url": failing.url, "room": "science"})).await;
    owner
        .publish("science", "general", json!({"content": "doomed"}))
        .await
        .unwrap();
    let posted: Vec<Received> = vec![
        failing.next().await,
        failing.next().await,
        failing.next().await,
    ];
    let letter = tokio::time::timeout(3 * WAIT, dead.next())
        .await
        .unwrap()
        .unwrap();
    let letter: Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(letter["rule_id"], rule["rule_id"]);
    assert_eq!(letter["url"], failing.url.as_str());
    assert_eq!(letter["attempts"], 3);
    assert!(
        letter["last_error"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 500"),
        "{letter}"
    );
    assert_eq!(letter["body"], posted[2].json());
    assert_eq!(letter["body"]["envelope"]["payload"]["content"], "doomed");
    failing.assert_quiet(Duration::from_secs(1)).await;
    let seen = tokio::time::timeout(WAIT, other_dead.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.subject, subject::webhook_dead(&tenant));

    // A permanent refusal: one attempt, then the dead letter.
    let unregister = run(
        &owner,
        "op.webhook.unregister",
        json!({"rule_id": rule["rule_id"]}),
    )
    .await;
    ok(&unregister, "Webhook rule removed");
    let mut refusing = receiver(&[], 404).await;
    register(&owner, json!({"url": refusing.url})).await;
    owner
        .publish("science", "general", json!({"content": "refused"}))
        .await
        .unwrap();
    refusing.next().await;
    let letter = tokio::time::timeout(3 * WAIT, dead.next())
        .await
        .unwrap()
        .unwrap();
    let letter: Value = serde_json::from_slice(&letter.payload).unwrap();
    assert_eq!(
        (letter["attempts"].as_u64(), letter["last_error"].as_str()),
        (Some(1), Some("HTTP 404 Not Found"))
    );
    refusing.assert_quiet(Duration::from_secs(1)).await;
    failing.assert_quiet(QUIET).await;
    eventually("dead letters are counted", || async {
        outcome_count(cluster, 0, "dead_letter").await == 1.0
            && outcome_count(cluster, 0, "permanent_failure").await == 1.0
    })
    .await;
}

/// A rule without filters sees every room of its own tenant, and nothing of another.
async fn messages_of_another_tenant_are_never_posted(cluster: &Cluster) {
    let mut hooks = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hooks.url})).await;
    let stranger = cluster.client("t-b").await;
    stranger
        .publish("science", "general", json!({"content": "t-b secret"}))
        .await
        .unwrap();
    let id = owner
        .publish("science", "general", json!({"content": "t-a news"}))
        .await
        .unwrap();
    let request = hooks.next().await;
    assert_eq!(request.json()["envelope"]["id"], id.as_str());
    hooks.assert_quiet(QUIET * 3).await;
}

/// The original's acceptance scenario 39, and every reply and error of its `op.webhook` register, list and unregister.
async fn rules_are_registered_listed_and_unregistered_with_every_error(cluster: &Cluster) {
    let mut hooks = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    let other = cluster.client("t-a").await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let foreign_admin = cluster.client_on(0, &cluster.token("t-b", "admin")).await;

    for (rule, text) in [
        (json!({}), "Validation error: 'url' is required"),
        (json!({"url": "  "}), "Validation error: 'url' is required"),
        (
            json!({"url": "ftp://example.com/x"}),
            "Validation error: 'url' must start with http:// or https://",
        ),
        (
            json!({"url": hooks.url, "headers": "X-A: 1"}),
            "Validation error: 'headers' must be an object",
        ),
        (
            json!({"url": hooks.url, "timeout_seconds": 0}),
            "Validation error: 'timeout_seconds' must be > 0",
        ),
        (
            json!({"url": hooks.url, "timeout_seconds": "soon"}),
            "Validation error: 'timeout_seconds' must be a number, not 'soon'",
        ),
        (
            json!({"url": hooks.url, "persistent": "perhaps"}),
            "Validation error: 'persistent' must be a boolean",
        ),
        (
            json!({"url": hooks.url, "headers": {"X-Arqon-Signature": "forged"}}),
            "Validation error: Header 'X-Arqon-Signature' is set by the bus and cannot be overridden",
        ),
    ] {
        let response = run(&owner, "op.webhook.register", rule.clone()).await;
        assert_refused(&response, ErrorCode::ValidationError, text);
    }

    let registered = register(
        &owner,
        json!({"url": format!("  {}  ", hooks.url), "room": "science", "channel": "general", "timeout_seconds": 1.5}),
    )
    .await;
    let rule_id = registered["rule_id"].as_str().unwrap().to_owned();
    assert!(
        rule_id.starts_with("wh_") && rule_id.len() == 15,
        "{rule_id}"
    );
    assert_eq!(registered["url"], hooks.url.as_str());
    assert_eq!(
        (registered["room"].as_str(), registered["channel"].as_str()),
        (Some("science"), Some("general"))
    );
    assert_eq!(registered["timeout_seconds"], 1.5);
    assert_eq!(registered["persistent"], false);
    assert!(
        registered["created_at"]
            .as_str()
            .is_some_and(|t| t.contains('T'))
    );

    let listed = run(&owner, "op.webhook.list", json!({})).await;
    ok(&listed, "Webhook rules retrieved");
    let listed = data(&listed);
    assert_eq!(listed["count"], 1);
    let rule = &listed["rules"][0];
    assert_eq!(rule["rule_id"], rule_id.as_str());
    assert_eq!(rule["owner_client_id"], owner.client_id());
    assert_eq!(rule["url"], hooks.url.as_str());
    assert_eq!(rule["created_at"], registered["created_at"]);
    assert!(
        rule.get("secret").is_none(),
        "the secret is shown once: {rule}"
    );
    assert_eq!(
        data(&run(&other, "op.webhook.list", json!({})).await)["count"],
        0
    );
    assert_eq!(
        data(&run(&admin, "op.webhook.list", json!({})).await)["count"],
        1
    );
    assert_eq!(
        data(&run(&foreign_admin, "op.webhook.list", json!({})).await)["count"],
        0
    );

    // The per-tenant limit (2 in these tests).
    let second = register(&other, json!({"url": hooks.url, "room": "elsewhere"})).await;
    let over = run(&admin, "op.webhook.register", json!({"url": hooks.url})).await;
    assert_refused(
        &over,
        ErrorCode::ValidationError,
        "Validation error: Webhook rule limit reached (2 per tenant)",
    );

    for missing in [json!({}), json!({"rule_id": " "})] {
        let response = run(&owner, "op.webhook.unregister", missing).await;
        assert_refused(
            &response,
            ErrorCode::ValidationError,
            "Validation error: 'rule_id' is required",
        );
    }
    for unknown in ["wh_000000000000", "no-such-rule"] {
        let response = run(&owner, "op.webhook.unregister", json!({"rule_id": unknown})).await;
        assert_refused(
            &response,
            ErrorCode::NotFound,
            &format!("Webhook rule '{unknown}' not found"),
        );
        assert_eq!(data(&response), json!({"rule_id": unknown}));
    }
    let response = run(&other, "op.webhook.unregister", json!({"rule_id": rule_id})).await;
    assert_refused(
        &response,
        ErrorCode::AuthorizationError,
        "Cannot remove webhook rule owned by another client",
    );
    // Another tenant's admin cannot even see it.
    let response = run(
        &foreign_admin,
        "op.webhook.unregister",
        json!({"rule_id": rule_id}),
    )
    .await;
    assert_refused(
        &response,
        ErrorCode::NotFound,
        &format!("Webhook rule '{rule_id}' not found"),
    );

    // It still delivers, until its owner removes it.
    owner
        .publish("science", "general", json!({"content": "before"}))
        .await
        .unwrap();
    assert_eq!(
        hooks.next().await.json()["envelope"]["payload"]["content"],
        "before"
    );
    let response = run(&owner, "op.webhook.unregister", json!({"rule_id": rule_id})).await;
    ok(&response, "Webhook rule removed");
    assert_eq!(data(&response), json!({"rule_id": rule_id}));
    assert_eq!(
        data(&run(&owner, "op.webhook.list", json!({})).await)["count"],
        0
    );
    owner
        .publish("science", "general", json!({"content": "after"}))
        .await
        .unwrap();
    hooks.assert_quiet(QUIET * 3).await;

    // An admin removes anyone's rule of its tenant.
    let response = run(
        &admin,
        "op.webhook.unregister",
        json!({"rule_id": second["rule_id"]}),
    )
    .await;
    ok(&response, "Webhook rule removed");
    assert_eq!(
        data(&run(&admin, "op.webhook.list", json!({})).await)["count"],
        0
    );
}

/// A rule that is not persistent goes when its owner disconnects; a persistent one stays.
async fn a_rule_ends_with_its_owner_unless_persistent(cluster: &Cluster) {
    let hooks = receiver(&[], 200).await;
    let admin = cluster.client_on(0, &cluster.token("t-a", "admin")).await;
    let owner = cluster.client("t-a").await;
    let fleeting = register(&owner, json!({"url": hooks.url})).await;
    let kept = register(&owner, json!({"url": hooks.url, "persistent": true})).await;
    assert_eq!(kept["persistent"], true);
    assert_eq!(
        data(&run(&admin, "op.webhook.list", json!({})).await)["count"],
        2
    );
    owner.close().await.unwrap();
    drop(owner);
    eventually(
        "the owner's rule that is not persistent is removed",
        || async {
            let listed = data(&run(&admin, "op.webhook.list", json!({})).await);
            listed["count"] == 1
        },
    )
    .await;
    let listed = data(&run(&admin, "op.webhook.list", json!({})).await);
    assert_eq!(listed["rules"][0]["rule_id"], kept["rule_id"]);
    assert_ne!(listed["rules"][0]["rule_id"], fleeting["rule_id"]);
    assert_eq!(listed["rules"][0]["persistent"], true);
}

/// By default the SSRF guard refuses internal targets, by address or by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_url_is_refused_by_default() {
    let cluster = launch(Mode::Standalone, 1, WebhookSettings::default()).await;
    let client = cluster.client("t-a").await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
    ] {
        let response = run(&client, "op.webhook.register", json!({ "url": url })).await;
        assert_refused(
            &response,
            ErrorCode::ValidationError,
            "Validation error: 'url' must not target a loopback, private, link-local or other internal address",
        );
    }
    assert_eq!(
        data(&run(&client, "op.webhook.list", json!({})).await)["count"],
        0
    );
    cluster.stop().await;
}

/// Two operators replicas on one nats-server share the queue: each message is posted
/// exactly once, whichever replica takes it, and the rule's outcomes are both replicas'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_replicas_post_each_message_once() {
    let cluster = launch(Mode::Distributed, 2, settings()).await;
    let mut hooks = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hooks.url})).await;
    let mut sent = BTreeSet::new();
    for i in 0..40 {
        let id = owner
            .publish("science", "general", json!({ "n": i }))
            .await
            .unwrap();
        sent.insert(id);
    }
    let mut posted = BTreeSet::new();
    for _ in 0..sent.len() {
        let request = hooks.next().await;
        let id = request.json()["envelope"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(posted.insert(id.clone()), "{id} posted twice");
    }
    assert_eq!(posted, sent);
    hooks.assert_quiet(QUIET * 3).await;
    eventually(
        "both replicas' successes add up to the messages",
        || async {
            outcome_count(&cluster, 0, "success").await
                + outcome_count(&cluster, 1, "success").await
                == 40.0
        },
    )
    .await;
    // The rule's figures are both replicas' (each adds its counts to the rule's key).
    eventually("the rule's outcomes add up both replicas'", || async {
        outcomes(&owner).await["rules"][0]["delivered"] == 40
    })
    .await;
    cluster.stop().await;
}

/// The progress of a delivery lives in the queue, not in a replica: after the first
/// failed attempt one of the two replicas stops, and the other makes the remaining
/// attempts (counted on from where the first left off) until the receiver accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_outlives_the_replica_that_started_it() {
    let slow_retries = WebhookSettings {
        backoff_base_ms: 500,
        backoff_max_ms: 1000,
        ..settings()
    };
    let mut cluster = launch(Mode::Distributed, 2, slow_retries).await;
    let mut hooks = receiver(&[503, 503], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hooks.url, "persistent": true})).await;
    let id = owner
        .publish("science", "general", json!({"content": "keep going"}))
        .await
        .unwrap();
    let first = hooks.next().await;
    assert_eq!(first.header("x-arqon-attempt"), "1");
    // The replica that made the first attempt goes, once it has queued the next one (a
    // replica stopped mid-attempt hands the attempt back, to be made again).
    let deadline = tokio::time::Instant::now() + WAIT;
    let attempted = loop {
        let mut retried = None;
        for replica in 0..2 {
            if outcome_count(&cluster, replica, "retry").await >= 1.0 {
                retried = Some(replica);
            }
        }
        if let Some(replica) = retried {
            break replica;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no retry was queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.stop_operators(attempted).await;
    for attempt in ["2", "3"] {
        let again = hooks.next().await;
        assert_eq!(again.header("x-arqon-attempt"), attempt);
        assert_eq!(again.json()["envelope"]["id"], id.as_str());
        assert_eq!(
            again.header("x-arqon-delivery-id"),
            first.header("x-arqon-delivery-id")
        );
    }
    hooks.assert_quiet(Duration::from_secs(2)).await;
    cluster.stop().await;
}

/// A backend calling the Webhooks API directly (service token, stated caller) gets the
/// same checks as a WebSocket client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_api_checks_its_callers() {
    use arqon_proto::grpc::{Bearer, ServiceToken, error_code};
    use arqon_proto::operators::v1 as pb;
    use arqon_proto::operators::v1::webhooks_client::WebhooksClient;
    use arqon_protocol::{ClientId, EdgeId};

    let cluster = launch(Mode::Standalone, 1, settings()).await;
    let channel = tonic::transport::Channel::from_shared(cluster.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = Bearer::new(&ServiceToken::new(arqon_e2e::SERVICE_TOKEN)).unwrap();
    let mut api = WebhooksClient::with_interceptor(channel, bearer);
    let edge = EdgeId::generate();
    let caller = |admin| pb::Caller {
        tenant: "t-a".into(),
        client_id: ClientId::generate_on(&edge).to_string(),
        admin,
        subject: Some("backend".into()),
        system: false,
    };
    let owner = caller(false);
    let rule = api
        .register(pb::RegisterWebhookRequest {
            caller: Some(owner.clone()),
            url: "http://127.0.0.1:9/hook".into(),
            persistent: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rule.owner_client_id, owner.client_id);
    assert_eq!(rule.secret.len(), 64);
    let listed = api
        .list(pb::ListWebhooksRequest {
            caller: Some(owner.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.rules.len(), 1);
    assert!(listed.rules[0].secret.is_empty());

    let refused = api
        .unregister(pb::UnregisterWebhookRequest {
            caller: Some(caller(false)),
            rule_id: rule.rule_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(error_code(&refused), Some(ErrorCode::AuthorizationError));
    let anonymous = api
        .list(pb::ListWebhooksRequest { caller: None })
        .await
        .unwrap_err();
    assert_eq!(error_code(&anonymous), Some(ErrorCode::ValidationError));
    let removed = api
        .unregister(pb::UnregisterWebhookRequest {
            caller: Some(caller(true)),
            rule_id: rule.rule_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.rule_id, rule.rule_id);
    cluster.stop().await;
}

/// A receiver that takes requests and never answers holds none of the room's members
/// back, nor another rule's receiver: every message reaches both while the hanging one
/// still sits on its first requests.
async fn a_hanging_receiver_delays_neither_the_room_nor_other_rules(cluster: &Cluster) {
    const MESSAGES: usize = 20;
    let (release, hold) = watch::channel(false);
    let mut hanging = hanging_receiver(hold).await;
    let mut fast = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hanging.url, "timeout_seconds": 30})).await;
    register(&owner, json!({"url": fast.url})).await;
    let mut watcher = member(cluster, "t-a").await;
    let sender = cluster.client("t-a").await;
    let mut ids = Vec::new();
    for n in 0..MESSAGES {
        let id = sender
            .publish("science", "general", json!({"n": n}))
            .await
            .unwrap();
        ids.push(id);
    }
    for id in &ids {
        frame_of(&mut watcher, id).await;
    }
    let mut posted = BTreeSet::new();
    while posted.len() < MESSAGES {
        let request = fast.next().await;
        posted.insert(
            request.json()["envelope"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(posted, ids.iter().cloned().collect::<BTreeSet<_>>());
    // The hanging receiver got requests, and has answered none of them.
    hanging.next().await;
    eventually("the fast receiver's successes are counted", || async {
        outcome_count(cluster, 0, "success").await == MESSAGES as f64
    })
    .await;
    // The hanging receiver's deliveries wait in the queue, and its depth says so.
    eventually("the queue's depth is sampled", || async {
        let metrics = cluster.operators_metrics(0).await;
        metric_value(&metrics, "arqonbus_webhook_queue_jobs").unwrap_or(0.0) >= 1.0
    })
    .await;
    release.send_replace(true);
}

crate::each_mode!(a_tenant_whose_endpoint_hangs_fills_only_its_share_of_the_queue);

/// Tenant A's two rules point at a receiver that takes requests and never answers, and A
/// sends more messages than the whole queue holds deliveries for. A's deliveries stop at
/// its share of the queue (the rest are dropped and counted), so tenant B's message is
/// still queued and posted. Before the per-tenant bound A's deliveries filled the queue
/// and B's message was never queued.
async fn a_tenant_whose_endpoint_hangs_fills_only_its_share_of_the_queue(mode: Mode) {
    const SHARE: u64 = 10;
    const MESSAGES: usize = 40;
    let cluster = launch(
        mode,
        1,
        WebhookSettings {
            queue_max_jobs: 60,
            max_queued_per_tenant: SHARE,
            ..settings()
        },
    )
    .await;
    let (release, hold) = watch::channel(false);
    let mut hanging = hanging_receiver(hold).await;
    let mut fast = receiver(&[], 200).await;
    let owner_a = cluster.client("t-a").await;
    for _ in 0..2 {
        register(&owner_a, json!({"url": hanging.url, "timeout_seconds": 30})).await;
    }
    let owner_b = cluster.client("t-b").await;
    register(&owner_b, json!({"url": fast.url})).await;

    // A wants 80 deliveries queued: more than the 60 jobs the whole queue holds.
    let sender_a = cluster.client("t-a").await;
    for n in 0..MESSAGES {
        sender_a
            .publish("science", "general", json!({"n": n}))
            .await
            .unwrap();
    }
    // A's deliveries are being attempted, and hang.
    hanging.next().await;
    eventually(
        "tenant A's deliveries fill its share of the queue",
        || async {
            let metrics = cluster.operators_metrics(0).await;
            metric_value(&metrics, "arqonbus_webhook_queue_jobs").unwrap_or(0.0) >= SHARE as f64
        },
    )
    .await;

    // B's message is queued and posted all the same.
    let sender_b = cluster.client("t-b").await;
    let id = sender_b
        .publish("science", "general", json!({"content": "still delivered"}))
        .await
        .unwrap();
    let request = fast.next().await;
    assert_eq!(request.json()["envelope"]["id"], id.as_str());
    fast.assert_quiet(QUIET).await;

    // A's deliveries beyond its share were dropped, and counted.
    eventually("tenant A's drops are counted", || async {
        let metrics = cluster.operators_metrics(0).await;
        metric_value(
            &metrics,
            r#"arqonbus_webhook_dropped_total{reason="tenant_full"}"#,
        )
        .unwrap_or(0.0)
            >= 1.0
    })
    .await;
    release.send_replace(true);
    cluster.stop().await;
}

/// A message CASIL blocks never reaches a webhook; the clean one after it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_message_is_never_posted() {
    use arqon_casil::{Mode as CasilMode, Policy};
    use arqon_policy::{CasilSettings, PolicyConfig};

    let mut policy = Policy {
        enabled: true,
        mode: CasilMode::Enforce,
        ..Policy::default()
    };
    policy.policies.block_on_probable_secret = true;
    let cluster = Cluster::launch(Topology {
        policy: PolicyConfig {
            casil: CasilSettings::from_policy(&policy),
            ..PolicyConfig::default()
        },
        operator: OperatorsConfig {
            webhook: settings(),
            ..OperatorsConfig::default()
        },
        ..Topology::new(Mode::Distributed)
    })
    .await;
    let mut hooks = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hooks.url})).await;
    let sender = cluster.client("t-a").await;
    let blocked = sender
        .publish(
            "science",
            "general",
            json!({"content": "the key is AKIAIOSFODNN7EXAMPLE"}),
        )
        .await;
    assert!(blocked.is_err(), "the sender is told: {blocked:?}");
    let clean = sender
        .publish(
            "science",
            "general",
            json!({"content": "hello, nothing to hide"}),
        )
        .await
        .unwrap();
    assert_eq!(hooks.next().await.json()["envelope"]["id"], clean.as_str());
    hooks.assert_quiet(QUIET * 3).await;
    cluster.stop().await;
}

crate::each_mode!(a_redacted_message_is_posted_redacted);

/// With CASIL's transport redaction, the POST carries the redacted message, exactly as
/// the room's members got it: nothing redacted (payload, metadata or arguments) reaches
/// the receiver.
async fn a_redacted_message_is_posted_redacted(mode: Mode) {
    use arqon_casil::{Mode as CasilMode, Policy};
    use arqon_policy::{CasilSettings, PolicyConfig};

    let mut policy = Policy {
        enabled: true,
        mode: CasilMode::Enforce,
        ..Policy::default()
    };
    policy.policies.redaction.transport_redaction = true;
    let cluster = Cluster::launch(Topology {
        policy: PolicyConfig {
            casil: CasilSettings::from_policy(&policy),
            ..PolicyConfig::default()
        },
        operator: OperatorsConfig {
            webhook: settings(),
            ..OperatorsConfig::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let mut hooks = receiver(&[], 200).await;
    let owner = cluster.client("t-a").await;
    register(&owner, json!({"url": hooks.url})).await;
    let mut watcher = member(&cluster, "t-a").await;
    let mut sender = cluster.raw_client("t-a").await;
    let id = arqon_protocol::MessageId::generate().to_string();
    let message = json!({"id": id, "type": "message", "room": "science", "channel": "general",
        "payload": {"password": "hunter2", "note": "key AKIAIOSFODNN7EXAMPLE"},
        "metadata": {"secret": "meta-value-7"},
        "args": {"token": "arg-value-9"}});
    send_json(&mut sender, &message).await;
    assert_eq!(next_json(&mut sender).await["type"], "message_response");

    let frame = frame_of(&mut watcher, &id).await;
    let request = hooks.next().await;
    let body = String::from_utf8_lossy(&request.body).into_owned();
    for secret in [
        "hunter2",
        "AKIAIOSFODNN7EXAMPLE",
        "meta-value-7",
        "arg-value-9",
    ] {
        assert!(!body.contains(secret), "the POST carries {secret}: {body}");
    }
    let posted = request.json();
    assert_eq!(posted["envelope"]["payload"]["password"], "***REDACTED***");
    assert_eq!(posted["envelope"]["payload"]["note"], "key ***REDACTED***");
    assert_eq!(
        posted["envelope"],
        serde_json::from_str::<Value>(&frame).unwrap()
    );
    hooks.assert_quiet(QUIET).await;
    cluster.stop().await;
}
