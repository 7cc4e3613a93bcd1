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
mod intake;
mod route;
mod state;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as Metrics;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use arqon_bus::lease::{self, LeaseTimings};
use arqon_bus::{Bus, BusError};
use arqon_proto::layout;
use arqon_protocol::subject;
use arqon_service::{Process, RoutesBuilder, Service};

pub use arqon_proto::control::ControlError;
pub use arqon_proto::grpc::ServiceToken;
pub use arqon_proto::operators_control::OperatorsControl;
pub use arqon_proto::policy_control::PolicyControl;
pub use state::HistoryConfig;
use state::{History, Presence, Registry, WebhookTenants, expiry};

/// Settings of the dispatcher.
#[derive(Debug, Clone, clap::Args)]
pub struct DispatcherConfig {
    /// Receive loops in this replica, each a member of the dispatcher queue group. A loop
    /// only decodes and admits envelopes; each is handled in a task of its own, so how
    /// many run at once is set by the `ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_*` settings, not
    /// by this. (Before ADR 016 each loop handled one envelope at a time.)
    #[arg(
        id = "dispatcher_workers",
        long = "dispatcher-workers",
        env = "ARQONBUS_DISPATCHER_WORKERS",
        default_value_t = WORKERS,
        value_parser = clap::value_parser!(u16).range(1..=256),
    )]
    pub workers: u16,

    /// Envelopes other than commands (room and private messages, telemetry) this
    /// replica routes at once; when all are in progress the receive loops wait.
    #[arg(
        long = "dispatcher-max-in-flight-messages",
        env = "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES",
        default_value_t = MAX_IN_FLIGHT_MESSAGES,
        value_parser = clap::value_parser!(u32).range(1..=65_536),
    )]
    pub max_in_flight_messages: u32,

    /// Commands this replica runs at once, all tenants together (a lane of their own:
    /// slow commands never hold up messages).
    #[arg(
        long = "dispatcher-max-in-flight-commands",
        env = "ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS",
        default_value_t = MAX_IN_FLIGHT_COMMANDS,
        value_parser = clap::value_parser!(u32).range(2..=65_536),
    )]
    pub max_in_flight_commands: u32,

    /// Commands of one tenant this replica runs at once; must be less than
    /// `ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS`, so one tenant never takes them all.
    #[arg(
        long = "dispatcher-max-commands-per-tenant",
        env = "ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT",
        default_value_t = MAX_COMMANDS_PER_TENANT,
        value_parser = clap::value_parser!(u32).range(1..=65_535),
    )]
    pub max_commands_per_tenant: u32,

    /// Commands of one tenant that may wait, in order, for one of its running ones to
    /// finish (at most 4 s); one more is answered `RATE_LIMITED` without running.
    #[arg(
        long = "dispatcher-max-queued-commands-per-tenant",
        env = "ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT",
        default_value_t = MAX_QUEUED_COMMANDS_PER_TENANT,
        value_parser = clap::value_parser!(u32).range(0..=65_536),
    )]
    pub max_queued_commands_per_tenant: u32,

    /// Channels one tenant may have (created explicitly or by a first join); one more
    /// gets `QUOTA_EXCEEDED`. Concurrent creations on several replicas may pass it by
    /// a few.
    #[arg(
        long = "max-channels-per-tenant",
        env = "ARQONBUS_MAX_CHANNELS_PER_TENANT",
        default_value_t = MAX_CHANNELS_PER_TENANT,
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

    /// Member ids `channel_info` (and gRPC `ChannelInfo` and `Presence`) lists at most
    /// (sorted by id), and what it asks of each edge; `member_count` stays the true count
    /// and `members_complete` says whether the list was cut.
    #[arg(
        long = "channel-info-max-members",
        env = "ARQONBUS_CHANNEL_INFO_MAX_MEMBERS",
        default_value_t = CHANNEL_INFO_MAX_MEMBERS,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub channel_info_max_members: u32,

    /// Tenants the system authority's `status` lists in `clients` at most (the first by
    /// name); `clients_complete` says whether the list was cut.
    #[arg(
        long = "status-max-tenants",
        env = "ARQONBUS_STATUS_MAX_TENANTS",
        default_value_t = STATUS_MAX_TENANTS,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub status_max_tenants: u32,

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

