//! Work queues on JetStream: a stream with work-queue retention and one durable pull
//! consumer with explicit acknowledgements, shared by every handle (in any process).
//!
//! Each handle keeps at most one pull request of one job open, so a job is only in
//! flight while its handle is working on it (a prefetched job's `ack_wait` would run
//! while it waits). Settlements are confirmed by the server (double acks), so once
//! [`crate::Job::ack`] returns the job is gone.

use std::time::Duration;

use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::pull::{self, Batch};
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy};
use async_nats::jetstream::{self, AckKind, ErrorCode};
use bytes::Bytes;
use futures_util::StreamExt;

use super::history::create_or_update;
use super::kv::storage_type;
use super::{Setup, bounded, count_on_subjects, ensure_connected};
use crate::config::WorkQueueConfig;
use crate::error::BusError;
use crate::headers::Headers;
use crate::workqueue::{Depth, Job, Settle};

/// Beyond the poll wait, how long a pull request may stay silent before it is given up
/// (the server answers an expired request itself; this covers a lost answer).
const PULL_GRACE: Duration = Duration::from_secs(2);

/// A work queue on JetStream.
pub(crate) struct NatsWorkQueue {
    client: async_nats::Client,
    js: jetstream::Context,
    config: WorkQueueConfig,
    /// JetStream replicas of the stream and its consumer.
    replicas: usize,
    timeout: Duration,
    /// `None` after a failure that may mean the consumer (or stream) is gone: both are
    /// set up again before the next pull.
    consumer: Option<Consumer<pull::Config>>,
    /// The open pull request, kept across calls so a cancelled `next` loses nothing.
    pull: Option<Batch>,
}

impl NatsWorkQueue {
    /// Creates (or updates) the stream and the durable consumer.
    pub(crate) async fn open(
        client: async_nats::Client,
        setup: Setup<'_>,
        config: &WorkQueueConfig,
        timeout: Duration,
    ) -> Result<NatsWorkQueue, BusError> {
        let consumer = set_up(setup, config).await?;
        Ok(NatsWorkQueue {
            client,
            js: setup.js.clone(),
            config: config.clone(),
            replicas: setup.replicas,
            timeout,
            consumer: Some(consumer),
            pull: None,
        })
    }

    /// Another handle on the same queue, without this one's pull request.
    pub(crate) fn fresh_handle(&self) -> NatsWorkQueue {
        NatsWorkQueue {
            client: self.client.clone(),
            js: self.js.clone(),
            config: self.config.clone(),
            replicas: self.replicas,
            timeout: self.timeout,
            consumer: self.consumer.clone(),
            pull: None,
        }
    }

    pub(crate) async fn push(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
        id: Option<&str>,
    ) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        let mut headers = headers.to_nats();
        if let Some(id) = id {
            headers.insert(NATS_MESSAGE_ID, id);
        }
        let subject = subject.to_owned();
        bounded(self.timeout, async {
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|err| BusError::Unavailable(format!("work queue push failed: {err}")))?;
            ack.await
                .map(|ack| ack.sequence)
                .map_err(|err| BusError::Backend(format!("work queue push refused: {err}")))
        })
        .await
    }

    /// Jobs and bytes in the stream (queued, in flight, or waiting out a refusal).
    pub(crate) async fn depth(&self) -> Result<Depth, BusError> {
        ensure_connected(&self.client)?;
        let name = self.config.stream.clone();
        bounded(self.timeout, async {
            let stream = self.js.get_stream(&name).await.map_err(|err| {
                BusError::Unavailable(format!("work queue {name} is unavailable: {err}"))
            })?;
            let info = stream.cached_info();
            Ok(Depth {
                jobs: info.state.messages,
                bytes: info.state.bytes,
            })
        })
        .await
    }

    /// Jobs on subjects matching `filter`: the stream's per-subject counts, summed.
    pub(crate) async fn count(&self, filter: &str) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        let name = self.config.stream.clone();
        let failed = |err: &dyn std::fmt::Display| {
            BusError::Backend(format!("work queue {name} count failed: {err}"))
        };
        bounded(self.timeout, async {
            let stream = self
                .js
                .get_stream_no_info(&self.config.stream)
                .await
                .map_err(|err| failed(&err))?;
            count_on_subjects(&stream, filter, &format!("work queue {name} count")).await
        })
        .await
    }

    pub(crate) async fn next(&mut self) -> Option<Result<Job, BusError>> {
        if self.pull.is_none() {
            if let Err(err) = ensure_connected(&self.client) {
                return Some(Err(err));
            }
            match self.start_pull().await {
                Ok(pull) => self.pull = Some(pull),
                Err(err) => {
                    self.consumer = None;
                    return Some(Err(err));
                }
            }
        }
        let pull = self.pull.as_mut()?;
        let answer = tokio::time::timeout(self.config.poll_wait + PULL_GRACE, pull.next()).await;
        // One job per pull request: whatever the answer, the request is over.
        self.pull = None;
        match answer {
            Ok(Some(Ok(message))) => Some(to_job(message)),
            Ok(Some(Err(err))) => {
                self.consumer = None;
                Some(Err(BusError::Backend(format!(
                    "work queue pull failed: {err}"
                ))))
            }
            Ok(None) | Err(_) => None,
        }
    }

    /// Finishes the open pull request, if any, handing back what it brings.
    pub(crate) async fn close(&mut self) {
        let Some(mut pull) = self.pull.take() else {
            return;
        };
        let deadline = tokio::time::Instant::now() + self.config.poll_wait + PULL_GRACE;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, pull.next()).await {
            if let Err(err) = message.double_ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %err, "a job fetched while closing was not handed back; it waits for its ack wait");
            }
        }
    }

    async fn start_pull(&mut self) -> Result<Batch, BusError> {
        let consumer = match &self.consumer {
            Some(consumer) => consumer.clone(),
            None => {
                // Once, within the request timeout: the caller retries the pull.
                let once = Setup {
                    js: &self.js,
                    attempt: self.timeout,
                    budget: self.timeout,
                    replicas: self.replicas,
                };
                let consumer = set_up(once, &self.config).await?;
                self.consumer = Some(consumer.clone());
                consumer
            }
        };
        let poll_wait = self.config.poll_wait;
        bounded(self.timeout, async move {
            consumer
                .batch()
                .max_messages(1)
                .expires(poll_wait)
                .messages()
                .await
                .map_err(|err| BusError::Backend(format!("work queue pull failed: {err}")))
        })
        .await
    }
}

