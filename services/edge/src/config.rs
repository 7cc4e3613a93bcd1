//! The edge's settings: flags, each with an `ARQONBUS_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;

use arqon_proto::grpc::ServiceToken;

use crate::EdgeError;

/// The signature algorithm tokens must use. Exactly one is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (`ARQONBUS_AUTH_JWT_SECRET`).
    #[value(name = "HS256", alias = "hs256")]
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256: a PEM public key or a JWKS URL.
    #[value(name = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA P-256 with SHA-256: a PEM public key or a JWKS URL.
    #[value(name = "ES256", alias = "es256")]
    Es256,
}

/// Default of `ARQONBUS_AUTH_JWT_ALGORITHM`.
const JWT_ALGORITHM: JwtAlgorithm = JwtAlgorithm::Hs256;
/// Default of `ARQONBUS_AUTH_JWKS_REFRESH_SECONDS`.
const JWKS_REFRESH_SECONDS: u64 = 300;
/// Default of `ARQONBUS_AUTH_LEEWAY_SECONDS`.
const JWT_LEEWAY_SECONDS: u64 = 5;
/// Default of `ARQONBUS_AUTH_TENANT_CLAIM`.
const TENANT_CLAIM: &str = "tenant_id";
/// Default of `ARQONBUS_MAX_CONNECTIONS`.
const MAX_CONNECTIONS: u32 = 10_000;
/// Default of `ARQONBUS_MAX_CONNECTIONS_PER_TENANT`.
const MAX_CONNECTIONS_PER_TENANT: u32 = 5_000;
/// Default of `ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT`: ten edges' worth of
/// [`MAX_CONNECTIONS_PER_TENANT`].
const MAX_FLEET_CONNECTIONS_PER_TENANT: u32 = 10 * MAX_CONNECTIONS_PER_TENANT;
/// Default of `ARQONBUS_MAX_CHANNELS_PER_CONNECTION`.
const MAX_CHANNELS_PER_CONNECTION: u32 = 256;
/// Default of `ARQONBUS_MAX_MESSAGE_SIZE`: 1 MiB.
const MAX_MESSAGE_SIZE: u32 = 1024 * 1024;
/// Default of `ARQONBUS_MAX_JSON_DEPTH`.
const MAX_JSON_DEPTH: u32 = 32;
/// Default of `ARQONBUS_RATE_LIMIT_PER_SECOND`.
const RATE_LIMIT_PER_SECOND: u32 = 100;
/// Default of `ARQONBUS_RATE_LIMIT_BURST`.
const RATE_LIMIT_BURST: u32 = 200;
/// Default of `ARQONBUS_RATE_LIMIT_STRIKES`.
const RATE_LIMIT_STRIKES: u32 = 20;
/// Default of `ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND`: 2 MiB.
const RATE_LIMIT_BYTES_PER_SECOND: u32 = 2 * 1024 * 1024;
/// Default of `ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND`: 16 MiB.
const RATE_LIMIT_TENANT_BYTES_PER_SECOND: u32 = 16 * 1024 * 1024;
/// Default of `ARQONBUS_OUTBOUND_QUEUE`.
const OUTBOUND_QUEUE: u32 = 1024;
/// Default of `ARQONBUS_OUTBOUND_QUEUE_BYTES`: 4 MiB.
const OUTBOUND_QUEUE_BYTES: u32 = 4 * 1024 * 1024;
/// Default of `ARQONBUS_WRITE_STALL_TIMEOUT_SECONDS`.
const WRITE_STALL_TIMEOUT_SECONDS: u64 = 10;
/// Default of `ARQONBUS_PING_INTERVAL_SECONDS`.
const PING_INTERVAL_SECONDS: u64 = 20;
/// Default of `ARQONBUS_PONG_TIMEOUT_SECONDS`.
const PONG_TIMEOUT_SECONDS: u64 = 10;
/// Default of `ARQONBUS_PIPELINE_TIMEOUT_MS`.
const PIPELINE_TIMEOUT_MS: u64 = 5000;
/// Default of `ARQONBUS_PIPELINE_WINDOW`.
const PIPELINE_WINDOW: u32 = 32;
/// Default of `ARQONBUS_PIPELINE_WINDOW_BYTES`: 1 MiB.
const PIPELINE_WINDOW_BYTES: u32 = 1024 * 1024;
/// Default of `ARQONBUS_POLICY_BYPASS`.
const POLICY_BYPASS: bool = true;
/// Default of `ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS`: an hour.
const CONSOLE_OPERATOR_SESSION_SECONDS: u64 = 3600;
/// Default of `ARQONBUS_CONSOLE_MAX_FEEDS`.
const CONSOLE_MAX_FEEDS: u32 = 64;
/// Default of `ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND`.
const CONSOLE_FEED_EVENTS_PER_SECOND: u32 = 50;
/// Default of `ARQONBUS_PRESENCE_MAX_MEMBERS`.
pub const PRESENCE_MAX_MEMBERS: u32 = 10_000;
/// Default of `ARQONBUS_PRESENCE_MAX_REPLY_BYTES`: a quarter of NATS's default message
/// size, about 4,000 members with short subjects.
pub const PRESENCE_MAX_REPLY_BYTES: u32 = 256 * 1024;

