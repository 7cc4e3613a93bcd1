//! Embedded work queue: JetStream work-queue semantics in memory.
//!
//! Jobs are kept by sequence; each one that may be handed out has a due time in one
//! ordered set: when it was queued, when a refusal's delay ends, or when the
//! acknowledgement it is waiting for is overdue. Handing out takes the earliest due job
//! whose time has come, so a redelivery costs a set operation, not a scan. Handles wait
//! on a change counter and on the earliest due time, never longer than their poll wait.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::WorkQueueConfig;
use crate::error::BusError;
use crate::headers::Headers;
use crate::subject;
use crate::workqueue::{Acker, Depth, Job, Settle};

struct Entry {
    subject: String,
    headers: Headers,
    payload: Bytes,
    stored: Instant,
    /// Times handed out so far.
    delivered: u64,
    /// When it may be handed out (again); `None` once `max_deliver` is reached.
    due: Option<Instant>,
}

impl Entry {
    fn size(&self) -> usize {
        self.subject.len() + self.headers.wire_len() + self.payload.len()
    }
}

/// A job as one delivery hands it out.
struct Handed {
    subject: String,
    headers: Headers,
    payload: Bytes,
    delivered: u64,
    sequence: u64,
}

struct State {
    config: WorkQueueConfig,
    last_sequence: u64,
    jobs: BTreeMap<u64, Entry>,
    due: BTreeSet<(Instant, u64)>,
    bytes: usize,
    /// Jobs held per subject, for [`EmbeddedWorkQueue::count`].
    by_subject: HashMap<String, u64>,
    /// Ids pushed within the duplicate window, with the sequence they got...
    ids: HashMap<String, (u64, Instant)>,
    /// ...oldest first, to forget them when the window has passed.
    id_order: VecDeque<(Instant, String)>,
}

struct Queue {
    state: Mutex<State>,
    /// Bumped by every change that may make a job available.
    changes: watch::Sender<u64>,
}

/// Handle to an embedded work queue; clones share it.
#[derive(Clone)]
pub(crate) struct EmbeddedWorkQueue {
    queue: Arc<Queue>,
}

