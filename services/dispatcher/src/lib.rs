//! The dispatcher: routes every accepted envelope and answers commands.
//!
//! Dispatcher replicas share one queue group on the dispatch subjects, so each envelope
//! is routed once. A `message` goes to its room's subject (every edge with members fans
//! it out); a `command` is answered with a `response`; and every inbound envelope gets
//! exactly one answer to the edge that sent it (frames, or an empty completion), which
//! the edge waits for before reading that client's next frame. Joins and leaves are
//! decided here and applied by the edge.

mod commands;
mod grpc;
mod operators_control;
mod policy_control;
mod route;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry as Metrics;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use arqon_bus::lease::{self, LeaseTimings};
use arqon_bus::{Bus, BusError, KvConfig, Storage};
use arqon_protocol::subject;

pub use arqon_proto::grpc::ServiceToken;
pub use operators_control::{OperatorsControl, OperatorsControlError};
pub use policy_control::{PolicyControl, PolicyControlError};
pub use state::HistoryConfig;
use state::{History, Presence, Registry, WebhookTenants, expiry};

/// Settings of the dispatcher.
#[derive(Debug, Clone, clap::Args)]
pub struct DispatcherConfig {
    /// Concurrent consumers in this replica (each a member of the dispatcher queue group).
    #[arg(
        id = "dispatcher_workers",
        long = "dispatcher-workers",
        env = "ARQONBUS_DISPATCHER_WORKERS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=256),
    )]
    pub workers: u16,

    /// Channels one tenant may have (created explicitly or by a first join); one more
    /// gets `QUOTA_EXCEEDED`. Concurrent creations on several replicas may pass it by
    /// a few.
    #[arg(
        long = "max-channels-per-tenant",
        env = "ARQONBUS_MAX_CHANNELS_PER_TENANT",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_channels_per_tenant: u32,

    /// Seconds after which a channel made by a first join (not by `create_channel`) is
    /// removed once it has no members and no history; 0: never. It frees its place in
    /// the tenant's quota.
    #[arg(
        long = "empty-channel-ttl-seconds",
        env = "ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS",
        default_value_t = EMPTY_CHANNEL_TTL_SECONDS,
        value_parser = clap::value_parser!(u64).range(0..=MAX_EMPTY_CHANNEL_TTL_SECONDS),
    )]
    pub empty_channel_ttl_seconds: u64,

    /// Member ids `channel_info` lists at most (sorted by id); `member_count` stays the
    /// true count and `members_complete` says whether the list was cut.
    #[arg(
        long = "channel-info-max-members",
        env = "ARQONBUS_CHANNEL_INFO_MAX_MEMBERS",
        default_value_t = CHANNEL_INFO_MAX_MEMBERS,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub channel_info_max_members: u32,

    #[command(flatten)]
    pub history: HistoryConfig,

    /// The policy service's gRPC API, for `op.casil.get` and `op.casil.reload`, e.g.
    /// `http://policy:9200` (needs the service token). Standalone calls it in process.
    #[arg(long = "policy-url", env = "ARQONBUS_POLICY_URL")]
    pub policy_url: Option<String>,

    /// The token backends present to the gRPC API (`authorization: Bearer <token>`), set
    /// by the binary from `ARQONBUS_SERVICE_TOKEN`. The API is only served when it is
    /// set; it is trusted for every tenant.
    #[arg(skip)]
    pub service_token: Option<ServiceToken>,

    /// The policy control API in this process (standalone); wins over `policy_url`.
    #[arg(skip)]
    pub policy_control: Option<PolicyControl>,

    /// The operators service's gRPC APIs, for `op.store.*`, `op.webhook.*`, `op.cron.*`
    /// and `op.omega.*`, e.g. `http://operators:9200` (needs the service token).
    /// Standalone calls them in process.
    #[arg(long = "operators-url", env = "ARQONBUS_OPERATORS_URL")]
    pub operators_url: Option<String>,

    /// The operators APIs in this process (standalone); wins over `operators_url`.
    #[arg(skip)]
    pub operators_control: Option<OperatorsControl>,
}

