//! History streams on JetStream: publish with ack, direct get, and ephemeral pull
//! consumers for ranged reads and tails.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{
    self, DirectGetErrorKind, DiscardPolicy, LastRawMessageErrorKind, StorageType,
};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;

use super::consumer::ReadConsumer;
use super::{Setup, bounded, count_on_subjects, ensure_connected, subjects_on, to_chrono};
use crate::config::{HistoryConfig, HistorySource, ReadFrom, Storage};
use crate::error::BusError;
use crate::headers::Headers;
use crate::history::{StoredMessage, Usage, epoch_of, newest_within};
use crate::nats::kv::storage_type;

/// Messages per fetch when a read goes through more than one batch (`tail`).
const TAIL_BATCH: usize = 1000;
/// The header a headers-only consumer adds with the size of the payload it left out.
const MSG_SIZE: &str = "Nats-Msg-Size";

/// A JetStream stream used as history.
#[derive(Clone)]
pub(crate) struct NatsHistory {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream<()>,
    timeout: Duration,
    /// Whether the stream serves direct gets (ours do; a stream another service owns
    /// may not, and then `get` and `last` go through the stream leader's API).
    direct: bool,
    epoch: String,
}

impl NatsHistory {
    /// Creates the stream, or updates it to `config`.
    pub(crate) async fn open(
        client: async_nats::Client,
        setup: Setup<'_>,
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
            max_bytes: if config.max_bytes > 0 {
                config.max_bytes
            } else {
                -1
            },
            storage: storage_type(config.storage),
            num_replicas: setup.replicas,
            discard: DiscardPolicy::Old,
            // Direct gets serve `get` and `last` without a consumer.
            allow_direct: true,
            sources: (!config.sources.is_empty()).then(|| {
                config
                    .sources
                    .iter()
                    .map(|source| stream::Source {
                        name: source.stream.clone(),
                        filter_subject: Some(source.filter.clone()),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        };
        let info = setup
            .run(
                "opening a history stream",
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
                    _ => BusError::Backend(format!("cannot open stream {}: {err}", config.stream)),
                },
            )
            .await?;
        NatsHistory::from_info(client, setup.js, &info, timeout).await
    }

    /// Opens the stream `name` as it is, with the configuration it has; `None` if there
    /// is no such stream.
    pub(crate) async fn open_existing(
        client: async_nats::Client,
        js: &jetstream::Context,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<(NatsHistory, HistoryConfig)>, BusError> {
        let info = bounded(timeout, async {
            match js.get_stream(name).await {
                Ok(stream) => Ok(Some(stream.cached_info().clone())),
                Err(err) => match err.kind() {
                    GetStreamErrorKind::JetStream(js_err)
                        if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(None)
                    }
                    _ => Err(BusError::Backend(format!(
                        "cannot open stream {name}: {err}"
                    ))),
                },
            }
        })
        .await?;
        let Some(info) = info else {
            return Ok(None);
        };
        let config = HistoryConfig {
            stream: info.config.name.clone(),
            subjects: info.config.subjects.clone(),
            max_msgs_per_subject: info.config.max_messages_per_subject,
            max_age: info.config.max_age,
            max_bytes: info.config.max_bytes,
            storage: match info.config.storage {
                StorageType::File => Storage::File,
                StorageType::Memory => Storage::Memory,
            },
            sources: info
                .config
                .sources
                .iter()
                .flatten()
                .map(|source| HistorySource {
                    stream: source.name.clone(),
                    filter: source.filter_subject.clone().unwrap_or_else(|| ">".into()),
                })
                .collect(),
        };
        let history = NatsHistory::from_info(client, js, &info, timeout).await?;
        Ok(Some((history, config)))
    }

    async fn from_info(
        client: async_nats::Client,
        js: &jetstream::Context,
        info: &stream::Info,
        timeout: Duration,
    ) -> Result<NatsHistory, BusError> {
        // A handle without a round trip: the info is already here.
        let stream = js
            .get_stream_no_info(&info.config.name)
            .await
            .map_err(|err| BusError::Backend(format!("cannot open stream: {err}")))?;
        Ok(NatsHistory {
            client,
            js: js.clone(),
            stream,
            timeout,
            direct: info.config.allow_direct,
            epoch: epoch_of(to_chrono(info.created)),
        })
    }

    /// The stream's creation time: it identifies this incarnation of the stream.
    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
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
            if self.direct {
                direct_result(self.stream.direct_get(seq).await)
            } else {
                raw_result(self.stream.get_raw_message(seq).await)
            }
        })
        .await
    }

    pub(crate) async fn last(&self, subject: &str) -> Result<Option<StoredMessage>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            if self.direct {
                direct_result(self.stream.direct_get_last_for_subject(subject).await)
            } else {
                raw_result(self.stream.get_last_raw_message_by_subject(subject).await)
            }
        })
        .await
    }

    /// Messages stored on subjects matching `filter`: the stream's per-subject counts
    /// (stream info with a subjects filter, paged), summed. The answer is in proportion
    /// to the number of distinct matching subjects, not of messages.
    pub(crate) async fn count(&self, filter: &str) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        bounded(
            self.timeout,
            count_on_subjects(&self.stream, filter, "history count"),
        )
        .await
    }

    /// What the stream holds now: messages and bytes (one stream info request).
    pub(crate) async fn usage(&self) -> Result<Usage, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            let info = self
                .stream
                .get_info()
                .await
                .map_err(|err| BusError::Backend(format!("history info failed: {err}")))?;
            Ok(Usage {
                messages: info.state.messages,
                bytes: info.state.bytes,
            })
        })
        .await
    }

    /// The subjects matching `filter` with their message counts.
    pub(crate) async fn subjects(&self, filter: &str) -> Result<Vec<(String, u64)>, BusError> {
        ensure_connected(&self.client)?;
        bounded(
            self.timeout,
            subjects_on(&self.stream, filter, "history subjects"),
        )
        .await
    }

    /// Reads the sizes of the messages on `subject` (headers only: `Nats-Msg-Size` gives
    /// each payload's), then purges the subject keeping the newest that fit.
    pub(crate) async fn keep_newest_within(
        &self,
        subject: &str,
        max_bytes: u64,
    ) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            let consumer = ReadConsumer::create(
                &self.stream,
                subject.to_owned(),
                DeliverPolicy::All,
                true,
                "history trim",
            )
            .await?;
            let sizes = sizes(&consumer).await;
            consumer.delete(&self.stream).await;
            let sizes = sizes?;
            let keep = newest_within(&sizes, max_bytes);
            if keep == sizes.len() {
                return Ok(0);
            }
            self.stream
                .purge()
                .filter(subject)
                .keep(keep as u64)
                .await
                .map(|response| response.purged)
                .map_err(|err| BusError::Backend(format!("history trim failed: {err}")))
        })
        .await
    }

    /// Purges the messages on subjects matching `filter`; the stream's sequence goes on.
    pub(crate) async fn purge(&self, filter: &str) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            self.stream
                .purge()
                .filter(filter)
                .await
                .map(|response| response.purged)
                .map_err(|err| BusError::Backend(format!("history purge failed: {err}")))
        })
        .await
    }

    /// The last `n` messages on `subject`, in two reads filtered on it: first headers
    /// only, to find where the last `n` begin, then those messages (and any appended
    /// meanwhile, of which the last `n` are kept).
    pub(crate) async fn tail(
        &self,
        subject: &str,
        n: usize,
    ) -> Result<Vec<StoredMessage>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            let Some(deliver_policy) = self.tail_start(subject, n).await? else {
                return Ok(Vec::new());
            };
            let consumer = ReadConsumer::create(
                &self.stream,
                subject.to_owned(),
                deliver_policy,
                false,
                "history tail",
            )
            .await?;
            let last = last_n(&consumer, n).await;
            consumer.delete(&self.stream).await;
            last
        })
        .await
    }

    /// Where the last `n` messages on `subject` begin; `None` when it has none.
    async fn tail_start(&self, subject: &str, n: usize) -> Result<Option<DeliverPolicy>, BusError> {
        let consumer = ReadConsumer::create(
            &self.stream,
            subject.to_owned(),
            DeliverPolicy::All,
            true,
            "history tail",
        )
        .await?;
        let start = skip_to_last_n(&consumer, n).await;
        consumer.delete(&self.stream).await;
        start
    }

    /// One ephemeral pull consumer per read: filtered, starting where asked, one fetch
    /// of `limit` messages that ends as soon as no more are available.
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
        bounded(self.timeout, async {
            let consumer = ReadConsumer::create(
                &self.stream,
                filter.to_owned(),
                deliver_policy,
                false,
                "history read",
            )
            .await?;
            let mut messages = Vec::with_capacity(limit.min(64));
            let fetched = consumer
                .fetch(limit, |message| {
                    messages.push(stored(&consumer, message)?);
                    Ok(())
                })
                .await;
            consumer.delete(&self.stream).await;
            fetched.map(|_| messages)
        })
        .await
    }
}

