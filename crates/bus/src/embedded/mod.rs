//! The embedded in-process bus: NATS semantics without a server, for a single process.

mod history;
mod kv;
mod pubsub;
mod workqueue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::config::{EmbeddedOptions, HistoryConfig, KvConfig, WorkQueueConfig};
use crate::error::BusError;
use crate::headers::Headers;
use crate::message::Message;
use crate::stats::BusStats;
use crate::subject;

pub(crate) use history::EmbeddedHistory;
pub(crate) use kv::EmbeddedKv;
pub(crate) use pubsub::EmbeddedSubscription;
use pubsub::{Registry, SharedRegistry};
pub(crate) use workqueue::{EmbeddedAcker, EmbeddedWorkQueue};

/// The header whose value JetStream takes as a message's id for duplicate detection.
const JOB_ID_HEADER: &str = "Nats-Msg-Id";

/// Distinguishes the inboxes of several embedded buses in one process (tests).
static NEXT_BUS_ID: AtomicU64 = AtomicU64::new(1);

/// A history stream and the subjects it captures, kept apart from its lock so the
/// publish path can test them cheaply.
struct StreamEntry {
    name: String,
    subjects: Vec<String>,
    history: EmbeddedHistory,
    /// Held from storing a message to handing it to the subscribers, so that they get
    /// the stream's messages in the order it stores them (as a client recovering from a
    /// position assumes).
    order: Mutex<()>,
}

/// A work queue and the subjects it captures, as [`StreamEntry`] for history.
struct QueueEntry {
    name: String,
    subjects: Vec<String>,
    queue: EmbeddedWorkQueue,
}

struct Shared {
    options: EmbeddedOptions,
    stats: Arc<BusStats>,
    registry: SharedRegistry,
    bus_id: u64,
    next_id: AtomicU64,
    buckets: Mutex<HashMap<String, EmbeddedKv>>,
    streams: RwLock<Vec<StreamEntry>>,
    /// Work queues; their subjects overlap no other stream's.
    work_queues: RwLock<Vec<QueueEntry>>,
}

/// The embedded bus; clones share everything.
#[derive(Clone)]
pub(crate) struct EmbeddedBus {
    shared: Arc<Shared>,
}

impl EmbeddedBus {
    pub(crate) fn new(options: EmbeddedOptions) -> EmbeddedBus {
        EmbeddedBus {
            shared: Arc::new(Shared {
                options,
                stats: Arc::new(BusStats::default()),
                registry: SharedRegistry::default(),
                bus_id: NEXT_BUS_ID.fetch_add(1, Ordering::Relaxed),
                next_id: AtomicU64::new(1),
                buckets: Mutex::new(HashMap::new()),
                streams: RwLock::new(Vec::new()),
                work_queues: RwLock::new(Vec::new()),
            }),
        }
    }

    pub(crate) fn stats(&self) -> Arc<BusStats> {
        Arc::clone(&self.shared.stats)
    }

    pub(crate) fn max_payload(&self) -> usize {
        self.shared.options.max_payload
    }

    /// Delivers to subscribers and, like JetStream, stores the message in the history
    /// stream or work queue whose subjects cover it. Returns the number of matching subscriptions.
    pub(crate) fn publish(&self, message: Message) -> usize {
        self.deliver(message).1
    }

    /// As [`EmbeddedBus::publish`]; the sequence of the history stream that stored it,
    /// if one captures the subject.
    pub(crate) fn publish_captured(&self, message: Message) -> Option<u64> {
        self.deliver(message).0
    }

    /// Stores the message in the history stream that captures its subject, if one does,
    /// then hands it to the subscribers: both under the stream's order lock, so that the
    /// order subscribers see is the order the stream stores (on nats-server they are two
    /// paths through the server).
    fn deliver(&self, message: Message) -> (Option<u64>, usize) {
        self.capture_job(&message);
        let streams = self
            .shared
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let covering = streams.iter().find(|s| {
            s.subjects
                .iter()
                .any(|p| subject::matches(p, &message.subject))
        });
        let Some(covering) = covering else {
            drop(streams);
            let matched = Registry::publish(&self.shared.registry, message, &self.shared.stats);
            return (None, matched);
        };
        let _order = covering
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Appending to an embedded stream cannot fail.
        let stored = covering
            .history
            .append(
                &message.subject,
                message.headers.clone(),
                message.payload.clone(),
            )
            .ok();
        let matched = Registry::publish(&self.shared.registry, message, &self.shared.stats);
        (stored, matched)
    }