/// Default of `ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS`.
pub const EMPTY_CHANNEL_TTL_SECONDS: u64 = 300;
/// Default of `ARQONBUS_CHANNEL_INFO_MAX_MEMBERS`: about 50 KiB of ids, far under the
/// bus's message size (the setting's maximum, 10,000, stays under 1 MiB too).
pub const CHANNEL_INFO_MAX_MEMBERS: u32 = 1000;
/// Longest `ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS`: 30 days.
const MAX_EMPTY_CHANNEL_TTL_SECONDS: u64 = 30 * 86_400;

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            max_channels_per_tenant: 10_000,
            empty_channel_ttl_seconds: EMPTY_CHANNEL_TTL_SECONDS,
            channel_info_max_members: CHANNEL_INFO_MAX_MEMBERS,
            history: HistoryConfig::default(),
            policy_url: None,
            service_token: None,
            policy_control: None,
            operators_url: None,
            operators_control: None,
        }
    }
}

/// Why the dispatcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("ARQONBUS_SERVICE_TOKEN (--service-token): {0}")]
    InvalidServiceToken(&'static str),
    #[error(transparent)]
    PolicyControl(#[from] PolicyControlError),
    #[error(transparent)]
    OperatorsControl(#[from] OperatorsControlError),
}

/// Counters of this replica.
#[derive(Debug, Clone, Default)]
pub struct DispatcherMetrics {
    routed: Counter,
    commands: Counter,
    rejected: Counter,
    publish_errors: Counter,
    refused_publishes: Counter,
    channel_quota_refusals: Counter,
    channels_expired: Counter,
}

impl DispatcherMetrics {
    pub fn register(registry: &mut Metrics) -> Self {
        let metrics = Self::default();
        registry.register(
            "arqonbus_dispatcher_routed",
            "Messages published to a room",
            metrics.routed.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_commands",
            "Commands answered",
            metrics.commands.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_rejected",
            "Internal messages dropped as undecodable or with a tenant that does not match their subject",
            metrics.rejected.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_publish_errors",
            "Publishes the bus did not accept",
            metrics.publish_errors.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_refused_publishes",
            "Messages and telemetry refused because the sender may not join channels (AUTHORIZATION_ERROR)",
            metrics.refused_publishes.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_channel_quota_refusals",
            "Channel creations and first joins refused because the tenant has ARQONBUS_MAX_CHANNELS_PER_TENANT channels (QUOTA_EXCEEDED)",
            metrics.channel_quota_refusals.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_channels_expired",
            "Channels made by a first join removed after ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS without members or history",
            metrics.channels_expired.clone(),
        );
        metrics
    }

    pub(crate) fn routed(&self) -> u64 {
        self.routed.get()
    }

    pub(crate) fn commands(&self) -> u64 {
        self.commands.get()
    }
}

pub(crate) struct Context {
    bus: Bus,
    metrics: DispatcherMetrics,
    started: Instant,
    /// This replica, in `status`.
    replica: String,
    registry: Registry,
    presence: Presence,
    history: History,
    /// Member ids `channel_info` lists at most.
    max_members_listed: usize,
    /// The policy service's control API, when configured.
    policy: Option<PolicyControl>,
    /// The operators service's APIs, when configured.
    operators: Option<OperatorsControl>,
    /// The tenants whose messages also go to the webhook queue.
    webhook_tenants: WebhookTenants,
    /// Acknowledgements waiting for the history to confirm their message.
    unconfirmed: Arc<Semaphore>,
    /// Every task of the dispatcher (workers and those acknowledgements).
    tasks: TaskTracker,
}

/// Acknowledgements of one replica that may wait for the history's confirmation at once;
/// beyond them a worker waits before routing more. The edges' pipeline timeout bounds
/// each wait.
const MAX_UNCONFIRMED: usize = 4096;

/// A running dispatcher.
pub struct Dispatcher {
    tasks: TaskTracker,
    context: Arc<Context>,
    service_token: Option<ServiceToken>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Adds the gRPC API (`arqon.dispatcher.v1.Bus`), behind the service token, to
    /// `routes`; nothing without a token: the API is never served unauthenticated.
    pub fn add_grpc(&self, routes: &mut tonic::service::RoutesBuilder) {
        if let Some(token) = &self.service_token {
            grpc::add(Arc::clone(&self.context), token.clone(), routes);
        }
    }

    /// Waits until the dispatcher has stopped (after `shutdown`).
    pub async fn wait(self) {
        self.tasks.wait().await;
        info!("dispatcher stopped");
    }
}

/// Joins the dispatcher queue group; returns once the subscriptions are registered with
/// the bus. Runs until `shutdown`.
pub async fn start(
    config: DispatcherConfig,
    bus: Bus,
    metrics: DispatcherMetrics,
    shutdown: CancellationToken,
) -> Result<Dispatcher, DispatcherError> {
    if let Some(token) = &config.service_token {
        token
            .check()
            .map_err(DispatcherError::InvalidServiceToken)?;
    }
    let policy = match (config.policy_control, &config.policy_url) {
        (Some(control), _) => Some(control),
        (None, Some(url)) => Some(PolicyControl::remote(url, config.service_token.as_ref())?),
        (None, None) => None,
    };
    let operators = match (config.operators_control, &config.operators_url) {
        (Some(control), _) => Some(control),
        (None, Some(url)) => Some(OperatorsControl::remote(
            url,
            config.service_token.as_ref(),
        )?),
        (None, None) => None,
    };
    let tasks = TaskTracker::new();
    let context = Arc::new(Context {
        webhook_tenants: WebhookTenants::open(&bus, &tasks, shutdown.clone()).await?,
        policy,
        operators,
        registry: Registry::open(&bus, config.max_channels_per_tenant as usize).await?,
        presence: Presence::open(&bus).await?,
        history: History::open(&bus, &config.history).await?,
        max_members_listed: config.channel_info_max_members as usize,
        bus: bus.clone(),
        metrics,
        started: Instant::now(),
        replica: format!("dispatcher_{:016x}", rand::random::<u64>()),
        unconfirmed: Arc::new(Semaphore::new(MAX_UNCONFIRMED)),
        tasks: tasks.clone(),
    });
    for _ in 0..config.workers {
        let mut subscription = bus
            .queue_subscribe(subject::DISPATCH_ALL, subject::DISPATCHER_QUEUE)
            .await?;
        let (context, shutdown) = (Arc::clone(&context), shutdown.clone());
        tasks.spawn(async move {
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = subscription.next() => message,
                };
                let Some(message) = message else { break };
                route::handle(&context, message).await;
            }
        });
    }
    start_sweep(
        &context,
        &bus,
        config.empty_channel_ttl_seconds,
        &tasks,
        &shutdown,
    )
    .await?;
    bus.flush().await?;
    tasks.close();
    info!(workers = config.workers, "dispatcher started");
    Ok(Dispatcher {
        tasks,
        context,
        service_token: config.service_token,
    })
}

/// Starts the expiry sweep of empty implicit channels, on the replica that holds its
/// lease.
async fn start_sweep(
    context: &Arc<Context>,
    bus: &Bus,
    ttl_seconds: u64,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    let bucket = bus
        .key_value(KvConfig {
            max_age: Some(expiry::LEASE),
            storage: Storage::Memory,
            ..KvConfig::new(subject::CHANNEL_SWEEP_LEASE_BUCKET)
        })
        .await?;
    let (terms, leadership) = tokio::sync::watch::channel(None);
    tasks.spawn(lease::hold(
        bucket,
        ("channel sweep lease", "removes empty channels"),
        LeaseTimings::for_ttl(expiry::LEASE),
        terms,
        |_| {},
        shutdown.clone(),
    ));
    tasks.spawn(expiry::run(
        Arc::clone(context),
        Duration::from_secs(ttl_seconds),
        leadership,
        shutdown.clone(),
    ));
    Ok(())
}
