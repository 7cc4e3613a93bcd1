//! NATS alone (`--transport nats`), the baseline the bus is compared with: the same
//! scenario with nats-server as the whole "bus". Each connection is an `async-nats`
//! client, each membership a subscription to `bench.<room>.<channel>`, and publishers
//! send core NATS messages with the same payload as over the WebSocket.
//!
//! Like the bus, which sends no message back to its sender, the clients connect with
//! `no_echo`. Messages a client drops because a subscription is full (slow consumers),
//! disconnections and server errors count as errors in the report.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_nats::{Client, Event, RequestErrorKind, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinSet;

use super::BenchArgs;
use super::phases::Transport;
use super::plan::{Plan, TRAFFIC_CHANNEL};
use super::traffic::{Counters, Outlet, Reader};

/// The first token of every subject the benchmark uses.
const SUBJECT_PREFIX: &str = "bench";
/// Where a join's round trip goes. Nobody subscribes to it, so the server answers "no
/// responders", and only after it has processed what the client sent before: the
/// subscription is then in place for every later publish.
const JOIN_PROBE_SUBJECT: &str = "bench.joined";
/// Bounds each step of setting a connection up, and the last flush.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages a subscription buffers before the client drops them (a slow consumer): at
/// least async-nats's default, at most this many...
const MIN_SUBSCRIPTION_CAPACITY: usize = 1 << 16;
const MAX_SUBSCRIPTION_CAPACITY: usize = 1 << 22;
/// Commands (publishes, subscriptions) queued in a client before `publish` waits: a
/// bound, never a loss.
const CLIENT_CAPACITY: usize = 8192;

/// The subject of `room:channel`.
fn subject(room: &str, channel: &str) -> String {
    format!("{SUBJECT_PREFIX}.{room}.{channel}")
}

/// nats-server alone (`--transport nats`).
#[derive(Debug)]
pub(crate) struct Nats {
    url: String,
    subscription_capacity: usize,
    counters: Arc<Counters>,
}

impl Nats {
    pub(crate) fn new(
        args: &BenchArgs,
        plan: &Plan,
        counters: Arc<Counters>,
    ) -> anyhow::Result<Self> {
        let url = args
            .nats_url
            .clone()
            .context("--transport nats needs --nats-url")?;
        Ok(Self {
            url,
            subscription_capacity: subscription_capacity(args.window, plan),
            counters,
        })
    }
}

/// Without a rate, the delivery window bounds the deliveries on their way (plus one
/// message per publisher between looking at the window and sending), and all of them
/// could wait at one subscription: buffering that many, no message is dropped. With a
/// rate (open loop) nothing bounds it; the client drops beyond the capacity and counts
/// the drops as slow-consumer errors.
fn subscription_capacity(window: u64, plan: &Plan) -> usize {
    let publishers = plan.publishers.len().max(1) as u64;
    let recipients = plan
        .publishers
        .iter()
        .map(|&i| plan.recipients(&plan.room_of[i], true))
        .max()
        .unwrap_or(1)
        .max(1);
    let bound = (window.max(1) + 1)
        .saturating_mul(recipients)
        .saturating_mul(publishers);
    usize::try_from(bound)
        .unwrap_or(usize::MAX)
        .clamp(MIN_SUBSCRIPTION_CAPACITY, MAX_SUBSCRIPTION_CAPACITY)
}

/// One client and its memberships.
#[derive(Debug)]
pub(crate) struct Member {
    client: Client,
    /// The traffic channel's subscription (none when connections join nothing).
    traffic: Option<Subscriber>,
    /// The extra channels' subscriptions: held, never read.
    idle: Vec<Subscriber>,
}

fn record(counters: &Counters, index: usize, event: Event) {
    match event {
        Event::SlowConsumer(_)
        | Event::Disconnected
        | Event::ServerError(_)
        | Event::ClientError(_) => counters.error(|| format!("NATS connection {index}: {event}")),
        Event::Connected | Event::LameDuckMode | Event::Draining | Event::Closed => {}
    }
}

impl Transport for Nats {
    type Conn = Member;
    type Outlet = NatsOutlet;

    fn target(&self) -> String {
        format!("{} (NATS alone)", self.url)
    }

