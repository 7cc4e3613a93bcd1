//! Support for the end-to-end tests: a whole bus in this process, in either mode.
//!
//! - [`Cluster::standalone`] runs what `arqonbus standalone` runs, on the embedded bus.
//! - [`Cluster::distributed`] runs the four services as separate tasks, each with its own
//!   connection to one real `nats-server`, as four processes would.
//!
//! Listeners are bound to port 0; nothing assumes a fixed port.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
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
    _nats: Option<NatsServer>,
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port-0 listener")
}

impl Cluster {
    /// All services in one task on the embedded bus.
    pub async fn standalone() -> Self {
        let shutdown = CancellationToken::new();
        let bus = connect_bus(None, "standalone", true)
            .await
            .expect("embedded bus");
        let (websocket, http) = (listener().await, listener().await);
        let ws_url = format!("ws://{}/ws", websocket.local_addr().expect("addr"));
        let http_addr = http.local_addr().expect("addr");
        let services = Services::all(
            EdgeConfig::with_secret(SECRET),
            PolicyConfig::default(),
            DispatcherConfig::default(),
        );
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
        let cluster = Self {
            ws_url,
            http_addr,
            shutdown,
            services: vec![task],
            _nats: None,
        };
        cluster.wait_until_accepting().await;
        cluster
    }

    /// Edge, policy, dispatcher and operators as separate tasks on a fresh nats-server.
    pub async fn distributed() -> Self {
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
            edge: Some(EdgeConfig::with_secret(SECRET)),
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
        let cluster = Self {
            ws_url,
            http_addr,
            shutdown,
            services,
            _nats: Some(nats),
        };
        cluster.wait_until_accepting().await;
        cluster
    }

    /// Waits (bounded) until a client can connect and the pipeline answers a ping: every
    /// service has subscribed.
    async fn wait_until_accepting(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(client) = Client::connect(&self.ws_url, self.options("default", "user")).await
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
