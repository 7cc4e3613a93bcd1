//! The channel registry: every channel of every tenant, with who created it and when.
//! A room exists while it has a channel.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use arqon_bus::{Bus, BusError, KvConfig, KvStore};
use arqon_protocol::{ErrorCode, RoomName, TenantId, Timestamp, Topic, subject};

/// What the registry keeps about a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChannelRecord {
    pub(crate) description: String,
    /// The client that created it (explicitly, or by joining first).
    pub(crate) created_by: String,
    /// RFC 3339.
    pub(crate) created_at: String,
}

/// Why a channel could not be read: it is not there (which of room and channel is
/// missing, in the words clients see), or the bus failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("Room '{0}' not found")]
    RoomNotFound(RoomName),
    #[error("Channel '{}' not found in room '{}'", .0.channel, .0.room)]
    ChannelNotFound(Topic),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl LookupError {
    /// The error code of a not-found; `None` for a bus failure.
    pub(crate) fn not_found_code(&self) -> Option<ErrorCode> {
        match self {
            LookupError::RoomNotFound(_) => Some(ErrorCode::RoomNotFound),
            LookupError::ChannelNotFound(_) => Some(ErrorCode::ChannelNotFound),
            LookupError::Bus(_) => None,
        }
    }
}

/// What a creation did.
#[derive(Debug)]
pub(crate) enum Created {
    New(ChannelRecord),
    /// The channel was there already.
    Exists,
    /// The tenant has as many channels as it may.
    OverQuota {
        limit: usize,
    },
}

#[derive(Clone)]
pub(crate) struct Registry {
    kv: KvStore,
    /// Channels one tenant may have.
    max_per_tenant: usize,
}

impl Registry {
    pub(crate) async fn open(bus: &Bus, max_per_tenant: usize) -> Result<Self, BusError> {
        let config = KvConfig {
            storage: bus.durable_storage(),
            ..KvConfig::new(subject::CHANNELS_BUCKET)
        };
        Ok(Self {
            kv: bus.key_value(config).await?,
            max_per_tenant,
        })
    }

    pub(crate) async fn get(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Option<ChannelRecord>, BusError> {
        let entry = self.kv.get(&subject::channel_key(tenant, topic)).await?;
        Ok(entry.and_then(|e| serde_json::from_slice(&e.value).ok()))
    }

    /// The channel's record; when it does not exist, whether its room does.
    pub(crate) async fn existing(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<ChannelRecord, LookupError> {
        if let Some(record) = self.get(tenant, topic).await? {
            return Ok(record);
        }
        if self.channels(tenant, &topic.room).await?.is_empty() {
            Err(LookupError::RoomNotFound(topic.room.clone()))
        } else {
            Err(LookupError::ChannelNotFound(topic.clone()))
        }
    }

    /// Creates the channel, unless it exists or its tenant has its quota of channels.
    pub(crate) async fn create(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        created_by: &str,
        description: &str,
    ) -> Result<Created, BusError> {
        if self.get(tenant, topic).await?.is_some() {
            return Ok(Created::Exists);
        }
        if self.all(tenant).await?.len() >= self.max_per_tenant {
            return Ok(Created::OverQuota {
                limit: self.max_per_tenant,
            });
        }
        let record = ChannelRecord {
            description: description.to_owned(),
            created_by: created_by.to_owned(),
            created_at: Timestamp::now().to_rfc3339(),
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        match self
            .kv
            .create(&subject::channel_key(tenant, topic), Bytes::from(value))
            .await
        {
            Ok(_) => Ok(Created::New(record)),
            Err(BusError::AlreadyExists) => Ok(Created::Exists),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete(&self, tenant: &TenantId, topic: &Topic) -> Result<(), BusError> {
        self.kv.delete(&subject::channel_key(tenant, topic)).await
    }

    /// The channels of a room, by name; empty when the room does not exist.
    pub(crate) async fn channels(
        &self,
        tenant: &TenantId,
        room: &RoomName,
    ) -> Result<Vec<Topic>, BusError> {
        self.matching(tenant, &subject::room_keys(tenant, room))
            .await
    }

    /// Every channel of a tenant.
    pub(crate) async fn all(&self, tenant: &TenantId) -> Result<Vec<Topic>, BusError> {
        self.matching(tenant, &subject::tenant_keys(tenant)).await
    }

    /// The channels of `tenant` whose keys match `filter`.
    async fn matching(&self, tenant: &TenantId, filter: &str) -> Result<Vec<Topic>, BusError> {
        let keys = self.kv.keys_matching(filter).await?;
        Ok(keys
            .iter()
            .filter_map(|k| subject::parse_channel_key(tenant, k))
            .collect())
    }
}