/// Default of `ARQONBUS_DISPATCHER_WORKERS`.
pub const WORKERS: u16 = 2;
/// Default of `ARQONBUS_MAX_CHANNELS_PER_TENANT`.
pub const MAX_CHANNELS_PER_TENANT: u32 = 10_000;
/// Default of `ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_MESSAGES`.
pub const MAX_IN_FLIGHT_MESSAGES: u32 = 1024;
/// Default of `ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS`.
pub const MAX_IN_FLIGHT_COMMANDS: u32 = 256;
/// Default of `ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT`: eight tenants with slow
/// commands fill the command lane before a ninth waits.
pub const MAX_COMMANDS_PER_TENANT: u32 = 32;
/// Default of `ARQONBUS_DISPATCHER_MAX_QUEUED_COMMANDS_PER_TENANT`.
pub const MAX_QUEUED_COMMANDS_PER_TENANT: u32 = 1024;
/// Default of `ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS`.
pub const EMPTY_CHANNEL_TTL_SECONDS: u64 = 300;
/// Default of `ARQONBUS_CHANNEL_INFO_MAX_MEMBERS`: about 50 KiB of ids, far under the
/// bus's message size (the setting's maximum, 10,000, stays under 1 MiB too).
pub const CHANNEL_INFO_MAX_MEMBERS: u32 = 1000;
/// Default of `ARQONBUS_STATUS_MAX_TENANTS`: about 80 KiB of counts (the setting's
/// maximum, 10,000, stays under 1 MiB too).
pub const STATUS_MAX_TENANTS: u32 = 1000;
/// Longest `ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS`: 30 days.
const MAX_EMPTY_CHANNEL_TTL_SECONDS: u64 = 30 * 86_400;

impl Default for DispatcherConfig {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

/// Why the dispatcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("ARQONBUS_SERVICE_TOKEN (--service-token): {0}")]
    InvalidServiceToken(&'static str),
    #[error(
        "ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT ({per_tenant}) must be less than ARQONBUS_DISPATCHER_MAX_IN_FLIGHT_COMMANDS ({commands}): one tenant could take every command slot"
    )]
    CommandBounds { per_tenant: u32, commands: u32 },
    #[error(transparent)]
    Control(#[from] ControlError),
}

