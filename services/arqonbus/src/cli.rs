//! Command-line flags, each with an `ARQONBUS_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use arqon_bus::{NatsAuth, NatsOptions};
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
    #[command(flatten)]
    Run(Box<Service>),
    /// Prints the settings a command runs with (its flags, then its ARQONBUS_* variables,
    /// then the defaults) as an env file, or JSON with --json; secrets masked. E.g.
    /// `arqonbus config edge`.
    Config(Box<ConfigArgs>),
    /// Asks the service running here whether it is ready (GET /ready on its HTTP port):
    /// exit status 0 if it answers 200, 1 otherwise. For container health checks.
    Healthcheck(HealthcheckArgs),
}

/// The commands that run services.
#[derive(Debug, Subcommand)]
pub enum Service {
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

impl Service {
    /// The component's name (`standalone`, `edge`, …), in logs, traces and `/version`.
    pub fn component(&self) -> &'static str {
        match self {
            Service::Standalone(_) => "standalone",
            Service::Edge(_) => "edge",
            Service::Policy(_) => "policy",
            Service::Dispatcher(_) => "dispatcher",
            Service::Operators(_) => "operators",
        }
    }
}

/// Default of `ARQONBUS_HTTP_HOST`, `ARQONBUS_SERVER_HOST` and `ARQONBUS_GRPC_HOST`: this
/// host only (a container sets `0.0.0.0`).
const HOST: &str = "127.0.0.1";
/// Default of `ARQONBUS_HTTP_PORT`.
const HTTP_PORT: u16 = 8080;
/// Default of `ARQONBUS_SERVER_PORT`.
const WEBSOCKET_PORT: u16 = 9100;
/// Default of `ARQONBUS_GRPC_PORT`.
const GRPC_PORT: u16 = 9200;
/// Default of `ARQONBUS_JETSTREAM_REPLICAS`.
const JETSTREAM_REPLICAS: u8 = 1;
/// Default of `ARQONBUS_LOG_FORMAT`.
const LOG_FORMAT: &str = "text";
/// Default of `ARQONBUS_LOG_LEVEL`.
const LOG_LEVEL: &str = "info";
/// Default of `ARQONBUS_SHUTDOWN_GRACE_SECONDS`.
const SHUTDOWN_GRACE_SECONDS: u64 = 10;
/// Default of `arqonbus healthcheck --path`.
const HEALTHCHECK_PATH: &str = "/ready";
/// Default of `arqonbus healthcheck --timeout-seconds`.
const HEALTHCHECK_TIMEOUT_SECONDS: u64 = 3;

/// Where a process serves its HTTP endpoints.
#[derive(Debug, Clone, Args)]
pub struct HttpListen {
    /// Address of the HTTP endpoints (/health, /ready, /version, /metrics).
    #[arg(
        long = "http-host",
        env = "ARQONBUS_HTTP_HOST",
        default_value = HOST
    )]
    pub http_host: String,

    /// Port of the HTTP endpoints.
    #[arg(long = "http-port", env = "ARQONBUS_HTTP_PORT", default_value_t = HTTP_PORT)]
    pub http_port: u16,
}

impl HttpListen {
    pub fn addr(&self) -> String {
        join_host_port(&self.http_host, self.http_port)
    }

    /// Where a client on this host reaches the endpoints: a wildcard listener
    /// (`0.0.0.0`, `::`) is reached on loopback.
    pub fn local_url(&self) -> String {
        let host = match self.http_host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            Ok(ip) if ip.is_unspecified() => "::1".to_owned(),
            _ => self.http_host.clone(),
        };
        format!("http://{}", join_host_port(&host, self.http_port))
    }
}

