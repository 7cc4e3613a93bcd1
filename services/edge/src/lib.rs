//! The edge: the WebSocket gateway clients connect to.
//!
//! It owns the connections: it authenticates upgrades, enforces the connection limits,
//! reads and validates client envelopes, stamps them with the connection's identity and
//! publishes them to the tenant's ingress subject (or, when the live CASIL policy does
//! not apply to one, straight to its dispatch subject: `route`); it holds one
//! subscription per room with local members and writes what arrives to those members;
//! and it applies the joins and leaves the dispatcher decides. It keeps no state another replica needs: a client that
//! reconnects to another edge loses nothing but its connection.
//!
//! It must not decide anything about routing or permissions; that is the dispatcher's.

mod auth;
mod closing;
mod cluster;
mod config;
mod connection;
mod connections;
mod console;
mod fleet;
mod metrics;
mod peer;
mod presence;
mod recovery;
mod rooms;
mod route;
mod service;
mod status;
mod window;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Extension, Router};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use arqon_bus::{Bus, BusError};
use arqon_proto::layout;
use arqon_protocol::{EdgeId, TenantId, subject};
use arqon_telemetry::metrics::HttpMetrics;

pub use auth::{AuthError, Authenticator, Grant, Reason};
pub use config::{EdgeConfig, JwtAlgorithm, PRESENCE_MAX_MEMBERS, PRESENCE_MAX_REPLY_BYTES};
pub use connection::close_code;
pub use metrics::EdgeMetrics;
pub use service::{EdgeService, EdgeSettings};

use connections::Connections;
use metrics::Upgrade;
use rooms::Rooms;

/// Each socket's read buffer, allocated up front: small keeps an idle connection at a
/// few KiB (tungstenite's 128 KiB default would cost ~138 KB per connection); larger
/// messages grow it as they arrive.
const READ_BUFFER: usize = 2 * 1024;

/// Frames are gathered up to this many bytes before a write (the buffer grows only as
/// frames are queued, so it costs an idle connection nothing).
const WRITE_BUFFER: usize = 4 * 1024;

/// How long a join waits for its room subscription.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `Retry-After` of an upgrade refused while the edge drains: the client may retry at
/// once elsewhere (a load balancer sends it to another edge) or here once restarted.
const DRAINING_RETRY_AFTER_SECONDS: u32 = 1;

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

