//! KV buckets on JetStream KV.

use std::time::Duration;

use async_nats::header::NATS_MARKER_REASON;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use super::consumer::ReadConsumer;
use super::{Setup, bounded, ensure_connected};
use crate::config::{KV_HEADER_ALLOWANCE, KvConfig, Storage};
use crate::error::BusError;
use crate::kv::{KvEntry, KvEvent};

/// The bucket's JetStream message size limit leaves room for the headers of a
/// compare-and-set write; the value limit itself is enforced exactly by `KvStore`.
const HEADER_ALLOWANCE: i32 = KV_HEADER_ALLOWANCE as i32;

/// Header that marks a KV delete or purge (async-nats keeps its constant private).
const KV_OPERATION: &str = "KV-Operation";
const KV_OPERATION_PUT: &str = "PUT";
/// Entries read per fetch by `entries_matching`.
const KEYS_BATCH: usize = 1000;

/// A JetStream KV bucket.
#[derive(Clone)]
pub(crate) struct NatsKv {
    client: async_nats::Client,
    store: kv::Store,
    timeout: Duration,
}

impl NatsKv {
    pub(crate) async fn open(
        client: async_nats::Client,
        setup: Setup<'_>,
        config: &KvConfig,
        timeout: Duration,
    ) -> Result<NatsKv, BusError> {
        let kv_config = kv::Config {
            bucket: config.bucket.clone(),
            history: i64::from(config.history),
            max_age: config.max_age.unwrap_or_default(),
            max_value_size: config
                .max_value_size
                .map_or(-1, |max| max.saturating_add(HEADER_ALLOWANCE)),
            storage: storage_type(config.storage),
            num_replicas: setup.replicas,
            ..Default::default()
        };
        let store = setup
            .run(
                "opening a bucket",
                || setup.js.create_or_update_key_value(kv_config.clone()),
                |err| BusError::Backend(format!("cannot open bucket {}: {err}", config.bucket)),
            )
            .await?;
        Ok(NatsKv {
            client,
            store,
            timeout,
        })
    }