    /// Queues a job published to a work queue's subjects.
    fn capture_job(&self, message: &Message) {
        let queues = self
            .shared
            .work_queues
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if queues.is_empty() {
            return;
        }
        let covering = queues.iter().find(|q| {
            q.subjects
                .iter()
                .any(|p| subject::matches(p, &message.subject))
        });
        if let Some(entry) = covering {
            let id = message.headers.get(JOB_ID_HEADER);
            entry.queue.capture(
                &message.subject,
                message.headers.clone(),
                message.payload.clone(),
                id,
            );
        }
    }

    /// Creates the work queue, or opens it (applying `config`). Its subjects must not
    /// overlap a history stream's or another work queue's.
    pub(crate) fn work_queue(
        &self,
        config: &WorkQueueConfig,
    ) -> Result<EmbeddedWorkQueue, BusError> {
        let streams = self
            .shared
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut queues = self
            .shared
            .work_queues
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for stream in streams.iter() {
            check_overlap(
                &config.stream,
                &config.subjects,
                &stream.name,
                &stream.subjects,
            )?;
        }
        for other in queues.iter().filter(|q| q.name != config.stream) {
            check_overlap(
                &config.stream,
                &config.subjects,
                &other.name,
                &other.subjects,
            )?;
        }
        if let Some(existing) = queues.iter_mut().find(|q| q.name == config.stream) {
            existing.queue.reconfigure(config);
            existing.subjects.clone_from(&config.subjects);
            return Ok(existing.queue.clone());
        }
        let queue = EmbeddedWorkQueue::new(config);
        queues.push(QueueEntry {
            name: config.stream.clone(),
            subjects: config.subjects.clone(),
            queue: queue.clone(),
        });
        Ok(queue)
    }

    pub(crate) fn subscribe(&self, subject: String, queue: Option<String>) -> EmbeddedSubscription {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        Registry::subscribe(
            &self.shared.registry,
            id,
            subject,
            queue,
            self.shared.options.subscription_capacity,
        )
    }

    pub(crate) async fn request(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let inbox = self.new_inbox();
        let mut replies = self.subscribe(inbox.clone(), None);
        let matched = self.publish(Message {
            subject,
            reply: Some(inbox),
            headers,
            payload,
        });
        if matched == 0 {
            return Err(BusError::NoResponders);
        }
        let reply = std::future::poll_fn(|cx| replies.poll_recv(cx));
        match tokio::time::timeout(timeout, reply).await {
            Ok(Some(message)) => Ok(message),
            Ok(None) => Err(BusError::Unavailable("reply subscription closed".into())),
            Err(_) => Err(BusError::Timeout),
        }
    }

    /// Sends one request and gathers replies until `max_replies` (0: no limit) arrived
    /// or `deadline` passed; none at once when nobody is subscribed to `subject`.
    pub(crate) async fn request_many(
        &self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        max_replies: usize,
        deadline: tokio::time::Instant,
    ) -> Vec<Message> {
        let inbox = self.new_inbox();
        let mut replies = self.subscribe(inbox.clone(), None);
        let matched = self.publish(Message {
            subject,
            reply: Some(inbox),
            headers,
            payload,
        });
        let mut gathered = Vec::new();
        if matched == 0 {
            return gathered;
        }
        while max_replies == 0 || gathered.len() < max_replies {
            let reply = std::future::poll_fn(|cx| replies.poll_recv(cx));
            match tokio::time::timeout_at(deadline, reply).await {
                Ok(Some(message)) => gathered.push(message),
                Ok(None) | Err(_) => break,
            }
        }
        gathered
    }

    fn new_inbox(&self) -> String {
        format!(
            "_INBOX.{}.{}",
            self.shared.bus_id,
            self.shared.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(crate) fn key_value(&self, config: &KvConfig) -> EmbeddedKv {
        let mut buckets = self
            .shared
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match buckets.get(&config.bucket) {
            Some(kv) => {
                kv.reconfigure(config);
                kv.clone()
            }
            None => {
                let kv = EmbeddedKv::new(config);
                buckets.insert(config.bucket.clone(), kv.clone());
                kv
            }
        }
    }

    /// The bucket `bucket`, untouched; `None` if there is none.
    pub(crate) fn existing_key_value(&self, bucket: &str) -> Option<EmbeddedKv> {
        self.shared
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bucket)
            .cloned()
    }

    /// The names of the history streams that start with `prefix`.
    pub(crate) fn history_names(&self, prefix: &str) -> Vec<String> {
        let streams = self
            .shared
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        streams
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| s.name.clone())
            .collect()
    }

