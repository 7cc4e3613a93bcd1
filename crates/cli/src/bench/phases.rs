//! The phases of a run (connect, join, hold, publish, drain), the same code whatever the
//! transport: what differs (the bus over its WebSocket, or NATS alone) is behind
//! [`Transport`], so the figures of both are measured the same way.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt;
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::BenchArgs;
use super::plan::{Plan, TRAFFIC_CHANNEL};
use super::report::{Latency, Memory, Phase, Traffic};
use super::system;
use super::traffic::{self, Counters, Job, Latencies, Outlet, Pace, Reader};

/// Bound on stopping the publishers, then the readers: one may be stuck writing to a
/// server that stopped reading.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on waiting for the last deliveries after the publishers stopped...
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and on waiting while none arrives.
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// How the benchmark reaches a bus: connections, memberships, and the bytes in and out.
pub(crate) trait Transport {
    /// One connection and its memberships.
    type Conn: Send + 'static;
    /// A publishing connection's way out.
    type Outlet: Outlet + 'static;

    /// What the report names as the target.
    fn target(&self) -> String;

    /// How messages are published, as the report says it.
    fn via(&self) -> &'static str;

    /// Opens connection number `index`.
    async fn connect(&self, index: usize) -> anyhow::Result<Self::Conn>;

    /// Joins `room:channel` and waits until the server confirms it.
    async fn join(&self, conn: &mut Self::Conn, room: &str, channel: &str) -> anyhow::Result<()>;

    /// Who publishes: by default the connections the plan picks.
    fn senders(&self, plan: &Plan) -> Vec<Sender> {
        plan.publishers.iter().map(|&i| Sender::Member(i)).collect()
    }

    /// Spawns the reader of `conn` (a member of `room`) into `readers`; when it
    /// publishes (`recipients` receive each of its messages), hands back its outlet.
    fn start(
        &self,
        conn: Self::Conn,
        room: &str,
        reader: Reader,
        recipients: Option<u64>,
        readers: &mut JoinSet<anyhow::Result<()>>,
    ) -> Option<Self::Outlet>;

    /// Spawns the publishers that are no connection ([`Sender::Room`]).
    async fn start_room_publishers(
        &self,
        jobs: Vec<(String, Job)>,
        publishers: &mut JoinSet<anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let _ = publishers;
        if jobs.is_empty() {
            Ok(())
        } else {
            bail!("{} publishes from its connections only", self.target())
        }
    }
}

/// A publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sender {
    /// Connection `i`, to its own room: everyone else in it receives.
    Member(usize),
    /// A room, from outside: every member receives.
    Room(String),
}

impl Sender {
    fn recipients(&self, plan: &Plan) -> u64 {
        match self {
            Sender::Member(i) => plan.recipients(&plan.room_of[*i], true),
            Sender::Room(room) => plan.recipients(room, false),
        }
    }
}

/// What a run measured, before the CPU and the target make it a report.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) connections: Phase,
    pub(crate) joins: Phase,
    pub(crate) memory: Option<Memory>,
    pub(crate) traffic: Option<Traffic>,
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