/// Creates or updates the stream, then the durable consumer.
async fn set_up(
    setup: Setup<'_>,
    config: &WorkQueueConfig,
) -> Result<Consumer<pull::Config>, BusError> {
    let replicas = setup.replicas;
    let stream_config = stream::Config {
        name: config.stream.clone(),
        subjects: config.subjects.clone(),
        retention: RetentionPolicy::WorkQueue,
        // A full queue refuses new jobs rather than dropping queued ones.
        discard: DiscardPolicy::New,
        max_age: config.max_age,
        max_messages: if config.max_jobs > 0 {
            config.max_jobs
        } else {
            -1
        },
        max_bytes: if config.max_bytes > 0 {
            config.max_bytes
        } else {
            -1
        },
        duplicate_window: config.duplicate_window,
        storage: storage_type(config.storage),
        num_replicas: replicas,
        ..Default::default()
    };
    let consumer_config = pull::Config {
        durable_name: Some(config.consumer.clone()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ack_wait: config.ack_wait,
        max_deliver: if config.max_deliver > 0 {
            config.max_deliver
        } else {
            -1
        },
        num_replicas: replicas,
        // Unlimited: each handle takes only what it can work on, so a cap here (the
        // server's default is 1,000) would only stall every handle once enough of them
        // are busy.
        max_ack_pending: -1,
        ..Default::default()
    };
    setup
        .run(
            "opening a work queue",
            || create_or_update(setup.js, stream_config.clone()),
            |err| match err.kind() {
                CreateStreamErrorKind::JetStream(js_err)
                    if js_err.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
                {
                    BusError::InvalidConfig(format!(
                        "stream {}: subjects overlap another stream: {err}",
                        config.stream
                    ))
                }
                _ => BusError::Backend(format!("cannot open work queue {}: {err}", config.stream)),
            },
        )
        .await?;
    setup
        .run(
            "opening a work queue's consumer",
            || {
                setup
                    .js
                    .create_consumer_on_stream(consumer_config.clone(), &config.stream)
            },
            |err| {
                BusError::Backend(format!(
                    "cannot open the consumer of work queue {}: {err}",
                    config.stream
                ))
            },
        )
        .await
}

fn to_job(message: jetstream::Message) -> Result<Job, BusError> {
    let (sequence, delivered) = {
        let info = message
            .info()
            .map_err(|err| BusError::Backend(format!("work queue job without info: {err}")))?;
        (
            info.stream_sequence,
            u64::try_from(info.delivered).unwrap_or(1),
        )
    };
    let (message, acker) = message.split();
    let headers = message
        .headers
        .as_ref()
        .map(|headers| Headers::from_nats(headers).without_reserved())
        .unwrap_or_default();
    Ok(Job::new(
        message.subject.to_string(),
        headers,
        message.payload,
        delivered,
        sequence,
        crate::workqueue::Acker::Nats(Box::new(NatsAcker { acker })),
    ))
}

/// Settles one delivery of a JetStream job.
pub(crate) struct NatsAcker {
    acker: Acker,
}

impl NatsAcker {
    pub(crate) async fn settle(self, how: Settle) -> Result<(), BusError> {
        let kind = match how {
            Settle::Ack => AckKind::Ack,
            Settle::Nak(delay) if delay.is_zero() => AckKind::Nak(None),
            Settle::Nak(delay) => AckKind::Nak(Some(delay)),
            Settle::Term => AckKind::Term,
        };
        // The acker waits for the server's confirmation up to the JetStream timeout.
        self.acker
            .double_ack_with(kind)
            .await
            .map_err(|err| BusError::Unavailable(format!("work queue settle failed: {err}")))
    }
}
