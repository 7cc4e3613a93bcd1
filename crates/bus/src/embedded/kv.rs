//! Embedded KV bucket: a small per-bucket log with JetStream KV semantics.
//!
//! Like a `KV_<bucket>` stream, the bucket is a sequence of records (values and delete
//! markers) numbered by revision, of which it keeps the last `history` per key and none
//! older than `max_age` (checked lazily, on every access).
//!
//! Watchers read from a cursor instead of having events pushed to them, so a slow
//! watcher never blocks a writer or grows anything. They read the bucket's recent
//! change log (the last [`CHANGE_LOG`] writes, superseded values included), which is
//! what a NATS watcher receives through its buffer; a watcher that falls further behind
//! reads the records still retained instead, skipping superseded values, as a JetStream
//! ordered consumer does after a reset.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;

use crate::config::KvConfig;
use crate::error::BusError;
use crate::kv::{KvEntry, KvEvent};
use crate::subject;

/// Records a watcher takes from the log per lock.
const WATCH_BATCH: usize = 256;
/// Recent writes kept for watchers, per bucket: at most this many...
const CHANGE_LOG: usize = 8192;
/// ...and at most this many value bytes.
const CHANGE_LOG_BYTES: usize = 16 * 1024 * 1024;

struct Record {
    key: Arc<str>,
    value: Option<Bytes>,
    time: Instant,
}

/// One write, as watchers see it.
struct Change {
    revision: u64,
    key: Arc<str>,
    value: Option<Bytes>,
}

struct State {
    config: KvConfig,
    last_revision: u64,
    records: BTreeMap<u64, Record>,
    by_key: HashMap<Arc<str>, VecDeque<u64>>,
    /// The last writes (see [`CHANGE_LOG`]), contiguous revisions.
    changes: VecDeque<Change>,
    /// Value bytes held by `changes`.
    change_bytes: usize,
}

struct Bucket {
    state: Mutex<State>,
    /// The last revision written; wakes watchers.
    changes: watch::Sender<u64>,
}

/// Handle to an embedded bucket.
#[derive(Clone)]
pub(crate) struct EmbeddedKv {
    bucket: Arc<Bucket>,
}