/// Settings of the WebSocket edge. The listeners are bound by the caller.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// Require a JWT on every upgrade. Turning this off gives every connection the
    /// `default` tenant and no admin rights.
    #[arg(
        long = "enable-auth",
        env = "ARQONBUS_ENABLE_AUTH",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub enable_auth: bool,

    /// The algorithm tokens are signed with.
    #[arg(
        long = "jwt-algorithm",
        env = "ARQONBUS_AUTH_JWT_ALGORITHM",
        value_enum,
        default_value_t = JWT_ALGORITHM
    )]
    pub jwt_algorithm: JwtAlgorithm,

    /// The HS256 secret. Required with HS256 when authentication is on.
    #[arg(
        long = "jwt-secret",
        env = "ARQONBUS_AUTH_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// A PEM public key (RS256 or ES256), inline.
    #[arg(
        long = "jwt-public-key",
        env = "ARQONBUS_AUTH_JWT_PUBLIC_KEY",
        hide_env_values = true
    )]
    pub jwt_public_key: Option<String>,

    /// A file holding the PEM public key (RS256 or ES256).
    #[arg(
        long = "jwt-public-key-file",
        env = "ARQONBUS_AUTH_JWT_PUBLIC_KEY_FILE"
    )]
    pub jwt_public_key_file: Option<PathBuf>,

    /// A JWKS URL (RS256 or ES256): keys are fetched at start, cached, and fetched again
    /// when a token names an unknown `kid` (at most once per refresh interval).
    #[arg(long = "jwks-url", env = "ARQONBUS_AUTH_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// How often the JWKS is fetched again, and the shortest time between two fetches
    /// caused by unknown key ids, in seconds.
    #[arg(
        long = "jwks-refresh-seconds",
        env = "ARQONBUS_AUTH_JWKS_REFRESH_SECONDS",
        default_value_t = JWKS_REFRESH_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub jwks_refresh_seconds: u64,

    /// When set, tokens must carry this `aud`.
    #[arg(long = "jwt-audience", env = "ARQONBUS_AUTH_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// When set, tokens must carry this `iss`.
    #[arg(long = "jwt-issuer", env = "ARQONBUS_AUTH_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(
        long = "jwt-leeway-seconds",
        env = "ARQONBUS_AUTH_LEEWAY_SECONDS",
        default_value_t = JWT_LEEWAY_SECONDS,
        value_parser = clap::value_parser!(u64).range(0..=300),
    )]
    pub jwt_leeway_seconds: u64,

    /// The claim that names the tenant.
    #[arg(
        long = "tenant-claim",
        env = "ARQONBUS_AUTH_TENANT_CLAIM",
        default_value = TENANT_CLAIM
    )]
    pub tenant_claim: String,

    /// The tenant of a token without the tenant claim. Unset (the default), such a token
    /// is refused: with an issuer shared by several applications, a silent fallback would
    /// put all of them in one tenant. `default` restores the original's behaviour.
    #[arg(long = "default-tenant", env = "ARQONBUS_AUTH_DEFAULT_TENANT")]
    pub default_tenant: Option<String>,

    /// Honour the `arqonbus:system` scope in tokens: the fleet-wide authority (every
    /// tenant's status and store, the CASIL policy). Off by default: only the service
    /// token (gRPC, the `arqon` CLI) has it.
    #[arg(
        long = "auth-system-scope",
        env = "ARQONBUS_AUTH_SYSTEM_SCOPE",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub system_scope: bool,

    /// Open connections this edge accepts; further upgrades get 503.
    #[arg(
        long = "max-connections",
        env = "ARQONBUS_MAX_CONNECTIONS",
        default_value_t = MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_connections: u32,

    /// Open connections one tenant may hold on this edge, so that no tenant can take all
    /// of `ARQONBUS_MAX_CONNECTIONS`; further upgrades of that tenant get 429. A
    /// deployment with a single tenant sets it to `ARQONBUS_MAX_CONNECTIONS`.
    #[arg(
        long = "max-connections-per-tenant",
        env = "ARQONBUS_MAX_CONNECTIONS_PER_TENANT",
        default_value_t = MAX_CONNECTIONS_PER_TENANT,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_connections_per_tenant: u32,

    /// Open connections one tenant may hold across every edge of the fleet (0: no
    /// fleet-wide cap); further upgrades of that tenant get 429. Approximate: each edge
    /// sees the others' counts as they were up to a second ago. The default is ten edges'
    /// worth of `ARQONBUS_MAX_CONNECTIONS_PER_TENANT` (5,000): fleets of up to ten edges
    /// with the default settings never meet it, larger ones keep a tenant from taking
    /// them whole. Set it alike on every edge (an edge with 0 does not publish its counts).
    #[arg(
        long = "max-fleet-connections-per-tenant",
        env = "ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT",
        default_value_t = MAX_FLEET_CONNECTIONS_PER_TENANT
    )]
    pub max_fleet_connections_per_tenant: u32,

    /// Channels one connection may be in at once; a further `join_channel` gets
    /// `QUOTA_EXCEEDED` (each channel is a subscription on the bus).
    #[arg(
        long = "max-channels-per-connection",
        env = "ARQONBUS_MAX_CHANNELS_PER_CONNECTION",
        default_value_t = MAX_CHANNELS_PER_CONNECTION,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_channels_per_connection: u32,

    /// The largest WebSocket message accepted, in bytes (at least 1024). A larger one
    /// closes the connection with code 1009.
    #[arg(
        long = "max-message-size",
        env = "ARQONBUS_MAX_MESSAGE_SIZE",
        default_value_t = MAX_MESSAGE_SIZE,
        value_parser = clap::value_parser!(u32).range(1024..),
    )]
    pub max_message_size: u32,

    /// How deeply `payload`, `args` and `metadata` may nest objects and arrays (at most
    /// 128, the JSON parsers' own limit). A deeper envelope gets `VALIDATION_ERROR`: it
    /// could not be inspected.
    #[arg(
        long = "max-json-depth",
        env = "ARQONBUS_MAX_JSON_DEPTH",
        default_value_t = MAX_JSON_DEPTH,
        value_parser = clap::value_parser!(u32).range(1..=128),
    )]
    pub max_json_depth: u32,

    /// Envelopes one connection may send per second, on average (0: no limit). Above
    /// it the client gets `RATE_LIMITED`.
    #[arg(
        long = "rate-limit-per-second",
        env = "ARQONBUS_RATE_LIMIT_PER_SECOND",
        default_value_t = RATE_LIMIT_PER_SECOND
    )]
    pub rate_limit_per_second: u32,

    /// Envelopes one connection may send at once above the average rate.
    #[arg(
        long = "rate-limit-burst",
        env = "ARQONBUS_RATE_LIMIT_BURST",
        default_value_t = RATE_LIMIT_BURST,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub rate_limit_burst: u32,

    /// Consecutive refused envelopes after which the connection is closed (1008).
    #[arg(
        long = "rate-limit-strikes",
        env = "ARQONBUS_RATE_LIMIT_STRIKES",
        default_value_t = RATE_LIMIT_STRIKES,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub rate_limit_strikes: u32,

    /// Bytes of frames one connection may send per second, on average (0: no limit);
    /// it may send up to `ARQONBUS_MAX_MESSAGE_SIZE` or one second's worth at once,
    /// whichever is more. Above it a frame gets `RATE_LIMITED` and a strike, as with
    /// the frame rate.
    #[arg(
        long = "rate-limit-bytes-per-second",
        env = "ARQONBUS_RATE_LIMIT_BYTES_PER_SECOND",
        default_value_t = RATE_LIMIT_BYTES_PER_SECOND
    )]
    pub rate_limit_bytes_per_second: u32,

    /// Bytes of frames all of one tenant's connections on this edge may send per second,
    /// on average (0: no limit), so that one tenant cannot take an edge's (and the
    /// pipeline's) whole capacity; it may send one second's worth at once. Above it a
    /// frame gets `RATE_LIMITED` and a strike, as with the connection's own rate.
    #[arg(
        long = "rate-limit-tenant-bytes-per-second",
        env = "ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND",
        default_value_t = RATE_LIMIT_TENANT_BYTES_PER_SECOND
    )]
    pub rate_limit_tenant_bytes_per_second: u32,

    /// Frames waiting to be written to one connection. A client whose queue fills up is
    /// disconnected as too slow (close code 4008).
    #[arg(
        long = "outbound-queue",
        env = "ARQONBUS_OUTBOUND_QUEUE",
        default_value_t = OUTBOUND_QUEUE,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub outbound_queue: u32,

    /// Bytes waiting to be written to one connection, at most; beyond, as above.
    #[arg(
        long = "outbound-queue-bytes",
        env = "ARQONBUS_OUTBOUND_QUEUE_BYTES",
        default_value_t = OUTBOUND_QUEUE_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..),
    )]
    pub outbound_queue_bytes: u32,

    /// Seconds one write to a connection (or a join) may make no progress before the
    /// client is disconnected as too slow (close code 4008), whatever its queue holds: a
    /// client that stops reading cannot hold its connection forever.
    #[arg(
        long = "write-stall-timeout-seconds",
        env = "ARQONBUS_WRITE_STALL_TIMEOUT_SECONDS",
        default_value_t = WRITE_STALL_TIMEOUT_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..=300),
    )]
    pub write_stall_timeout_seconds: u64,

    /// Seconds between server pings.
    #[arg(
        long = "ping-interval-seconds",
        env = "ARQONBUS_PING_INTERVAL_SECONDS",
        default_value_t = PING_INTERVAL_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub ping_interval_seconds: u64,

    /// Seconds a client has to answer a ping (any frame counts) before it is closed (4002).
    #[arg(
        long = "pong-timeout-seconds",
        env = "ARQONBUS_PONG_TIMEOUT_SECONDS",
        default_value_t = PONG_TIMEOUT_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub pong_timeout_seconds: u64,

    /// Tell a channel's members when someone joins or leaves it (a `telemetry` envelope
    /// with `payload.presence`).
    #[arg(
        long = "presence-events",
        env = "ARQONBUS_PRESENCE_EVENTS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub presence_events: bool,

    /// Member entries one presence reply lists at most, whatever the dispatcher asks
    /// (the first by client id; the counts stay whole). Counted in
    /// `arqonbus_edge_presence_truncated_total` when it cuts a list.
    #[arg(
        long = "presence-max-members",
        env = "ARQONBUS_PRESENCE_MAX_MEMBERS",
        default_value_t = PRESENCE_MAX_MEMBERS,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
    )]
    pub presence_max_members: u32,

    /// Bytes one presence reply holds at most (connection counts, then channels with
    /// their members, filled in that order); never more than half the bus's message
    /// size, so a crowded room's reply is never dropped. Counted in
    /// `arqonbus_edge_presence_truncated_total`.
    #[arg(
        long = "presence-max-reply-bytes",
        env = "ARQONBUS_PRESENCE_MAX_REPLY_BYTES",
        default_value_t = PRESENCE_MAX_REPLY_BYTES,
        value_parser = clap::value_parser!(u32).range(65_536..=8_388_608),
    )]
    pub presence_max_reply_bytes: u32,

    /// How long the edge waits for the pipeline to answer one envelope before telling
    /// the client it timed out, in milliseconds.
    #[arg(
        long = "pipeline-timeout-ms",
        env = "ARQONBUS_PIPELINE_TIMEOUT_MS",
        default_value_t = PIPELINE_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub pipeline_timeout_ms: u64,

    /// Envelopes of one connection in the pipeline at once (ADR 022): the edge reads the
    /// connection's next frame while fewer are unanswered (or answered and not yet
    /// written), puts their answers back in order, and publishes their messages in that
    /// order. A command or a private message goes alone. 1: one at a time.
    #[arg(
        long = "pipeline-window",
        env = "ARQONBUS_PIPELINE_WINDOW",
        default_value_t = PIPELINE_WINDOW,
        value_parser = clap::value_parser!(u32).range(1..=1024),
    )]
    pub pipeline_window: u32,

    /// Bytes of one connection's frames in the pipeline at once (ADR 022): the edge reads
    /// the connection's next frame while its envelopes in flight (or answered and not yet
    /// written) add up to less. One frame may take it past, so a message of any accepted
    /// size always goes. Bounds what the edge holds for a connection (its envelopes, their
    /// answers and acknowledgements) to a few times this.
    #[arg(
        long = "pipeline-window-bytes",
        env = "ARQONBUS_PIPELINE_WINDOW_BYTES",
        default_value_t = PIPELINE_WINDOW_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=67_108_864),
    )]
    pub pipeline_window_bytes: u32,

    /// Send an envelope the live CASIL policy does not apply to (CASIL off, a kind it
    /// does not inspect, every target out of scope) straight to the dispatcher, skipping
    /// the policy stage. The edge follows the stored policy to decide, and sends every
    /// envelope through the stage whenever it cannot (ADR 019). Off: every envelope goes
    /// through the stage.
    #[arg(
        long = "policy-bypass",
        env = "ARQONBUS_POLICY_BYPASS",
        default_value_t = POLICY_BYPASS,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub policy_bypass: bool,
    /// Serve the admin console (`/console/`) on the WebSocket listener. Its pages are
    /// static files: nothing is readable without a token (docs/console.md).
    #[arg(
        long = "console",
        env = "ARQONBUS_CONSOLE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub console: bool,

    /// Accept the service token (`ARQONBUS_SERVICE_TOKEN`) from WebSocket clients, as the
    /// console's operator login: the connection gets the system authority in the tenant
    /// it names. Off by default: it makes the service token, otherwise only accepted by
    /// the gRPC APIs, good on the public WebSocket port too (ADR 020).
    #[arg(
        long = "console-operator-login",
        env = "ARQONBUS_CONSOLE_OPERATOR_LOGIN",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
    )]
    pub console_operator_login: bool,

    /// How long a connection opened with the service token lasts, in seconds (60 to
    /// 86400); then it is closed with 4001 like an expired token's, and the console
    /// connects again.
    #[arg(
        long = "console-operator-session-seconds",
        env = "ARQONBUS_CONSOLE_OPERATOR_SESSION_SECONDS",
        default_value_t = CONSOLE_OPERATOR_SESSION_SECONDS,
        value_parser = clap::value_parser!(u64).range(60..=86_400),
    )]
    pub console_operator_session_seconds: u64,

    /// Console feeds (`/console/feed`: CASIL decisions, dead webhook deliveries) open at
    /// once on this edge (1 to 10000); one more is refused with 503.
    #[arg(
        long = "console-max-feeds",
        env = "ARQONBUS_CONSOLE_MAX_FEEDS",
        default_value_t = CONSOLE_MAX_FEEDS,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub console_max_feeds: u32,

    /// Events one console feed forwards per second at most (1 to 10000); the rest are
    /// dropped, counted, and the feed says how many it dropped.
    #[arg(
        long = "console-feed-events-per-second",
        env = "ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND",
        default_value_t = CONSOLE_FEED_EVENTS_PER_SECOND,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
    )]
    pub console_feed_events_per_second: u32,

    /// The service token of the process (`ARQONBUS_SERVICE_TOKEN`, given by the process,
    /// not a flag of the edge): what `ARQONBUS_CONSOLE_OPERATOR_LOGIN` compares with.
    #[arg(skip)]
    pub service_token: Option<ServiceToken>,
}

