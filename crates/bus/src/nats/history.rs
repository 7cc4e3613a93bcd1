//! History streams on JetStream: publish with ack, direct get, and ephemeral pull
//! consumers for ranged reads.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, DiscardPolicy};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{bounded, ensure_connected, to_chrono};
use crate::config::{HistoryConfig, ReadFrom};
use crate::error::BusError;
use crate::headers::Headers;
use crate::history::StoredMessage;
use crate::nats::kv::storage_type;

/// A read consumer the server removes by itself if we could not delete it.
const READ_CONSUMER_INACTIVE: Duration = Duration::from_secs(30);

/// A JetStream stream used as history.
#[derive(Clone)]
pub(crate) struct NatsHistory {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream<()>,
    timeout: Duration,
}

impl NatsHistory {
    pub(crate) async fn open(
        client: async_nats::Client,
        js: &jetstream::Context,
        config: &HistoryConfig,
        timeout: Duration,
    ) -> Result<NatsHistory, BusError> {
        let stream_config = stream::Config {
            name: config.stream.clone(),
            subjects: config.subjects.clone(),
            max_messages_per_subject: if config.max_msgs_per_subject > 0 {
                config.max_msgs_per_subject
            } else {
                -1
            },
            max_age: config.max_age,
            storage: storage_type(config.storage),
            num_replicas: config.replicas,
            discard: DiscardPolicy::Old,
            // Direct gets serve `get` and `last` without a consumer.
            allow_direct: true,
            ..Default::default()
        };
        let stream = bounded(timeout, async {
            js.create_or_update_stream(stream_config)
                .await
                .map_err(|err| match err.kind() {
                    CreateStreamErrorKind::JetStream(js_err)
                        if js_err.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
                    {
                        BusError::InvalidConfig(format!(
                            "stream {}: subjects overlap another stream: {err}",
                            config.stream
                        ))
                    }
                    _ => BusError::Backend(format!("cannot open stream {}: {err}", config.stream)),
                })?;
            js.get_stream_no_info(&config.stream)
                .await
                .map_err(|err| BusError::Backend(format!("cannot open stream: {err}")))
        })
        .await?;
        Ok(NatsHistory {
            client,
            js: js.clone(),
            stream,
            timeout,
        })
    }

    pub(crate) async fn append(
        &self,
        subject: &str,
        headers: Headers,
        payload: Bytes,
    ) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        let subject = subject.to_owned();
        bounded(self.timeout, async {
            let ack = if headers.is_empty() {
                self.js.publish(subject, payload).await
            } else {
                self.js
                    .publish_with_headers(subject, headers.to_nats(), payload)
                    .await
            }
            .map_err(|err| BusError::Unavailable(format!("history append failed: {err}")))?;
            ack.await
                .map(|ack| ack.sequence)
                .map_err(|err| BusError::Backend(format!("history append not acknowledged: {err}")))
        })
        .await
    }

    pub(crate) async fn get(&self, seq: u64) -> Result<Option<StoredMessage>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            direct_result(self.stream.direct_get(seq).await)
        })
        .await
    }

    pub(crate) async fn last(&self, subject: &str) -> Result<Option<StoredMessage>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            direct_result(self.stream.direct_get_last_for_subject(subject).await)
        })
        .await
    }

    /// One ephemeral pull consumer per read: filtered, starting where asked, no acks,
    /// one fetch of `limit` messages that ends as soon as no more are available; then
    /// deleted (the server would also drop it after a short inactivity).
    pub(crate) async fn read(
        &self,
        filter: &str,
        from: ReadFrom,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, BusError> {
        ensure_connected(&self.client)?;
        let deliver_policy = match from {
            ReadFrom::Sequence(0 | 1) => DeliverPolicy::All,
            ReadFrom::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            ReadFrom::Time(time) => {
                let nanos = time.timestamp_nanos_opt().unwrap_or(0);
                let start_time = async_nats::datetime::from_nanos(i128::from(nanos))
                    .map_err(|err| BusError::Backend(format!("bad start time: {err}")))?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let config = pull::Config {
            deliver_policy,
            filter_subject: filter.to_owned(),
            ack_policy: AckPolicy::None,
            inactive_threshold: READ_CONSUMER_INACTIVE,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        bounded(self.timeout, async {
            let consumer = self
                .stream
                .create_consumer(config)
                .await
                .map_err(|err| BusError::Backend(format!("history read failed: {err}")))?;
            let fetched = fetch(&consumer, limit).await;
            let name = consumer.cached_info().name.clone();
            if let Err(err) = self.stream.delete_consumer(&name).await {
                tracing::debug!(error = %err, consumer = %name, "read consumer not deleted; it will expire");
            }
            fetched
        })
        .await
    }
}

async fn fetch(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    limit: usize,
) -> Result<Vec<StoredMessage>, BusError> {
    let read_error =
        |err: &dyn std::fmt::Display| BusError::Backend(format!("history read failed: {err}"));
    let mut batch = consumer
        .fetch()
        .max_messages(limit)
        .messages()
        .await
        .map_err(|err| read_error(&err))?;
    let mut messages = Vec::with_capacity(limit.min(64));
    while let Some(message) = batch.next().await {
        let message = message.map_err(|err| read_error(&err))?;
        let info = message.info().map_err(|err| read_error(&err))?;
        messages.push(StoredMessage {
            seq: info.stream_sequence,
            subject: message.subject.to_string(),
            headers: message
                .headers
                .as_ref()
                .map(Headers::from_nats)
                .unwrap_or_default()
                .without_reserved(),
            payload: message.payload.clone(),
            time: to_chrono(info.published),
        });
    }
    Ok(messages)
}

fn direct_result(
    result: Result<StreamMessage, stream::DirectGetError>,
) -> Result<Option<StoredMessage>, BusError> {
    match result {
        Ok(message) => Ok(Some(StoredMessage {
            seq: message.sequence,
            subject: message.subject.to_string(),
            headers: Headers::from_nats(&message.headers).without_reserved(),
            payload: message.payload,
            time: to_chrono(message.time),
        })),
        Err(err) if err.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(err) => Err(BusError::Backend(format!("history get failed: {err}"))),
    }
}
