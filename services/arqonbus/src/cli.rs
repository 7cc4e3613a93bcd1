//! Command-line flags, each with an `ARQONBUS_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use arqon_dispatcher::{DispatcherConfig, ServiceToken};
use arqon_edge::EdgeConfig;
use arqon_operators::OperatorsConfig;
use arqon_policy::PolicyConfig;
use arqon_telemetry::LogFormat;

/// ArqonBus: a real-time message bus for people, services and AI agents.
#[derive(Debug, Parser)]
#[command(name = "arqonbus", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs all four services in one process, on an embedded bus unless a NATS URL is set.
    Standalone(Box<StandaloneArgs>),
    /// Runs the WebSocket edge (needs NATS).
    Edge(EdgeArgs),
    /// Runs the policy stage (needs NATS).
    Policy(PolicyArgs),
    /// Runs the dispatcher (needs NATS).
    Dispatcher(DispatcherArgs),
    /// Runs the operators service (needs NATS).
    Operators(OperatorsArgs),
}

impl Command {
    pub fn common(&self) -> &Common {
        match self {
            Command::Standalone(a) => &a.common,
            Command::Edge(a) => &a.common,
            Command::Policy(a) => &a.common,
            Command::Dispatcher(a) => &a.common,
            Command::Operators(a) => &a.common,
        }
    }
}

/// Settings every service has.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// NATS server URL (e.g. nats://127.0.0.1:4222). Required by every service but
    /// `standalone`, which uses an embedded bus without it.
    #[arg(long = "nats-url", env = "ARQONBUS_NATS_URL")]
    pub nats_url: Option<String>,

    /// Address of the HTTP endpoints (/health, /ready, /version).
    #[arg(
        long = "http-host",
        env = "ARQONBUS_HTTP_HOST",
        default_value = "127.0.0.1"
    )]
    pub http_host: String,

    #[arg(long = "http-port", env = "ARQONBUS_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// `text` (human-readable) or `json` (one object per line, for containers).
    #[arg(
        long = "log-format",
        env = "ARQONBUS_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `arqon_edge=debug,info`; `RUST_LOG` wins when set.
    #[arg(long = "log-level", env = "ARQONBUS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// After SIGTERM, how long to wait for connections and in-flight work to finish.
    /// The token callers of the gRPC APIs present (`authorization: Bearer <token>`), and
    /// the one a dispatcher presents to the policy service. Trusted for every tenant.
    #[arg(
        long = "service-token",
        env = "ARQONBUS_SERVICE_TOKEN",
        hide_env_values = true
    )]
    pub service_token: Option<ServiceToken>,

    #[arg(
        long = "shutdown-grace-seconds",
        env = "ARQONBUS_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10
    )]
    pub shutdown_grace_seconds: u64,
}

impl Common {
    pub fn http_addr(&self) -> String {
        join_host_port(&self.http_host, self.http_port)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

/// Where clients connect.
#[derive(Debug, Clone, Args)]
pub struct WebSocketListen {
    /// Address of the WebSocket listener.
    #[arg(
        long = "host",
        env = "ARQONBUS_SERVER_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,

    #[arg(long = "port", env = "ARQONBUS_SERVER_PORT", default_value_t = 9100)]
    pub port: u16,
}

impl WebSocketListen {
    pub fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// Where the process serves the gRPC APIs of its services (`arqon.dispatcher.v1.Bus`,
/// `arqon.policy.v1.Policy`). Bound only when a service token is configured
/// (`ARQONBUS_SERVICE_TOKEN`); without one the APIs are off.
#[derive(Debug, Clone, Args)]
pub struct GrpcListen {
    #[arg(
        long = "grpc-host",
        env = "ARQONBUS_GRPC_HOST",
        default_value = "127.0.0.1"
    )]
    pub grpc_host: String,

    #[arg(long = "grpc-port", env = "ARQONBUS_GRPC_PORT", default_value_t = 9200)]
    pub grpc_port: u16,
}

impl GrpcListen {
    pub fn addr(&self) -> String {
        join_host_port(&self.grpc_host, self.grpc_port)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

#[derive(Debug, Clone, Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub listen: WebSocketListen,
    #[command(flatten)]
    pub edge: EdgeConfig,
    #[command(flatten)]
    pub policy: PolicyConfig,
    #[command(flatten)]
    pub dispatcher: DispatcherConfig,
    #[command(flatten)]
    pub operators: OperatorsConfig,
    #[command(flatten)]
    pub grpc: GrpcListen,
}

#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub listen: WebSocketListen,
    #[command(flatten)]
    pub edge: EdgeConfig,
}

#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub policy: PolicyConfig,
    #[command(flatten)]
    pub grpc: GrpcListen,
}

#[derive(Debug, Clone, Args)]
pub struct DispatcherArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub dispatcher: DispatcherConfig,
    #[command(flatten)]
    pub grpc: GrpcListen,
}

#[derive(Debug, Clone, Args)]
pub struct OperatorsArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub operators: OperatorsConfig,
    #[command(flatten)]
    pub grpc: GrpcListen,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_originals() {
        let cli = Cli::try_parse_from(["arqonbus", "standalone"]).unwrap();
        let Command::Standalone(args) = cli.command else {
            panic!("not standalone")
        };
        assert_eq!(args.listen.addr(), "127.0.0.1:9100");
        assert_eq!(args.common.http_addr(), "127.0.0.1:8080");
        assert!(args.edge.enable_auth);
        assert_eq!(args.edge.max_message_size, 1_048_576);
    }

    #[test]
    fn the_service_token_is_a_flag_and_is_never_printed() {
        let cli =
            Cli::try_parse_from(["arqonbus", "policy", "--service-token", "s3cret-token"]).unwrap();
        let token = cli.command.common().service_token.clone().unwrap();
        assert_eq!(token.expose(), "s3cret-token");
        assert!(!format!("{cli:?}").contains("s3cret"));
        let cli = Cli::try_parse_from(["arqonbus", "dispatcher"]).unwrap();
        assert!(cli.command.common().service_token.is_none());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err =
            Cli::try_parse_from(["arqonbus", "edge", "--max-message-size", "10"]).unwrap_err();
        assert!(err.to_string().contains("--max-message-size"), "{err}");
        let err = Cli::try_parse_from(["arqonbus", "edge", "--enable-auth", "maybe"]).unwrap_err();
        assert!(err.to_string().contains("--enable-auth"), "{err}");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("localhost", 80), "localhost:80");
    }
}