/// Creates the stream or updates it to `config`. Two services opening the same stream
/// at once must both succeed: if the stream appears between the update (not found) and
/// the create (name taken, with another configuration), the update is tried again. An
/// identical configuration is never a conflict: the server accepts it as is.
pub(super) async fn create_or_update(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Info, CreateStreamError> {
    match js.update_stream(&config).await {
        Err(err) if err.kind() == CreateStreamErrorKind::NotFound => {
            match js.create_stream(config.clone()).await {
                Ok(stream) => Ok(stream.cached_info().clone()),
                Err(err)
                    if matches!(
                        err.kind(),
                        CreateStreamErrorKind::JetStream(js_err)
                            if js_err.error_code() == ErrorCode::STREAM_NAME_EXIST
                    ) =>
                {
                    js.update_stream(&config).await
                }
                Err(err) => Err(err),
            }
        }
        result => result,
    }
}

/// Reads the headers of the messages before the last `n` (as the consumer sees them)
/// and returns where the last `n` begin: the first message with fewer than `n` after it.
async fn skip_to_last_n(
    consumer: &ReadConsumer,
    n: usize,
) -> Result<Option<DeliverPolicy>, BusError> {
    let pending = consumer.pending_at_start();
    if pending == 0 {
        return Ok(None);
    }
    let n = n as u64;
    if pending <= n {
        return Ok(Some(DeliverPolicy::All));
    }
    // Enough to reach the first of the last `n`, unless messages are removed meanwhile.
    let mut to_skip = pending - n;
    loop {
        let mut start = None;
        let batch = usize::try_from(to_skip + 1).map_or(TAIL_BATCH, |b| b.min(TAIL_BATCH));
        let fetched = consumer
            .fetch(batch, |message| {
                let info = message.info().map_err(|err| consumer.failed(&err))?;
                if start.is_none() && info.pending < n {
                    start = Some(info.stream_sequence);
                }
                Ok(())
            })
            .await?;
        if let Some(start_sequence) = start {
            return Ok(Some(DeliverPolicy::ByStartSequence { start_sequence }));
        }
        if fetched == 0 {
            // Everything was removed while we read.
            return Ok(None);
        }
        to_skip = to_skip.saturating_sub(fetched as u64).max(1);
    }
}

/// The size of every message the consumer (headers only) had pending when created, as
/// the stream's byte limit counts them: subject, headers and payload.
async fn sizes(consumer: &ReadConsumer) -> Result<Vec<u64>, BusError> {
    let mut remaining = consumer.pending_at_start();
    let mut sizes = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0).min(4096));
    while remaining > 0 {
        let batch = usize::try_from(remaining).map_or(TAIL_BATCH, |r| r.min(TAIL_BATCH));
        let fetched = consumer
            .fetch(batch, |message| {
                let headers = message
                    .headers
                    .as_ref()
                    .map(Headers::from_nats)
                    .unwrap_or_default();
                let payload = headers
                    .get(MSG_SIZE)
                    .and_then(|size| size.parse::<u64>().ok())
                    .unwrap_or(0);
                let own = headers.without_reserved().wire_len() as u64;
                sizes.push(message.subject.len() as u64 + own + payload);
                Ok(())
            })
            .await?;
        if fetched == 0 {
            break;
        }
        remaining = remaining.saturating_sub(fetched as u64);
    }
    Ok(sizes)
}

