//! `arqon bench`: a load generator that reports what it measured, including its own CPU.

mod nats;
mod phases;
mod plan;
mod report;
mod system;
mod traffic;
mod ws;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arqon_sdk::token::{Claims, mint_hs256};

use phases::Transport as _;
use plan::{Pattern, Plan};
use report::{Cpu, Report};
use traffic::Counters;

/// What the benchmark talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportKind {
    /// The bus, over its WebSocket (`--ws-url`).
    Ws,
    /// NATS alone, the baseline: the same scenario with NATS clients only, nats-server
    /// as the "bus" (`--nats-url`). A connection is a client, a membership a
    /// subscription to `bench.<room>.<channel>`, a message a core publish.
    Nats,
}

/// How the benchmark publishes to the bus (`--transport ws`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Via {
    /// Through the WebSocket and the whole pipeline (edge, policy, dispatcher, edge).
    Ws,
    /// Straight to the rooms' NATS subjects: the edge's fan-out alone.
    Nats,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// What to measure: the bus, or NATS alone (the baseline) measured the same way.
    #[arg(long, value_enum, default_value = "ws")]
    transport: TransportKind,
    /// The bus's WebSocket URL.
    #[arg(
        long,
        env = "ARQONBUS_WS_URL",
        default_value = "ws://127.0.0.1:9100/ws"
    )]
    ws_url: String,
    /// Mint a token per connection with this HS256 secret (`--transport ws`).
    #[arg(long, env = "ARQONBUS_AUTH_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Use this token for every connection when there is no secret (`--transport ws`).
    #[arg(long, env = "ARQONBUS_AUTH_JWT", hide_env_values = true)]
    jwt: Option<String>,
    /// The tenant of minted tokens.
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 100)]
    connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    #[arg(long, value_enum, default_value = "one-room")]
    pattern: Pattern,
    /// Connections per room with `--pattern rooms`.
    #[arg(long, default_value_t = 10)]
    room_size: usize,
    /// Channels each connection joins (the traffic channel plus idle ones); 0 joins
    /// nothing (bare connections).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Publishers with `--pattern one-room`.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Messages per second over all publishers; 0 for as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Unacknowledged messages per WebSocket publisher. Does not apply to `--transport
    /// nats` or `--via nats`: nothing acknowledges a core NATS publish.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Without `--rate`: messages per publisher whose deliveries may be on their way at
    /// once; publishers wait beyond it, so "as fast as possible" is a rate the bus
    /// sustains.
    #[arg(long, default_value_t = 16)]
    window: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    payload_size: usize,
    /// Seconds of publishing; 0 to only connect and join.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// How messages reach the bus with `--transport ws`; `--transport nats` always
    /// publishes from its NATS connections.
    #[arg(long, value_enum, default_value = "ws")]
    via: Via,
    /// NATS URL for `--transport nats` and `--via nats`.
    #[arg(long, env = "ARQONBUS_NATS_URL")]
    nats_url: Option<String>,
    /// Seconds to hold the connections idle after joining (before publishing).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// The server's process id: its resident memory is reported before connecting and
    /// after joining.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl BenchArgs {
    fn token(&self, n: usize) -> anyhow::Result<Option<String>> {
        match (&self.secret, &self.jwt) {
            (Some(secret), _) => {
                let claims = Claims::new(
                    &format!("bench-{n}"),
                    &self.tenant,
                    "user",
                    Duration::from_secs(24 * 3600),
                );
                Ok(Some(mint_hs256(secret.as_bytes(), &claims)?))
            }
            (None, Some(jwt)) => Ok(Some(jwt.clone())),
            (None, None) => Ok(None),
        }
    }
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let cpu_start = system::cpu_seconds();
    let wall_start = Instant::now();
    let plan = Plan::new(
        args.pattern,
        args.connections,
        args.room_size,
        args.publishers,
        args.channels,
    );
    let counters = Arc::new(Counters::default());
    let (target, measured) = match args.transport {
        TransportKind::Ws => {
            let ws = ws::Ws::new(&args)?;
            let measured = phases::measure(&ws, &args, &plan, Arc::clone(&counters)).await?;
            (ws.target(), measured)
        }
        TransportKind::Nats => {
            let nats = nats::Nats::new(&args, &plan, Arc::clone(&counters))?;
            let measured = phases::measure(&nats, &args, &plan, Arc::clone(&counters)).await?;
            (nats.target(), measured)
        }
    };
    if let Some(first) = counters.first_error() {
        eprintln!(
            "arqon: {} errors; the first: {first}",
            counters.errors.load(Ordering::Relaxed)
        );
    }

    let cpu_seconds = match (cpu_start, system::cpu_seconds()) {
        (Some(start), Some(end)) => end - start,
        _ => 0.0,
    };
    let report = Report {
        target,
        pattern: args.pattern,
        connections: measured.connections,
        joins: measured.joins,
        memory: measured.memory,
        traffic: measured.traffic,
        client_cpu: Cpu {
            seconds: cpu_seconds,
            cores: cpu_seconds / wall_start.elapsed().as_secs_f64().max(f64::EPSILON),
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
