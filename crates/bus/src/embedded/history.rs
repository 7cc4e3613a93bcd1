//! Embedded history stream: messages by sequence, with JetStream's limits retention.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::config::{HistoryConfig, ReadFrom};
use crate::error::BusError;
use crate::headers::Headers;
use crate::history::{StoredMessage, Usage, epoch_of, newest_within};
use crate::subject;

struct State {
    config: HistoryConfig,
    last_seq: u64,
    last_time: DateTime<Utc>,
    messages: BTreeMap<u64, StoredMessage>,
    /// Sequences per subject, ascending: per-subject limits and exact-subject reads.
    by_subject: HashMap<String, VecDeque<u64>>,
    /// Bytes of the messages kept ([`stored_size`]), for `max_bytes`.
    bytes: usize,
}

/// A message's size as the stream's byte limit counts it.
fn stored_size(message: &StoredMessage) -> usize {
    message.subject.len() + message.headers.wire_len() + message.payload.len()
}

/// The creation instant of the latest stream, in nanoseconds since the epoch: keeps
/// epochs unique within the process even when two streams are created in the same
/// clock tick.
static LAST_EPOCH_NANOS: AtomicI64 = AtomicI64::new(i64::MIN);

/// Handle to an embedded history stream.
#[derive(Clone)]
pub(crate) struct EmbeddedHistory {
    state: Arc<Mutex<State>>,
    epoch: Arc<str>,
}

impl EmbeddedHistory {
    pub(crate) fn new(config: &HistoryConfig) -> EmbeddedHistory {
        EmbeddedHistory {
            state: Arc::new(Mutex::new(State {
                config: config.clone(),
                last_seq: 0,
                last_time: DateTime::<Utc>::MIN_UTC,
                messages: BTreeMap::new(),
                by_subject: HashMap::new(),
                bytes: 0,
            })),
            epoch: epoch_of(unique_now()).into(),
        }
    }

    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    pub(crate) fn config(&self) -> HistoryConfig {
        self.lock().config.clone()
    }

    /// Applies a new configuration. As in NATS (2.11), a lowered per-subject limit
    /// applies to a subject at its next append; a lowered `max_age` at once.
    pub(crate) fn reconfigure(&self, config: &HistoryConfig) {
        let mut state = self.lock();
        state.config = config.clone();
        state.expire();
        state.trim_bytes();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.expire();
        state
    }

