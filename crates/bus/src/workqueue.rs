//! [`WorkQueue`]: durable jobs, each handed to one consumer at a time and kept until one
//! acknowledges it, with JetStream work-queue semantics on both backends.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::WorkQueueConfig;
use crate::embedded::{EmbeddedAcker, EmbeddedWorkQueue};
use crate::error::BusError;
use crate::headers::Headers;
use crate::nats::{NatsAcker, NatsWorkQueue};
use crate::subject;

/// Longest job id accepted by [`WorkQueue::push`].
const MAX_JOB_ID_LEN: usize = 256;

/// A work queue: a stream of jobs (NATS: a JetStream stream with work-queue retention)
/// and the one durable consumer every handle shares.
///
/// Jobs come from [`WorkQueue::push`] or from any core publish on the queue's subjects.
/// [`WorkQueue::next`] hands a job to one handle; the job stays in flight until that
/// handle acknowledges it ([`Job::ack`]: gone for good), refuses it ([`Job::nak`]: handed
/// out again after a delay), or gives up on it ([`Job::term`]: gone, not handled). A job
/// neither acknowledged nor refused within `ack_wait` (its handle died, or dropped it) is
/// handed out again, to any handle. So every job is handled at least once, and a handler
/// that can run twice must not mind.
///
/// Clones share the queue and split its jobs like separate handles; each has its own
/// pending fetch. The queue does not cap how many jobs are in flight at once: each handle
/// takes a job only when it asks for one.
pub struct WorkQueue {
    inner: Inner,
    config: Arc<WorkQueueConfig>,
    max_payload: usize,
}

enum Inner {
    // Boxed: the async-nats handles are large.
    Nats(Box<NatsWorkQueue>),
    Embedded(EmbeddedWorkQueue),
}

impl Clone for WorkQueue {
    fn clone(&self) -> Self {
        let inner = match &self.inner {
            Inner::Nats(nats) => Inner::Nats(Box::new(nats.fresh_handle())),
            Inner::Embedded(embedded) => Inner::Embedded(embedded.clone()),
        };
        WorkQueue {
            inner,
            config: Arc::clone(&self.config),
            max_payload: self.max_payload,
        }
    }
}

impl fmt::Debug for WorkQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WorkQueue {
    pub(crate) fn nats(queue: NatsWorkQueue, config: WorkQueueConfig, max_payload: usize) -> Self {
        WorkQueue {
            inner: Inner::Nats(Box::new(queue)),
            config: Arc::new(config),
            max_payload,
        }
    }

    pub(crate) fn embedded(
        queue: EmbeddedWorkQueue,
        config: WorkQueueConfig,
        max_payload: usize,
    ) -> Self {
        WorkQueue {
            inner: Inner::Embedded(queue),
            config: Arc::new(config),
            max_payload,
        }
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.config.stream
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &WorkQueueConfig {
        &self.config
    }

    /// Queues a job on `subject` (literal, one of the queue's subjects) and returns its
    /// sequence once the queue has stored it. With an `id`, a job pushed with the same id
    /// within the `duplicate_window` is not queued again: the first one's sequence is
    /// returned (so a retried push after a lost answer queues the job once). Fails when
    /// the queue is full (`max_jobs`, `max_bytes`).
    pub async fn push(
        &self,
        subject: &str,
        payload: Bytes,
        id: Option<&str>,
    ) -> Result<u64, BusError> {
        self.push_with_headers(subject, Headers::new(), payload, id)
            .await
    }

    /// [`WorkQueue::push`] with headers (e.g. the trace context), handed out with the job.
    pub async fn push_with_headers(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        id: Option<&str>,
    ) -> Result<u64, BusError> {
        subject::validate_publish(subject)?;
        if !self.config.covers(subject) {
            return Err(BusError::InvalidSubject(format!(
                "{subject:?} is not a subject of work queue {}",
                self.config.stream
            )));
        }
        if let Some(id) = id {
            validate_job_id(id)?;
        }
        let size = subject.len() + headers.wire_len() + payload.len() + id.map_or(0, str::len);
        if size > self.max_payload {
            return Err(BusError::PayloadTooLarge {
                size,
                max: self.max_payload,
            });
        }
        match &self.inner {
            // Boxed: a JetStream publish and its acknowledgement is a large future.
            Inner::Nats(nats) => Box::pin(nats.push(subject, headers, payload, id)).await,
            Inner::Embedded(embedded) => embedded.push(subject, headers, payload, id),
        }
    }

    /// How much the queue holds: every job not yet acknowledged or dropped (queued, in
    /// flight, or waiting out a refusal), and their bytes; compare with `max_jobs` and
    /// `max_bytes`, beyond which new jobs are refused (or, published, dropped).
    pub async fn depth(&self) -> Result<Depth, BusError> {
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.depth()).await,
            Inner::Embedded(embedded) => Ok(embedded.depth()),
        }
    }

    /// How many jobs not yet acknowledged or dropped (as [`WorkQueue::depth`] counts them)
    /// are on subjects matching `filter` (wildcards allowed): e.g. one tenant's share of
    /// a queue whose subjects name the tenant.
    ///
    /// NATS: the stream's per-subject counts (stream info with a subjects filter), so the
    /// cost is in proportion to the number of distinct subjects matching, not of jobs.
    pub async fn count(&self, filter: &str) -> Result<u64, BusError> {
        subject::validate_subscribe(filter)?;
        match &self.inner {
            Inner::Nats(nats) => Box::pin(nats.count(filter)).await,
            Inner::Embedded(embedded) => Ok(embedded.count(filter)),
        }
    }

    /// The next job: waits at most `poll_wait` for one, and returns `None` when none came
    /// (call again). An `Err` (NATS: the server could not be reached) does not end the
    /// queue either; the next call tries again. Cancel-safe: a job that arrives for a call
    /// that was given up waits for the next call.
    pub async fn next(&mut self) -> Option<Result<Job, BusError>> {
        match &mut self.inner {
            Inner::Nats(nats) => Box::pin(nats.next()).await,
            Inner::Embedded(embedded) => embedded.next(self.config.poll_wait).await.map(Ok),
        }
    }
}