    /// Deletes the history stream `name` with its messages; whether there was one.
    pub(crate) fn delete_history(&self, name: &str) -> bool {
        let mut streams = self
            .shared
            .streams
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = streams.len();
        streams.retain(|s| s.name != name);
        streams.len() < before
    }

    /// The stream `name` and its configuration, untouched; `None` if there is none.
    pub(crate) fn open_history(&self, name: &str) -> Option<(EmbeddedHistory, HistoryConfig)> {
        let streams = self
            .shared
            .streams
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = streams.iter().find(|s| s.name == name)?;
        Some((entry.history.clone(), entry.history.config()))
    }

    pub(crate) fn history(&self, config: &HistoryConfig) -> Result<EmbeddedHistory, BusError> {
        if !config.sources.is_empty() {
            return Err(BusError::InvalidConfig(format!(
                "stream {}: the embedded bus does not copy from other streams (sources)",
                config.stream
            )));
        }
        let mut streams = self
            .shared
            .streams
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let queues = self
            .shared
            .work_queues
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for queue in queues.iter() {
            check_overlap(
                &config.stream,
                &config.subjects,
                &queue.name,
                &queue.subjects,
            )?;
        }
        drop(queues);
        for other in streams.iter().filter(|s| s.name != config.stream) {
            let clash = config
                .subjects
                .iter()
                .find(|s| other.subjects.iter().any(|o| subject::overlaps(s, o)));
            if let Some(clash) = clash {
                return Err(BusError::InvalidConfig(format!(
                    "stream {}: subject {clash} overlaps stream {}",
                    config.stream, other.name
                )));
            }
        }
        if let Some(existing) = streams.iter_mut().find(|s| s.name == config.stream) {
            if existing.history.config() != *config {
                existing.history.reconfigure(config);
                existing.subjects.clone_from(&config.subjects);
            }
            return Ok(existing.history.clone());
        }
        let history = EmbeddedHistory::new(config);
        streams.push(StreamEntry {
            order: Mutex::new(()),
            name: config.stream.clone(),
            subjects: config.subjects.clone(),
            history: history.clone(),
        });
        Ok(history)
    }
}

/// Refuses a stream `name` whose `subjects` overlap those of stream `other`.
fn check_overlap(
    name: &str,
    subjects: &[String],
    other: &str,
    other_subjects: &[String],
) -> Result<(), BusError> {
    if other == name {
        return Err(BusError::InvalidConfig(format!(
            "stream {name} exists as another kind of stream"
        )));
    }
    match subjects
        .iter()
        .find(|s| other_subjects.iter().any(|o| subject::overlaps(s, o)))
    {
        Some(clash) => Err(BusError::InvalidConfig(format!(
            "stream {name}: subject {clash} overlaps stream {other}"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::{Bus, EmbeddedOptions, Headers, HistoryConfig, MAX_READ_LIMIT, ReadFrom};

    /// Subscribers get a stream's messages in the order it stores them, however many
    /// publish at once: a client recovering from the last message it saw gets exactly
    /// the ones stored after it, none of which it had.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn subscribers_see_the_order_the_stream_stores() {
        // Each round is a chance for a race: several, so that a missing lock shows.
        for round in 0..10 {
            let bus = Bus::embedded(EmbeddedOptions::default());
            let history = bus
                .history(HistoryConfig::new("ORDER", vec!["o.>".into()]))
                .await
                .unwrap();
            let mut live = bus.subscribe("o.a").await.unwrap();
            let bus = Arc::new(bus);
            let publishers: Vec<_> = (0..4)
                .map(|p| {
                    let bus = Arc::clone(&bus);
                    tokio::spawn(async move {
                        for n in 0..200 {
                            let payload = Bytes::from(format!("{p}-{n}"));
                            bus.publish_stored("o.a", Headers::new(), payload)
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for publisher in publishers {
                publisher.await.unwrap();
            }
            let mut seen = Vec::new();
            while seen.len() < 800 {
                seen.push(live.next().await.unwrap().payload);
            }
            let stored: Vec<Bytes> = history
                .read("o.a", ReadFrom::Sequence(1), MAX_READ_LIMIT)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.payload)
                .collect();
            assert_eq!(seen, stored, "round {round}");
        }
    }
}