impl EmbeddedWorkQueue {
    pub(crate) fn new(config: &WorkQueueConfig) -> EmbeddedWorkQueue {
        EmbeddedWorkQueue {
            queue: Arc::new(Queue {
                state: Mutex::new(State {
                    config: config.clone(),
                    last_sequence: 0,
                    jobs: BTreeMap::new(),
                    due: BTreeSet::new(),
                    bytes: 0,
                    by_subject: HashMap::new(),
                    ids: HashMap::new(),
                    id_order: VecDeque::new(),
                }),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// Applies a new configuration; limits apply from the next push, timings from the
    /// next delivery.
    pub(crate) fn reconfigure(&self, config: &WorkQueueConfig) {
        self.queue.lock().config = config.clone();
    }

    /// Queues a job, unless `id` was pushed within the duplicate window.
    pub(crate) fn push(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        id: Option<&str>,
    ) -> Result<u64, BusError> {
        let sequence = {
            let mut state = self.queue.lock();
            let now = Instant::now();
            state.forget_ids(now);
            if let Some((sequence, _)) = id.and_then(|id| state.ids.get(id)) {
                return Ok(*sequence);
            }
            let sequence = state.store(subject.to_owned(), headers, payload, now)?;
            if let Some(id) = id {
                state.ids.insert(id.to_owned(), (sequence, now));
                state.id_order.push_back((now, id.to_owned()));
            }
            sequence
        };
        self.queue.changed();
        Ok(sequence)
    }

    /// A core publish on the queue's subjects (with the id of its `Nats-Msg-Id` header, if
    /// any): queued, or dropped when the queue is full (as JetStream drops a publish
    /// nobody waits an acknowledgement for).
    pub(crate) fn capture(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        id: Option<&str>,
    ) {
        // Nobody waits for the answer: a full queue drops the job silently.
        let _ = self.push(subject, headers, payload, id);
    }

    /// Jobs and bytes held (queued, in flight, or waiting out a refusal).
    pub(crate) fn depth(&self) -> Depth {
        let state = self.queue.lock();
        Depth {
            jobs: state.jobs.len() as u64,
            bytes: state.bytes as u64,
        }
    }

    /// Jobs held on subjects matching `filter`, in proportion to the distinct subjects
    /// held (as JetStream's per-subject counts), not to the jobs.
    pub(crate) fn count(&self, filter: &str) -> u64 {
        let state = self.queue.lock();
        if subject::is_literal(filter) {
            return state.by_subject.get(filter).copied().unwrap_or(0);
        }
        state
            .by_subject
            .iter()
            .filter(|(subject, _)| subject::matches(filter, subject))
            .map(|(_, jobs)| jobs)
            .sum()
    }

    /// The next job within `poll_wait` (the handle's own: handles opened with different
    /// configurations each wait their own time), or `None`.
    pub(crate) async fn next(&self, poll_wait: Duration) -> Option<Job> {
        let mut changes = self.queue.changes.subscribe();
        let deadline = Instant::now() + poll_wait;
        loop {
            let wake = {
                let mut state = self.queue.lock();
                match state.hand_out(Instant::now()) {
                    Ok(handed) => {
                        let acker = EmbeddedAcker {
                            queue: Arc::clone(&self.queue),
                            sequence: handed.sequence,
                            delivered: handed.delivered,
                        };
                        return Some(Job::new(
                            handed.subject,
                            handed.headers,
                            handed.payload,
                            handed.delivered,
                            handed.sequence,
                            Acker::Embedded(acker),
                        ));
                    }
                    Err(next_due) => next_due.map_or(deadline, |due| due.min(deadline)),
                }
            };
            if Instant::now() >= deadline {
                return None;
            }
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.expire(Instant::now());
        state
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl State {
    fn store(
        &mut self,
        subject: String,
        headers: Headers,
        payload: Bytes,
        now: Instant,
    ) -> Result<u64, BusError> {
        let size = subject.len() + headers.wire_len() + payload.len();
        let over_jobs = self.config.max_jobs > 0
            && i64::try_from(self.jobs.len()).unwrap_or(i64::MAX) >= self.config.max_jobs;
        let over_bytes = self.config.max_bytes > 0
            && i64::try_from(self.bytes + size).unwrap_or(i64::MAX) > self.config.max_bytes;
        if over_jobs || over_bytes {
            return Err(BusError::Backend(format!(
                "work queue {} is full",
                self.config.stream
            )));
        }
        self.last_sequence += 1;
        let sequence = self.last_sequence;
        *self.by_subject.entry(subject.clone()).or_default() += 1;
        self.jobs.insert(
            sequence,
            Entry {
                subject,
                headers: headers.without_reserved(),
                payload,
                stored: now,
                delivered: 0,
                due: Some(now),
            },
        );
        self.due.insert((now, sequence));
        self.bytes += size;
        Ok(sequence)
    }

    /// Hands out the earliest due job whose time has come; otherwise says when the
    /// earliest due time is, if any.
    fn hand_out(&mut self, now: Instant) -> Result<Handed, Option<Instant>> {
        let Some(&(due, sequence)) = self.due.first() else {
            return Err(None);
        };
        if due > now {
            return Err(Some(due));
        }
        self.due.pop_first();
        let (ack_wait, max_deliver) = (self.config.ack_wait, self.config.max_deliver);
        let Some(entry) = self.jobs.get_mut(&sequence) else {
            // Not reachable: due times leave with their job.
            return Err(self.due.first().map(|(due, _)| *due));
        };
        entry.delivered += 1;
        let exhausted =
            max_deliver > 0 && i64::try_from(entry.delivered).unwrap_or(i64::MAX) >= max_deliver;
        entry.due = (!exhausted).then(|| now + ack_wait);
        if let Some(due) = entry.due {
            self.due.insert((due, sequence));
        }
        Ok(Handed {
            subject: entry.subject.clone(),
            headers: entry.headers.clone(),
            payload: entry.payload.clone(),
            delivered: entry.delivered,
            sequence,
        })
    }

    fn remove(&mut self, sequence: u64) {
        if let Some(entry) = self.jobs.remove(&sequence) {
            if let Some(due) = entry.due {
                self.due.remove(&(due, sequence));
            }
            self.bytes -= entry.size();
            if let Some(jobs) = self.by_subject.get_mut(&entry.subject) {
                *jobs -= 1;
                if *jobs == 0 {
                    self.by_subject.remove(&entry.subject);
                }
            }
        }
    }

    /// Drops jobs older than `max_age` (sequences are in storage order).
    fn expire(&mut self, now: Instant) {
        let max_age = self.config.max_age;
        while let Some((&sequence, entry)) = self.jobs.first_key_value() {
            if now.saturating_duration_since(entry.stored) < max_age {
                break;
            }
            self.remove(sequence);
        }
    }

    fn forget_ids(&mut self, now: Instant) {
        let window = self.config.duplicate_window;
        while let Some((pushed, _)) = self.id_order.front() {
            if now.saturating_duration_since(*pushed) < window {
                break;
            }
            if let Some((_, id)) = self.id_order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
}

/// Settles one delivery of an embedded job.
pub(crate) struct EmbeddedAcker {
    queue: Arc<Queue>,
    sequence: u64,
    delivered: u64,
}

impl EmbeddedAcker {
    pub(crate) fn settle(self, how: Settle) {
        let mut state = self.queue.lock();
        match how {
            // Handled is handled, whichever delivery did it.
            Settle::Ack | Settle::Term => state.remove(self.sequence),
            Settle::Nak(delay) => {
                let sequence = self.sequence;
                let Some(entry) = state.jobs.get_mut(&sequence) else {
                    return;
                };
                // A refusal from a delivery that was already given up on changes nothing.
                if entry.delivered != self.delivered {
                    return;
                }
                let Some(previous) = entry.due else {
                    return;
                };
                let due = Instant::now() + delay;
                entry.due = Some(due);
                state.due.remove(&(previous, sequence));
                state.due.insert((due, sequence));
                drop(state);
                self.queue.changed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How long until a job becomes due.
    fn until_due(queue: &EmbeddedWorkQueue) -> Option<Duration> {
        let state = queue.queue.lock();
        state
            .due
            .first()
            .map(|(due, _)| due.saturating_duration_since(Instant::now()))
    }

    const POLL: Duration = Duration::from_millis(50);

    fn config() -> WorkQueueConfig {
        WorkQueueConfig {
            poll_wait: POLL,
            ..WorkQueueConfig::new("Q", vec!["q.>".into()], "c")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refused_jobs_wait_their_delay_and_unacknowledged_ones_come_back() {
        let queue = EmbeddedWorkQueue::new(&config());
        queue
            .push("q.a", Headers::new(), Bytes::from_static(b"1"), None)
            .unwrap();
        let job = queue.next(POLL).await.unwrap();
        assert_eq!((job.delivered, job.sequence), (1, 1));
        job.nak(Duration::from_secs(3)).await.unwrap();
        assert!(queue.next(POLL).await.is_none(), "not before the delay");
        assert!(until_due(&queue).unwrap() > Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        let job = queue.next(POLL).await.unwrap();
        assert_eq!(job.delivered, 2);
        drop(job);
        tokio::time::advance(config().ack_wait).await;
        let job = queue.next(POLL).await.unwrap();
        assert_eq!(job.delivered, 3);
        job.ack().await.unwrap();
        assert!(queue.next(POLL).await.is_none());
        assert_eq!(queue.queue.lock().bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn limits_refuse_new_jobs_and_ids_are_forgotten_after_the_window() {
        let queue = EmbeddedWorkQueue::new(&WorkQueueConfig {
            max_jobs: 1,
            ..config()
        });
        assert_eq!(
            queue
                .push("q.a", Headers::new(), Bytes::new(), Some("x"))
                .unwrap(),
            1
        );
        assert_eq!(
            queue
                .push("q.a", Headers::new(), Bytes::new(), Some("x"))
                .unwrap(),
            1
        );
        assert!(
            queue
                .push("q.a", Headers::new(), Bytes::new(), Some("y"))
                .is_err()
        );
        queue.next(POLL).await.unwrap().ack().await.unwrap();
        tokio::time::advance(config().duplicate_window).await;
        assert_eq!(
            queue
                .push("q.a", Headers::new(), Bytes::new(), Some("x"))
                .unwrap(),
            2
        );
    }
}
