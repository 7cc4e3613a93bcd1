//! Support for the end-to-end tests: a whole bus in this process, in either mode.
//!
//! - [`Cluster::standalone`] runs what `arqonbus standalone` runs, on the embedded bus.
//! - [`Cluster::distributed`] runs the four services as separate tasks, each with its own
//!   connection to one real `nats-server`, as four processes would.
//!
//! Listeners are bound to port 0; nothing assumes a fixed port.

pub mod reply;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use arqon_dispatcher::{DispatcherConfig, ServiceToken};
use arqon_edge::EdgeConfig;
use arqon_operators::OperatorsConfig;
use arqon_policy::PolicyConfig;
use arqon_sdk::token::{Claims, mint_hs256};
use arqon_sdk::{Client, ConnectOptions};
use arqon_testkit::NatsServer;
use arqonbus::{Listeners, Services, connect_bus, serve};

/// The secret every test cluster signs tokens with.
pub const SECRET: &str = "arqonbus-e2e-secret";

/// How long a test waits for anything it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test waits before concluding that something did not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// One service task of a cluster, with its own shutdown token.
#[derive(Debug)]
struct Node {
    /// Its HTTP endpoints.
    http: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// An edge of a cluster.
#[derive(Debug, Clone)]
pub struct EdgeAddr {
    /// `ws://127.0.0.1:<port>/ws`
    pub ws_url: String,
    /// Its HTTP endpoints.
    pub http_addr: SocketAddr,
}

/// A running bus.
pub struct Cluster {
    /// The first edge's `ws://127.0.0.1:<port>/ws`.
    pub ws_url: String,
    /// The HTTP endpoints of the first edge (or of the standalone process).
    pub http_addr: SocketAddr,
    edges: Vec<EdgeAddr>,
    shutdown: CancellationToken,
    /// Edges, then dispatchers, then the other services.
    nodes: Vec<Node>,
    dispatchers: Vec<usize>,
    policies: Vec<usize>,
    operators: Vec<usize>,
    edge_nodes: Vec<usize>,
    /// The gRPC APIs of the first dispatcher (or the standalone process).
    grpc_addr: Option<SocketAddr>,
    /// The NATS URL and policy and operators settings, to start replicas later.
    nats_url: Option<String>,
    operator: OperatorsConfig,
    /// The dispatchers' settings (with the other services' URLs), to start replicas later.
    dispatcher: DispatcherConfig,
    /// The standalone process's embedded bus.
    embedded: Option<arqon_bus::Bus>,
    policy: PolicyConfig,
    // Dropped last: the services disconnect before the server goes away.
    nats: Option<NatsServer>,
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port-0 listener")
}

/// How the services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// All services in one task on the embedded bus.
    Standalone,
    /// Each service its own task with its own connection to one nats-server.
    Distributed,
}

/// The edge settings tests start from: HS256 with [`SECRET`], limits high enough not to
/// get in the way.
pub fn edge_config() -> EdgeConfig {
    EdgeConfig {
        rate_limit_per_second: 0,
        rate_limit_bytes_per_second: 0,
        rate_limit_tenant_bytes_per_second: 0,
        // The tests' fleet operator connects over WebSockets too ([`Cluster::system_token`]).
        system_scope: true,
        ..EdgeConfig::with_secret(SECRET)
    }
}

/// The service token of every test cluster: its gRPC APIs are served, and dispatchers
/// reach the policy service's control API with it.
pub const SERVICE_TOKEN: &str = "e2e-service-token-0123456789";