/// Reads everything the consumer had pending when created, keeping the last `n`.
async fn last_n(consumer: &ReadConsumer, n: usize) -> Result<Vec<StoredMessage>, BusError> {
    let mut remaining = consumer.pending_at_start();
    let mut last = VecDeque::with_capacity(n.min(64));
    while remaining > 0 {
        let batch = usize::try_from(remaining).map_or(TAIL_BATCH, |r| r.min(TAIL_BATCH));
        let fetched = consumer
            .fetch(batch, |message| {
                if last.len() == n {
                    last.pop_front();
                }
                last.push_back(stored(consumer, message)?);
                Ok(())
            })
            .await?;
        if fetched == 0 {
            break;
        }
        remaining = remaining.saturating_sub(fetched as u64);
    }
    Ok(last.into())
}

/// A message delivered by a read consumer, as stored.
fn stored(consumer: &ReadConsumer, message: jetstream::Message) -> Result<StoredMessage, BusError> {
    let info = message.info().map_err(|err| consumer.failed(&err))?;
    let (seq, time) = (info.stream_sequence, to_chrono(info.published));
    let message = message.message;
    Ok(StoredMessage {
        seq,
        subject: message.subject.to_string(),
        headers: message
            .headers
            .as_ref()
            .map(Headers::from_nats)
            .unwrap_or_default()
            .without_reserved(),
        payload: message.payload,
        time,
    })
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

fn raw_result(
    result: Result<StreamMessage, stream::RawMessageError>,
) -> Result<Option<StoredMessage>, BusError> {
    match result {
        Ok(message) => direct_result(Ok(message)),
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(err) => Err(BusError::Backend(format!("history get failed: {err}"))),
    }
}