/// Installs ring as the process's TLS crypto provider (what async-nats uses), so every
/// rustls user in the process agrees; a provider installed earlier is kept.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub(crate) struct Shared {
    config: EdgeConfig,
    bus: Bus,
    edge_id: EdgeId,
    auth: Option<Authenticator>,
    /// The console's operator login (`ARQONBUS_CONSOLE_OPERATOR_LOGIN`), when on.
    operator: Option<auth::operator::OperatorLogin>,
    /// Console feeds open now (`ARQONBUS_CONSOLE_MAX_FEEDS`).
    feeds: AtomicUsize,
    rooms: Rooms,
    history: recovery::History,
    connections: Connections,
    /// Upgrades accepted and not yet finished, counted before the upgrade completes so
    /// the limit cannot be overshot by concurrent upgrades.
    admitted: AtomicUsize,
    /// The same, per tenant, with the tenant's byte rate (entries removed at zero).
    admitted_per_tenant: std::sync::Mutex<std::collections::HashMap<TenantId, TenantShare>>,
    /// The fleet-wide quota per tenant (`None` when off).
    fleet: Option<fleet::FleetQuota>,
    /// Whether an envelope may skip the policy stage.
    route: route::PolicyRoute,
    /// This edge's key in the bucket of live edges.
    liveness: cluster::Liveness,
    metrics: EdgeMetrics,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    started: Instant,
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
    /// Checks the configuration, prepares token verification, and subscribes to this
    /// edge's delivery subject. The edge stops when `shutdown` is cancelled.
    pub async fn start(
        config: EdgeConfig,
        bus: Bus,
        metrics: EdgeMetrics,
        shutdown: CancellationToken,
    ) -> Result<Self, EdgeError> {
        let auth = Authenticator::from_config(&config).await?;
        let operator = auth::operator::OperatorLogin::from_config(&config)?;
        if operator.is_some() {
            warn!(
                "the console's operator login is on: the service token is accepted on the WebSocket port"
            );
        }
        if auth.is_none() {
            warn!("authentication is off: every connection is accepted in the default tenant");
        }
        let edge_id = EdgeId::generate();
        let deliveries = bus.subscribe(subject::edge(&edge_id)).await?;
        let (presence, direct) = cluster::subscribe(&bus, &edge_id).await?;
        let presence_events = if config.presence_events {
            Some(bus.subscribe(subject::PRESENCE_EVENTS_ALL).await?)
        } else {
            None
        };
        let liveness = cluster::Liveness::new(bus.key_value(layout::edges()).await?, &edge_id);
        let fleet = match config.max_fleet_connections_per_tenant {
            0 => None,
            cap => fleet::FleetQuota::new(
                cap,
                bus.key_value(layout::fleet_connections()).await?,
                edge_id.clone(),
            ),
        };
        bus.flush().await?;
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            rooms: Rooms::new(bus.clone(), tasks.clone(), JOIN_TIMEOUT, &metrics),
            history: recovery::History::new(bus.clone()),
            connections: Connections::default(),
            admitted: AtomicUsize::new(0),
            admitted_per_tenant: std::sync::Mutex::default(),
            fleet,
            route: route::PolicyRoute::new(config.policy_bypass, bus.clone(), metrics.clone()),
            liveness,
            config,
            bus,
            edge_id,
            auth,
            operator,
            feeds: AtomicUsize::new(0),
            metrics,
            tasks,
            shutdown,
            started: Instant::now(),
        });
        let router = Arc::clone(&shared);
        shared.tasks.spawn(async move {
            router
                .connections
                .route(deliveries, router.shutdown.clone())
                .await;
        });
        let stop = shared.shutdown.clone();
        shared.tasks.spawn(cluster::answer_presence(
            Arc::clone(&shared),
            presence,
            stop.clone(),
        ));
        shared.tasks.spawn(cluster::take_direct(
            Arc::clone(&shared),
            direct,
            stop.clone(),
        ));
        if let Some(events) = presence_events {
            shared.tasks.spawn(cluster::relay_presence(
                Arc::clone(&shared),
                events,
                stop.clone(),
            ));
        }
        if shared.fleet.is_some() {
            shared
                .tasks
                .spawn(fleet::publish_counts(Arc::clone(&shared), stop.clone()));
        }
        if shared.route.enabled() {
            shared
                .tasks
                .spawn(route::follow(Arc::clone(&shared), stop.clone()));
        }
        shared
            .tasks
            .spawn(cluster::heartbeat(Arc::clone(&shared), stop));
        if let Some(jwks) = shared.auth.as_ref().and_then(Authenticator::jwks) {
            shared
                .tasks
                .spawn(Arc::clone(jwks).refresh_periodically(shared.shutdown.clone()));
        }
        info!(edge_id = %shared.edge_id, "edge started");
        Ok(Self { shared })
    }

    /// The WebSocket routes: `GET /ws` and, for clients of the original, `GET /`; and the
    /// console (`/console/`) unless it is off.
    pub fn router(&self, http: &HttpMetrics) -> Router {
        let mut routes = Router::new()
            .route("/ws", any(upgrade))
            .route("/", any(upgrade))
            .with_state(Arc::clone(&self.shared));
        if self.shared.config.console {
            routes = routes.merge(console::router(Arc::clone(&self.shared)));
        }
        http.instrument(routes)
    }

    /// `GET /status`: connections, rooms, traffic, uptime, version.
    pub fn status_router(&self, version: &'static str) -> Router {
        status::router(Arc::clone(&self.shared), version)
    }

    /// Serves WebSocket upgrades on `listener` until shutdown, then drains: closes every
    /// connection with 1001 (after writing what was queued for it) and waits for them and
    /// for the edge's tasks. The listener answers upgrades with 503 while the edge drains,
    /// so a load balancer or a client gets a clear answer rather than a refused
    /// connection; it closes when the drain ends.
    pub async fn serve(self, listener: TcpListener, http: &HttpMetrics) -> Result<(), EdgeError> {
        let shutdown = self.shared.shutdown.clone();
        let tasks = self.shared.tasks.clone();
        let drained = async move {
            shutdown.cancelled().await;
            tasks.close();
            tasks.wait().await;
        };
        let routes = self
            .router(http)
            .into_make_service_with_connect_info::<closing::Handle>();
        axum::serve(closing::Listener::new(listener), routes)
            .with_graceful_shutdown(drained)
            .await?;
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        info!(edge_id = %self.shared.edge_id, "edge stopped");
        Ok(())
    }

    pub fn edge_id(&self) -> &EdgeId {
        &self.shared.edge_id
    }

    /// Why the edge cannot take connections now (for `/ready`); empty when it can.
    pub fn unready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.shared.shutdown.is_cancelled() {
            reasons.push("edge is shutting down".to_owned());
        }
        if self.shared.auth.as_ref().is_some_and(|a| !a.is_ready()) {
            reasons.push("token keys (JWKS) are not available".to_owned());
        }
        reasons
    }
}