/// What to start. Standalone always has one edge, one policy stage and one dispatcher.
#[derive(Debug, Clone)]
pub struct Topology {
    pub mode: Mode,
    pub edges: usize,
    pub policies: usize,
    pub dispatchers: usize,
    pub operators: usize,
    pub edge: EdgeConfig,
    pub policy: PolicyConfig,
    pub dispatcher: DispatcherConfig,
    pub operator: OperatorsConfig,
    /// Whether the dispatchers are given the policy service's gRPC URL (distributed
    /// only: standalone calls its policy stage in process). Without it `op.casil.*` and
    /// gRPC `Publish` are `FEATURE_DISABLED`.
    pub dispatcher_calls_policy: bool,
    /// Whether the dispatchers are given the operators' gRPC URL (distributed only).
    /// Without it `op.store.*`, `op.webhook.*`, `op.cron.*` and `op.omega.*` are
    /// `FEATURE_DISABLED`.
    pub dispatcher_calls_operators: bool,
}

impl Topology {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            edges: 1,
            policies: 1,
            dispatchers: 1,
            operators: 1,
            edge: edge_config(),
            policy: PolicyConfig::default(),
            dispatcher: DispatcherConfig::default(),
            operator: OperatorsConfig::default(),
            dispatcher_calls_policy: true,
            dispatcher_calls_operators: true,
        }
    }
}

fn probe_token() -> String {
    mint_hs256(
        SECRET.as_bytes(),
        &Claims::new("probe", "default", "user", Duration::from_secs(3600)),
    )
    .expect("mint a token")
}

impl Cluster {
    pub async fn standalone() -> Self {
        Self::start(Mode::Standalone, edge_config()).await
    }

    pub async fn distributed() -> Self {
        Self::start(Mode::Distributed, edge_config()).await
    }

    /// Starts a bus in `mode` with these edge settings (HS256 with [`SECRET`]).
    pub async fn start(mode: Mode, edge: EdgeConfig) -> Self {
        Self::launch(Topology {
            edge,
            ..Topology::new(mode)
        })
        .await
    }

    /// Starts a bus and waits until a client with `probe_token` gets an answer.
    pub async fn start_with_probe(mode: Mode, edge: EdgeConfig, probe_token: String) -> Self {
        let topology = Topology {
            edge,
            ..Topology::new(mode)
        };
        Self::launch_with_probe(topology, probe_token).await
    }

    /// Starts `topology` and waits until every edge answers.
    pub async fn launch(topology: Topology) -> Self {
        Self::launch_with_probe(topology, probe_token()).await
    }

    async fn launch_with_probe(topology: Topology, probe_token: String) -> Self {
        let cluster = match topology.mode {
            Mode::Standalone => Box::pin(Self::start_standalone(topology)).await,
            Mode::Distributed => Box::pin(Self::start_distributed(topology)).await,
        };
        for edge in &cluster.edges {
            wait_until_accepting(&edge.ws_url, &probe_token).await;
        }
        cluster
    }

    fn spawn(
        &mut self,
        name: &'static str,
        services: Services,
        bus: arqon_bus::Bus,
        listeners: Listeners,
    ) {
        let stop = self.shutdown.child_token();
        let http = listeners.http.local_addr().expect("addr");
        let services = services.with_service_token(Some(ServiceToken::new(SERVICE_TOKEN)));
        let task = tokio::spawn(serve(name, services, bus, listeners, stop.clone()));
        self.nodes.push(Node {
            http,
            stop,
            task: Some(task),
        });
    }

