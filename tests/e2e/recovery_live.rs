//! Recovery while messages are being published: a client that comes back with its last
//! position (`since_id`, or `since_offset` with `epoch`) while other clients publish
//! steadily gets every message once, in order, across the boundary between the replay
//! from history and live delivery (`services/edge/src/recovery.rs`); and a client too
//! far behind is told to reload.
//!
//! With several clients publishing into one channel at once, the scenario on nats-server
//! stays ignored: a client may receive live messages in another order than the history
//! stores them (nats-server hands a publish to the stream and to the subscribers
//! separately), so a client that leaves right after a message stored later than one it
//! has not received yet is told `recovered: true` without that one (not seen here, but
//! nothing orders the two paths). The embedded bus stores and delivers a stream's
//! messages under one lock, so standalone runs it (it failed about one run in six
//! before).
//!
//! Run it with `cargo test -p arqon-e2e --test e2e recovery_live -- --ignored`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use arqon_dispatcher::{DispatcherConfig, HistoryConfig};
use arqon_e2e::reply::{args, data, run};
use arqon_e2e::{Cluster, Mode, QUIET, Topology, WAIT, eventually};
use arqon_protocol::{Envelope, MessageType, Status};
use arqon_sdk::{Client, SdkError};

use crate::each_mode;

const ROOM: &str = "live";
const CHANNEL: &str = "feed";
/// Times the reader leaves and comes back, alternately with `since_id` and with
/// `since_offset` + `epoch`.
const ROUNDS: usize = 20;
/// Messages the reader receives before it leaves, and at least as many published while
/// it is away.
const SEEN: i64 = 5;
/// Each publisher's pause between messages: a steady stream, yet never so many while a
/// reader is away that its position leaves the last read's worth of history.
const PACE: Duration = Duration::from_millis(1);

each_mode!(a_client_1000_or_more_behind_is_told_to_reload);

