//! KV buckets on JetStream KV.

use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::{self, stream::StorageType};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};

use super::{bounded, ensure_connected};
use crate::config::{KV_HEADER_ALLOWANCE, KvConfig, Storage};
use crate::error::BusError;
use crate::kv::{KvEntry, KvEvent};

/// The bucket's JetStream message size limit leaves room for the headers of a
/// compare-and-set write; the value limit itself is enforced exactly by `KvStore`.
const HEADER_ALLOWANCE: i32 = KV_HEADER_ALLOWANCE as i32;

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
        js: &jetstream::Context,
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
            num_replicas: config.replicas,
            ..Default::default()
        };
        let store = bounded(timeout, async {
            js.create_or_update_key_value(kv_config)
                .await
                .map_err(|err| {
                    BusError::Backend(format!("cannot open bucket {}: {err}", config.bucket))
                })
        })
        .await?;
        Ok(NatsKv {
            client,
            store,
            timeout,
        })
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
