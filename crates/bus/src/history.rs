//! [`HistoryStore`]: an append-only stream of messages with JetStream semantics.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::{HistoryConfig, MAX_READ_LIMIT, ReadFrom};
use crate::embedded::EmbeddedHistory;
use crate::error::BusError;
use crate::headers::Headers;
use crate::nats::NatsHistory;
use crate::stats::BusStats;
use crate::subject;

/// A message kept in a history stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Stream sequence: unique in the stream, increasing with every append on any
    /// subject of the stream.
    pub seq: u64,
    /// The subject it was appended on.
    pub subject: String,
    /// Its headers (the server's own `Nats-*` headers removed).
    pub headers: Headers,
    /// Its payload.
    pub payload: Bytes,
    /// When the stream stored it (server time on NATS).
    pub time: DateTime<Utc>,
}

/// What a history stream holds: see [`HistoryStore::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Messages kept.
    pub messages: u64,
    /// Their bytes, as the stream's `max_bytes` counts them (subject, headers, payload;
    /// NATS adds a few bytes of its own per message).
    pub bytes: u64,
}

/// What [`crate::Bus::publish_stored`] hands back: resolves to the message's sequence in
/// the stream once the stream has stored it.
pub struct StoreConfirmation(Pin<Box<dyn Future<Output = Result<u64, BusError>> + Send>>);

impl StoreConfirmation {
    /// The confirmation `confirmation` resolves to (a backend's; or a test's).
    pub fn from_future(
        confirmation: impl Future<Output = Result<u64, BusError>> + Send + 'static,
    ) -> StoreConfirmation {
        StoreConfirmation(Box::pin(confirmation))
    }

    pub(crate) fn ready(result: Result<u64, BusError>) -> StoreConfirmation {
        StoreConfirmation(Box::pin(std::future::ready(result)))
    }

    /// A failed confirmation counts as a publish error in `stats`.
    pub(crate) fn counting_failures(self, stats: Arc<BusStats>) -> StoreConfirmation {
        StoreConfirmation::from_future(async move {
            let result = self.0.await;
            if result.is_err() {
                stats.record_publish_error();
            }
            result
        })
    }

    /// Waits for the stream: the sequence it stored the message under.
    pub async fn stored(self) -> Result<u64, BusError> {
        self.0.await
    }
}

/// Awaiting it by reference (`&mut confirmation`) leaves it in place, to be awaited again
/// if the wait is given up.
impl Future for StoreConfirmation {
    type Output = Result<u64, BusError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for StoreConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfirmation").finish_non_exhaustive()
    }
}

/// A history stream.
///
/// Sequences start at 1 and increase by one with every append on any subject; they are
/// never reused, not even after a [`HistoryStore::purge`]. Retention discards, per
/// subject, the oldest messages beyond `max_msgs_per_subject`, and any message older
/// than `max_age`; a discarded sequence reads as `None` and is skipped by
/// [`HistoryStore::read`]. A sequence means something only together with the
/// [`HistoryStore::epoch`] of the stream it came from.
#[derive(Clone)]
pub struct HistoryStore {
    inner: Inner,
    /// The configuration it was created with, or (opened with
    /// [`crate::Bus::open_history`]) the one it had when opened.
    config: Arc<HistoryConfig>,
    stats: Arc<BusStats>,
    max_payload: usize,
}

#[derive(Clone)]
enum Inner {
    Nats(Arc<NatsHistory>),
    Embedded(EmbeddedHistory),
}

