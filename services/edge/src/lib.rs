//! The edge: the WebSocket gateway clients connect to.
//!
//! It owns the connections: it authenticates upgrades, reads and validates client
//! envelopes, stamps them with the connection's identity and publishes them to the
//! tenant's ingress subject; it holds one subscription per room with local members and
//! writes what arrives to those members; and it applies the joins and leaves the
//! dispatcher decides. It keeps no state another replica needs: a client that reconnects
//! to another edge loses nothing but its connection.
//!
//! It must not decide anything about routing or permissions; that is the dispatcher's.

mod auth;
mod config;
mod connection;
mod connections;
mod rooms;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use arqon_bus::{Bus, BusError};
use arqon_protocol::{EdgeId, subject};

pub use auth::{AuthError, Authenticator, Grant};
pub use config::EdgeConfig;
pub use connection::close_code;

use connections::Connections;
use rooms::Rooms;

/// Buffer sizes of each socket. Small buffers keep an idle connection at a few KiB;
/// tungstenite's 128 KiB defaults would cost ~138 KB per connection.
const SOCKET_BUFFER: usize = 4 * 1024;

/// How long a join waits for its room subscription.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the edge could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("invalid edge configuration: {0}")]
    Config(String),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("serving WebSocket connections: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct Shared {
    config: EdgeConfig,
    bus: Bus,
    edge_id: EdgeId,
    auth: Option<Authenticator>,
    rooms: Rooms,
    connections: Connections,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// A running edge. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("edge_id", &self.shared.edge_id)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Checks the configuration and subscribes to this edge's delivery subject. The edge
    /// stops when `shutdown` is cancelled.
    pub async fn start(
        config: EdgeConfig,
        bus: Bus,
        shutdown: CancellationToken,
    ) -> Result<Self, EdgeError> {
        let auth = config.authenticator()?;
        if auth.is_none() {
            warn!("authentication is off: every connection is accepted in the default tenant");
        }
        let edge_id = EdgeId::generate();
        let deliveries = bus.subscribe(subject::edge(&edge_id)).await?;
        bus.flush().await?;
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            rooms: Rooms::new(bus.clone(), tasks.clone(), JOIN_TIMEOUT),
            connections: Connections::default(),
            config,
            bus,
            edge_id,
            auth,
            tasks,
            shutdown,
        });
        let router = Arc::clone(&shared);
        shared.tasks.spawn(async move {
            router
                .connections
                .route(deliveries, router.shutdown.clone())
                .await;
        });
        info!(edge_id = %shared.edge_id, "edge started");
        Ok(Self { shared })
    }

    /// The WebSocket routes: `GET /ws` and, for clients of the original, `GET /`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws", any(upgrade))
            .route("/", any(upgrade))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves WebSocket upgrades on `listener` until shutdown, then closes every
    /// connection with 1001 and waits for them to finish.
    pub async fn serve(self, listener: TcpListener) -> Result<(), EdgeError> {
        let shutdown = self.shared.shutdown.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await?;
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        info!(edge_id = %self.shared.edge_id, "edge stopped");
        Ok(())
    }

    pub fn edge_id(&self) -> &EdgeId {
        &self.shared.edge_id
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.shared.connections.len()
    }

    /// Rooms with at least one local member (one bus subscription each).
    pub fn room_count(&self) -> usize {
        self.shared.rooms.len()
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let grant = match &shared.auth {
        None => Grant::anonymous(),
        Some(auth) => {
            let verified = auth::extract_token(&headers, &uri)
                .ok_or(AuthError::Missing)
                .and_then(|token| auth.verify(&token));
            match verified {
                Ok(grant) => grant,
                Err(e) => {
                    info!(reason = %e, "upgrade refused");
                    return e.into_response();
                }
            }
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let max = shared.config.max_message_size as usize;
    let connection_shared = Arc::clone(&shared);
    ws.read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_write_buffer_size(SOCKET_BUFFER + 2 * max)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            shared
                .tasks
                .track_future(connection::run(socket, connection_shared, grant))
        })
}
