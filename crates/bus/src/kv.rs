//! [`KvStore`]: a KV bucket with JetStream KV semantics on both backends.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tracing::warn;

use crate::config::{KV_HEADER_ALLOWANCE, KvConfig};
use crate::embedded::EmbeddedKv;
use crate::error::BusError;
use crate::nats::NatsKv;
use crate::subject;

/// How long [`KvStore::follow`] waits before watching again after a watch ended.
pub(crate) const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The current value of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Bytes,
    /// The revision that wrote it (see [`KvStore`]).
    pub revision: u64,
}

/// A change seen by a [`KvWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEvent {
    /// The key that changed.
    pub key: String,
    /// The new value; `None` when the key was deleted.
    pub value: Option<Bytes>,
    /// The revision of the change.
    pub revision: u64,
}

/// A KV bucket.
///
/// Revisions are per bucket, start at 1 and strictly increase with every put, create,
/// update and delete (on NATS they are the bucket stream's sequence numbers), so they
/// order all changes of the bucket. A delete leaves a marker: the key reads as absent,
/// [`KvStore::create`] may write it again, and watchers see a `None` value. Values older
/// than `max_age` disappear without an event.
#[derive(Clone)]
pub struct KvStore {
    inner: Inner,
    config: KvConfig,
    /// Largest value accepted: `max_value_size`, and the bus's max payload less room for
    /// the headers of a compare-and-set write.
    max_value: usize,
}

#[derive(Clone)]
enum Inner {
    Nats(Arc<NatsKv>),
    Embedded(EmbeddedKv),
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

macro_rules! dispatch {
    ($self:ident, $kv:ident => $call:expr) => {
        match &$self.inner {
            Inner::Nats($kv) => $call.await,
            Inner::Embedded($kv) => $call,
        }
    };
}

impl KvStore {
    pub(crate) fn nats(kv: NatsKv, config: KvConfig, max_payload: usize) -> KvStore {
        KvStore::new(Inner::Nats(Arc::new(kv)), config, max_payload)
    }

    pub(crate) fn embedded(kv: EmbeddedKv, config: KvConfig, max_payload: usize) -> KvStore {
        KvStore::new(Inner::Embedded(kv), config, max_payload)
    }

    fn new(inner: Inner, config: KvConfig, max_payload: usize) -> KvStore {
        let by_payload = max_payload.saturating_sub(KV_HEADER_ALLOWANCE);
        let max_value = config
            .max_value_size
            .and_then(|max| usize::try_from(max).ok())
            .map_or(by_payload, |max| max.min(by_payload));
        KvStore {
            inner,
            config,
            max_value,
        }
    }

    /// Largest value [`KvStore::put`] and friends accept.
    pub fn max_value_size(&self) -> usize {
        self.max_value
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// The current value of `key`, or `None` if it has none (never written, deleted,
    /// or expired).
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry>, BusError> {
        subject::validate_key(key)?;
        dispatch!(self, kv => kv.get(key))
    }

    /// The values of `key` the bucket still keeps (its `history` setting), oldest first;
    /// deletions are left out. Empty when the key was never written.
    pub async fn history(&self, key: &str) -> Result<Vec<KvEntry>, BusError> {
        subject::validate_key(key)?;
        match &self.inner {
            // Boxed: a consumer round trip is a large future.
            Inner::Nats(kv) => Box::pin(kv.history(key)).await,
            Inner::Embedded(kv) => Ok(kv.history(key)),
        }
    }

    /// Sets `key` to `value`; returns the new revision.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        self.check_value(key, &value)?;
        dispatch!(self, kv => kv.put(key, value))
    }

    /// Sets `key` only if it has no value; [`BusError::AlreadyExists`] otherwise.
    pub async fn create(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        self.check_value(key, &value)?;
        dispatch!(self, kv => kv.create(key, value))
    }

    /// Compare-and-set: sets `key` only if its latest revision (value or delete marker)
    /// is `expected_revision` (0: the key was never written or has expired);
    /// [`BusError::WrongRevision`] otherwise.
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
    ) -> Result<u64, BusError> {
        self.check_value(key, &value)?;
        dispatch!(self, kv => kv.update(key, value, expected_revision))
    }

    /// Deletes `key` (writes a delete marker; deleting an absent key is not an error).
    pub async fn delete(&self, key: &str) -> Result<(), BusError> {
        subject::validate_key(key)?;
        dispatch!(self, kv => kv.delete(key))
    }

    /// Deletes `key` only if its latest revision is `expected_revision`;
    /// [`BusError::WrongRevision`] otherwise (the way to remove what was read without
    /// removing what someone wrote since).
    pub async fn delete_expecting(
        &self,
        key: &str,
        expected_revision: u64,
    ) -> Result<(), BusError> {
        subject::validate_key(key)?;
        dispatch!(self, kv => kv.delete_expecting(key, expected_revision))
    }