    fn empty(nats: Option<NatsServer>) -> Self {
        Self {
            ws_url: String::new(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            edges: Vec::new(),
            shutdown: CancellationToken::new(),
            nodes: Vec::new(),
            dispatchers: Vec::new(),
            policies: Vec::new(),
            operators: Vec::new(),
            edge_nodes: Vec::new(),
            grpc_addr: None,
            nats_url: nats.as_ref().map(NatsServer::url),
            embedded: None,
            policy: PolicyConfig::default(),
            operator: OperatorsConfig::default(),
            dispatcher: DispatcherConfig::default(),
            nats,
        }
    }

    fn add_edge_addr(&mut self, websocket: &TcpListener, http: &TcpListener) {
        let edge = EdgeAddr {
            ws_url: format!("ws://{}/ws", websocket.local_addr().expect("addr")),
            http_addr: http.local_addr().expect("addr"),
        };
        if self.edges.is_empty() {
            self.ws_url = edge.ws_url.clone();
            self.http_addr = edge.http_addr;
        }
        self.edges.push(edge);
    }

    async fn start_standalone(topology: Topology) -> Self {
        assert!(
            topology.dispatcher_calls_policy && topology.dispatcher_calls_operators,
            "standalone calls its policy stage and operators in process"
        );
        let mut cluster = Self::empty(None);
        let bus = connect_bus(None, arqon_bus::NatsOptions::named("standalone"), true)
            .await
            .expect("embedded bus");
        let (websocket, http, grpc) = (listener().await, listener().await, listener().await);
        cluster.add_edge_addr(&websocket, &http);
        cluster.grpc_addr = Some(grpc.local_addr().expect("addr"));
        let services = Services::all(
            topology.edge,
            topology.policy,
            topology.dispatcher,
            topology.operator,
        );
        let listeners = Listeners {
            websocket: Some(websocket),
            http,
            grpc: Some(grpc),
        };
        cluster.dispatchers.push(0);
        cluster.policies.push(0);
        cluster.operators.push(0);
        cluster.embedded = Some(bus.clone());
        cluster.spawn("standalone", services, bus, listeners);
        cluster
    }

    /// A connection to the cluster's bus, to watch subjects: the standalone process's
    /// embedded bus, or a new connection to the nats-server.
    pub async fn bus(&self) -> arqon_bus::Bus {
        match &self.embedded {
            Some(bus) => bus.clone(),
            None => self.connect("observer").await,
        }
    }

    async fn connect(&self, name: &'static str) -> arqon_bus::Bus {
        let url = self.nats_url.as_deref().expect("a distributed cluster");
        connect_bus(Some(url), arqon_bus::NatsOptions::named(name), false)
            .await
            .expect("connect to nats-server")
    }

    /// Starts a policy replica (with its gRPC API); returns the API's address.
    async fn spawn_policy(&mut self) -> SocketAddr {
        let grpc = listener().await;
        let address = grpc.local_addr().expect("addr");
        let services = Services {
            policy: Some(self.policy.clone()),
            ..Services::default()
        };
        let listeners = Listeners {
            websocket: None,
            http: listener().await,
            grpc: Some(grpc),
        };
        self.policies.push(self.nodes.len());
        let bus = self.connect("policy").await;
        self.spawn("policy", services, bus, listeners);
        address
    }

    /// Starts an operators replica (with its gRPC APIs); returns the APIs' address.
    /// Starts an operators replica that inspects cron firings at `policy_url`.
    async fn spawn_operators(&mut self, policy_url: &str) -> SocketAddr {
        let grpc = listener().await;
        let address = grpc.local_addr().expect("addr");
        let services = Services {
            operators: Some(OperatorsConfig {
                policy_url: Some(policy_url.to_owned()),
                ..self.operator.clone()
            }),
            ..Services::default()
        };
        let listeners = Listeners {
            websocket: None,
            http: listener().await,
            grpc: Some(grpc),
        };
        self.operators.push(self.nodes.len());
        let bus = self.connect("operators").await;
        self.spawn("operators", services, bus, listeners);
        address
    }

    /// Starts a dispatcher replica; the first one started serves the gRPC APIs.
    async fn spawn_dispatcher(&mut self) {
        let dispatcher = Services {
            dispatcher: Some(self.dispatcher.clone()),
            ..Services::default()
        };
        self.dispatchers.push(self.nodes.len());
        let mut listeners = Listeners {
            websocket: None,
            http: listener().await,
            grpc: None,
        };
        if self.grpc_addr.is_none() {
            let grpc = listener().await;
            self.grpc_addr = Some(grpc.local_addr().expect("addr"));
            listeners.grpc = Some(grpc);
        }
        let bus = self.connect("dispatcher").await;
        self.spawn("dispatcher", dispatcher, bus, listeners);
    }

    async fn start_distributed(topology: Topology) -> Self {
        let nats = NatsServer::start();
        let mut cluster = Self::empty(Some(nats));
        cluster.policy = topology.policy.clone();
        cluster.operator = topology.operator.clone();
        // Policy and dispatchers first, as a deployment's readiness gates would order them.
        let mut policy_url = None;
        for _ in 0..topology.policies.max(1) {
            let address = cluster.spawn_policy().await;
            policy_url.get_or_insert(format!("http://{address}"));
        }
        let policy_url = policy_url.expect("one policy replica at least");
        let mut operators_url = None;
        for _ in 0..topology.operators.max(1) {
            let address = cluster.spawn_operators(&policy_url).await;
            operators_url.get_or_insert(format!("http://{address}"));
        }
        cluster.dispatcher = DispatcherConfig {
            policy_url: Some(policy_url.clone()).filter(|_| topology.dispatcher_calls_policy),
            operators_url: operators_url.filter(|_| topology.dispatcher_calls_operators),
            ..topology.dispatcher.clone()
        };
        for _ in 0..topology.dispatchers.max(1) {
            cluster.spawn_dispatcher().await;
        }
        // A service answers HTTP once it has started (subscribed); an edge started
        // earlier would accept envelopes nobody consumes yet.
        for node in &cluster.nodes {
            wait_until_ready(node.http).await;
        }
        for _ in 0..topology.edges.max(1) {
            let (websocket, http) = (listener().await, listener().await);
            cluster.add_edge_addr(&websocket, &http);
            let edge = Services {
                edge: Some(topology.edge.clone()),
                ..Services::default()
            };
            let listeners = Listeners {
                websocket: Some(websocket),
                http,
                grpc: None,
            };
            let bus = cluster.connect("edge").await;
            cluster.edge_nodes.push(cluster.nodes.len());
            cluster.spawn("edge", edge, bus, listeners);
        }
        cluster
    }

    /// The nats-server of a distributed cluster, to stop and restart it.
    pub fn nats(&mut self) -> &mut NatsServer {
        self.nats.as_mut().expect("a distributed cluster")
    }

    /// `http://<addr>` of the first dispatcher's (or the standalone process's) gRPC APIs.
    pub fn grpc_endpoint(&self) -> String {
        let addr = self.grpc_addr.expect("every cluster serves gRPC");
        format!("http://{addr}")
    }

    /// The edges, in start order.
    pub fn edges(&self) -> &[EdgeAddr] {
        &self.edges
    }

    /// Stops dispatcher replica `i` (gracefully) and waits for it.
    pub async fn stop_dispatcher(&mut self, i: usize) {
        self.stop_node(self.dispatchers[i]).await;
    }

    /// Stops dispatcher replica `i` (gracefully), waits for it, and starts a new replica
    /// in its place (as a restarted pod would be), which is then replica `i`. It does
    /// not serve gRPC.
    pub async fn restart_dispatcher(&mut self, i: usize) {
        self.stop_node(self.dispatchers[i]).await;
        self.spawn_dispatcher().await;
        let restarted = self.dispatchers.pop().expect("the new replica");
        self.dispatchers[i] = restarted;
        wait_until_ready(self.nodes[restarted].http).await;
    }

    /// Stops policy replica `i` (gracefully), waits for it, and starts a new replica in
    /// its place (as a restarted pod would be), which is then replica `i`.
    pub async fn restart_policy(&mut self, i: usize) {
        let stopped = self.policies[i];
        self.stop_node(stopped).await;
        self.spawn_policy().await;
        let restarted = self.policies.pop().expect("the new replica");
        self.policies[i] = restarted;
        wait_until_ready(self.nodes[restarted].http).await;
    }

    async fn stop_node(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.stop.cancel();
        if let Some(task) = node.task.take() {
            let result = tokio::time::timeout(WAIT, task)
                .await
                .expect("the service did not stop in time")
                .expect("the service panicked");
            result.expect("the service failed");
        }
    }

    /// Stops edge `i` of a distributed cluster (its clients are closed with 1001, as on
    /// SIGTERM) and waits for it.
    pub async fn stop_edge(&mut self, i: usize) {
        self.stop_node(self.edge_nodes[i]).await;
    }

    /// Stops operators replica `i` (gracefully) and waits for it; it is not replaced.
    pub async fn stop_operators(&mut self, i: usize) {
        self.stop_node(self.operators[i]).await;
    }

    /// The Prometheus exposition of operators replica `i`.
    pub async fn operators_metrics(&self, i: usize) -> String {
        self.node_metrics(self.operators[i]).await
    }

    async fn node_metrics(&self, index: usize) -> String {
        let addr = self.nodes[index].http;
        let (status, body) =
            tokio::task::spawn_blocking(move || arqon_testkit::http::get(addr, "/metrics", WAIT))
                .await
                .expect("HTTP task")
                .expect("HTTP GET");
        assert_eq!(status, 200);
        body
    }

    /// The Prometheus exposition of dispatcher replica `i` (standalone: the process).
    pub async fn dispatcher_metrics(&self, i: usize) -> String {
        match self.dispatchers.get(i) {
            Some(&node) => self.node_metrics(node).await,
            None => self.metrics().await,
        }
    }

    /// The Prometheus exposition of policy replica `i`.
    pub async fn policy_metrics(&self, i: usize) -> String {
        self.node_metrics(self.policies[i]).await
    }

    /// Cancels the shutdown token, as SIGTERM does, without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// `GET path` on the edge's (or standalone's) HTTP port.
    pub async fn http_get(&self, path: &'static str) -> (u16, String) {
        let addr = self.http_addr;
        tokio::task::spawn_blocking(move || arqon_testkit::http::get(addr, path, WAIT))
            .await
            .expect("HTTP task")
            .expect("HTTP GET")
    }

    /// The `/ws` URL with `token` in the query, for raw WebSocket clients.
    pub fn url_with_token(&self, token: &str) -> String {
        format!("{}?token={token}", self.ws_url)
    }

    /// A token for `tenant` with `role`, valid for an hour.
    pub fn token(&self, tenant: &str, role: &str) -> String {
        let claims = Claims::new("e2e", tenant, role, Duration::from_secs(3600));
        mint_hs256(SECRET.as_bytes(), &claims).expect("mint a token")
    }

    /// A token with the fleet-wide authority (the `arqonbus:system` scope, ADR 015), in
    /// `tenant`; the test edges honour it.
    pub fn system_token(&self, tenant: &str) -> String {
        let mut claims = Claims::new("operator", tenant, "user", Duration::from_secs(3600));
        claims.scope = Some(arqon_sdk::token::SYSTEM_SCOPE.to_owned());
        mint_hs256(SECRET.as_bytes(), &claims).expect("mint a token")
    }

    /// A token with any claims (an `exp` an hour from now is added when absent).
    pub fn token_with(&self, mut claims: serde_json::Value) -> String {
        if claims.get("exp").is_none() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs();
            claims["exp"] = serde_json::Value::from(now + 3600);
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("mint a token")
    }

    /// A connected client of `tenant` (role `user`) on the first edge.
    pub async fn client(&self, tenant: &str) -> Client {
        self.client_on(0, &self.token(tenant, "user")).await
    }

    /// A connected client with `token` on edge `i`.
    pub async fn client_on(&self, i: usize, token: &str) -> Client {
        let options = ConnectOptions {
            request_timeout: WAIT,
            connect_timeout: WAIT,
            ..ConnectOptions::with_token(token)
        };
        Client::connect(&self.edges[i].ws_url, options)
            .await
            .expect("connect a client")
    }

    /// Stops every service and checks that each stopped cleanly within the wait bound.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for node in &mut self.nodes {
            if let Some(task) = node.task.take() {
                let result = tokio::time::timeout(WAIT, task)
                    .await
                    .expect("a service did not stop in time")
                    .expect("a service panicked");
                result.expect("a service failed");
            }
        }
    }
}