    pub(crate) fn append(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<u64, BusError> {
        let mut state = self.lock();
        state.last_seq += 1;
        let seq = state.last_seq;
        // Never earlier than the previous message: reads by time rely on it.
        let time = Utc::now().max(state.last_time);
        state.last_time = time;
        let message = StoredMessage {
            seq,
            subject: subject.to_owned(),
            headers: headers.without_reserved(),
            payload,
            time,
        };
        state.bytes += stored_size(&message);
        state.messages.insert(seq, message);
        match state.by_subject.get_mut(subject) {
            Some(seqs) => seqs.push_back(seq),
            None => {
                state
                    .by_subject
                    .insert(subject.to_owned(), VecDeque::from([seq]));
            }
        }
        state.trim_subject(subject);
        state.trim_bytes();
        Ok(seq)
    }

    pub(crate) fn get(&self, seq: u64) -> Option<StoredMessage> {
        self.lock().messages.get(&seq).cloned()
    }

    pub(crate) fn last(&self, subject: &str) -> Option<StoredMessage> {
        let state = self.lock();
        let seq = state.by_subject.get(subject)?.back()?;
        state.messages.get(seq).cloned()
    }

    pub(crate) fn tail(&self, subject: &str, n: usize) -> Vec<StoredMessage> {
        let state = self.lock();
        let Some(seqs) = state.by_subject.get(subject) else {
            return Vec::new();
        };
        seqs.range(seqs.len().saturating_sub(n)..)
            .filter_map(|seq| state.messages.get(seq).cloned())
            .collect()
    }

    pub(crate) fn usage(&self) -> Usage {
        let state = self.lock();
        Usage {
            messages: state.messages.len() as u64,
            bytes: state.bytes as u64,
        }
    }

    pub(crate) fn subjects(&self, filter: &str) -> Vec<(String, u64)> {
        self.lock()
            .by_subject
            .iter()
            .filter(|(subject, seqs)| !seqs.is_empty() && subject::matches(filter, subject))
            .map(|(subject, seqs)| (subject.clone(), seqs.len() as u64))
            .collect()
    }

    pub(crate) fn count(&self, filter: &str) -> u64 {
        let state = self.lock();
        let stored: usize = if subject::is_literal(filter) {
            state.by_subject.get(filter).map_or(0, VecDeque::len)
        } else {
            state
                .by_subject
                .iter()
                .filter(|(subject, _)| subject::matches(filter, subject))
                .map(|(_, seqs)| seqs.len())
                .sum()
        };
        stored as u64
    }

    /// Removes the messages on subjects matching `filter`; `last_seq` stays, so
    /// sequences are not reused.
    /// Keeps the newest messages on `subject` whose sizes add up to at most `max_bytes`
    /// (the newest one always); removes the older ones and returns how many.
    pub(crate) fn keep_newest_within(&self, subject: &str, max_bytes: u64) -> u64 {
        let mut state = self.lock();
        let State {
            messages,
            by_subject,
            bytes,
            ..
        } = &mut *state;
        let Some(seqs) = by_subject.get_mut(subject) else {
            return 0;
        };
        let sizes: Vec<u64> = seqs
            .iter()
            .map(|seq| messages.get(seq).map_or(0, |m| stored_size(m) as u64))
            .collect();
        let remove = seqs.len() - newest_within(&sizes, max_bytes);
        for old in seqs.drain(..remove) {
            if let Some(message) = messages.remove(&old) {
                *bytes -= stored_size(&message);
            }
        }
        remove as u64
    }

    pub(crate) fn purge(&self, filter: &str) -> u64 {
        let mut state = self.lock();
        let State {
            messages,
            by_subject,
            bytes,
            ..
        } = &mut *state;
        let mut purged = 0u64;
        by_subject.retain(|subject, seqs| {
            if !subject::matches(filter, subject) {
                return true;
            }
            for seq in seqs.iter() {
                if let Some(message) = messages.remove(seq) {
                    *bytes -= stored_size(&message);
                }
            }
            purged += seqs.len() as u64;
            false
        });
        purged
    }

    pub(crate) fn read(&self, filter: &str, from: ReadFrom, limit: usize) -> Vec<StoredMessage> {
        let state = self.lock();
        if subject::is_literal(filter) {
            let Some(seqs) = state.by_subject.get(filter) else {
                return Vec::new();
            };
            let start = match from {
                ReadFrom::Sequence(seq) => seqs.partition_point(|s| *s < seq),
                ReadFrom::Time(time) => {
                    seqs.partition_point(|s| state.messages.get(s).is_some_and(|m| m.time < time))
                }
            };
            return seqs
                .range(start..)
                .filter_map(|s| state.messages.get(s).cloned())
                .take(limit)
                .collect();
        }
        let matching = |m: &&StoredMessage| subject::matches(filter, &m.subject);
        match from {
            ReadFrom::Sequence(seq) => state
                .messages
                .range(seq..)
                .map(|(_, m)| m)
                .filter(matching)
                .take(limit)
                .cloned()
                .collect(),
            ReadFrom::Time(time) => state
                .messages
                .values()
                .skip_while(|m| m.time < time)
                .filter(matching)
                .take(limit)
                .cloned()
                .collect(),
        }
    }
}

/// Now, or just after the previous stream's creation if the clock has not moved on.
fn unique_now() -> DateTime<Utc> {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let previous = LAST_EPOCH_NANOS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    DateTime::from_timestamp_nanos(now.max(previous.saturating_add(1)))
}

impl State {
    fn trim_subject(&mut self, subject: &str) {
        let Ok(max) = usize::try_from(self.config.max_msgs_per_subject) else {
            return;
        };
        if max == 0 {
            return;
        }
        if let Some(seqs) = self.by_subject.get_mut(subject) {
            while seqs.len() > max {
                if let Some(old) = seqs.pop_front()
                    && let Some(message) = self.messages.remove(&old)
                {
                    self.bytes -= stored_size(&message);
                }
            }
        }
    }