arqon_telemetry::label_values! {
    /// The lanes envelopes are handled in (`intake`).
    pub(crate) enum Lane {
        Messages => "messages",
        Commands => "commands",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabel {
    lane: Lane,
}

arqon_telemetry::label_values! {
    /// Why a command was answered without running.
    pub(crate) enum Refusal {
        /// Its tenant had as many commands running and waiting as it may (`RATE_LIMITED`).
        TenantQueueFull => "tenant_queue_full",
        /// It waited for its turn longer than the wait allows (`UNAVAILABLE`).
        WaitExpired => "wait_expired",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    reason: Refusal,
}

/// Counters of this replica.
#[derive(Debug, Clone, Default)]
pub struct DispatcherMetrics {
    in_flight: Family<LaneLabel, Gauge>,
    queued_commands: Gauge,
    command_refusals: Family<RefusalLabel, Counter>,
    routed: Counter,
    commands: Counter,
    rejected: Counter,
    publish_errors: Counter,
    refused_publishes: Counter,
    channel_quota_refusals: Counter,
    channels_expired: Counter,
    history_full: Counter,
    history_trimmed: Counter,
}

impl DispatcherMetrics {
    pub fn register(registry: &mut Metrics) -> Self {
        let metrics = Self::default();
        for lane in [Lane::Messages, Lane::Commands] {
            // Both series from the start, at 0.
            metrics.in_flight(lane);
        }
        registry.register(
            "arqonbus_dispatcher_in_flight",
            "Envelopes being handled, by lane (messages: every envelope but commands)",
            metrics.in_flight.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_queued_commands",
            "Commands waiting for a slot of their tenant (ARQONBUS_DISPATCHER_MAX_COMMANDS_PER_TENANT) or of the command lane",
            metrics.queued_commands.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_command_refusals",
            "Commands answered without running: tenant_queue_full (RATE_LIMITED), wait_expired (UNAVAILABLE)",
            metrics.command_refusals.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_routed",
            "Messages routed to a room: published by the dispatcher, or handed to the sender's edge to publish in its connection's order (ADR 022)",
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
        registry.register(
            "arqonbus_dispatcher_history_full",
            "Messages refused with QUOTA_EXCEEDED: the history's total (ARQONBUS_HISTORY_MAX_BYTES) had no room for another tenant's stream",
            metrics.history_full.clone(),
        );
        registry.register(
            "arqonbus_dispatcher_history_trimmed",
            "Stored messages removed to keep a channel within ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL",
            metrics.history_trimmed.clone(),
        );
        metrics
    }

    pub(crate) fn in_flight(&self, lane: Lane) -> Gauge {
        self.in_flight.get_or_create(&LaneLabel { lane }).clone()
    }

    pub(crate) fn refused(&self, reason: Refusal) {
        self.command_refusals
            .get_or_create(&RefusalLabel { reason })
            .inc();
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
    /// The live policy, dispatcher and operators replicas (`overview`).
    replicas: arqon_bus::KvStore,
    /// The operators' cron jobs (keys `<tenant>.<job_id>`), for `list_tenants`.
    cron_jobs: arqon_bus::KvStore,
    history: History,
    /// Member ids `channel_info` lists at most.
    max_members_listed: usize,
    /// Tenants `status` lists at most.
    max_tenants_listed: usize,
    /// The policy service's control API, when configured.
    policy: Option<PolicyControl>,
    /// The operators service's APIs, when configured.
    operators: Option<OperatorsControl>,
    /// The tenants whose messages also go to the webhook queue.
    webhook_tenants: WebhookTenants,
    /// Acknowledgements waiting for the history to confirm their message.
    unconfirmed: Arc<Semaphore>,
    /// The lanes envelopes are handled in, and the tenants' command slots.
    admission: Arc<intake::Admission>,
    /// Every task of the dispatcher (receive loops, envelopes, acknowledgements).
    tasks: TaskTracker,
}

/// Acknowledgements of one replica that may wait for the history's confirmation at once;
/// beyond them a message's task waits, holding its place in the message lane. The edges' pipeline timeout bounds
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

impl Service for Dispatcher {
    type Settings = DispatcherConfig;
    type Error = DispatcherError;
    const NAME: &'static str = "dispatcher";

    async fn build(
        settings: DispatcherConfig,
        process: Process<'_>,
    ) -> Result<Self, DispatcherError> {
        let metrics = DispatcherMetrics::register(process.registry);
        let shutdown = process.shutdown.clone();
        Box::pin(start(settings, process.bus.clone(), metrics, shutdown)).await
    }

    fn add_grpc(&self, routes: &mut RoutesBuilder) {
        Dispatcher::add_grpc(self, routes);
    }

    async fn run(self) -> Result<(), DispatcherError> {
        self.wait().await;
        Ok(())
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
    if config.max_commands_per_tenant >= config.max_in_flight_commands {
        return Err(DispatcherError::CommandBounds {
            per_tenant: config.max_commands_per_tenant,
            commands: config.max_in_flight_commands,
        });
    }
    let bounds = intake::Bounds {
        messages: config.max_in_flight_messages as usize,
        commands: config.max_in_flight_commands as usize,
        per_tenant: config.max_commands_per_tenant as usize,
        queued_per_tenant: config.max_queued_commands_per_tenant as usize,
    };
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
        replicas: bus.key_value(arqon_proto::layout::services()).await?,
        cron_jobs: bus.key_value(arqon_proto::layout::cron(&bus)).await?,
        history: History::open(
            &bus,
            &config.history,
            &tasks,
            metrics.history_trimmed.clone(),
        )
        .await?,
        max_members_listed: config.channel_info_max_members as usize,
        max_tenants_listed: config.status_max_tenants as usize,
        bus: bus.clone(),
        metrics,
        started: Instant::now(),
        replica: arqon_proto::liveness::replica_id("dispatcher"),
        unconfirmed: Arc::new(Semaphore::new(MAX_UNCONFIRMED)),
        admission: Arc::new(intake::Admission::new(bounds)),
        tasks: tasks.clone(),
    });
    let (dispatch, group) = (subject::DISPATCH_ALL, subject::DISPATCHER_QUEUE);
    bus.spawn_queue_workers(dispatch, group, config.workers, &tasks, |subscription| {
        intake::run(Arc::clone(&context), subscription, shutdown.clone())
    })
    .await?;
    start_sweep(
        &context,
        &bus,
        config.empty_channel_ttl_seconds,
        &tasks,
        &shutdown,
    )
    .await?;
    bus.flush().await?;
    // Listed in the console's overview, beside the edges.
    arqon_proto::liveness::keep_alive(
        bus.clone(),
        "dispatcher",
        context.replica.clone(),
        env!("CARGO_PKG_VERSION"),
        &tasks,
        shutdown.clone(),
    );
    tasks.close();
    info!(
        workers = config.workers,
        max_in_flight_messages = bounds.messages,
        max_in_flight_commands = bounds.commands,
        max_commands_per_tenant = bounds.per_tenant,
        "dispatcher started"
    );
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
        .key_value(layout::lease(
            subject::CHANNEL_SWEEP_LEASE_BUCKET,
            expiry::LEASE,
        ))
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
