//! [`Bus`]: the one handle services hold, dispatching to NATS or the embedded bus.
//!
//! Validation happens here, before dispatch, so both backends refuse the same input
//! with the same error.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::config::{EmbeddedOptions, HistoryConfig, KvConfig, NatsOptions, WorkQueueConfig};
use crate::embedded::{EmbeddedBus, EmbeddedSubscription};
use crate::error::BusError;
use crate::headers::Headers;
use crate::history::HistoryStore;
use crate::history::StoreConfirmation;
use crate::kv::KvStore;
use crate::message::Message;
use crate::nats::NatsBus;
use crate::stats::BusStats;
use crate::subject;
use crate::workqueue::WorkQueue;

/// A connection to the bus. Cheap to clone (all clones share one connection and one
/// [`BusStats`]); `Send + Sync`.
///
/// Semantics are those of NATS core for messages (at-most-once, ordered per publisher
/// and subscriber, slow subscribers lose messages) and of JetStream for [`KvStore`] and
/// [`HistoryStore`], whichever backend is behind it.
#[derive(Clone)]
pub struct Bus {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    // Boxed behind an `Arc`: the async-nats handles are large, clones stay one pointer.
    Nats(Arc<NatsBus>),
    Embedded(EmbeddedBus),
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("backend", &self.backend())
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Bus {
    /// Connects to NATS at `url` (comma-separated URLs for a cluster). Fails with
    /// [`BusError::Unavailable`] when no server answers within `options.connect_timeout`.
    /// Once connected, the client reconnects forever in the background; meanwhile
    /// [`Bus::is_connected`] is false and operations fail fast with `Unavailable`.
    pub async fn connect_nats(url: &str, options: NatsOptions) -> Result<Bus, BusError> {
        let nats = NatsBus::connect(url, options).await?;
        Ok(Bus {
            inner: Inner::Nats(Arc::new(nats)),
        })
    }

    /// An in-process bus with the same semantics, for a single process without NATS.
    /// Everything it holds lives in memory and is lost when the last clone is dropped.
    pub fn embedded(options: EmbeddedOptions) -> Bus {
        Bus {
            inner: Inner::Embedded(EmbeddedBus::new(options)),
        }
    }

    /// Where state meant to outlive a process goes: files on a NATS server; memory on
    /// the embedded bus, which has nothing else (it lives and dies with its process).
    pub fn durable_storage(&self) -> crate::Storage {
        match &self.inner {
            Inner::Nats(_) => crate::Storage::File,
            Inner::Embedded(_) => crate::Storage::Memory,
        }
    }

    /// `"nats"` or `"embedded"`, for logs and status pages.
    pub fn backend(&self) -> &'static str {
        match &self.inner {
            Inner::Nats(_) => "nats",
            Inner::Embedded(_) => "embedded",
        }
    }

    /// Publishes `payload` to `subject` (literal: no wildcards, no empty tokens, not
    /// starting with `$`). Nobody subscribed is not an error: the message is dropped.
    pub async fn publish(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.send(subject.into(), None, Headers::new(), payload)
            .await
    }

    /// Publishes with headers (e.g. the W3C `traceparent`).
    pub async fn publish_with_headers(
        &self,
        subject: impl Into<String>,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        self.send(subject.into(), None, headers, payload).await
    }

    async fn send(
        &self,
        subject: String,
        reply: Option<String>,
        headers: Headers,
        payload: Bytes,
    ) -> Result<(), BusError> {
        subject::validate_publish(&subject)?;
        self.check_size(&headers, &payload)?;
        let result = match &self.inner {
            // Boxed: async-nats's publish future is ~2 KiB, and callers keep this future
            // in long-lived state machines (one per WebSocket connection).
            Inner::Nats(nats) => Box::pin(nats.publish(subject, reply, headers, payload)).await,
            Inner::Embedded(embedded) => {
                embedded.publish(Message {
                    subject,
                    reply,
                    headers,
                    payload,
                });
                // Delivery is synchronous and never waits; give the scheduler a chance
                // so a publishing loop cannot starve the subscribers on its thread.
                tokio::task::consume_budget().await;
                Ok(())
            }
        };
        if result.is_err() {
            self.stats().record_publish_error();
        }
        result
    }