/// Connects, joins, holds, publishes and drains.
pub(crate) async fn measure<T: Transport>(
    transport: &T,
    args: &BenchArgs,
    plan: &Plan,
    counters: Arc<Counters>,
) -> anyhow::Result<Measured> {
    let rss_before = args.server_pid.and_then(system::rss_kib);
    let concurrency = args.connect_concurrency.max(1);

    // Connect.
    let bar = progress(args.connections, "connecting");
    let started = Instant::now();
    let results: Vec<anyhow::Result<T::Conn>> = stream::iter(0..args.connections)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let conn = transport.connect(i).await;
                bar.inc(1);
                conn
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    let connect_time = started.elapsed();
    bar.finish_and_clear();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        eprintln!("arqon: {failed} connections failed; the first: {e:#}");
    }
    let connections = phase(args.connections - failed, failed, connect_time);
    let conns: Vec<T::Conn> = results
        .into_iter()
        .collect::<Result<_, _>>()
        .context("connecting")?;

    // Join: the traffic channel, then the idle ones.
    let bar = progress(conns.len(), "joining");
    let started = Instant::now();
    let joined: Vec<anyhow::Result<T::Conn>> = stream::iter(conns.into_iter().enumerate())
        .map(|(i, mut conn)| {
            let bar = bar.clone();
            async move {
                if !plan.joins {
                    return Ok(conn);
                }
                let room = &plan.room_of[i];
                let channels = std::iter::once(TRAFFIC_CHANNEL)
                    .chain(plan.extra_channels.iter().map(String::as_str));
                for channel in channels {
                    transport.join(&mut conn, room, channel).await?;
                }
                bar.inc(1);
                Ok(conn)
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    let join_time = started.elapsed();
    bar.finish_and_clear();
    let conns: Vec<T::Conn> = joined
        .into_iter()
        .collect::<Result<_, _>>()
        .context("joining")?;
    let memberships = if plan.joins {
        conns.len() * (1 + plan.extra_channels.len())
    } else {
        0
    };
    let joins = phase(memberships, 0, join_time);

    if args.hold > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    }
    let memory = match (args.server_pid, rss_before) {
        (Some(pid), Some(before)) => system::rss_kib(pid).map(|after| Memory {
            server_rss_before_kib: before,
            server_rss_after_kib: after,
            per_connection_kib: after.saturating_sub(before) as f64 / conns.len().max(1) as f64,
        }),
        _ => None,
    };

    let traffic = if args.duration > 0.0 {
        Some(publish(transport, args, plan, counters, conns).await?)
    } else {
        None
    };
    Ok(Measured {
        connections,
        joins,
        memory,
        traffic,
    })
}

async fn publish<T: Transport>(
    transport: &T,
    args: &BenchArgs,
    plan: &Plan,
    counters: Arc<Counters>,
    conns: Vec<T::Conn>,
) -> anyhow::Result<Traffic> {
    let run = format!("{:016x}", rand_run_id());
    let latencies = Arc::new(Latencies::new()?);
    // Publishers stop first; readers once the last messages have arrived.
    let (stop_publishing, publishing_stopped) = watch::channel(false);
    let (stop_reading, reading_stopped) = watch::channel(false);
    let senders = transport.senders(plan);
    let publisher_count = senders.len();
    let recipients_per_message = senders
        .iter()
        .map(|sender| sender.recipients(plan))
        .max()
        .unwrap_or(1);
    let pace = Pace {
        rate: (args.rate > 0.0).then(|| args.rate / publisher_count.max(1) as f64),
        window: args.window.max(1) * recipients_per_message * publisher_count.max(1) as u64,
    };
    let job = |recipients| Job {
        recipients,
        run: run.clone(),
        size: args.payload_size,
        pace,
        counters: Arc::clone(&counters),
        stop: publishing_stopped.clone(),
    };

    // Every reader runs before the first message goes out.
    let mut member_recipients = vec![None; conns.len()];
    let mut room_jobs = Vec::new();
    for sender in &senders {
        match sender {
            Sender::Member(i) => {
                if let Some(slot) = member_recipients.get_mut(*i) {
                    *slot = Some(sender.recipients(plan));
                }
            }
            Sender::Room(room) => room_jobs.push((room.clone(), job(sender.recipients(plan)))),
        }
    }
    let mut readers = JoinSet::new();
    let mut outlets = Vec::new();
    for (i, conn) in conns.into_iter().enumerate() {
        let reader = Reader {
            index: i,
            run: run.clone(),
            counters: Arc::clone(&counters),
            latencies: Arc::clone(&latencies),
            stop: reading_stopped.clone(),
        };
        let recipients = member_recipients[i];
        if let Some(outlet) =
            transport.start(conn, &plan.room_of[i], reader, recipients, &mut readers)
        {
            outlets.push((outlet, recipients.unwrap_or_default()));
        }
    }

    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for (outlet, recipients) in outlets {
        publishers.spawn(traffic::publish(outlet, job(recipients)));
    }
    transport
        .start_room_publishers(room_jobs, &mut publishers)
        .await?;

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
    let _ = stop_publishing.send(true);
    stop(publishers, "publishers").await;
    let last_progress = drain(&counters).await;
    let _ = stop_reading.send(true);
    stop(readers, "readers").await;

    let histogram = latencies.merged()?;
    let sent = counters.sent.load(Ordering::Relaxed);
    let delivered = counters.delivered();
    let expected = counters.expected.load(Ordering::Relaxed);
    // From the first publish to the last delivery (or the end of the drain).
    let seconds = (last_progress - started)
        .as_secs_f64()
        .max(publish_time.as_secs_f64());
    Ok(Traffic {
        via: transport.via().to_owned(),
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

/// Waits (bounded) for the tasks told to stop, aborts the stragglers, and says how many
/// failed and why the first did.
async fn stop(mut tasks: JoinSet<anyhow::Result<()>>, what: &str) {
    let mut failed = 0;
    let mut first = None;
    let joined = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some(result) = tasks.join_next().await {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("{e}"),
            };
            failed += 1;
            first.get_or_insert(error);
        }
    })
    .await;
    if joined.is_err() {
        failed += tasks.len();
        first.get_or_insert(anyhow::anyhow!("did not stop within {STOP_TIMEOUT:?}"));
        tasks.shutdown().await;
    }
    if let Some(first) = first {
        eprintln!("arqon: {failed} {what} failed; the first: {first:#}");
    }
}

/// Waits until every expected delivery has arrived and every publish was answered, or
/// none arrived for a while; hands back when the last one did.
async fn drain(counters: &Counters) -> Instant {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut last = counters.delivered();
    let mut last_progress = Instant::now();
    while Instant::now() < deadline {
        let delivered = counters.delivered();
        let answered =
            counters.acked.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed);
        if delivered >= counters.expected.load(Ordering::Relaxed)
            && answered >= counters.sent.load(Ordering::Relaxed)
        {
            return Instant::now();
        }
        if delivered != last {
            last = delivered;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > DRAIN_IDLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last_progress
}

fn rand_run_id() -> u64 {
    // Unique enough to tell this run's messages from anything else on the bus.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ u64::from(std::process::id()) << 32
}
