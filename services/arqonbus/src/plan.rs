//! What one `arqonbus <command>` runs, and running it: which services, where they
//! listen, on which bus; bound, served, and drained within the grace period.

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cli::{Common, GrpcListen, Service, WebSocketListen};
use crate::{Listeners, Services, connect_bus, dev, serve};

/// The plan of a command: its services and its listeners.
#[derive(Debug)]
pub struct Plan {
    /// `standalone`, `edge`, …: in logs, traces and `/version`.
    pub component: &'static str,
    pub common: Common,
    pub services: Services,
    /// Where clients connect (with the edge).
    pub websocket: Option<WebSocketListen>,
    /// Where the gRPC APIs are served (with a service token).
    pub grpc: Option<GrpcListen>,
    /// All four in one process: the embedded bus without a NATS URL, and a development
    /// secret without a JWT secret.
    pub standalone: bool,
}

impl From<Service> for Plan {
    fn from(command: Service) -> Self {
        let component = command.component();
        let plan = |common: Common, services: Services, websocket, grpc| Plan {
            component,
            services: services.with_service_token(common.service_token.clone()),
            common,
            websocket,
            grpc,
            standalone: false,
        };
        match command {
            Service::Standalone(a) => Plan {
                standalone: true,
                ..plan(
                    a.common,
                    Services::all(a.edge, a.policy, a.dispatcher, a.operators),
                    Some(a.listen),
                    Some(a.grpc),
                )
            },
            Service::Edge(a) => plan(a.common, Services::edge(a.edge), Some(a.listen), None),
            Service::Policy(a) => plan(a.common, Services::policy(a.policy), None, Some(a.grpc)),
            Service::Dispatcher(a) => plan(
                a.common,
                Services::dispatcher(a.dispatcher),
                None,
                Some(a.grpc),
            ),
            Service::Operators(a) => plan(
                a.common,
                Services::operators(a.operators),
                None,
                Some(a.grpc),
            ),
        }
    }
}

impl Plan {
    /// Checks the settings, connects to the bus, binds, and serves until `shutdown`;
    /// then gives the services the grace period to drain.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut dev_token = None;
        if let Some(edge) = self.services.edge.as_mut()
            && self.standalone
            && edge.enable_auth
            && edge.jwt_secret.is_none()
        {
            let credentials = dev::dev_credentials()?;
            edge.jwt_secret = Some(credentials.secret);
            dev_token = Some(credentials.token);
        }
        if let Some(edge) = &self.services.edge {
            // Refuse a bad configuration before touching the network.
            edge.validate()?;
        }
        let common = &self.common;
        let bus = connect_bus(
            common.nats_url.as_deref(),
            common.nats_options(self.component),
            self.standalone,
        )
        .await?;
        let websocket = match &self.websocket {
            Some(listen) => Some(bind(&listen.addr(), "WebSocket").await?),
            None => None,
        };
        let http = bind(&common.http_addr(), "HTTP").await?;
        if let Some(listener) = &websocket {
            let addr = listener.local_addr()?;
            info!(%addr, "WebSocket listener bound");
            if let Some(token) = &dev_token {
                // A wildcard listener (as in a container) is reached on loopback, or
                // through the port the container publishes.
                let mut shown = addr;
                if shown.ip().is_unspecified() {
                    shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                dev::print_banner(&shown.to_string(), token);
            }
        }
        info!(addr = %http.local_addr()?, "HTTP listener bound");
        let grpc = match (&self.grpc, &common.service_token) {
            (Some(listen), Some(_)) => {
                let listener = bind(&listen.addr(), "gRPC").await?;
                info!(addr = %listener.local_addr()?, "gRPC listener bound");
                Some(listener)
            }
            (Some(_), None) => {
                info!("gRPC APIs off: set ARQONBUS_SERVICE_TOKEN to serve them");
                None
            }
            (None, _) => None,
        };
        let listeners = Listeners {
            websocket,
            http,
            grpc,
        };
        let serving = serve(
            self.component,
            self.services,
            bus,
            listeners,
            shutdown.clone(),
        );
        Box::pin(drain(serving, &shutdown, &self.common)).await
    }
}

/// Connections waiting to be accepted. Bursts of thousands of clients (a reconnect storm)
/// overflow the usual 128 and their SYNs are retried only after a second; the kernel caps
/// this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    let context = || format!("binding the {what} listener to {addr} (is the port in use?)");
    let address = tokio::net::lookup_host(addr)
        .await
        .with_context(context)?
        .next()
        .with_context(context)?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .with_context(context)?;
    socket.set_reuseaddr(true).with_context(context)?;
    socket.bind(address).with_context(context)?;
    socket.listen(LISTEN_BACKLOG).with_context(context)
}

/// Runs until `serving` ends or shutdown is requested, then gives it the grace period.
async fn drain(
    serving: impl std::future::Future<Output = anyhow::Result<()>>,
    shutdown: &CancellationToken,
    common: &Common,
) -> anyhow::Result<()> {
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => return result,
        () = shutdown.cancelled() => {}
    }
    info!(
        grace_seconds = common.shutdown_grace_seconds,
        "shutting down"
    );
    match tokio::time::timeout(common.shutdown_grace(), serving).await {
        Ok(result) => result,
        Err(_) => {
            warn!("grace period elapsed before everything finished; exiting anyway");
            Ok(())
        }
    }
}