/// `<name>::{standalone, distributed, two_edges_and_two_dispatchers}` running the
/// scenario with `$publishers` clients publishing at once; the last two on nats-server,
/// the last with two dispatchers (the messages go through both) and two edges (the
/// reader comes back on the other edge each time). `$ignore` ignores the two on
/// nats-server, with its reason.
macro_rules! rejoin_while_publishing {
    ($name:ident, $publishers:expr $(, $ignore:literal)?) => {
        mod $name {
            use arqon_e2e::{Cluster, Mode, Topology};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                let cluster = Cluster::start(Mode::Standalone, arqon_e2e::edge_config()).await;
                super::a_rejoin_while_publishing(&cluster, $publishers).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[ignore = $ignore])?
            async fn distributed() {
                let cluster = Cluster::start(Mode::Distributed, arqon_e2e::edge_config()).await;
                super::a_rejoin_while_publishing(&cluster, $publishers).await;
                cluster.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            $(#[ignore = $ignore])?
            async fn two_edges_and_two_dispatchers() {
                let cluster = Cluster::launch(Topology {
                    edges: 2,
                    dispatchers: 2,
                    ..Topology::new(Mode::Distributed)
                })
                .await;
                super::a_rejoin_while_publishing(&cluster, $publishers).await;
                cluster.stop().await;
            }
        }
    };
}

rejoin_while_publishing!(one_publisher_every_message_once_in_order, 1);
rejoin_while_publishing!(
    three_publishers_every_message_once_in_their_order,
    3,
    "on nats-server, with several publishers, live order can differ from the history's: a gap (see the module)"
);

/// `publishers` clients each send `{"p": p, "n": 0}`, `{"p": p, "n": 1}`, … each once
/// the previous was acknowledged. A reader receives a few messages, leaves, and a new
/// connection joins with the last one's position while more are published: the join
/// says `recovered: true`, replays what was stored meanwhile, and live delivery follows
/// with nothing of any publisher missing, repeated or out of its order; [`ROUNDS`]
/// times, on every edge in turn. At the end, exactly up to each publisher's last
/// acknowledged message, and nothing after.
async fn a_rejoin_while_publishing(cluster: &Cluster, publishers: usize) {
    let edges = cluster.edges().len();
    let token = cluster.token("t-a", "user");
    let first = cluster.client_on(0, &token).await;
    first.join(ROOM, CHANNEL).await.unwrap();
    let count = publishers;
    let mut publishers = Vec::new();
    for p in 0..count {
        let client = cluster.client_on(p % edges, &token).await;
        publishers.push(Publisher::start(client, p));
    }
    let mut reader = Reader::new(first, count);
    // It joined mid-stream: it takes each publisher's first message as it comes.
    while reader.next.iter().any(Option::is_none) {
        reader.take(&next_message(&reader.client).await);
    }
    for round in 0..ROUNDS {
        // It catches up with what was acknowledged, so it is never far behind.
        let acknowledged_now = lasts(&publishers);
        while reader
            .next
            .iter()
            .zip(&acknowledged_now)
            .any(|(next, last)| *next <= Some(*last))
        {
            reader.take(&next_message(&reader.client).await);
        }
        let mut last = None;
        for _ in 0..SEEN {
            let message = next_message(&reader.client).await;
            reader.take(&message);
            last = Some(message);
        }
        let last = last.expect("a message seen");
        let position = if round % 2 == 0 {
            json!({"since_id": last.id.as_str()})
        } else {
            position_of(&reader.client, last.id.as_str()).await
        };
        reader.client.close().await.unwrap();
        reader.note("[left]".to_owned());
        // A message stored before the last one seen may be acknowledged after it.
        let away = acknowledged(&publishers) + SEEN + count as i64;
        eventually("the publishers go on", || async {
            acknowledged(&publishers) >= away
        })
        .await;

        let client = cluster.client_on((round + 1) % edges, &token).await;
        let mut join = json!({"room": ROOM, "channel": CHANNEL});
        join.as_object_mut().unwrap().extend(args(position.clone()));
        let joined = run(&client, "join_channel", join).await;
        assert_eq!(joined.status, Some(Status::Success), "{}", joined.to_json());
        let joined = data(&joined);
        assert_eq!(
            joined["recovered"], true,
            "round {round} ({position}): {joined}"
        );
        let replayed = joined["recovered_count"].as_i64().unwrap();
        assert!(
            replayed >= SEEN,
            "what was acknowledged while away is replayed: {joined}"
        );
        reader.note(format!("[rejoined: {replayed} replayed]"));
        reader.client = client;
    }
    // Live delivery goes on, then the publishers stop: up to their last messages.
    for _ in 0..SEEN {
        reader.take(&next_message(&reader.client).await);
    }
    let mut lasts = Vec::new();
    for publisher in publishers {
        lasts.push(publisher.stop().await);
    }
    while reader
        .next
        .iter()
        .zip(&lasts)
        .any(|(next, last)| *next <= Some(*last))
    {
        reader.take(&next_message(&reader.client).await);
    }
    loop {
        match reader.client.recv(QUIET).await {
            Err(SdkError::Timeout) => break,
            Ok(frame) => assert_ne!(
                frame.kind,
                MessageType::Message,
                "after the last ones ({lasts:?}): {}",
                frame.to_json()
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

/// What the reader expects next from each publisher.
struct Reader {
    client: Client,
    /// Each publisher's next `n`; `None` before its first message.
    next: Vec<Option<i64>>,
    /// What happened lately (`p:n` for a message), for a failure's message.
    log: VecDeque<String>,
}

impl Reader {
    fn new(client: Client, publishers: usize) -> Self {
        Self {
            client,
            next: vec![None; publishers],
            log: VecDeque::new(),
        }
    }

    fn note(&mut self, event: String) {
        if self.log.len() == 100 {
            self.log.pop_front();
        }
        self.log.push_back(event);
    }

    /// Takes a message, which must be its publisher's next: one missing, repeated or out
    /// of order fails.
    fn take(&mut self, message: &Envelope) {
        let p = message.payload.get("p").and_then(|p| p.as_u64()).unwrap() as usize;
        let n = number(message);
        self.note(format!("{p}:{n}"));
        if let Some(expected) = self.next[p]
            && n != expected
        {
            let log = Vec::from(self.log.clone()).join(" ");
            panic!(
                "publisher {p}: {n} where {expected} was next: {}\nlately: {log}",
                message.to_json()
            );
        }
        self.next[p] = Some(n + 1);
    }
}

/// Each publisher's last acknowledged `n`.
fn lasts(publishers: &[Publisher]) -> Vec<i64> {
    publishers
        .iter()
        .map(|p| p.last.load(Ordering::SeqCst))
        .collect()
}

/// Messages acknowledged so far, over every publisher.
fn acknowledged(publishers: &[Publisher]) -> i64 {
    publishers
        .iter()
        .map(|p| p.last.load(Ordering::SeqCst) + 1)
        .sum()
}

/// The channel keeps 1100 messages here, so the bound is the recovery's: one history
/// read of 1000 must hold every message after the position. 999 behind is recovered,
/// by id and by offset; 1000 behind is not (`recovered: false`, nothing replayed).
async fn a_client_1000_or_more_behind_is_told_to_reload(mode: Mode) {
    let cluster = Cluster::launch(Topology {
        dispatcher: DispatcherConfig {
            history: HistoryConfig {
                max_per_channel: 1100,
                ..HistoryConfig::default()
            },
            ..DispatcherConfig::default()
        },
        ..Topology::new(mode)
    })
    .await;
    let writers = [
        cluster.client("t-a").await,
        cluster.client("t-a").await,
        cluster.client("t-a").await,
        cluster.client("t-a").await,
    ];
    writers[0].join(ROOM, CHANNEL).await.unwrap();
    let first = writers[0]
        .publish(ROOM, CHANNEL, json!({"n": 0}))
        .await
        .unwrap();
    let by_offset = position_of(&writers[0], &first).await;
    let by_id = json!({"since_id": first});
    publish_concurrently(&writers, 1..=999).await;
    for position in [&by_id, &by_offset] {
        let (joined, replayed) = rejoin(&cluster, position).await;
        assert_eq!(
            joined["recovered"], true,
            "999 behind, {position}: {joined}"
        );
        assert_eq!(joined["recovered_count"], 999);
        assert_eq!(replayed, (1..=999).collect::<BTreeSet<i64>>());
    }
    publish_concurrently(&writers, 1000..=1000).await;
    for position in [&by_id, &by_offset] {
        let (joined, replayed) = rejoin(&cluster, position).await;
        assert_eq!(
            joined["recovered"], false,
            "1000 behind, {position}: {joined}"
        );
        assert_eq!(joined["recovered_count"], 0);
        assert!(replayed.is_empty(), "{replayed:?}");
    }
    cluster.stop().await;
}

/// Publishes `{"n": n}` for every `n` of `numbers`, spread over `writers` at once.
async fn publish_concurrently(writers: &[Client], numbers: std::ops::RangeInclusive<i64>) {
    let numbers: Vec<i64> = numbers.collect();
    let chunk = numbers.len().div_ceil(writers.len());
    let sends = writers
        .iter()
        .zip(numbers.chunks(chunk))
        .map(|(w, ns)| async move {
            for &n in ns {
                w.publish(ROOM, CHANNEL, json!({ "n": n })).await.unwrap();
            }
        });
    futures_util::future::join_all(sends).await;
}

/// A new connection joins with `position`; returns the join's `data` and the `n` of
/// every message that came after it (until none for [`QUIET`]).
async fn rejoin(cluster: &Cluster, position: &Value) -> (Value, BTreeSet<i64>) {
    let client = cluster.client("t-a").await;
    let mut join = json!({"room": ROOM, "channel": CHANNEL});
    join.as_object_mut().unwrap().extend(args(position.clone()));
    let joined = run(&client, "join_channel", join).await;
    assert_eq!(joined.status, Some(Status::Success), "{}", joined.to_json());
    let mut replayed = BTreeSet::new();
    loop {
        match client.recv(QUIET).await {
            Ok(frame) if frame.kind == MessageType::Message => {
                assert!(replayed.insert(number(&frame)), "{}", frame.to_json());
            }
            Ok(_) => {}
            Err(SdkError::Timeout) => break,
            Err(e) => panic!("{e}"),
        }
    }
    (data(&joined), replayed)
}

/// `since_offset` and `epoch` of the stored message `id`, from `history`.
async fn position_of(client: &Client, id: &str) -> Value {
    let history = run(
        client,
        "history",
        json!({"room": ROOM, "channel": CHANNEL, "limit": 1000}),
    )
    .await;
    assert_eq!(
        history.status,
        Some(Status::Success),
        "{}",
        history.to_json()
    );
    let history = data(&history);
    let stored = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == id)
        .unwrap_or_else(|| panic!("message {id} is stored"));
    json!({"since_offset": stored["offset"], "epoch": history["epoch"]})
}

/// The `n` of a message.
fn number(message: &Envelope) -> i64 {
    message.payload.get("n").and_then(|n| n.as_i64()).unwrap()
}

/// The next message (frames of other kinds skipped).
async fn next_message(reader: &Client) -> Envelope {
    loop {
        let frame = reader.recv(WAIT).await.expect("a message in time");
        if frame.kind == MessageType::Message {
            return frame;
        }
    }
}

/// Publishes `{"p": p, "n": 0}`, `{"p": p, "n": 1}`, … one at a time, each after the
/// previous one was acknowledged, until stopped.
struct Publisher {
    /// The last acknowledged `n` (-1: none yet).
    last: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<i64>,
}

impl Publisher {
    fn start(client: Client, p: usize) -> Self {
        let last = Arc::new(AtomicI64::new(-1));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (last, stop) = (Arc::clone(&last), Arc::clone(&stop));
            async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let message = json!({ "p": p, "n": n });
                    if let Err(e) = client.publish(ROOM, CHANNEL, message).await {
                        panic!("message {n} of publisher {p} was not acknowledged: {e}");
                    }
                    last.store(n, Ordering::SeqCst);
                    n += 1;
                    tokio::time::sleep(PACE).await;
                }
                n - 1
            }
        });
        Self { last, stop, task }
    }

    /// Stops it; returns the last acknowledged `n`.
    async fn stop(self) -> i64 {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the publisher stops")
            .expect("the publisher ran without a refusal")
    }
}