    /// Publishes like [`Bus::publish_with_headers`] (subscribers receive the message) and
    /// returns, once it is sent, a [`StoreConfirmation`] that resolves when the history
    /// stream capturing `subject` has stored it. Waiting for the confirmation is apart
    /// from sending, so a caller can go on with other work meanwhile.
    ///
    /// On NATS this is a JetStream publish: the stream's leader confirms once its replicas
    /// agree. A failed confirmation ([`BusError::Timeout`], [`BusError::Backend`]) does not
    /// mean the message is lost: it may have been delivered, and even stored. When no
    /// stream captures `subject` no confirmation comes: [`BusError::NoResponders`], or on
    /// NATS, when the subject has subscribers (who still received the message), a
    /// [`BusError::Timeout`] after the request timeout. The embedded bus stores as it
    /// publishes: its confirmation is ready at once.
    pub async fn publish_stored(
        &self,
        subject: impl Into<String>,
        headers: Headers,
        payload: Bytes,
    ) -> Result<StoreConfirmation, BusError> {
        let subject = subject.into();
        subject::validate_publish(&subject)?;
        self.check_size(&headers, &payload)?;
        let stats = self.stats();
        let sent = match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.publish_stored(subject, headers, payload))
                .await
                .map(StoreConfirmation::from_future),
            Inner::Embedded(embedded) => {
                let stored = embedded.publish_captured(Message {
                    subject,
                    reply: None,
                    headers,
                    payload,
                });
                tokio::task::consume_budget().await;
                Ok(StoreConfirmation::ready(
                    stored.ok_or(BusError::NoResponders),
                ))
            }
        };
        match sent {
            Ok(confirmation) => Ok(confirmation.counting_failures(stats)),
            Err(err) => {
                stats.record_publish_error();
                Err(err)
            }
        }
    }

    fn check_size(&self, headers: &Headers, payload: &Bytes) -> Result<(), BusError> {
        let size = headers.wire_len() + payload.len();
        let max = self.max_payload();
        if size > max {
            return Err(BusError::PayloadTooLarge { size, max });
        }
        Ok(())
    }

    /// Largest message (header block + payload) the bus accepts: the server's
    /// `max_payload` on NATS, [`EmbeddedOptions::max_payload`] otherwise.
    pub fn max_payload(&self) -> usize {
        match &self.inner {
            Inner::Nats(nats) => nats.max_payload(),
            Inner::Embedded(embedded) => embedded.max_payload(),
        }
    }

    /// Subscribes to `subject`; `*` matches one token, a final `>` one or more.
    /// Dropping the [`Subscription`] unsubscribes.
    pub async fn subscribe(&self, subject: impl Into<String>) -> Result<Subscription, BusError> {
        let subject = subject.into();
        subject::validate_subscribe(&subject)?;
        self.subscribe_inner(subject, None).await
    }

    /// Subscribes as a member of `group`: each message goes to one member of each group
    /// (and to every plain subscriber).
    pub async fn queue_subscribe(
        &self,
        subject: impl Into<String>,
        group: impl Into<String>,
    ) -> Result<Subscription, BusError> {
        let subject = subject.into();
        let group = group.into();
        subject::validate_subscribe(&subject)?;
        subject::validate_queue_group(&group)?;
        self.subscribe_inner(subject, Some(group)).await
    }

    async fn subscribe_inner(
        &self,
        subject: String,
        group: Option<String>,
    ) -> Result<Subscription, BusError> {
        let inner = match &self.inner {
            Inner::Nats(nats) => {
                SubInner::Nats(Box::pin(nats.subscribe(subject.clone(), group)).await?)
            }
            Inner::Embedded(embedded) => {
                SubInner::Embedded(embedded.subscribe(subject.clone(), group))
            }
        };
        Ok(Subscription { subject, inner })
    }

    /// Sends a request and waits up to `timeout` for the first reply.
    /// [`BusError::NoResponders`] when nobody is subscribed to `subject`,
    /// [`BusError::Timeout`] when nobody answered in time.
    pub async fn request(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        self.request_with_headers(subject, Headers::new(), payload, timeout)
            .await
    }

    /// [`Bus::request`] with headers.
    pub async fn request_with_headers(
        &self,
        subject: impl Into<String>,
        headers: Headers,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let subject = subject.into();
        subject::validate_publish(&subject)?;
        self.check_size(&headers, &payload)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.request(subject, headers, payload, timeout)).await,
            Inner::Embedded(embedded) => embedded.request(subject, headers, payload, timeout).await,
        }
    }

    /// Scatter-gather: sends one request to `subject` from a fresh reply inbox and
    /// gathers the replies of every responder until `max_replies` have arrived or
    /// `timeout` has passed, whichever comes first (`max_replies == 0`: no count limit,
    /// gather for the whole `timeout`). Replies come in arrival order; each
    /// [`Message::respond`] of a responder is one reply.
    ///
    /// Nobody answering in time is not an error: the result is whatever arrived, possibly
    /// nothing. When nobody at all is subscribed to `subject`, it returns an empty `Vec`
    /// at once instead of waiting (NATS reports "no responders" for a request nobody
    /// received); when someone received it but does not answer, it waits the whole
    /// `timeout`. The inbox is subscribed before the request is published, so no early
    /// reply is missed, and unsubscribed when this returns; later replies are dropped.
    ///
    /// On NATS, a JetStream stream whose subjects cover `subject` stores the request and
    /// answers it with its publish acknowledgement (as for [`Bus::request`]): keep
    /// request subjects out of history namespaces.
    pub async fn request_many(
        &self,
        subject: impl Into<String>,
        payload: Bytes,
        max_replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Message>, BusError> {
        self.request_many_with_headers(subject, Headers::new(), payload, max_replies, timeout)
            .await
    }

    /// [`Bus::request_many`] with headers (e.g. the W3C `traceparent`).
    pub async fn request_many_with_headers(
        &self,
        subject: impl Into<String>,
        headers: Headers,
        payload: Bytes,
        max_replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Message>, BusError> {
        let subject = subject.into();
        subject::validate_publish(&subject)?;
        self.check_size(&headers, &payload)?;
        let deadline = tokio::time::Instant::now() + timeout;
        match &self.inner {
            Inner::Nats(nats) => {
                Box::pin(nats.request_many(subject, headers, payload, max_replies, deadline)).await
            }
            Inner::Embedded(embedded) => Ok(embedded
                .request_many(subject, headers, payload, max_replies, deadline)
                .await),
        }
    }

    /// Returns once everything published and subscribed before has reached the server
    /// (NATS: a PING/PONG round trip, bounded by the request timeout). Embedded: delivery
    /// is synchronous, so this returns at once.
    pub async fn flush(&self) -> Result<(), BusError> {
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.flush()).await,
            Inner::Embedded(_) => Ok(()),
        }
    }

    /// Whether the bus is usable now, for readiness probes (embedded: always).
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::Nats(nats) => nats.is_connected(),
            Inner::Embedded(_) => true,
        }
    }

    /// The counters shared by all clones of this bus.
    pub fn stats(&self) -> Arc<BusStats> {
        match &self.inner {
            Inner::Nats(nats) => nats.stats(),
            Inner::Embedded(embedded) => embedded.stats(),
        }
    }

    /// Creates the KV bucket, or opens it (updating its configuration if it changed).
    pub async fn key_value(&self, config: KvConfig) -> Result<KvStore, BusError> {
        config.validate()?;
        match &self.inner {
            // Boxed: JetStream's bucket setup is a large future.
            Inner::Nats(nats) => Ok(KvStore::nats(
                Box::pin(nats.key_value(&config)).await?,
                config,
                nats.max_payload(),
            )),
            Inner::Embedded(embedded) => Ok(KvStore::embedded(
                embedded.key_value(&config),
                config,
                embedded.max_payload(),
            )),
        }
    }

    /// Opens the KV bucket `config` names if it exists, without creating it or changing
    /// its configuration (another service owns it and decides it); `None` if there is no
    /// such bucket. `config` gives the name and the largest value this handle writes.
    pub async fn existing_key_value(&self, config: KvConfig) -> Result<Option<KvStore>, BusError> {
        config.validate()?;
        match &self.inner {
            Inner::Nats(nats) => Ok(Box::pin(nats.existing_key_value(&config.bucket))
                .await?
                .map(|kv| KvStore::nats(kv, config, nats.max_payload()))),
            Inner::Embedded(embedded) => Ok(embedded
                .existing_key_value(&config.bucket)
                .map(|kv| KvStore::embedded(kv, config, embedded.max_payload()))),
        }
    }

    /// Creates the history stream, or opens it (updating its configuration if it
    /// changed). Fails with [`BusError::InvalidConfig`] when its subjects overlap another
    /// stream's. Idempotent: services that open the same stream with the same
    /// configuration, at once or one after the other, all succeed and change nothing (with
    /// different ones, all succeed and the last applied wins). To use a stream without
    /// deciding its configuration, see [`Bus::open_history`].
    pub async fn history(&self, config: HistoryConfig) -> Result<HistoryStore, BusError> {
        config.validate()?;
        let stats = self.stats();
        let max_payload = self.max_payload();
        let store = match &self.inner {
            Inner::Nats(nats) => HistoryStore::nats(
                Box::pin(nats.history(&config)).await?,
                config,
                stats,
                max_payload,
            ),
            Inner::Embedded(embedded) => {
                HistoryStore::embedded(embedded.history(&config)?, config, stats, max_payload)
            }
        };
        Ok(store)
    }

    /// Creates the work queue (its stream and its consumer), or opens it (updating their
    /// configuration if it changed). Fails with [`BusError::InvalidConfig`] when its
    /// subjects overlap another stream's. Every process that opens the same queue shares
    /// its jobs: each job goes to one handle at a time (see [`WorkQueue`]).
    pub async fn work_queue(&self, config: WorkQueueConfig) -> Result<WorkQueue, BusError> {
        config.validate()?;
        let max_payload = self.max_payload();
        match &self.inner {
            // Boxed: stream and consumer setup is a large future.
            Inner::Nats(nats) => Ok(WorkQueue::nats(
                Box::pin(nats.work_queue(&config)).await?,
                config,
                max_payload,
            )),
            Inner::Embedded(embedded) => Ok(WorkQueue::embedded(
                embedded.work_queue(&config)?,
                config,
                max_payload,
            )),
        }
    }

    /// The names of the history streams that start with `prefix`, in no particular
    /// order. On NATS the server lists streams of every kind, so choose a prefix that
    /// only history streams use.
    pub async fn history_names(&self, prefix: &str) -> Result<Vec<String>, BusError> {
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.stream_names(prefix)).await,
            Inner::Embedded(embedded) => Ok(embedded.history_names(prefix)),
        }
    }

    /// Deletes the history stream `name` with every message in it; whether there was
    /// one. Handles opened on it fail or find nothing afterwards.
    pub async fn delete_history(&self, name: &str) -> Result<bool, BusError> {
        subject::validate_name("stream", name)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.delete_stream(name)).await,
            Inner::Embedded(embedded) => Ok(embedded.delete_history(name)),
        }
    }

    /// Opens the existing history stream `name` as it is, without changing its
    /// configuration (another service owns it and decides it); `None` if there is no
    /// such stream. Reads and appends work as on a store from [`Bus::history`]; appends
    /// are checked against the subjects the stream had when opened. On NATS, a stream
    /// created elsewhere without direct gets is read through the stream leader's API.
    /// [`BusError::InvalidConfig`] for a name that is not a valid stream name.
    pub async fn open_history(&self, name: &str) -> Result<Option<HistoryStore>, BusError> {
        subject::validate_name("stream", name)?;
        let stats = self.stats();
        let max_payload = self.max_payload();
        let store = match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.open_history(name))
                .await?
                .map(|(history, config)| HistoryStore::nats(history, config, stats, max_payload)),
            Inner::Embedded(embedded) => embedded.open_history(name).map(|(history, config)| {
                HistoryStore::embedded(history, config, stats, max_payload)
            }),
        };
        Ok(store)
    }
}