impl fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryStore")
            .field("config", &self.config)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl HistoryStore {
    pub(crate) fn nats(
        history: NatsHistory,
        config: HistoryConfig,
        stats: Arc<BusStats>,
        max_payload: usize,
    ) -> HistoryStore {
        HistoryStore {
            inner: Inner::Nats(Arc::new(history)),
            config: Arc::new(config),
            stats,
            max_payload,
        }
    }

    pub(crate) fn embedded(
        history: EmbeddedHistory,
        config: HistoryConfig,
        stats: Arc<BusStats>,
        max_payload: usize,
    ) -> HistoryStore {
        HistoryStore {
            inner: Inner::Embedded(history),
            config: Arc::new(config),
            stats,
            max_payload,
        }
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.config.stream
    }

    /// Its configuration: as created, or (opened with [`crate::Bus::open_history`]) as
    /// it was when opened.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// Identifies this incarnation of the stream: the time it was created, as RFC 3339
    /// in UTC with nanoseconds (`2025-01-31T12:00:00.123456789Z`). Sequences restart at 1
    /// when a stream is deleted and created again under the same name, so a position
    /// kept by a client (`since`) is only valid with the epoch it was read under.
    ///
    /// It is read when the store is created or opened and does not change afterwards:
    /// to notice that the stream was recreated behind a long-lived handle, open it again
    /// and compare. NATS: the stream's `created` time, kept by the server across restarts
    /// (file storage). Embedded: the instant the stream was created in this process,
    /// unique among its streams.
    pub fn epoch(&self) -> &str {
        match &self.inner {
            Inner::Nats(nats) => nats.epoch(),
            Inner::Embedded(embedded) => embedded.epoch(),
        }
    }

    /// Stores a message on `subject` (literal, one of the stream's subjects) and returns
    /// its sequence once the stream has stored it.
    pub async fn append(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<u64, BusError> {
        subject::validate_publish(subject)?;
        if !self.config.covers(subject) {
            return Err(BusError::InvalidSubject(format!(
                "{subject:?} is not a subject of stream {}",
                self.config.stream
            )));
        }
        let size = headers.wire_len() + payload.len();
        if size > self.max_payload {
            return Err(BusError::PayloadTooLarge {
                size,
                max: self.max_payload,
            });
        }
        let result = match &self.inner {
            Inner::Nats(nats) => nats.append(subject, headers, payload).await,
            Inner::Embedded(embedded) => embedded.append(subject, headers, payload),
        };
        if result.is_err() {
            self.stats.record_publish_error();
        }
        result
    }

    /// The message with sequence `seq`, if it is still retained.
    pub async fn get(&self, seq: u64) -> Result<Option<StoredMessage>, BusError> {
        if seq == 0 {
            return Ok(None);
        }
        match &self.inner {
            Inner::Nats(nats) => nats.get(seq).await,
            Inner::Embedded(embedded) => Ok(embedded.get(seq)),
        }
    }

    /// Up to `limit` (at most [`MAX_READ_LIMIT`]) messages whose subject matches
    /// `filter` (a subject, wildcards allowed), from `from` on, by ascending sequence.
    /// Page on with `ReadFrom::Sequence(last.seq + 1)`.
    pub async fn read(
        &self,
        filter: &str,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, BusError> {
        subject::validate_subscribe(filter)?;
        let limit = limit.min(MAX_READ_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        match &self.inner {
            // Boxed: a consumer round trip is a large future.
            Inner::Nats(nats) => Box::pin(nats.read(filter, from, limit)).await,
            Inner::Embedded(embedded) => Ok(embedded.read(filter, from, limit)),
        }
    }

    /// The latest message on `subject` (literal).
    pub async fn last(&self, subject: &str) -> Result<Option<StoredMessage>, BusError> {
        subject::validate_publish(subject)?;
        match &self.inner {
            Inner::Nats(nats) => nats.last(subject).await,
            Inner::Embedded(embedded) => Ok(embedded.last(subject)),
        }
    }

    /// The last `n` (at most [`MAX_READ_LIMIT`]) messages stored on `subject` (literal),
    /// oldest first; fewer if it has fewer.
    ///
    /// NATS: reads consumers filtered on `subject`, so the cost is in proportion to the
    /// messages kept on that subject (bounded by `max_msgs_per_subject`), never to the
    /// rest of the stream; only the last `n` are read with their payloads.
    pub async fn tail(&self, subject: &str, n: usize) -> Result<Vec<StoredMessage>, BusError> {
        subject::validate_publish(subject)?;
        let n = n.min(MAX_READ_LIMIT);
        if n == 0 {
            return Ok(Vec::new());
        }
        match &self.inner {
            // Boxed: consumer round trips are a large future.
            Inner::Nats(nats) => Box::pin(nats.tail(subject, n)).await,
            Inner::Embedded(embedded) => Ok(embedded.tail(subject, n)),
        }
    }

    /// How many messages are stored on subjects matching `filter` (wildcards allowed).
    ///
    /// NATS: the stream's per-subject counts, so the cost is in proportion to the number
    /// of distinct subjects matching, not of messages.
    pub async fn count(&self, filter: &str) -> Result<u64, BusError> {
        subject::validate_subscribe(filter)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.count(filter)).await,
            Inner::Embedded(embedded) => Ok(embedded.count(filter)),
        }
    }

    /// The subjects matching `filter` (wildcards allowed) that hold messages, each with
    /// how many, in no particular order. In proportion to the number of subjects.
    pub async fn subjects(&self, filter: &str) -> Result<Vec<(String, u64)>, BusError> {
        subject::validate_subscribe(filter)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.subjects(filter)).await,
            Inner::Embedded(embedded) => Ok(embedded.subjects(filter)),
        }
    }

    /// Keeps only the newest messages on `subject` (literal) whose sizes (subject,
    /// headers and payload, as `max_bytes` counts them) add up to at most `max_bytes`,
    /// and always the newest one; removes the older ones and returns how many.
    ///
    /// NATS: one read of the subject's headers (no payloads), then a purge of the subject
    /// that keeps that many of its newest: a message appended between the two counts
    /// among those kept, so the subject may hold a little more than `max_bytes` until
    /// the next call.
    pub async fn keep_newest_within(&self, subject: &str, max_bytes: u64) -> Result<u64, BusError> {
        subject::validate_publish(subject)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.keep_newest_within(subject, max_bytes)).await,
            Inner::Embedded(embedded) => Ok(embedded.keep_newest_within(subject, max_bytes)),
        }
    }

    /// What the stream holds now, in all.
    pub async fn usage(&self) -> Result<Usage, BusError> {
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.usage()).await,
            Inner::Embedded(embedded) => Ok(embedded.usage()),
        }
    }

    /// Deletes every message on subjects matching `filter` (wildcards allowed) and
    /// returns how many. Sequences go on from where they were: the next append gets the
    /// next one, never a purged one.
    pub async fn purge(&self, filter: &str) -> Result<u64, BusError> {
        subject::validate_subscribe(filter)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.purge(filter)).await,
            Inner::Embedded(embedded) => Ok(embedded.purge(filter)),
        }
    }
}

/// How many of the newest of `sizes` (oldest first) add up to at most `max_bytes`; at
/// least one when there is one.
pub(crate) fn newest_within(sizes: &[u64], max_bytes: u64) -> usize {
    let mut total = 0u64;
    let fitting = sizes
        .iter()
        .rev()
        .take_while(|size| {
            total = total.saturating_add(**size);
            total <= max_bytes
        })
        .count();
    fitting.max(sizes.len().min(1))
}

/// The epoch string of a stream created at `created` (see [`HistoryStore::epoch`]).
pub(crate) fn epoch_of(created: DateTime<Utc>) -> String {
    created.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_rfc3339_with_nanoseconds() {
        let created = DateTime::from_timestamp_nanos(1_700_000_000_000_000_007);
        assert_eq!(epoch_of(created), "2023-11-14T22:13:20.000000007Z");
        assert_eq!(
            DateTime::parse_from_rfc3339(&epoch_of(created)).unwrap(),
            created
        );
    }
}