/// Settings every service has.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// NATS server URL (e.g. nats://127.0.0.1:4222), or a comma-separated seed list of a
    /// cluster's servers. Required by every service but `standalone`, which uses an
    /// embedded bus without it.
    #[arg(long = "nats-url", env = "ARQONBUS_NATS_URL")]
    pub nats_url: Option<String>,

    /// Replicas of every JetStream stream and KV bucket the bus creates (1 to 5): 1 on a
    /// single NATS server, 3 on a three-node cluster. Existing ones are updated to it.
    #[arg(
        long = "jetstream-replicas",
        env = "ARQONBUS_JETSTREAM_REPLICAS",
        default_value_t = JETSTREAM_REPLICAS,
        value_parser = clap::value_parser!(u8).range(1..=5)
    )]
    pub jetstream_replicas: u8,

    #[command(flatten)]
    pub nats_auth: NatsAuthArgs,

    #[command(flatten)]
    pub http: HttpListen,

    /// `text` (human-readable) or `json` (one object per line, for containers).
    #[arg(
        long = "log-format",
        env = "ARQONBUS_LOG_FORMAT",
        default_value = LOG_FORMAT
    )]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `arqon_edge=debug,info`; `RUST_LOG` wins when set.
    #[arg(long = "log-level", env = "ARQONBUS_LOG_LEVEL", default_value = LOG_LEVEL)]
    pub log_level: String,

    /// The token callers of the gRPC APIs present (`authorization: Bearer <token>`), and
    /// the one a dispatcher presents to the policy service. Trusted for every tenant.
    #[arg(
        long = "service-token",
        env = "ARQONBUS_SERVICE_TOKEN",
        hide_env_values = true
    )]
    pub service_token: Option<ServiceToken>,

    /// After SIGTERM, how long to wait for connections and in-flight work to finish.
    #[arg(
        long = "shutdown-grace-seconds",
        env = "ARQONBUS_SHUTDOWN_GRACE_SECONDS",
        default_value_t = SHUTDOWN_GRACE_SECONDS
    )]
    pub shutdown_grace_seconds: u64,
}

/// Who the services are to NATS (at most one of user and password, token, NKey seed or
/// credentials file) and the TLS of the connection. The NATS account the services use must
/// not be one clients can publish with: anyone who can publish on `arqon.ingress.*` can
/// claim any tenant (docs/operations.md, "NATS").
#[derive(Debug, Clone, Args)]
pub struct NatsAuthArgs {
    /// The user name to NATS (with `--nats-password`).
    #[arg(long = "nats-user", env = "ARQONBUS_NATS_USER")]
    pub user: Option<String>,
    /// The password of `--nats-user`.
    #[arg(
        long = "nats-password",
        env = "ARQONBUS_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// A NATS authentication token.
    #[arg(
        long = "nats-token",
        env = "ARQONBUS_NATS_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// An NKey user seed (`SU…`).
    #[arg(
        long = "nats-nkey-seed",
        env = "ARQONBUS_NATS_NKEY_SEED",
        hide_env_values = true
    )]
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT and seed, for decentralized auth).
    #[arg(long = "nats-creds-file", env = "ARQONBUS_NATS_CREDS_FILE")]
    pub credentials_file: Option<PathBuf>,
    /// PEM CA certificates the server's certificate must chain to.
    #[arg(long = "nats-tls-ca-file", env = "ARQONBUS_NATS_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with the key).
    #[arg(long = "nats-tls-cert-file", env = "ARQONBUS_NATS_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--nats-tls-cert-file`.
    #[arg(long = "nats-tls-key-file", env = "ARQONBUS_NATS_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// Refuse a NATS server that does not offer TLS.
    #[arg(
        long = "nats-tls-required",
        env = "ARQONBUS_NATS_TLS_REQUIRED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub tls_required: bool,
}

impl NatsAuthArgs {
    pub fn auth(&self) -> NatsAuth {
        NatsAuth {
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey_seed: self.nkey_seed.clone(),
            credentials_file: self.credentials_file.clone(),
            tls_ca_file: self.tls_ca_file.clone(),
            tls_cert_file: self.tls_cert_file.clone(),
            tls_key_file: self.tls_key_file.clone(),
            tls_required: self.tls_required,
        }
    }
}

impl Common {
    pub fn http_addr(&self) -> String {
        self.http.addr()
    }