/// Releases an admission when the connection (or a failed upgrade) ends.
struct Admission {
    shared: Arc<Shared>,
    tenant: TenantId,
}

impl Drop for Admission {
    fn drop(&mut self) {
        release(&self.shared, &self.tenant);
        self.shared.metrics.connections.dec();
    }
}

/// Gives back what [`upgrade`] took: a place on the edge and one of the tenant's.
fn release(shared: &Shared, tenant: &TenantId) {
    shared.admitted.fetch_sub(1, Ordering::AcqRel);
    {
        let mut per_tenant = shared
            .admitted_per_tenant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(share) = per_tenant.get_mut(tenant) {
            share.connections = share.connections.saturating_sub(1);
            if share.connections == 0 {
                per_tenant.remove(tenant);
            }
        }
    }
    if let Some(fleet) = &shared.fleet {
        fleet.count_changed();
    }
}

/// What one tenant holds on this edge.
struct TenantShare {
    connections: u32,
    /// The tenant's byte rate (`ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND`), shared by
    /// its connections.
    bytes: Option<Arc<DefaultDirectRateLimiter>>,
}

/// Counts one more connection of `tenant` unless it holds its quota already; returns
/// its count on this edge with the new one.
fn admit_tenant(shared: &Shared, tenant: &TenantId) -> Option<u32> {
    let mut per_tenant = shared
        .admitted_per_tenant
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let share = per_tenant
        .entry(tenant.clone())
        .or_insert_with(|| TenantShare {
            connections: 0,
            bytes: NonZeroU32::new(shared.config.rate_limit_tenant_bytes_per_second).map(|rate| {
                // A frame as large as the edge takes always fits a full bucket.
                let burst =
                    NonZeroU32::new(shared.config.max_message_size.max(rate.get())).unwrap_or(rate);
                Arc::new(RateLimiter::direct(
                    Quota::per_second(rate).allow_burst(burst),
                ))
            }),
        });
    if share.connections >= shared.config.max_connections_per_tenant {
        return None;
    }
    share.connections += 1;
    Some(share.connections)
}

impl Shared {
    /// Checks the credentials of a request (`auth::extract_credential`); a refusal is
    /// counted by reason.
    async fn authenticate(&self, headers: &HeaderMap, uri: &Uri) -> Result<Grant, AuthError> {
        let credential = auth::extract_credential(headers, uri);
        auth::authenticate(self.auth.as_ref(), self.operator.as_ref(), credential)
            .await
            .inspect_err(|e| self.metrics.auth_failure(e.reason))
    }