impl WorkQueue {
    /// Ends this handle without losing a job to it: waits (at most the poll wait) for a
    /// fetch it left open, given up by a cancelled [`WorkQueue::next`], to end, and
    /// hands any job that arrives meanwhile straight back to the queue. Dropping a handle
    /// instead may leave such a job in flight, unhandled, until its ack wait runs out.
    pub async fn close(self) {
        match self.inner {
            Inner::Nats(mut nats) => Box::pin(nats.close()).await,
            // Nothing is ever handed to an embedded handle that is not waiting.
            Inner::Embedded(_) => {}
        }
    }
}

/// What a work queue holds: [`WorkQueue::depth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Jobs not yet acknowledged or dropped.
    pub jobs: u64,
    /// Their bytes (NATS: as the stream counts them, headers and subjects included).
    pub bytes: u64,
}

fn validate_job_id(id: &str) -> Result<(), BusError> {
    if id.is_empty() || id.len() > MAX_JOB_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BusError::InvalidConfig(format!(
            "job id {id:?} must be 1 to {MAX_JOB_ID_LEN} printable ASCII characters"
        )));
    }
    Ok(())
}

/// One job handed out by [`WorkQueue::next`]. Settle it with [`Job::ack`], [`Job::nak`]
/// or [`Job::term`]; a job dropped unsettled is handed out again after `ack_wait`.
pub struct Job {
    /// The subject it was queued on.
    pub subject: String,
    /// Its headers (the server's own `Nats-*` headers removed).
    pub headers: Headers,
    /// Its payload.
    pub payload: Bytes,
    /// The times it has been handed out, this time included (1 the first time).
    pub delivered: u64,
    /// Its sequence in the queue's stream: unique in the stream, increasing with every
    /// job queued.
    pub sequence: u64,
    acker: Acker,
}

pub(crate) enum Acker {
    // Boxed: async-nats's acker holds a whole JetStream context.
    Nats(Box<NatsAcker>),
    Embedded(EmbeddedAcker),
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("subject", &self.subject)
            .field("sequence", &self.sequence)
            .field("delivered", &self.delivered)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// How a job is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Nak(Duration),
    Term,
}

impl Job {
    pub(crate) fn new(
        subject: String,
        headers: Headers,
        payload: Bytes,
        delivered: u64,
        sequence: u64,
        acker: Acker,
    ) -> Job {
        Job {
            subject,
            headers,
            payload,
            delivered,
            sequence,
            acker,
        }
    }

    /// Done: the job leaves the queue. Returns once the queue recorded it (NATS: the
    /// server confirmed); an error means it may be handed out again.
    pub async fn ack(self) -> Result<(), BusError> {
        self.settle(Settle::Ack).await
    }

    /// Not now: the job is handed out again (to any handle) once `delay` has passed.
    pub async fn nak(self, delay: Duration) -> Result<(), BusError> {
        self.settle(Settle::Nak(delay)).await
    }

    /// Never: the job leaves the queue without being handled.
    pub async fn term(self) -> Result<(), BusError> {
        self.settle(Settle::Term).await
    }

    async fn settle(self, how: Settle) -> Result<(), BusError> {
        match self.acker {
            Acker::Nats(acker) => Box::pin(acker.settle(how)).await,
            Acker::Embedded(acker) => {
                acker.settle(how);
                Ok(())
            }
        }
    }
}