/// Waits (bounded) until a client can connect and the pipeline answers a ping: every
/// service has subscribed.
/// Polls `GET /ready` on `addr` until it answers 200 (bounded).
async fn wait_until_ready(addr: SocketAddr) {
    eventually("a service reports ready", || async move {
        tokio::task::spawn_blocking(move || arqon_testkit::http::get(addr, "/ready", WAIT))
            .await
            .expect("HTTP task")
            .is_ok_and(|(status, _)| status == 200)
    })
    .await;
}

async fn wait_until_accepting(ws_url: &str, token: &str) {
    let deadline = tokio::time::Instant::now() + 2 * WAIT;
    let options = ConnectOptions {
        request_timeout: WAIT,
        connect_timeout: WAIT,
        ..ConnectOptions::with_token(token)
    };
    loop {
        if let Ok(client) = Client::connect(ws_url, options.clone()).await
            && client.command("ping", Default::default()).await.is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bus did not start answering within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket client without the SDK, for tests that need to misbehave.
pub type RawSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Cluster {
    /// A raw connection of `tenant`, with the welcome frame already read.
    pub async fn raw_client(&self, tenant: &str) -> RawSocket {
        let url = self.url_with_token(&self.token(tenant, "user"));
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("raw WebSocket connect");
        let welcome = next_json(&mut socket).await;
        assert_eq!(welcome["payload"]["welcome"], "Connected to ArqonBus");
        socket
    }

    /// The Prometheus exposition of the edge (or standalone) process.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.http_get("/metrics").await;
        assert_eq!(status, 200);
        body
    }
}

/// The value of one series in a Prometheus exposition, e.g.
/// `arqonbus_edge_upgrades_total{outcome="accepted"}`.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The next text frame as JSON (pings and pongs are skipped).
pub async fn next_json(socket: &mut RawSocket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("a JSON frame");
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads (bounded) until the server closes; returns the close code, or `None` when the
/// connection ended without a close frame.
pub async fn close_code(socket: &mut RawSocket) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the server closes the connection in time");
        match frame {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// How a connection ended, as a raw client that reads it to the very end sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The server's close frame (its code and reason), then the end of the stream: the
    /// close handshake completed.
    Closed(u16, String),
    /// Anything else: no close frame, a close frame without a code, or an error (a reset)
    /// before or after it.
    Broken(String),
}

/// Reads (bounded) every frame until the connection ends, handing each text frame to
/// `text`; the close frame is answered as any client answers it. Says how it ended.
pub async fn read_to_end(socket: &mut RawSocket, mut text: impl FnMut(&str)) -> Ending {
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let mut close = None;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the connection ends in time");
        match frame {
            Some(Ok(Message::Text(frame))) => text(frame.as_str()),
            Some(Ok(Message::Close(frame))) => {
                close = Some(frame.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Ending::Broken(match close {
                    Some(frame) => format!("{e} after the close frame {frame:?}"),
                    None => format!("{e} before any close frame"),
                });
            }
            None => {
                return match close {
                    Some(Some((code, reason))) => Ending::Closed(code, reason),
                    Some(None) => Ending::Broken("a close frame without a code".to_owned()),
                    None => Ending::Broken("the stream ended without a close frame".to_owned()),
                };
            }
        }
    }
}

/// Sends `value` as a text frame.
pub async fn send_json(socket: &mut RawSocket, value: &Value) {
    socket
        .send(Message::text(value.to_string()))
        .await
        .expect("send a frame");
}

/// Polls `check` until it returns true (bounded).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("ws_url", &self.ws_url)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