    /// Opens the bucket `bucket` as it is; `None` if there is no such bucket.
    pub(crate) async fn open_existing(
        client: async_nats::Client,
        js: &jetstream::Context,
        bucket: &str,
        timeout: Duration,
    ) -> Result<Option<NatsKv>, BusError> {
        let store = bounded(timeout, async {
            // The stream first: its absence is an answer, not an error.
            match js.get_stream(format!("KV_{bucket}")).await {
                Ok(_) => {}
                Err(err) => {
                    return match err.kind() {
                        GetStreamErrorKind::JetStream(js_err)
                            if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                        {
                            Ok(None)
                        }
                        _ => Err(BusError::Backend(format!(
                            "cannot open bucket {bucket}: {err}"
                        ))),
                    };
                }
            }
            js.get_key_value(bucket)
                .await
                .map(Some)
                .map_err(|err| BusError::Backend(format!("cannot open bucket {bucket}: {err}")))
        })
        .await?;
        Ok(store.map(|store| NatsKv {
            client,
            store,
            timeout,
        }))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<KvEntry>, BusError> {
        ensure_connected(&self.client)?;
        let entry = bounded(self.timeout, async {
            self.store
                .entry(key)
                .await
                .map_err(|err| BusError::Backend(format!("kv get failed: {err}")))
        })
        .await?;
        Ok(entry
            .filter(|entry| entry.operation == Operation::Put)
            .map(|entry| KvEntry {
                key: entry.key,
                value: entry.value,
                revision: entry.revision,
            }))
    }

    pub(crate) async fn history(&self, key: &str) -> Result<Vec<KvEntry>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            let failed = |err: &dyn std::fmt::Display| {
                BusError::Backend(format!("kv history failed: {err}"))
            };
            let history = self.store.history(key).await.map_err(|e| failed(&e))?;
            let entries: Vec<kv::Entry> = history.try_collect().await.map_err(|e| failed(&e))?;
            Ok(entries
                .into_iter()
                .filter(|entry| entry.operation == Operation::Put)
                .map(|entry| KvEntry {
                    key: entry.key,
                    value: entry.value,
                    revision: entry.revision,
                })
                .collect())
        })
        .await
    }

    pub(crate) async fn put(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            self.store
                .put(key, value)
                .await
                .map_err(|err| match err.kind() {
                    kv::PutErrorKind::InvalidKey => BusError::InvalidKey(err.to_string()),
                    _ => BusError::Backend(format!("kv put failed: {err}")),
                })
        })
        .await
    }

    pub(crate) async fn create(&self, key: &str, value: Bytes) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            self.store
                .create(key, value)
                .await
                .map_err(|err| match err.kind() {
                    kv::CreateErrorKind::AlreadyExists => BusError::AlreadyExists,
                    kv::CreateErrorKind::InvalidKey => BusError::InvalidKey(err.to_string()),
                    _ => BusError::Backend(format!("kv create failed: {err}")),
                })
        })
        .await
    }

    pub(crate) async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
    ) -> Result<u64, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            self.store
                .update(key, value, expected)
                .await
                .map_err(update_error)
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            self.store.delete(key).await.map_err(update_error)
        })
        .await
    }

    pub(crate) async fn delete_expecting(&self, key: &str, expected: u64) -> Result<(), BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            self.store
                .delete_expect_revision(key, Some(expected))
                .await
                .map_err(update_error)
        })
        .await
    }

    pub(crate) async fn keys(&self) -> Result<Vec<String>, BusError> {
        ensure_connected(&self.client)?;
        bounded(self.timeout, async {
            let keys = self
                .store
                .keys()
                .await
                .map_err(|err| BusError::Backend(format!("kv keys failed: {err}")))?;
            keys.try_collect::<Vec<String>>()
                .await
                .map_err(|err| BusError::Backend(format!("kv keys failed: {err}")))
        })
        .await
    }

    /// The latest entry of every live key matching `filter`, unsorted, as of the
    /// consumer's creation; with `headers_only`, the values are left empty.
    pub(crate) async fn entries_matching(
        &self,
        filter: &str,
        headers_only: bool,
    ) -> Result<Vec<KvEntry>, BusError> {
        ensure_connected(&self.client)?;
        let stream = &self.store.stream;
        let prefix = self.store.prefix.as_str();
        bounded(self.timeout, async {
            let consumer = ReadConsumer::create(
                stream,
                format!("{prefix}{filter}"),
                DeliverPolicy::LastPerSubject,
                headers_only,
                "kv keys",
            )
            .await?;
            let listed = live_entries(&consumer, prefix).await;
            consumer.delete(stream).await;
            listed
        })
        .await
    }

    pub(crate) async fn watch(
        &self,
        history: bool,
    ) -> Result<BoxStream<'static, Result<KvEvent, BusError>>, BusError> {
        ensure_connected(&self.client)?;
        let watch = bounded(self.timeout, async {
            let watch = if history {
                self.store.watch_with_history(">").await
            } else {
                self.store.watch_all().await
            };
            watch.map_err(|err| BusError::Backend(format!("kv watch failed: {err}")))
        })
        .await?;
        Ok(watch
            .map(|entry| {
                entry
                    .map(|entry| KvEvent {
                        value: (entry.operation == Operation::Put).then_some(entry.value),
                        key: entry.key,
                        revision: entry.revision,
                    })
                    .map_err(|err| BusError::Backend(format!("kv watch failed: {err}")))
            })
            .boxed())
    }
}

/// Reads the latest record of each key the consumer delivers (exactly as many as it had
/// pending when created, so writes made meanwhile neither add to nor prolong the read).
async fn live_entries(consumer: &ReadConsumer, prefix: &str) -> Result<Vec<KvEntry>, BusError> {
    let mut remaining = consumer.pending_at_start();
    let mut entries = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0).min(1024));
    while remaining > 0 {
        let batch = usize::try_from(remaining).map_or(KEYS_BATCH, |r| r.min(KEYS_BATCH));
        let fetched = consumer
            .fetch(batch, |message| {
                let live = message.headers.as_ref().is_none_or(|headers| {
                    headers
                        .get(KV_OPERATION)
                        .is_none_or(|op| op.as_str() == KV_OPERATION_PUT)
                        // The server's own markers (e.g. a value removed by a TTL).
                        && headers.get(NATS_MARKER_REASON).is_none()
                });
                let Some(key) = message.subject.strip_prefix(prefix) else {
                    return Ok(());
                };
                if live {
                    let revision = message
                        .info()
                        .map_err(|err| BusError::Backend(format!("kv read failed: {err}")))?
                        .stream_sequence;
                    entries.push(KvEntry {
                        key: key.to_owned(),
                        value: message.payload.clone(),
                        revision,
                    });
                }
                Ok(())
            })
            .await?;
        if fetched == 0 {
            break;
        }
        remaining = remaining.saturating_sub(fetched as u64);
    }
    Ok(entries)
}

fn update_error(err: kv::UpdateError) -> BusError {
    match err.kind() {
        kv::UpdateErrorKind::WrongLastRevision => BusError::WrongRevision,
        kv::UpdateErrorKind::InvalidKey => BusError::InvalidKey(err.to_string()),
        kv::UpdateErrorKind::TimedOut => BusError::Timeout,
        kv::UpdateErrorKind::Other => BusError::Backend(format!("kv write failed: {err}")),
    }
}

pub(crate) fn storage_type(storage: Storage) -> StorageType {
    match storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}
