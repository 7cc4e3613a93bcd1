//! `arqon bench`: a load generator that reports what it measured, including its own CPU.

mod conn;
mod plan;
mod report;
mod system;
mod traffic;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Semaphore, watch};

use arqon_protocol::{ChannelName, RoomName, TenantId, Topic, subject};
use arqon_sdk::token::{Claims, mint_hs256};

use conn::Socket;
use plan::{Pattern, Plan, TRAFFIC_CHANNEL};
use report::{Cpu, Latency, Memory, Phase, Report, Traffic};
use traffic::{Counters, Job, Latencies, Pace, Reader};

/// How the benchmark publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Via {
    /// Through the WebSocket and the whole pipeline (edge, policy, dispatcher, edge).
    Ws,
    /// Straight to the rooms' NATS subjects: the edge's fan-out alone.
    Nats,
}

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// The bus's WebSocket URL.
    #[arg(
        long,
        env = "ARQONBUS_WS_URL",
        default_value = "ws://127.0.0.1:9100/ws"
    )]
    ws_url: String,
    /// Mint a token per connection with this HS256 secret.
    #[arg(long, env = "ARQONBUS_AUTH_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Use this token for every connection (when there is no secret).
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
    /// Unacknowledged messages per WebSocket publisher.
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
    #[arg(long, value_enum, default_value = "ws")]
    via: Via,
    /// NATS URL for `--via nats`.
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

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({per_sec})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

