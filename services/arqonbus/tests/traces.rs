//! Traces as an operator sees them: the four services as processes on one nats-server,
//! exporting over OTLP/gRPC to a real trace receiver, and a real HTTP webhook receiver.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use arqon_sdk::token::{Claims, mint_hs256};
use arqon_testkit::NatsServer;
use arqon_testkit::otlp::{OtlpReceiver, ReceivedSpan};

use support::{Process, WAIT};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SECRET: &str = "trace-test-secret";
const TOKEN: &str = "trace-test-service-token";

/// A W3C context as a client would send it: sampled (`-01`).
struct ClientContext {
    trace_id: String,
    span_id: String,
}

impl ClientContext {
    fn new() -> ClientContext {
        ClientContext {
            trace_id: format!("{:032x}", rand_u128()),
            span_id: format!("{:016x}", rand_u128() as u64),
        }
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

fn rand_u128() -> u128 {
    // Distinct per call and per run; no cryptographic need.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    nanos ^ (u128::from(std::process::id()) << 64) ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834
}

/// Every span of `trace`, once `ready` holds for them (polled; bounded by `WAIT`).
async fn trace(
    receiver: &OtlpReceiver,
    trace_id: &str,
    ready: impl Fn(&[ReceivedSpan]) -> bool,
) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        if ready(&spans) {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} incomplete: {:#?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.name, &s.span_id, &s.parent_span_id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name)
        .unwrap_or_else(|| panic!("no {name} span from {service}"))
}

fn has(spans: &[ReceivedSpan], service: &str, name: &str) -> bool {
    spans.iter().any(|s| s.service == service && s.name == name)
}

async fn connect(ws: &str) -> Socket {
    let token = mint_hs256(
        SECRET.as_bytes(),
        &Claims::new("t", "acme", "admin", Duration::from_secs(300)),
    )
    .expect("token");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/ws?token={token}"))
        .await
        .expect("connect");
    next_json(&mut socket).await; // welcome
    socket
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// Sends `envelope` and returns the first answer naming it (`request_id` or `id`).
async fn send(socket: &mut Socket, envelope: Value) -> Value {
    let id = envelope["id"].as_str().expect("an id").to_owned();
    socket
        .send(Message::text(envelope.to_string()))
        .await
        .expect("send");
    loop {
        let answer = next_json(socket).await;
        if answer["request_id"] == id.as_str() || answer["id"] == id.as_str() {
            return answer;
        }
    }
}

fn message(id: &str, context: &ClientContext, payload: Value) -> Value {
    json!({"type": "message", "id": id, "room": "lab", "channel": "main", "payload": payload,
           "metadata": {"traceparent": context.traceparent()}})
}

/// A webhook endpoint that answers 200 and hands over each request's headers.
async fn webhook_receiver() -> (
    SocketAddr,
    mpsc::Receiver<HeaderMap>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, received) = mpsc::channel(64);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let sender = sender.clone();
            async move {
                let _ = sender.try_send(headers);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, received, server)
}

/// One message's trace crosses every service with correct parent links; a command to the
/// operators shows the gRPC client and server spans; a webhook POST carries the trace
/// context; a CASIL block is an error span with the decision; JSON logs carry the ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_message_through_every_service() {
    let nats = NatsServer::start();
    let receiver = OtlpReceiver::start().await;
    let (hook, mut posts, _server) = webhook_receiver().await;
    let common: Vec<(&str, String)> = vec![
        ("ARQONBUS_NATS_URL", nats.url()),
        ("ARQONBUS_AUTH_JWT_SECRET", SECRET.to_owned()),
        ("ARQONBUS_SERVICE_TOKEN", TOKEN.to_owned()),
        ("ARQONBUS_HTTP_PORT", "0".to_owned()),
        ("ARQONBUS_GRPC_PORT", "0".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        // Only what a client asked to sample: every trace below is one of those.
        ("OTEL_TRACES_SAMPLER_ARG", "0".to_owned()),
        ("ARQONBUS_CASIL_ENABLED", "true".to_owned()),
        ("ARQONBUS_CASIL_MODE", "enforce".to_owned()),
        ("ARQONBUS_CASIL_BLOCK_ON_PROBABLE_SECRET", "true".to_owned()),
        ("ARQONBUS_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
    ];
    let env = |extra: &[(&'static str, String)]| -> Vec<(&'static str, String)> {
        common
            .iter()
            .cloned()
            .chain(extra.iter().cloned())
            .collect()
    };
    let spawn = |args: &[&str], env: &[(&'static str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Process::spawn(args, &env)
    };
    let mut policy = spawn(&["policy"], &env(&[]));
    let policy_grpc = policy.log_event("gRPC listener bound")["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    policy.log_event("running");
    let mut operators = spawn(
        &["operators"],
        &env(&[("ARQONBUS_POLICY_URL", format!("http://{policy_grpc}"))]),
    );
    let operators_grpc = operators.log_event("gRPC listener bound")["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    operators.log_event("running");
    let mut dispatcher = spawn(
        &["dispatcher"],
        &env(&[
            ("ARQONBUS_POLICY_URL", format!("http://{policy_grpc}")),
            ("ARQONBUS_OPERATORS_URL", format!("http://{operators_grpc}")),
        ]),
    );
    dispatcher.log_event("running");
    let mut edges = Vec::new();
    let mut ws = Vec::new();
    let mut http = Vec::new();
    for _ in 0..2 {
        let mut edge = spawn(&["edge", "--port", "0"], &env(&[]));
        ws.push(
            edge.log_event("WebSocket listener bound")["addr"]
                .as_str()
                .expect("addr")
                .to_owned(),
        );
        http.push(
            edge.log_event("HTTP listener bound")["addr"]
                .as_str()
                .expect("addr")
                .parse::<SocketAddr>()
                .expect("an address"),
        );
        edge.log_event("running");
        edges.push(edge);
    }
    let mut sender = connect(&ws[0]).await;
    let mut member = connect(&ws[1]).await;
    let join = json!({"type": "command", "id": "arq_1_1_00a001", "command": "join_channel",
                      "args": {"room": "lab", "channel": "main"}});
    let joined = send(&mut member, join).await;
    assert_eq!(joined["status"], "success", "{joined}");

    // 1. A message: edge → policy → dispatcher → the member's edge, and the answer back.
    let first = ClientContext::new();
    let ack = send(
        &mut sender,
        message("arq_1_2_00a002", &first, json!({"content": "hello"})),
    )
    .await;
    assert_eq!(ack["type"], "message_response", "{ack}");
    let delivered = loop {
        let frame = next_json(&mut member).await;
        if frame["type"] == "message" {
            break frame;
        }
    };
    assert_eq!(delivered["payload"]["content"], "hello");
    let spans = trace(&receiver, &first.trace_id, |spans| {
        has(spans, "arqonbus-edge", "edge.receive")
            && has(spans, "arqonbus-policy", "policy.inspect")
            && has(spans, "arqonbus-dispatcher", "dispatcher.route")
            && has(spans, "arqonbus-edge", "edge.publish")
            && has(spans, "arqonbus-edge", "edge.fanout")
            && has(spans, "arqonbus-edge", "edge.answer")
    })
    .await;
    let receive = named(&spans, "arqonbus-edge", "edge.receive");
    let inspect = named(&spans, "arqonbus-policy", "policy.inspect");
    let route = named(&spans, "arqonbus-dispatcher", "dispatcher.route");
    let publish = named(&spans, "arqonbus-edge", "edge.publish");
    let fanout = named(&spans, "arqonbus-edge", "edge.fanout");
    let answer = named(&spans, "arqonbus-edge", "edge.answer");
    assert_eq!(
        receive.parent_span_id, first.span_id,
        "the client's span is the parent"
    );
    assert_eq!(inspect.parent_span_id, receive.span_id);
    assert_eq!(route.parent_span_id, inspect.span_id);
    assert_eq!(fanout.parent_span_id, route.span_id);
    // The dispatcher hands the message back to the sender's edge, which publishes it
    // (ADR 022): the answer and the publish are both the route's.
    assert_eq!(answer.parent_span_id, route.span_id);
    assert_eq!(publish.parent_span_id, route.span_id);
    assert_eq!(
        publish.attributes["messaging.destination.name"],
        "arqon.room.acme.lab.main"
    );
    assert_eq!(receive.attributes["messaging.destination.name"], "lab:main");
    assert_eq!(receive.attributes["arqonbus.tenant"], "acme");
    assert_eq!(fanout.attributes["arqonbus.members"], "1");
    assert_eq!(inspect.attributes["arqonbus.casil.decision"], "ALLOW");
    assert_eq!(inspect.attributes["arqonbus.casil.mode"], "enforce");
    // The stage latencies name the trace they were measured in (OpenMetrics exemplars):
    // receive to acknowledgement on the sender's edge, receive to delivery on the member's.
    let exemplar = format!("# {{trace_id=\"{}\"}}", first.trace_id);
    let (_, metrics) = arqon_testkit::http::get(http[0], "/metrics", WAIT).expect("metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("arqonbus_edge_pipeline_latency_seconds_bucket")
                && l.contains(&exemplar)
        ),
        "no exemplar on the sender's edge:\n{metrics}"
    );
    let (_, metrics) = arqon_testkit::http::get(http[1], "/metrics", WAIT).expect("metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("arqonbus_edge_delivery_latency_seconds_bucket")
                && l.contains(&exemplar)
        ),
        "no exemplar on the member's edge:\n{metrics}"
    );

    // 2. A command the operators serve: the gRPC call's client and server spans.
    let second = ClientContext::new();
    let register = json!({"type": "command", "id": "arq_1_3_00a003", "command": "op.webhook.register",
        "args": {"url": format!("http://{hook}/hook"), "room": "lab", "channel": "main", "persistent": true},
        "metadata": {"traceparent": second.traceparent()}});
    let registered = send(&mut sender, register).await;
    assert_eq!(registered["status"], "success", "{registered}");
    // RPC spans are named `<service>/<method>`.
    let rpc = "arqon.operators.v1.Webhooks/Register";
    let spans = trace(&receiver, &second.trace_id, |spans| {
        has(spans, "arqonbus-dispatcher", rpc) && has(spans, "arqonbus-operators", rpc)
    })
    .await;
    let client = named(&spans, "arqonbus-dispatcher", rpc);
    let server = named(&spans, "arqonbus-operators", rpc);
    assert_eq!(server.parent_span_id, client.span_id);
    assert_eq!(
        client.attributes["rpc.service"],
        "arqon.operators.v1.Webhooks"
    );
    assert_eq!(client.attributes["rpc.method"], "Register");
    assert_eq!(server.attributes["rpc.system"], "grpc");
    let command = named(&spans, "arqonbus-dispatcher", "dispatcher.command");
    assert_eq!(client.parent_span_id, command.span_id);

    // 3. A message to a room with a webhook: the POST carries the message's trace.
    let third = ClientContext::new();
    let ack = send(
        &mut sender,
        message("arq_1_4_00a004", &third, json!({"content": "to the hook"})),
    )
    .await;
    assert_eq!(ack["type"], "message_response", "{ack}");
    let headers = tokio::time::timeout(2 * WAIT, posts.recv())
        .await
        .expect("a POST in time")
        .expect("the receiver is up");
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .expect("the POST has a traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{}-", third.trace_id)),
        "{traceparent}"
    );
    let spans = trace(&receiver, &third.trace_id, |spans| {
        has(spans, "arqonbus-operators", "webhook.attempt")
    })
    .await;
    let attempt = named(&spans, "arqonbus-operators", "webhook.attempt");
    assert_eq!(attempt.attributes["arqonbus.webhook.attempt"], "1");
    assert_eq!(attempt.attributes["arqonbus.webhook.outcome"], "success");
    assert_eq!(attempt.attributes["http.response.status_code"], "200");
    assert!(
        traceparent.contains(&attempt.span_id),
        "the POST's parent is the attempt span: {traceparent}"
    );

    // 4. A secret in enforce mode: blocked, the decision on an error span.
    let fourth = ClientContext::new();
    let blocked = send(
        &mut sender,
        message(
            "arq_1_5_00a005",
            &fourth,
            json!({"content": "the key is AKIAIOSFODNN7EXAMPLE"}),
        ),
    )
    .await;
    assert_eq!(
        blocked["error_code"], "CASIL_POLICY_BLOCKED_SECRET",
        "{blocked}"
    );
    let spans = trace(&receiver, &fourth.trace_id, |spans| {
        has(spans, "arqonbus-policy", "policy.inspect")
    })
    .await;
    let inspect = named(&spans, "arqonbus-policy", "policy.inspect");
    assert_eq!(inspect.attributes["arqonbus.casil.decision"], "BLOCK");
    assert_eq!(
        inspect.attributes["arqonbus.casil.reason"],
        "CASIL_POLICY_BLOCKED_SECRET"
    );
    assert_eq!(inspect.status_code, 2, "an error status");
    assert!(!has(&spans, "arqonbus-dispatcher", "dispatcher.route"));

    // The policy's log line about the block carries the trace's ids.
    let logged = policy.log_event("CASIL blocked an envelope");
    assert_eq!(logged["trace_id"], fourth.trace_id.as_str(), "{logged}");
    assert_eq!(logged["span_id"], inspect.span_id.as_str(), "{logged}");

    // A client that says "not sampled" is followed: no span anywhere for its message;
    // nor for one without a context (the ratio is 0 here).
    let unsampled = ClientContext::new();
    let mut envelope = message("arq_1_6_00a006", &unsampled, json!({"content": "quiet"}));
    envelope["metadata"]["traceparent"] = json!(unsampled.traceparent().replace("-01", "-00"));
    assert_eq!(
        send(&mut sender, envelope).await["type"],
        "message_response"
    );
    let plain = json!({"type": "message", "id": "arq_1_7_00a007", "room": "lab", "channel": "main",
                       "payload": {"content": "no context"}});
    assert_eq!(send(&mut sender, plain).await["type"], "message_response");
    // Later than any export of those two would arrive (batches every 100 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let traced = [
        &first.trace_id,
        &second.trace_id,
        &third.trace_id,
        &fourth.trace_id,
    ];
    for span in receiver.spans() {
        assert!(
            traced.contains(&&span.trace_id),
            "a span outside the clients' sampled traces: {span:?}"
        );
    }

    // Only the bus's own spans: no transport crate's, no exporter traffic.
    let all = receiver.spans();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for span in &all {
        *names.entry(span.name.as_str()).or_default() += 1;
    }
    for name in names.keys() {
        assert!(
            name.starts_with("edge.")
                || name.starts_with("policy.")
                || name.starts_with("dispatcher.")
                || name.starts_with("grpc.")
                || name.starts_with("webhook.")
                || name.contains('/'),
            "unexpected span {name}: {names:?}"
        );
    }
}

/// Over OTLP/HTTP (protobuf), with a batch delay longer than the test: nothing is
/// exported while the bus runs, and a SIGTERM exports the queued spans before the process
/// exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_exports_the_queued_spans_over_http() {
    let receiver = OtlpReceiver::start_http().await;
    let endpoint = receiver.endpoint();
    let mut bus = Process::spawn(
        &["standalone", "--port", "0", "--http-port", "0"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    let url = bus.stdout_line("ws://").trim().to_owned();
    bus.log_event("running");
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect with the printed token");
    next_json(&mut socket).await; // welcome
    let context = ClientContext::new();
    let ack = send(
        &mut socket,
        message("arq_2_1_00b001", &context, json!({"content": "queued"})),
    )
    .await;
    assert_eq!(ack["type"], "message_response", "{ack}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 0, "exported before the batch delay");

    bus.terminate();
    let status = bus.wait_exit();
    assert!(status.success(), "exit status {status}");
    let spans: Vec<ReceivedSpan> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == context.trace_id)
        .collect();
    let receive = named(&spans, "arqonbus-standalone", "edge.receive");
    assert_eq!(receive.parent_span_id, context.span_id);
    assert!(
        has(&spans, "arqonbus-standalone", "dispatcher.route"),
        "{spans:#?}"
    );
}
