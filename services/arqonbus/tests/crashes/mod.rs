//! Crashes, not stops: `arqonbus` processes killed with SIGKILL in the middle of their
//! work, and what the documentation promises survives it.
//!
//! - `webhook_replica`: a webhook delivery whose POST is in progress when its operators
//!   replica dies is delivered by the other replica (at least once).
//! - `owner_edge`: an owner's rules and jobs that are not `persistent` go when its edge
//!   dies without announcing the disconnect.

mod owner_edge;
mod webhook_replica;

use std::time::Duration;

use arqon_sdk::token::{Claims, mint_hs256};
use arqon_testkit::NatsServer;

use crate::support::Process;

const SECRET: &str = "process-crash-secret";

/// One nats-server, a policy, `operators` operators processes (the dispatcher calls the
/// first over gRPC), a dispatcher and `edges` edges, each a process. Dropping it kills
/// every process (SIGKILL), then the server.
struct Rig {
    operators: Vec<Process>,
    edges: Vec<Process>,
    /// `ws://<addr>/ws` of each edge, in `edges` order.
    edge_urls: Vec<String>,
    _backends: Vec<Process>,
    // Dropped last: the processes go before their server.
    _nats: NatsServer,
}

impl Rig {
    /// Starts the processes, each with `extra` in its environment.
    fn start(operators: usize, edges: usize, extra: &[(&'static str, &str)]) -> Self {
        let nats = NatsServer::start();
        let mut env = vec![
            ("ARQONBUS_NATS_URL", nats.url()),
            ("ARQONBUS_AUTH_JWT_SECRET", SECRET.to_owned()),
            ("ARQONBUS_HTTP_PORT", "0".to_owned()),
            ("ARQONBUS_GRPC_PORT", "0".to_owned()),
            (
                "ARQONBUS_SERVICE_TOKEN",
                "process-test-service-token-0123456789".to_owned(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let (policy, policy_url) = super::spawn_policy(&env);
        env.push(("ARQONBUS_POLICY_URL", policy_url));
        let mut rig_operators = Vec::new();
        let mut grpc = None;
        for _ in 0..operators {
            let (process, _, api) = super::CronRig::spawn_operators(&env);
            grpc.get_or_insert(api);
            rig_operators.push(process);
        }
        let operators_url = format!("http://{}", grpc.expect("one operators process at least"));
        let base: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut dispatcher_env = base.clone();
        dispatcher_env.push(("ARQONBUS_OPERATORS_URL", operators_url.as_str()));
        let mut dispatcher = Process::spawn(&["dispatcher"], &dispatcher_env);
        dispatcher.log_event("running");
        let mut rig_edges = Vec::new();
        let mut edge_urls = Vec::new();
        for _ in 0..edges {
            let mut edge = Process::spawn(&["edge", "--port", "0"], &base);
            let ws = edge.log_event("WebSocket listener bound")["addr"]
                .as_str()
                .expect("addr")
                .to_owned();
            edge.log_event("running");
            edge_urls.push(format!("ws://{ws}/ws"));
            rig_edges.push(edge);
        }
        Rig {
            operators: rig_operators,
            edges: rig_edges,
            edge_urls,
            _backends: vec![policy, dispatcher],
            _nats: nats,
        }
    }

    /// `ws://…/ws?token=…` of edge `i` for a client of tenant `t-a` with `role`.
    fn url(&self, i: usize, role: &str) -> String {
        let token = mint_hs256(
            SECRET.as_bytes(),
            &Claims::new("p", "t-a", role, Duration::from_secs(300)),
        )
        .expect("token");
        format!("{}?token={token}", self.edge_urls[i])
    }
}