/// Messages of one subscription, in publish order per publisher. Use
/// [`Subscription::next`] or the [`Stream`] implementation. Dropping it unsubscribes.
pub struct Subscription {
    subject: String,
    inner: SubInner,
}

enum SubInner {
    Nats(async_nats::Subscriber),
    Embedded(EmbeddedSubscription),
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next message; `None` once the bus connection is closed for good.
    pub async fn next(&mut self) -> Option<Message> {
        StreamExt::next(self).await
    }

    /// The subject (pattern) subscribed to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        match &mut self.inner {
            SubInner::Nats(subscriber) => subscriber
                .poll_next_unpin(cx)
                .map(|message| message.map(crate::nats::convert_message)),
            SubInner::Embedded(subscription) => subscription.poll_recv(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HistoryConfig, KvConfig};
    use crate::headers::Headers;
    use crate::kv::KvWatch;

    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}

    /// Services hold these across tasks and await them inside `tokio::spawn`.
    #[tokio::test]
    async fn handles_are_send_sync_and_futures_are_send() {
        let bus = Bus::embedded(EmbeddedOptions::default());
        send_sync(&bus);
        send(&bus.publish("a", Bytes::new()));
        send(&bus.publish_with_headers("a", Headers::new(), Bytes::new()));
        send(&bus.subscribe("a"));
        send(&bus.queue_subscribe("a", "g"));
        send(&bus.request("a", Bytes::new(), Duration::from_secs(1)));
        send(&bus.flush());
        send(&bus.key_value(KvConfig::new("b")));
        send(&bus.history(HistoryConfig::new("H", vec!["h.>".into()])));
        send(&bus.open_history("H"));
        send(&bus.request_many("a", Bytes::new(), 2, Duration::from_secs(1)));
        let sub = bus.subscribe("a").await.unwrap();
        send(&sub);
        let kv = bus.key_value(KvConfig::new("b")).await.unwrap();
        send_sync(&kv);
        send(&kv.get("k"));
        send(&kv.put("k", Bytes::new()));
        send(&kv.update("k", Bytes::new(), 0));
        send(&kv.keys());
        send(&kv.keys_matching("a.*"));
        send(&kv.watch_all());
        let watch: KvWatch = kv.watch_all().await.unwrap();
        send(&watch);
        let history = bus
            .history(HistoryConfig::new("H", vec!["h.>".into()]))
            .await
            .unwrap();
        send_sync(&history);
        send(&history.append("h.a", Headers::new(), Bytes::new()));
        send(&history.read("h.a", crate::ReadFrom::Sequence(1), 1));
        send(&history.get(1));
        send(&history.last("h.a"));
        send(&history.tail("h.a", 1));
        send(&history.count("h.>"));
        send(&history.purge("h.>"));
        send_sync(&*bus.stats());
        let config = crate::WorkQueueConfig::new("Q", vec!["q.>".into()], "c");
        send(&bus.work_queue(config.clone()));
        let mut queue = bus.work_queue(config).await.unwrap();
        send_sync(&queue);
        send(&queue.push("q.a", Bytes::new(), None));
        send(&queue.next());
        queue.push("q.a", Bytes::new(), None).await.unwrap();
        let job = queue.next().await.unwrap().unwrap();
        send_sync(&job);
        send(&job.ack());
    }

    #[test]
    fn debug_shows_backend_not_internals() {
        let bus = Bus::embedded(EmbeddedOptions::default());
        assert_eq!(bus.backend(), "embedded");
        let shown = format!("{bus:?}");
        assert!(shown.contains("embedded") && shown.contains("connected: true"));
    }
}