    /// How the process connects to NATS, named after its component.
    pub fn nats_options(&self, component: &str) -> NatsOptions {
        NatsOptions {
            jetstream_replicas: usize::from(self.jetstream_replicas),
            auth: self.nats_auth.auth(),
            ..NatsOptions::named(component)
        }
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
        default_value = HOST
    )]
    pub host: String,

    /// Port of the WebSocket listener.
    #[arg(long = "port", env = "ARQONBUS_SERVER_PORT", default_value_t = WEBSOCKET_PORT)]
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
    /// Address of the gRPC listener (bound only with a service token).
    #[arg(long = "grpc-host", env = "ARQONBUS_GRPC_HOST", default_value = HOST)]
    pub grpc_host: String,

    /// Port of the gRPC listener.
    #[arg(long = "grpc-port", env = "ARQONBUS_GRPC_PORT", default_value_t = GRPC_PORT)]
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

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print one JSON object (variable to value, null when unset) instead of
    /// `ARQONBUS_X=value` lines.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command whose settings to print; it takes the same flags.
    #[command(subcommand)]
    pub service: Service,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The HTTP endpoints of the service to ask (the same settings it runs with).
    #[command(flatten)]
    pub http: HttpListen,

    /// `/ready` (can it work now?) or `/health` (is the process up?).
    #[arg(long, default_value = HEALTHCHECK_PATH)]
    pub path: String,

    /// How long to wait for the answer.
    #[arg(long = "timeout-seconds", default_value_t = HEALTHCHECK_TIMEOUT_SECONDS)]
    pub timeout_seconds: u64,
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

    fn service(cli: Cli) -> Service {
        match cli.command {
            Command::Run(service) => *service,
            Command::Healthcheck(_) | Command::Config(_) => panic!("not a service"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_its_own_help() {
        let mut command = Cli::command();
        command.build();
        for sub in command.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} --{id} has no help",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn defaults_are_the_originals() {
        let cli = Cli::try_parse_from(["arqonbus", "standalone"]).unwrap();
        let Service::Standalone(args) = service(cli) else {
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
        assert!(!format!("{cli:?}").contains("s3cret"));
        let token = crate::Plan::from(service(cli))
            .common
            .service_token
            .clone()
            .unwrap();
        assert_eq!(token.expose(), "s3cret-token");
        let cli = Cli::try_parse_from(["arqonbus", "dispatcher"]).unwrap();
        assert!(
            crate::Plan::from(service(cli))
                .common
                .service_token
                .is_none()
        );
    }

    #[test]
    fn each_command_plans_its_services() {
        let plan = |args: &[&str]| {
            let args = ["arqonbus"].iter().chain(args).copied();
            crate::Plan::from(service(Cli::try_parse_from(args).unwrap()))
        };
        let standalone = plan(&["standalone", "--service-token", "a-long-service-token"]);
        let s = &standalone.services;
        assert!(standalone.standalone);
        assert!(s.edge.is_some() && s.policy.is_some() && s.dispatcher.is_some());
        assert!(s.operators.as_ref().unwrap().service_token.is_some());
        assert!(standalone.websocket.is_some() && standalone.grpc.is_some());
        let edge = plan(&["edge"]);
        assert_eq!(edge.component, "edge");
        assert!(!edge.standalone && edge.websocket.is_some() && edge.grpc.is_none());
        assert!(edge.services.edge.is_some() && edge.services.dispatcher.is_none());
        for (command, has) in [
            ("policy", [true, false, false]),
            ("dispatcher", [false, true, false]),
            ("operators", [false, false, true]),
        ] {
            let p = plan(&[command]);
            let s = &p.services;
            let got = [
                s.policy.is_some(),
                s.dispatcher.is_some(),
                s.operators.is_some(),
            ];
            assert_eq!(got, has, "{command}");
            assert!(!p.standalone && p.websocket.is_none() && p.grpc.is_some());
            assert!(s.edge.is_none());
        }
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
    fn jetstream_replicas_are_one_to_five() {
        let cli = Cli::try_parse_from(["arqonbus", "edge"]).unwrap();
        let options = crate::Plan::from(service(cli)).common.nats_options("edge");
        assert_eq!(options.jetstream_replicas, 1);
        assert_eq!(options.name, "edge");
        let cli = Cli::try_parse_from(["arqonbus", "policy", "--jetstream-replicas", "3"]).unwrap();
        let options = crate::Plan::from(service(cli))
            .common
            .nats_options("policy");
        assert_eq!(options.jetstream_replicas, 3);
        for bad in ["0", "6", "three"] {
            let err = Cli::try_parse_from(["arqonbus", "policy", "--jetstream-replicas", bad])
                .unwrap_err();
            assert!(err.to_string().contains("--jetstream-replicas"), "{err}");
        }
    }

    #[test]
    fn the_healthcheck_reaches_a_wildcard_listener_on_loopback() {
        let url = |host: &str| {
            HttpListen {
                http_host: host.to_owned(),
                http_port: 8080,
            }
            .local_url()
        };
        assert_eq!(url("0.0.0.0"), "http://127.0.0.1:8080");
        assert_eq!(url("::"), "http://[::1]:8080");
        assert_eq!(url("10.1.2.3"), "http://10.1.2.3:8080");
        assert_eq!(url("edge"), "http://edge:8080");
        let cli = Cli::try_parse_from(["arqonbus", "healthcheck", "--http-port", "9"]).unwrap();
        let Command::Healthcheck(args) = cli.command else {
            panic!("not healthcheck")
        };
        assert_eq!(args.http.local_url(), "http://127.0.0.1:9");
        assert_eq!(args.path, "/ready");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("localhost", 80), "localhost:80");
    }
}