    /// The keys that have a value, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, BusError> {
        let mut keys: Vec<String> = dispatch!(self, kv => kv.keys())?;
        keys.sort_unstable();
        Ok(keys)
    }

    /// The keys that have a value and match `filter`, sorted. The filter works on the
    /// `.`-separated tokens of keys as a NATS subject filter does: `*` matches exactly one
    /// token, a final `>` one or more (`rooms.*.members`, `tenant-a.>`; a filter without
    /// wildcards matches that one key). [`BusError::InvalidKey`] for a malformed filter.
    ///
    /// NATS: one ephemeral consumer filtered on the matching subjects, latest record per
    /// key, headers only, so the work is in proportion to the matching keys, not to the
    /// bucket.
    pub async fn keys_matching(&self, filter: &str) -> Result<Vec<String>, BusError> {
        let keys = self.matching(filter, true).await?;
        Ok(keys.into_iter().map(|entry| entry.key).collect())
    }

    /// The latest entry of every key that has a value and matches `filter` (as in
    /// [`KvStore::keys_matching`]), sorted by key; on NATS one ephemeral consumer reads
    /// them, so the work is in proportion to the matching keys.
    pub async fn entries_matching(&self, filter: &str) -> Result<Vec<KvEntry>, BusError> {
        self.matching(filter, false).await
    }

    async fn matching(&self, filter: &str, headers_only: bool) -> Result<Vec<KvEntry>, BusError> {
        subject::validate_key_filter(filter)?;
        let mut entries: Vec<KvEntry> = match &self.inner {
            // Boxed: a consumer round trip is a large future.
            Inner::Nats(kv) => Box::pin(kv.entries_matching(filter, headers_only)).await?,
            Inner::Embedded(kv) => kv.entries_matching(filter),
        };
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(entries)
    }

    /// Changes made after this call returns, in revision order.
    pub async fn watch_all(&self) -> Result<KvWatch, BusError> {
        let stream = dispatch!(self, kv => kv.watch(false))?;
        Ok(KvWatch { stream })
    }

    /// First the latest entry of every key in revision order (a deleted key as a `None`
    /// value, unless its marker expired), then every change after that: the way to start
    /// from the newest state and follow it without a gap.
    pub async fn watch_all_with_history(&self) -> Result<KvWatch, BusError> {
        let stream = dispatch!(self, kv => kv.watch(true))?;
        Ok(KvWatch { stream })
    }

    /// Follows the bucket until `shutdown` completes: `apply` gets the latest entry of
    /// every key, then every change ([`KvStore::watch_all_with_history`]). A watch that
    /// ends (the bus went away) is opened again after [`REWATCH_DELAY`], replaying the
    /// current state, so `apply` must accept an entry it has seen before. `what` names
    /// the bucket's contents in the logs.
    pub async fn follow(
        &self,
        what: &str,
        shutdown: impl Future<Output = ()>,
        mut apply: impl FnMut(KvEvent),
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let watch = tokio::select! {
                () = &mut shutdown => return,
                watch = self.watch_all_with_history() => watch,
            };
            match watch {
                Ok(mut watch) => {
                    let mut failing = false;
                    loop {
                        let event = tokio::select! {
                            () = &mut shutdown => return,
                            event = watch.next() => event,
                        };
                        match event {
                            Some(Ok(event)) => {
                                failing = false;
                                apply(event);
                            }
                            Some(Err(error)) if !failing => {
                                failing = true;
                                warn!(%error, what, "a bucket watch failed; it resumes by itself");
                            }
                            Some(Err(_)) => {}
                            None => break,
                        }
                    }
                }
                Err(error) => warn!(%error, what, "cannot watch a bucket; retrying"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(REWATCH_DELAY) => {}
            }
        }
    }

    fn check_value(&self, key: &str, value: &Bytes) -> Result<(), BusError> {
        subject::validate_key(key)?;
        if value.len() > self.max_value {
            return Err(BusError::PayloadTooLarge {
                size: value.len(),
                max: self.max_value,
            });
        }
        Ok(())
    }
}

/// A stream of [`KvEvent`]s from [`KvStore::watch_all`] or
/// [`KvStore::watch_all_with_history`]. An `Err` item (NATS: the consumer behind it
/// failed, e.g. during an outage) does not end the watch; `None` does. A watcher never blocks writers: if it falls
/// behind, it reads from the bucket what is still retained (with `history: 1`, only the
/// latest value of a key that changed several times), as a JetStream consumer would.
pub struct KvWatch {
    stream: BoxStream<'static, Result<KvEvent, BusError>>,
}

impl fmt::Debug for KvWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvWatch").finish_non_exhaustive()
    }
}

impl KvWatch {
    /// The next change; `None` when the watch ended.
    pub async fn next(&mut self) -> Option<Result<KvEvent, BusError>> {
        self.stream.next().await
    }
}

impl Stream for KvWatch {
    type Item = Result<KvEvent, BusError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }
}
