//! Support for the end-to-end tests: a whole bus in this process, in either mode.
//!
//! - [`Cluster::standalone`] runs what `arqonbus standalone` runs, on the embedded bus.
//! - [`Cluster::distributed`] runs the four services as separate tasks, each with its own
//!   connection to one real `nats-server`, as four processes would.
//!
//! Listeners are bound to port 0; nothing assumes a fixed port.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use arqon_dispatcher::DispatcherConfig;
use arqon_edge::EdgeConfig;
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

/// A running bus.
pub struct Cluster {
    /// `ws://127.0.0.1:<port>/ws`
    pub ws_url: String,
    /// The HTTP endpoints of the edge (or of the standalone process).
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<anyhow::Result<()>>>,
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
        ..EdgeConfig::with_secret(SECRET)
    }
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
        let probe = mint_hs256(
            SECRET.as_bytes(),
            &Claims::new("probe", "default", "user", Duration::from_secs(3600)),
        )
        .expect("mint a token");
        Self::start_with_probe(mode, edge, probe).await
    }

    /// Starts a bus and waits until a client with `probe_token` gets an answer.
    pub async fn start_with_probe(mode: Mode, edge: EdgeConfig, probe_token: String) -> Self {
        let cluster = match mode {
            Mode::Standalone => Self::start_standalone(edge).await,
            Mode::Distributed => Self::start_distributed(edge).await,
        };
        cluster.wait_until_accepting(probe_token).await;
        cluster
    }

    async fn start_standalone(edge: EdgeConfig) -> Self {
        let shutdown = CancellationToken::new();
        let bus = connect_bus(None, "standalone", true)
            .await
            .expect("embedded bus");
        let (websocket, http) = (listener().await, listener().await);
        let ws_url = format!("ws://{}/ws", websocket.local_addr().expect("addr"));
        let http_addr = http.local_addr().expect("addr");
        let services = Services::all(edge, PolicyConfig::default(), DispatcherConfig::default());
        let listeners = Listeners {
            websocket: Some(websocket),
            http,
        };
        let task = tokio::spawn(serve(
            "standalone",
            services,
            bus,
            listeners,
            shutdown.clone(),
        ));
        Self {
            ws_url,
            http_addr,
            shutdown,
            services: vec![task],
            nats: None,
        }
    }

    async fn start_distributed(edge: EdgeConfig) -> Self {
        let nats = NatsServer::start();
        let shutdown = CancellationToken::new();
        let mut services = Vec::new();
        // Policy and dispatcher first, as a deployment's readiness gates would order them.
        let backends = [
            (
                "policy",
                Services {
                    policy: Some(PolicyConfig::default()),
                    ..Services::default()
                },
            ),
            (
                "dispatcher",
                Services {
                    dispatcher: Some(DispatcherConfig::default()),
                    ..Services::default()
                },
            ),
            (
                "operators",
                Services {
                    operators: true,
                    ..Services::default()
                },
            ),
        ];
        for (name, wanted) in backends {
            let bus = connect_bus(Some(&nats.url()), name, false)
                .await
                .expect("connect to nats-server");
            let listeners = Listeners {
                websocket: None,
                http: listener().await,
            };
            services.push(tokio::spawn(serve(
                name,
                wanted,
                bus,
                listeners,
                shutdown.clone(),
            )));
        }
        let bus = connect_bus(Some(&nats.url()), "edge", false)
            .await
            .expect("connect to nats-server");
        let (websocket, http) = (listener().await, listener().await);
        let ws_url = format!("ws://{}/ws", websocket.local_addr().expect("addr"));
        let http_addr = http.local_addr().expect("addr");
        let edge = Services {
            edge: Some(edge),
            ..Services::default()
        };
        let listeners = Listeners {
            websocket: Some(websocket),
            http,
        };
        services.push(tokio::spawn(serve(
            "edge",
            edge,
            bus,
            listeners,
            shutdown.clone(),
        )));
        Self {
            ws_url,
            http_addr,
            shutdown,
            services,
            nats: Some(nats),
        }
    }

    /// The nats-server of a distributed cluster, to stop and restart it.
    pub fn nats(&mut self) -> &mut NatsServer {
        self.nats.as_mut().expect("a distributed cluster")
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

    /// Waits (bounded) until a client can connect and the pipeline answers a ping: every
    /// service has subscribed.
    async fn wait_until_accepting(&self, token: String) {
        let deadline = tokio::time::Instant::now() + 2 * WAIT;
        let options = ConnectOptions {
            request_timeout: WAIT,
            connect_timeout: WAIT,
            ..ConnectOptions::with_token(token)
        };
        loop {
            if let Ok(client) = Client::connect(&self.ws_url, options.clone()).await
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

    /// A token for `tenant` with `role`, valid for an hour.
    pub fn token(&self, tenant: &str, role: &str) -> String {
        let claims = Claims::new("e2e", tenant, role, Duration::from_secs(3600));
        mint_hs256(SECRET.as_bytes(), &claims).expect("mint a token")
    }

    fn options(&self, tenant: &str, role: &str) -> ConnectOptions {
        ConnectOptions {
            request_timeout: WAIT,
            connect_timeout: WAIT,
            ..ConnectOptions::with_token(self.token(tenant, role))
        }
    }

    /// A connected client of `tenant` (role `user`).
    pub async fn client(&self, tenant: &str) -> Client {
        Client::connect(&self.ws_url, self.options(tenant, "user"))
            .await
            .expect("connect a client")
    }

    /// Stops every service and checks that each stopped cleanly within the wait bound.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for service in self.services.drain(..) {
            let result = tokio::time::timeout(WAIT, service)
                .await
                .expect("a service did not stop in time")
                .expect("a service panicked");
            result.expect("a service failed");
        }
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