impl Default for EdgeConfig {
    /// The flags' defaults: authentication on, HS256, and no secret yet.
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

impl EdgeConfig {
    /// Defaults with HS256 authentication on `secret`, for tests and embedding.
    pub fn with_secret(secret: impl Into<String>) -> Self {
        Self {
            jwt_algorithm: JwtAlgorithm::Hs256,
            jwt_secret: Some(secret.into()),
            ..Self::default()
        }
    }

    /// Checks the settings without touching the network (a JWKS is fetched only when the
    /// edge starts): a bad configuration stops the process before it connects anywhere.
    pub fn validate(&self) -> Result<(), EdgeError> {
        crate::auth::key_spec(self)?;
        crate::auth::operator::OperatorLogin::from_config(self)?;
        crate::auth::default_tenant(self).map(|_| ())
    }

    pub fn console_operator_session(&self) -> Duration {
        Duration::from_secs(self.console_operator_session_seconds)
    }

    pub fn pipeline_timeout(&self) -> Duration {
        Duration::from_millis(self.pipeline_timeout_ms)
    }

    pub fn write_stall_timeout(&self) -> Duration {
        Duration::from_secs(self.write_stall_timeout_seconds)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_seconds)
    }

    pub fn pong_timeout(&self) -> Duration {
        Duration::from_secs(self.pong_timeout_seconds)
    }

    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.jwt_leeway_seconds)
    }

    pub fn jwks_refresh(&self) -> Duration {
        Duration::from_secs(self.jwks_refresh_seconds)
    }
}
