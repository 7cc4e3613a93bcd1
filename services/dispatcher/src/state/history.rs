//! The history stream: it captures every room subject, so a message is stored by being
//! published to its room, off the fan-out path; the publish is confirmed by the stream
//! (`publish`), so an acknowledged message is a stored one. Positions are the stream's
//! sequence numbers (`offset`: increasing within a channel, not contiguous) with the
//! stream's `epoch`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use arqon_bus::{
    Bus, BusError, Headers, HistoryStore, MAX_READ_LIMIT, ReadFrom, StoreConfirmation,
};
use arqon_proto::model::RoomDelivery;
use arqon_protocol::{Envelope, TenantId, Topic, subject};
use bytes::Bytes;

/// Settings of the history stream.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryConfig {
    /// Keep a history of every room's messages (for `history` and recovery on join).
    #[arg(
        id = "history_enabled",
        long = "enable-persistence",
        env = "ARQONBUS_ENABLE_PERSISTENCE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub enabled: bool,

    /// Messages kept per channel (the oldest go first).
    #[arg(
        long = "max-history-size",
        env = "ARQONBUS_MAX_HISTORY_SIZE",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_per_channel: u32,

    /// Seconds a message is kept.
    #[arg(
        long = "history-max-age-seconds",
        env = "ARQONBUS_HISTORY_MAX_AGE_SECONDS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub max_age_seconds: u64,

    /// Bytes the history keeps in all, across tenants; past it the oldest messages go
    /// first (0: unlimited). Keeps a flood from filling the disk (or, standalone, the
    /// memory) that the bus's other state lives on.
    #[arg(
        long = "history-max-bytes",
        env = "ARQONBUS_HISTORY_MAX_BYTES",
        default_value_t = DEFAULT_MAX_BYTES,
    )]
    pub max_bytes: u64,
}

/// The history's default size bound: 1 GiB.
const DEFAULT_MAX_BYTES: u64 = 1 << 30;

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_per_channel: 1000,
            max_age_seconds: 86_400,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Messages one history read returns when the caller names no limit.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Most messages one history read returns.
pub(crate) const MAX_LIMIT: usize = 1000;
/// Most bytes of stored frames one history reply carries, well under the bus's message
/// size (1 MiB): a page that would be larger ends early and says where to go on.
pub(crate) const PAGE_BYTES: usize = 512 * 1024;
/// What a client reading the history is told when it is off.
pub(crate) const HISTORY_OFF: &str =
    "History is off on this bus (ARQONBUS_ENABLE_PERSISTENCE=false)";

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) offset: u64,
    pub(crate) stored_at: DateTime<Utc>,
    pub(crate) envelope: Envelope,
}

#[derive(Clone)]
pub(crate) struct History {
    store: Option<HistoryStore>,
}

impl History {
    /// Creates (or opens) the stream; `None` inside when history is off.
    pub(crate) async fn open(bus: &Bus, config: &HistoryConfig) -> Result<Self, BusError> {
        if !config.enabled {
            // Turning history off here does not remove a stream made while it was on:
            // it would go on storing every room's messages. Deleting it is the
            // operator's call (one misconfigured replica must not erase the history).
            if bus.open_history(subject::HISTORY_STREAM).await.is_ok() {
                warn!(
                    stream = subject::HISTORY_STREAM,
                    "history is off, but the history stream exists and still stores room messages; delete it to stop storing"
                );
            }
            return Ok(Self { store: None });
        }
        let stream = arqon_bus::HistoryConfig {
            max_msgs_per_subject: i64::from(config.max_per_channel),
            max_age: Duration::from_secs(config.max_age_seconds),
            max_bytes: i64::try_from(config.max_bytes).unwrap_or(i64::MAX),
            storage: bus.durable_storage(),
            ..arqon_bus::HistoryConfig::new(
                subject::HISTORY_STREAM,
                vec![subject::ROOM_ALL.to_owned()],
            )
        };
        Ok(Self {
            store: Some(bus.history(stream).await?),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.store.is_some()
    }

    /// Publishes a room delivery to its room. With history on, the stream's confirmation
    /// comes back: the message is stored once it resolves (it is delivered either way).
    pub(crate) async fn publish(
        &self,
        bus: &Bus,
        tenant: &TenantId,
        topic: &Topic,
        headers: Headers,
        delivery: Bytes,
    ) -> Result<Option<StoreConfirmation>, BusError> {
        let room = subject::room(tenant, topic);
        if self.enabled() {
            bus.publish_stored(room, headers, delivery).await.map(Some)
        } else {
            bus.publish_with_headers(room, headers, delivery)
                .await
                .map(|()| None)
        }
    }

    pub(crate) fn epoch(&self) -> Option<&str> {
        self.store.as_ref().map(HistoryStore::epoch)
    }

    /// Messages stored for the channel.
    pub(crate) async fn count(&self, tenant: &TenantId, topic: &Topic) -> Result<u64, BusError> {
        match &self.store {
            Some(store) => store.count(&subject::room(tenant, topic)).await,
            None => Ok(0),
        }
    }

    /// Messages stored for every channel of a tenant.
    pub(crate) async fn count_tenant(&self, tenant: &TenantId) -> Result<u64, BusError> {
        match &self.store {
            Some(store) => store.count(&subject::tenant_rooms(tenant)).await,
            None => Ok(0),
        }
    }

    /// When the channel's last message was stored.
    pub(crate) async fn last_activity(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Option<DateTime<Utc>>, BusError> {
        match &self.store {
            Some(store) => Ok(store
                .last(&subject::room(tenant, topic))
                .await?
                .map(|m| m.time)),
            None => Ok(None),
        }
    }

    /// The channel's messages stored at or after `since` (or its last ones without
    /// `since`) and before `until`, oldest first, at most `limit`.
    pub(crate) async fn read(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<Stored>, BusError> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        let room = subject::room(tenant, topic);
        // Only what the page needs is read, unless `until` cuts from the newest end.
        let wanted = if until.is_some() && since.is_none() {
            MAX_READ_LIMIT
        } else {
            limit
        };
        let messages = match since {
            Some(since) => store.read(&room, ReadFrom::Time(since), wanted).await?,
            None => store.tail(&room, wanted).await?,
        };
        let before_until = messages
            .into_iter()
            .filter(|m| until.is_none_or(|until| m.time < until));
        let mut stored: Vec<Stored> = before_until
            .filter_map(|m| {
                let delivery = RoomDelivery::decode(m.payload).ok()?;
                let text = std::str::from_utf8(&delivery.frame).ok()?;
                match Envelope::from_server_json(text) {
                    Ok(envelope) => Some(Stored {
                        offset: m.seq,
                        stored_at: m.time,
                        envelope,
                    }),
                    Err(e) => {
                        warn!(error = %e, seq = m.seq, "unreadable stored message");
                        None
                    }
                }
            })
            .collect();
        if since.is_some() {
            stored.truncate(limit);
        } else if stored.len() > limit {
            stored.drain(..stored.len() - limit);
        }
        Ok(stored)
    }

    /// Removes the channel's messages (when it is deleted).
    pub(crate) async fn purge(&self, tenant: &TenantId, topic: &Topic) -> Result<u64, BusError> {
        match &self.store {
            Some(store) => store.purge(&subject::room(tenant, topic)).await,
            None => Ok(0),
        }
    }
}