impl EmbeddedKv {
    pub(crate) fn new(config: &KvConfig) -> EmbeddedKv {
        EmbeddedKv {
            bucket: Arc::new(Bucket {
                state: Mutex::new(State {
                    config: config.clone(),
                    last_revision: 0,
                    records: BTreeMap::new(),
                    by_key: HashMap::new(),
                    changes: VecDeque::new(),
                    change_bytes: 0,
                }),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// Applies a new configuration to an open bucket. As in NATS (2.11), a lowered
    /// `history` applies to a key at its next write; a lowered `max_age` at once.
    pub(crate) fn reconfigure(&self, config: &KvConfig) {
        let mut state = self.lock();
        state.config = config.clone();
        state.expire();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .bucket
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.expire();
        state
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<KvEntry>, BusError> {
        let state = self.lock();
        Ok(state.latest(key).and_then(|(revision, record)| {
            record.value.clone().map(|value| KvEntry {
                key: key.to_owned(),
                value,
                revision,
            })
        }))
    }

    pub(crate) fn history(&self, key: &str) -> Vec<KvEntry> {
        let state = self.lock();
        let Some(revisions) = state.by_key.get(key) else {
            return Vec::new();
        };
        revisions
            .iter()
            .filter_map(|&revision| {
                let value = state.records.get(&revision)?.value.clone()?;
                Some(KvEntry {
                    key: key.to_owned(),
                    value,
                    revision,
                })
            })
            .collect()
    }

    pub(crate) fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        Ok(self.write(&mut self.lock(), key, Some(value)))
    }

    pub(crate) fn create(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        let mut state = self.lock();
        if state.latest(key).is_some_and(|(_, r)| r.value.is_some()) {
            return Err(BusError::AlreadyExists);
        }
        Ok(self.write(&mut state, key, Some(value)))
    }

    pub(crate) fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64, BusError> {
        let mut state = self.lock();
        let current = state.latest(key).map_or(0, |(revision, _)| revision);
        if current != expected {
            return Err(BusError::WrongRevision);
        }
        Ok(self.write(&mut state, key, Some(value)))
    }

    pub(crate) fn delete(&self, key: &str) -> Result<(), BusError> {
        self.write(&mut self.lock(), key, None);
        Ok(())
    }

    pub(crate) fn delete_expecting(&self, key: &str, expected: u64) -> Result<(), BusError> {
        let mut state = self.lock();
        let current = state.latest(key).map_or(0, |(revision, _)| revision);
        if current != expected {
            return Err(BusError::WrongRevision);
        }
        self.write(&mut state, key, None);
        Ok(())
    }

    pub(crate) fn keys(&self) -> Result<Vec<String>, BusError> {
        let state = self.lock();
        Ok(state
            .by_key
            .keys()
            .filter(|key| state.latest(key).is_some_and(|(_, r)| r.value.is_some()))
            .map(|key| key.to_string())
            .collect())
    }

    /// The latest entry of every live key matching the (validated) key filter, unsorted.
    pub(crate) fn entries_matching(&self, filter: &str) -> Vec<KvEntry> {
        let state = self.lock();
        state
            .by_key
            .keys()
            .filter(|key| subject::matches(filter, key))
            .filter_map(|key| {
                let (revision, record) = state.latest(key)?;
                Some(KvEntry {
                    key: key.to_string(),
                    value: record.value.clone()?,
                    revision,
                })
            })
            .collect()
    }

    /// A watch from the next revision on; with `history`, first the latest record of
    /// every key, in revision order.
    pub(crate) fn watch(
        &self,
        history: bool,
    ) -> Result<BoxStream<'static, Result<KvEvent, BusError>>, BusError> {
        let mut changes = self.bucket.changes.subscribe();
        changes.borrow_and_update();
        let state = self.lock();
        let mut initial: Vec<KvEvent> = Vec::new();
        if history {
            initial = state
                .by_key
                .values()
                .filter_map(|revisions| revisions.back())
                .filter_map(|revision| state.event(*revision))
                .collect();
            initial.sort_by_key(|event| event.revision);
        }
        let cursor = Cursor {
            kv: self.clone(),
            pending: initial.into(),
            next_revision: state.last_revision + 1,
            changes,
        };
        drop(state);
        Ok(futures_util::stream::unfold(cursor, Cursor::next).boxed())
    }

    fn write(&self, state: &mut State, key: &str, value: Option<Bytes>) -> u64 {
        let revision = state.append(key, value);
        self.bucket.changes.send_replace(revision);
        revision
    }
}

impl State {
    fn latest(&self, key: &str) -> Option<(u64, &Record)> {
        let revision = *self.by_key.get(key)?.back()?;
        self.records.get(&revision).map(|record| (revision, record))
    }

    fn event(&self, revision: u64) -> Option<KvEvent> {
        self.records.get(&revision).map(|record| KvEvent {
            key: record.key.to_string(),
            value: record.value.clone(),
            revision,
        })
    }

    fn append(&mut self, key: &str, value: Option<Bytes>) -> u64 {
        self.last_revision += 1;
        let revision = self.last_revision;
        let key: Arc<str> = match self.by_key.get_key_value(key) {
            Some((existing, _)) => Arc::clone(existing),
            None => Arc::from(key),
        };
        self.change_bytes += value.as_ref().map_or(0, Bytes::len);
        while !self.changes.is_empty()
            && (self.changes.len() >= CHANGE_LOG || self.change_bytes > CHANGE_LOG_BYTES)
        {
            if let Some(old) = self.changes.pop_front() {
                self.change_bytes -= old.value.as_ref().map_or(0, Bytes::len);
            }
        }
        self.changes.push_back(Change {
            revision,
            key: Arc::clone(&key),
            value: value.clone(),
        });
        self.records.insert(
            revision,
            Record {
                key: Arc::clone(&key),
                value,
                time: Instant::now(),
            },
        );
        self.by_key
            .entry(Arc::clone(&key))
            .or_default()
            .push_back(revision);
        self.trim_key(&key);
        revision
    }

    /// Keeps the last `history` records of `key`.
    fn trim_key(&mut self, key: &str) {
        let history = usize::from(self.config.history.max(1));
        if let Some(revisions) = self.by_key.get_mut(key) {
            while revisions.len() > history {
                if let Some(old) = revisions.pop_front() {
                    self.records.remove(&old);
                }
            }
        }
    }

    /// Drops records older than `max_age`, oldest first (revision order is time order).
    fn expire(&mut self) {
        let Some(max_age) = self.config.max_age else {
            return;
        };
        let now = Instant::now();
        while let Some(entry) = self.records.first_entry() {
            if now.duration_since(entry.get().time) <= max_age {
                break;
            }
            let record = entry.remove();
            if let Some(revisions) = self.by_key.get_mut(&*record.key) {
                revisions.pop_front();
                if revisions.is_empty() {
                    self.by_key.remove(&*record.key);
                }
            }
        }
    }
}

/// The read position of one watcher.
struct Cursor {
    kv: EmbeddedKv,
    pending: VecDeque<KvEvent>,
    next_revision: u64,
    changes: watch::Receiver<u64>,
}

impl Cursor {
    async fn next(mut self) -> Option<(Result<KvEvent, BusError>, Cursor)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            // Mark the current version seen before reading, so a write that lands
            // after the read wakes `changed` below.
            self.changes.borrow_and_update();
            self.fill();
            if self.pending.is_empty() && self.changes.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Takes the next batch: from the change log if the watcher is within it, else
    /// from the retained records older than the log.
    fn fill(&mut self) {
        let state = self.kv.lock();
        let log_start = state.changes.front().map(|c| c.revision);
        match log_start {
            Some(start) if self.next_revision >= start => {
                let skip = usize::try_from(self.next_revision - start)
                    .unwrap_or(usize::MAX)
                    .min(state.changes.len());
                self.pending
                    .extend(
                        state
                            .changes
                            .range(skip..)
                            .take(WATCH_BATCH)
                            .map(|c| KvEvent {
                                key: c.key.to_string(),
                                value: c.value.clone(),
                                revision: c.revision,
                            }),
                    );
            }
            _ => {
                let end = log_start.unwrap_or(u64::MAX);
                self.pending.extend(
                    state
                        .records
                        .range(self.next_revision..end)
                        .take(WATCH_BATCH)
                        .filter_map(|(revision, _)| state.event(*revision)),
                );
                if self.pending.is_empty()
                    && let Some(start) = log_start
                {
                    // Nothing retained before the log: continue from it.
                    self.next_revision = start;
                    drop(state);
                    return self.fill();
                }
            }
        }
        if let Some(last) = self.pending.back() {
            self.next_revision = last.revision + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_values_per_key() {
        let mut config = KvConfig::new("b");
        config.history = 2;
        let kv = EmbeddedKv::new(&config);
        for i in 0..5u8 {
            kv.put("k", Bytes::from(vec![i])).unwrap();
        }
        kv.put("other", Bytes::from_static(b"o")).unwrap();
        let state = kv.lock();
        assert_eq!(
            state.by_key["k"].iter().copied().collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(state.records.len(), 3);
        assert_eq!(state.last_revision, 6);
    }

    #[tokio::test]
    async fn a_watcher_behind_the_change_log_reads_what_is_retained() {
        let kv = EmbeddedKv::new(&KvConfig::new("b"));
        let mut watch = kv.watch(false).unwrap();
        kv.put("other", Bytes::from_static(b"o")).unwrap();
        for i in 0..CHANGE_LOG + 4 {
            kv.put("k", Bytes::from(i.to_string())).unwrap();
        }
        let revision = |e: Option<Result<KvEvent, BusError>>| e.unwrap().unwrap().revision;
        // Revision 1 is still retained; 2..=5 were superseded and left the log.
        assert_eq!(revision(watch.next().await), 1);
        assert_eq!(revision(watch.next().await), 6);
        assert_eq!(revision(watch.next().await), 7);
        assert_eq!(kv.lock().changes.len(), CHANGE_LOG);
    }

    #[test]
    fn change_log_is_bounded_by_bytes() {
        let kv = EmbeddedKv::new(&KvConfig::new("b"));
        let big = Bytes::from(vec![0u8; 1024 * 1024]);
        for _ in 0..40 {
            kv.put("k", big.clone()).unwrap();
        }
        let state = kv.lock();
        assert!(state.change_bytes <= CHANGE_LOG_BYTES);
        assert_eq!(state.change_bytes, state.changes.len() * big.len());
    }

    #[test]
    fn lowered_history_applies_at_the_next_write() {
        let mut config = KvConfig::new("b");
        config.history = 5;
        let kv = EmbeddedKv::new(&config);
        for _ in 0..5 {
            kv.put("k", Bytes::new()).unwrap();
        }
        config.history = 1;
        kv.reconfigure(&config);
        assert_eq!(kv.lock().records.len(), 5);
        kv.put("k", Bytes::new()).unwrap();
        assert_eq!(kv.lock().records.len(), 1);
        assert_eq!(kv.get("k").unwrap().map(|e| e.revision), Some(6));
    }
}