    fn via(&self) -> &'static str {
        "nats"
    }

    async fn connect(&self, index: usize) -> anyhow::Result<Member> {
        let counters = Arc::clone(&self.counters);
        let options = async_nats::ConnectOptions::new()
            .name(format!("arqon-bench-{index}"))
            .no_echo()
            .subscription_capacity(self.subscription_capacity)
            .client_capacity(CLIENT_CAPACITY)
            .connection_timeout(STEP_TIMEOUT)
            .request_timeout(Some(STEP_TIMEOUT))
            .event_callback(move |event| {
                record(&counters, index, event);
                async {}
            });
        let client = tokio::time::timeout(STEP_TIMEOUT, options.connect(self.url.as_str()))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connecting to {}", self.url))?;
        Ok(Member {
            client,
            traffic: None,
            idle: Vec::new(),
        })
    }

    async fn join(&self, member: &mut Member, room: &str, channel: &str) -> anyhow::Result<()> {
        let subject = subject(room, channel);
        let subscriber = tokio::time::timeout(STEP_TIMEOUT, member.client.subscribe(subject))
            .await
            .context("subscribe timed out")?
            .with_context(|| format!("joining {room}:{channel}"))?;
        let probe = member.client.request(JOIN_PROBE_SUBJECT, Bytes::new());
        match tokio::time::timeout(STEP_TIMEOUT, probe)
            .await
            .with_context(|| format!("join {room}:{channel} not confirmed in time"))?
        {
            Ok(_) => {}
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {}
            Err(e) => {
                return Err(e).with_context(|| format!("confirming join {room}:{channel}"));
            }
        }
        if channel == TRAFFIC_CHANNEL {
            member.traffic = Some(subscriber);
        } else {
            member.idle.push(subscriber);
        }
        Ok(())
    }

    fn start(
        &self,
        member: Member,
        room: &str,
        reader: Reader,
        recipients: Option<u64>,
        readers: &mut JoinSet<anyhow::Result<()>>,
    ) -> Option<NatsOutlet> {
        let outlet = recipients.map(|_| NatsOutlet {
            client: member.client.clone(),
            subject: Subject::from(subject(room, TRAFFIC_CHANNEL)),
        });
        readers.spawn(read(member, reader));
        outlet
    }
}

/// Reads the traffic subscription until `reader.stop`, holding the client and the idle
/// subscriptions until then.
async fn read(member: Member, reader: Reader) -> anyhow::Result<()> {
    let mut tally = reader.tally();
    let mut stop = reader.stop.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let Some(mut traffic) = member.traffic else {
        let _ = stopped.await;
        return Ok(());
    };
    loop {
        let message = tokio::select! {
            _ = &mut stopped => return Ok(()),
            message = traffic.next() => message,
        };
        let Some(message) = message else {
            bail!("the subscription of connection {} ended", reader.index);
        };
        if let Ok(text) = std::str::from_utf8(&message.payload) {
            tally.message(text);
        }
    }
}

/// A NATS publisher: core messages to its room's subject. Nothing acknowledges them.
#[derive(Debug)]
pub(crate) struct NatsOutlet {
    client: Client,
    subject: Subject,
}

impl Outlet for NatsOutlet {
    const UNACKNOWLEDGED: bool = true;

    async fn send(&mut self, payload: String) -> anyhow::Result<()> {
        self.client
            .publish(self.subject.clone(), Bytes::from(payload))
            .await
            .context("publishing to NATS")
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(STEP_TIMEOUT, self.client.flush())
            .await
            .context("the last flush timed out")?
            .context("flushing to NATS")
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::Pattern;
    use super::*;

    #[test]
    fn memberships_are_subjects_of_their_own() {
        assert_eq!(subject("pair-3", TRAFFIC_CHANNEL), "bench.pair-3.c0");
        assert_eq!(subject("bench", "c1"), "bench.bench.c1");
        // Two tokens: no membership (three) can ever match it.
        assert_eq!(JOIN_PROBE_SUBJECT.split('.').count(), 2);
    }

    #[test]
    fn subscriptions_hold_the_whole_window() {
        let pairs = Plan::new(Pattern::Pairs, 100, 10, 1, 1);
        assert_eq!(subscription_capacity(8, &pairs), MIN_SUBSCRIPTION_CAPACITY);
        let one_room = Plan::new(Pattern::OneRoom, 1000, 10, 8, 1);
        assert_eq!(subscription_capacity(16, &one_room), 17 * 999 * 8);
        let huge = Plan::new(Pattern::OneRoom, 100_000, 10, 100_000, 1);
        assert_eq!(subscription_capacity(16, &huge), MAX_SUBSCRIPTION_CAPACITY);
    }
}