    /// Drops the oldest messages while the stream holds more than `max_bytes`.
    fn trim_bytes(&mut self) {
        let Ok(max) = usize::try_from(self.config.max_bytes) else {
            return;
        };
        if max == 0 {
            return;
        }
        while self.bytes > max {
            let Some((_, message)) = self.messages.pop_first() else {
                break;
            };
            self.remove_oldest(message);
        }
    }

    /// Forgets `message`, just removed as the oldest of the stream.
    fn remove_oldest(&mut self, message: StoredMessage) {
        self.bytes -= stored_size(&message);
        if let Some(seqs) = self.by_subject.get_mut(&message.subject) {
            seqs.pop_front();
            if seqs.is_empty() {
                self.by_subject.remove(&message.subject);
            }
        }
    }

    /// Drops messages older than `max_age`, oldest first (sequence order is time order).
    fn expire(&mut self) {
        if self.config.max_age.is_zero() {
            return;
        }
        let Ok(max_age) = chrono::Duration::from_std(self.config.max_age) else {
            return;
        };
        let cutoff = Utc::now() - max_age;
        while let Some(entry) = self.messages.first_entry() {
            if entry.get().time >= cutoff {
                break;
            }
            let message = entry.remove();
            self.remove_oldest(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(max_per_subject: i64) -> EmbeddedHistory {
        let mut config = HistoryConfig::new("H", vec!["h.>".into()]);
        config.max_msgs_per_subject = max_per_subject;
        EmbeddedHistory::new(&config)
    }

    #[test]
    fn sequences_span_subjects_and_limits_apply_per_subject() {
        let h = stream(2);
        for i in 0..3 {
            h.append("h.a", Headers::new(), Bytes::from(vec![i]))
                .unwrap();
        }
        h.append("h.b", Headers::new(), Bytes::new()).unwrap();
        assert!(h.get(1).is_none());
        assert_eq!(h.get(4).map(|m| m.subject), Some("h.b".into()));
        let a: Vec<u64> = h
            .read("h.a", ReadFrom::Sequence(0), 10)
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(a, vec![2, 3]);
        let all: Vec<u64> = h
            .read("h.>", ReadFrom::Sequence(3), 10)
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(all, vec![3, 4]);
        assert_eq!(h.last("h.a").map(|m| m.seq), Some(3));
        assert!(h.last("h.c").is_none());
    }

    #[test]
    fn tail_count_and_purge() {
        let h = stream(0);
        for subject in ["h.a", "h.b", "h.a", "h.c.d", "h.a"] {
            h.append(subject, Headers::new(), Bytes::new()).unwrap();
        }
        let seqs =
            |messages: Vec<StoredMessage>| messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(h.tail("h.a", 2)), [3, 5]);
        assert_eq!(seqs(h.tail("h.a", 10)), [1, 3, 5]);
        assert!(h.tail("h.none", 10).is_empty());
        assert_eq!((h.count("h.a"), h.count("h.*"), h.count("h.>")), (3, 4, 5));
        assert_eq!(h.purge("h.*"), 4);
        assert_eq!(h.count("h.>"), 1);
        assert!(h.last("h.a").is_none());
        assert_eq!(h.append("h.a", Headers::new(), Bytes::new()).unwrap(), 6);
    }

    #[test]
    fn epochs_differ_per_stream() {
        let epochs: Vec<String> = (0..100).map(|_| stream(0).epoch().to_owned()).collect();
        assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
    }

    #[test]
    fn unlimited_when_not_positive() {
        let h = stream(0);
        for _ in 0..5 {
            h.append("h.a", Headers::new(), Bytes::new()).unwrap();
        }
        assert_eq!(h.read("h.a", ReadFrom::Sequence(1), 100).len(), 5);
        assert_eq!(h.read("h.a", ReadFrom::Sequence(1), 2).len(), 2);
    }
}