fn phase(done: usize, failed: usize, elapsed: Duration) -> Phase {
    let seconds = elapsed.as_secs_f64();
    Phase {
        done: done as u64,
        failed: failed as u64,
        seconds,
        per_second: if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        },
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
    let rss_before = args.server_pid.and_then(system::rss_kib);

    // Connect.
    let tokens: Vec<Option<String>> = (0..args.connections)
        .map(|n| args.token(n))
        .collect::<Result<_, _>>()?;
    let bar = progress(args.connections, "connecting");
    let started = Instant::now();
    let results: Vec<anyhow::Result<Socket>> = stream::iter(tokens)
        .map(|token| {
            let (url, bar) = (args.ws_url.clone(), bar.clone());
            async move {
                let socket = conn::connect(&url, token.as_deref()).await;
                bar.inc(1);
                socket
            }
        })
        .buffered(args.connect_concurrency.max(1))
        .collect()
        .await;
    let connect_time = started.elapsed();
    bar.finish_and_clear();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("arqon: {failed} connections failed; the first: {e:#}");
    }
    let connections = phase(args.connections - failed, failed, connect_time);
    let mut sockets: Vec<Socket> = results
        .into_iter()
        .collect::<Result<_, _>>()
        .context("connecting")?;

    // Join.
    let bar = progress(sockets.len(), "joining");
    let started = Instant::now();
    let joins: Vec<anyhow::Result<Socket>> = stream::iter(sockets.drain(..).enumerate())
        .map(|(i, mut socket)| {
            let room = plan.room_of[i].clone();
            let extra = plan.extra_channels.clone();
            let bar = bar.clone();
            let joins = plan.joins;
            async move {
                if !joins {
                    return Ok(socket);
                }
                conn::join(&mut socket, &room, TRAFFIC_CHANNEL).await?;
                for channel in &extra {
                    conn::join(&mut socket, &room, channel).await?;
                }
                bar.inc(1);
                Ok(socket)
            }
        })
        .buffered(args.connect_concurrency.max(1))
        .collect()
        .await;
    let join_time = started.elapsed();
    bar.finish_and_clear();
    let sockets: Vec<Socket> = joins
        .into_iter()
        .collect::<Result<_, _>>()
        .context("joining")?;
    let joined = if plan.joins {
        sockets.len() * (1 + plan.extra_channels.len())
    } else {
        0
    };
    let joins = phase(joined, 0, join_time);

    if args.hold > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    let memory = match (args.server_pid, rss_before) {
        (Some(pid), Some(before)) => system::rss_kib(pid).map(|after| Memory {
            server_rss_before_kib: before,
            server_rss_after_kib: after,
            per_connection_kib: after.saturating_sub(before) as f64 / sockets.len().max(1) as f64,
        }),
        _ => None,
    };

    let traffic = if args.duration > 0.0 {
        Some(publish(&args, &plan, sockets).await?)
    } else {
        drop(sockets);
        None
    };

    let cpu_seconds = match (cpu_start, system::cpu_seconds()) {
        (Some(start), Some(end)) => end - start,
        _ => 0.0,
    };
    let report = Report {
        target: args.ws_url.clone(),
        pattern: args.pattern,
        connections,
        joins,
        memory,
        traffic,
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

async fn publish(args: &BenchArgs, plan: &Plan, sockets: Vec<Socket>) -> anyhow::Result<Traffic> {
    let run = format!("{:016x}", rand_run_id());
    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Latencies::new()?);
    // Publishers stop first; readers once the last messages have arrived.
    let (stop_publishing, publishing_stopped) = watch::channel(false);
    let (stop_reading, reading_stopped) = watch::channel(false);
    let ws_publishers: Vec<usize> = if args.via == Via::Ws {
        plan.publishers.clone()
    } else {
        Vec::new()
    };
    let publisher_count = match args.via {
        Via::Ws => ws_publishers.len(),
        Via::Nats => plan.nats_targets.len(),
    };
    let recipients_per_message = match args.via {
        Via::Ws => ws_publishers
            .iter()
            .map(|&i| plan.recipients(&plan.room_of[i], true))
            .max(),
        Via::Nats => plan
            .nats_targets
            .iter()
            .map(|room| plan.recipients(room, false))
            .max(),
    }
    .unwrap_or(1);
    let pace = Pace {
        rate: (args.rate > 0.0).then(|| args.rate / publisher_count.max(1) as f64),
        in_flight: args.in_flight.max(1),
        window: args.window.max(1) * recipients_per_message * publisher_count.max(1) as u64,
    };

    let mut readers = Vec::new();
    let mut sinks = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let (sink, stream) = socket.split();
        let publishes = ws_publishers.contains(&i);
        let permits = publishes.then(|| Arc::new(Semaphore::new(pace.in_flight)));
        let reader = Reader {
            index: i,
            run: run.clone(),
            recipients: if publishes {
                plan.recipients(&plan.room_of[i], true)
            } else {
                0
            },
            permits: permits.clone(),
        };
        readers.push(tokio::spawn(traffic::read(
            stream,
            reader,
            Arc::clone(&counters),
            Arc::clone(&latencies),
            reading_stopped.clone(),
        )));
        sinks.push((i, sink, permits));
    }

    let started = Instant::now();
    let mut publishers = Vec::new();
    let mut idle_sinks = Vec::new();
    for (i, sink, permits) in sinks {
        match permits {
            Some(permits) => publishers.push(tokio::spawn(traffic::publish_ws(
                sink,
                Job {
                    room: plan.room_of[i].clone(),
                    recipients: plan.recipients(&plan.room_of[i], true),
                    run: run.clone(),
                    size: args.payload_size,
                    pace,
                    counters: Arc::clone(&counters),
                    stop: publishing_stopped.clone(),
                },
                permits,
            ))),
            None => idle_sinks.push(sink),
        }
    }
    let mut nats_tasks = Vec::new();
    if args.via == Via::Nats {
        let url = args
            .nats_url
            .as_deref()
            .context("--via nats needs --nats-url")?;
        let bus = arqon_bus::Bus::connect_nats(url, arqon_bus::NatsOptions::default()).await?;
        let tenant = TenantId::parse(&args.tenant).map_err(|e| anyhow::anyhow!("{e}"))?;
        for room in &plan.nats_targets {
            let topic = Topic::new(
                RoomName::parse(room).map_err(|e| anyhow::anyhow!("{e}"))?,
                ChannelName::parse(TRAFFIC_CHANNEL).map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            let job = Job {
                room: room.clone(),
                recipients: plan.recipients(room, false),
                run: run.clone(),
                size: args.payload_size,
                pace,
                counters: Arc::clone(&counters),
                stop: publishing_stopped.clone(),
            };
            nats_tasks.push(tokio::spawn(traffic::publish_nats(
                bus.clone(),
                subject::room(&tenant, &topic),
                job,
            )));
        }
    }

    let bar = ProgressBar::new_spinner();
    let publishing = Duration::from_secs_f64(args.duration);
    while started.elapsed() < publishing {
        tokio::time::sleep(Duration::from_millis(200)).await;
        bar.set_message(format!(
            "{} sent, {} delivered",
            counters.sent.load(Ordering::Relaxed),
            counters.delivered()
        ));
    }
    bar.finish_and_clear();
    let publish_time = started.elapsed();
    // Stop the publishers (bounded: one may be stuck writing to a server that stopped
    // reading), then give the last messages time to arrive.
    let _ = stop_publishing.send(true);
    for task in publishers {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    for task in nats_tasks {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), task).await {
            eprintln!("arqon: a NATS publisher failed: {e:#}");
        }
    }
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    let mut last = counters.delivered();
    let mut last_progress = Instant::now();
    while Instant::now() < drain_deadline {
        let delivered = counters.delivered();
        let answered =
            counters.acked.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed);
        if delivered >= counters.expected.load(Ordering::Relaxed)
            && answered >= counters.sent.load(Ordering::Relaxed)
        {
            last_progress = Instant::now();
            break;
        }
        if delivered != last {
            last = delivered;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_reading.send(true);
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    drop(idle_sinks);
    let histogram = latencies.merged()?;
    let sent = counters.sent.load(Ordering::Relaxed);
    let delivered = counters.delivered();
    let expected = counters.expected.load(Ordering::Relaxed);
    // From the first publish to the last delivery (or the end of the drain).
    let seconds = (last_progress - started)
        .as_secs_f64()
        .max(publish_time.as_secs_f64());
    Ok(Traffic {
        via: format!("{:?}", args.via).to_lowercase(),
        publishers: publisher_count,
        payload_bytes: args.payload_size,
        seconds,
        sent,
        acked: counters.acked.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        expected_deliveries: expected,
        delivered,
        lost: expected.saturating_sub(delivered),
        messages_per_second: sent as f64 / seconds,
        deliveries_per_second: delivered as f64 / seconds,
        latency_us: Latency {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
            mean: histogram.mean(),
        },
    })
}

fn rand_run_id() -> u64 {
    // Unique enough to tell this run's messages from anything else on the bus.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ u64::from(std::process::id()) << 32
}