    /// This edge's connections per tenant (upgrades in progress included).
    fn tenant_counts(&self) -> std::collections::HashMap<TenantId, u32> {
        self.admitted_per_tenant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(tenant, share)| (tenant.clone(), share.connections))
            .collect()
    }

    /// The byte rate of `tenant`'s connections on this edge (while it has one).
    fn tenant_byte_rate(&self, tenant: &TenantId) -> Option<Arc<DefaultDirectRateLimiter>> {
        self.admitted_per_tenant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .and_then(|share| share.bytes.clone())
    }
}

fn unavailable(details: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "error": "Service Unavailable", "details": details })),
    )
        .into_response()
}

fn too_many(details: &str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({ "error": "Too Many Requests", "details": details })),
    )
        .into_response()
}

/// The refusal of an upgrade while the edge drains: the connection is not kept either.
fn draining() -> Response {
    let mut response = unavailable("Server is shutting down; connect again, possibly elsewhere");
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(DRAINING_RETRY_AFTER_SECONDS),
    );
    response
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    tcp: Option<Extension<ConnectInfo<closing::Handle>>>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let metrics = &shared.metrics;
    if shared.shutdown.is_cancelled() {
        metrics.upgrade(Upgrade::Draining);
        return draining();
    }
    let grant = match shared.authenticate(&headers, &uri).await {
        Ok(grant) => grant,
        Err(e) => {
            info!(reason = %e, "upgrade refused");
            metrics.upgrade(Upgrade::Unauthorized);
            return e.into_response();
        }
    };
    let ws = match ws {
        Ok(ws) => ws.protocols([auth::PROTOCOL]),
        Err(rejection) => {
            metrics.upgrade(Upgrade::NotWebSocket);
            return rejection.into_response();
        }
    };
    let limit = shared.config.max_connections as usize;
    if shared.admitted.fetch_add(1, Ordering::AcqRel) >= limit {
        shared.admitted.fetch_sub(1, Ordering::AcqRel);
        metrics.upgrade(Upgrade::OverCapacity);
        return unavailable("Too many connections on this edge; try again or connect elsewhere");
    }
    let Some(own) = admit_tenant(&shared, &grant.tenant) else {
        shared.admitted.fetch_sub(1, Ordering::AcqRel);
        metrics.upgrade(Upgrade::TenantQuota);
        metrics.quota_refused(metrics::Quota::ConnectionsPerTenant);
        return too_many(
            "This tenant holds as many connections on this edge as it may (ARQONBUS_MAX_CONNECTIONS_PER_TENANT); close one or connect elsewhere",
        );
    };
    if let Some(fleet) = &shared.fleet {
        match fleet.check(&grant.tenant, own).await {
            fleet::Verdict::Admit => {}
            fleet::Verdict::Unchecked => {
                metrics.fleet_quota_unchecked.inc();
            }
            fleet::Verdict::Refuse => {
                release(&shared, &grant.tenant);
                metrics.upgrade(Upgrade::TenantQuota);
                metrics.quota_refused(metrics::Quota::FleetConnectionsPerTenant);
                return too_many(
                    "This tenant holds as many connections across the fleet as it may (ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT); close one",
                );
            }
        }
        fleet.count_changed();
    }
    metrics.connections.inc();
    let admission = Admission {
        shared: Arc::clone(&shared),
        tenant: grant.tenant.clone(),
    };
    metrics.upgrade(Upgrade::Accepted);
    let max = shared.config.max_message_size as usize;
    // Counted as a task of the edge from now on, so a drain that starts before the
    // upgrade completes still waits for the connection.
    let task = shared.tasks.token();
    let tcp = tcp.map(|Extension(ConnectInfo(handle))| handle);
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + 2 * max)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            connection::run(socket, tcp, shared, grant).await;
            drop(admission);
            drop(task);
        })
}
