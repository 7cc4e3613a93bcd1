//! The history: a JetStream stream per tenant (ADR 018), `ARQON_HISTORY_<tenant>`,
//! capturing the tenant's room subjects, so a message is stored by being published to its
//! room, off the fan-out path; the publish is confirmed by the stream (`publish`), so an
//! acknowledged message is a stored one. Each tenant's stream is bounded in bytes on its
//! own, so one tenant's flood only ever pushes out its own oldest messages. Positions are
//! the stream's sequence numbers (`offset`: increasing within a channel, not contiguous)
//! with the stream's `epoch`.
//!
//! A tenant's stream is made when the tenant first publishes, if the history's total
//! budget has room for one more (`max_bytes / max_bytes_per_tenant` streams); reads of a
//! tenant without one find nothing. A dispatcher that finds the one stream of every
//! tenant from before (`ARQON_HISTORY`) stops its capture, and each tenant's new stream
//! copies the tenant's messages from it; once its messages have aged out it is deleted.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use arqon_bus::{
    Bus, BusError, Headers, HistorySource, HistoryStore, MAX_READ_LIMIT, ReadFrom,
    StoreConfirmation, StoredMessage,
};
use arqon_proto::model::{FrameHead, RoomDelivery};
use arqon_protocol::{Envelope, TenantId, Topic, subject};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio_util::task::TaskTracker;

/// Settings of the history.
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
        default_value_t = DEFAULT_MAX_PER_CHANNEL,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    pub max_per_channel: u32,

    /// Seconds a message is kept.
    #[arg(
        long = "history-max-age-seconds",
        env = "ARQONBUS_HISTORY_MAX_AGE_SECONDS",
        default_value_t = DEFAULT_MAX_AGE_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub max_age_seconds: u64,

    /// Bytes the history keeps in all, across tenants (0: unlimited). Each tenant's
    /// history reserves `--history-max-bytes-per-tenant` of it when the tenant first
    /// publishes; a tenant for which no room is left gets `QUOTA_EXCEEDED`. Keeps a flood
    /// from filling the disk (or, standalone, the memory) the bus's other state lives on.
    #[arg(
        long = "history-max-bytes",
        env = "ARQONBUS_HISTORY_MAX_BYTES",
        default_value_t = DEFAULT_MAX_BYTES,
    )]
    pub max_bytes: u64,

    /// Bytes one tenant's history keeps, across its channels; past it the tenant's own
    /// oldest messages go first.
    #[arg(
        long = "history-max-bytes-per-tenant",
        env = "ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT",
        default_value_t = DEFAULT_MAX_BYTES_PER_TENANT,
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub max_bytes_per_tenant: u64,

    /// Bytes one channel's history keeps (0: only the tenant's bound); past it the
    /// channel's oldest messages go first. Checked each time this replica has stored a
    /// quarter of it in the channel, so a channel may hold up to a quarter more per
    /// dispatcher replica until the check.
    #[arg(
        long = "history-max-bytes-per-channel",
        env = "ARQONBUS_HISTORY_MAX_BYTES_PER_CHANNEL",
        default_value_t = DEFAULT_MAX_BYTES_PER_CHANNEL,
    )]
    pub max_bytes_per_channel: u64,
}

/// The history's default size bound: 1 GiB.
const DEFAULT_MAX_PER_CHANNEL: u32 = 1000;
const DEFAULT_MAX_AGE_SECONDS: u64 = 86_400;
const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// A tenant's default size bound: 64 MiB (16 tenants in the default total).
const DEFAULT_MAX_BYTES_PER_TENANT: u64 = 64 << 20;
/// A channel's default size bound: 16 MiB, a quarter of its tenant's.
const DEFAULT_MAX_BYTES_PER_CHANNEL: u64 = 16 << 20;

impl Default for HistoryConfig {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

impl HistoryConfig {
    /// How many tenants can have a history at once; `None`: any number.
    fn max_tenants(&self) -> Option<usize> {
        (self.max_bytes > 0).then(|| {
            usize::try_from(self.max_bytes / self.max_bytes_per_tenant).unwrap_or(usize::MAX)
        })
    }

    /// Refuses settings that leave no room for any tenant.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_tenants() == Some(0) {
            return Err(format!(
                "ARQONBUS_HISTORY_MAX_BYTES ({}) is smaller than ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT ({}): no tenant could keep a history",
                self.max_bytes, self.max_bytes_per_tenant
            ));
        }
        Ok(())
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

/// A stored message: its frame, as the room's members received it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) offset: u64,
    pub(crate) stored_at: DateTime<Utc>,
    pub(crate) frame: Bytes,
}

impl Stored {
    /// A stored room delivery; `None` (logged) when its frame is not an envelope. A
    /// delivery with a head was written by this version from an envelope: its frame is
    /// taken as it is. One stored by an older version has its frame checked, as every
    /// stored frame was before.
    pub(crate) fn read(message: StoredMessage) -> Option<Self> {
        let delivery = RoomDelivery::decode(message.payload).ok()?;
        let envelope = std::str::from_utf8(&delivery.frame).is_ok()
            && (delivery.head.is_some() || FrameHead::read(&delivery.frame).is_some());
        if !envelope {
            warn!(seq = message.seq, "unreadable stored message");
            return None;
        }
        Some(Self {
            offset: message.seq,
            stored_at: message.time,
            frame: delivery.frame,
        })
    }

    /// Its envelope, decoded from the frame; `None` (logged) when it is not one.
    pub(crate) fn envelope(&self) -> Option<Envelope> {
        let text = std::str::from_utf8(&self.frame).ok()?;
        Envelope::from_server_json(text)
            .map_err(|e| warn!(error = %e, seq = self.offset, "unreadable stored message"))
            .ok()
    }
}

/// Why a tenant's message cannot be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The history's total budget has no room for another tenant's stream.
    #[error("the history has no room for another tenant ({0} tenants keep one)")]
    NoRoom(usize),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What a client whose message found no room for its tenant's history is told.
pub(crate) const NO_ROOM: &str = "The bus's history has no room for another tenant's messages (ARQONBUS_HISTORY_MAX_BYTES holds ARQONBUS_HISTORY_MAX_BYTES_PER_TENANT for so many tenants); the message was not delivered. Ask the bus's operator.";

/// The tenants' streams this replica has opened, at most this many (then it starts over).
const OPEN_STREAMS: usize = 4096;
/// Channels whose stored bytes since their last check this replica counts, at most this
/// many (then it starts over: the checks of the forgotten ones come later).
const WRITTEN_CHANNELS: usize = 16_384;

pub(crate) struct History {
    streams: Option<Streams>,
}

struct Streams {
    bus: Bus,
    config: HistoryConfig,
    open: Mutex<HashMap<TenantId, HistoryStore>>,
    /// Held while a tenant's stream is made, so that this replica counts the streams
    /// one at a time against the budget.
    making: tokio::sync::Mutex<()>,
    /// Bytes this replica stored per channel since it last checked the channel's bound.
    written: Mutex<HashMap<(TenantId, Topic), u64>>,
    /// Where the checks run.
    tasks: TaskTracker,
    /// Messages the channels' bound removed.
    trimmed: Counter,
}

impl History {
    /// Opens the history (retiring the stream of every tenant from before ADR 018 if it
    /// is there); `None` inside when history is off.
    pub(crate) async fn open(
        bus: &Bus,
        config: &HistoryConfig,
        tasks: &TaskTracker,
        trimmed: Counter,
    ) -> Result<Self, BusError> {
        config.validate().map_err(BusError::InvalidConfig)?;
        if !config.enabled {
            // Turning history off here does not remove the streams made while it was on:
            // they would go on storing the tenants' messages. Deleting them is the
            // operator's call (one misconfigured replica must not erase the history).
            if !bus
                .history_names(subject::HISTORY_STREAM_PREFIX)
                .await?
                .is_empty()
            {
                warn!(
                    streams = subject::HISTORY_STREAM_PREFIX,
                    "history is off, but tenants' history streams exist and still store their messages; delete them to stop storing"
                );
            }
            return Ok(Self { streams: None });
        }
        let streams = Streams {
            bus: bus.clone(),
            config: config.clone(),
            open: Mutex::new(HashMap::new()),
            making: tokio::sync::Mutex::new(()),
            written: Mutex::new(HashMap::new()),
            tasks: tasks.clone(),
            trimmed,
        };
        if let Some(legacy) = retire_legacy(bus).await? {
            streams.adopt(&legacy).await?;
        }
        Ok(Self {
            streams: Some(streams),
        })
    }

    pub(crate) fn enabled(&self) -> bool {
        self.streams.is_some()
    }

    /// Publishes a room delivery to its room. With history on, the stream's confirmation
    /// comes back: the message is stored once it resolves (it is delivered either way).
    /// With history on and no room for the tenant's stream, nothing is published.
    pub(crate) async fn publish(
        &self,
        bus: &Bus,
        tenant: &TenantId,
        topic: &Topic,
        headers: Headers,
        delivery: Bytes,
    ) -> Result<Option<StoreConfirmation>, StoreError> {
        let room = subject::room(tenant, topic);
        if self.admit(tenant, topic, &room, delivery.len()).await? {
            Ok(Some(bus.publish_stored(room, headers, delivery).await?))
        } else {
            bus.publish_with_headers(room, headers, delivery).await?;
            Ok(None)
        }
    }

    /// Readies the history for a delivery of `size` bytes to `room` (the subject of
    /// `topic`), about to be published: makes the tenant's stream if it has none, and
    /// counts the bytes towards the channel's next size check. Whether the delivery is to
    /// be stored, that is published to the stream (false: history is off). With no room
    /// for the tenant's stream, the delivery must not be published.
    pub(crate) async fn admit(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        room: &str,
        size: usize,
    ) -> Result<bool, StoreError> {
        let Some(streams) = &self.streams else {
            return Ok(false);
        };
        let store = streams.made(tenant).await?;
        // What the trigger counts; the check itself reads the exact sizes.
        let size = room.len() + size;
        streams.stored(&store, tenant, topic, room, size as u64);
        Ok(true)
    }

    /// The epoch of the tenant's stream; `None` while the tenant has none (or history is
    /// off).
    pub(crate) async fn epoch(&self, tenant: &TenantId) -> Result<Option<String>, BusError> {
        Ok(self
            .existing(tenant)
            .await?
            .map(|store| store.epoch().to_owned()))
    }

    /// The tenant's stream if it has one.
    async fn existing(&self, tenant: &TenantId) -> Result<Option<HistoryStore>, BusError> {
        match &self.streams {
            Some(streams) => streams.existing(tenant).await,
            None => Ok(None),
        }
    }

    /// The retired stream of every tenant from before ADR 018 is deleted once it holds
    /// nothing more (its messages have aged out, and every tenant's stream has copied
    /// them). Run now and then by one replica. A stream of that name that still captures
    /// room subjects is not retired (a replica of the previous version made it after this
    /// one started): it is left to the next start to retire, never deleted while empty.
    pub(crate) async fn drop_retired(&self) -> Result<(), BusError> {
        let Some(streams) = &self.streams else {
            return Ok(());
        };
        let Some(legacy) = streams
            .bus
            .open_history(subject::LEGACY_HISTORY_STREAM)
            .await?
        else {
            return Ok(());
        };
        if !is_retired(&legacy) {
            return Ok(());
        }
        if legacy.usage().await?.messages == 0 {
            streams
                .bus
                .delete_history(subject::LEGACY_HISTORY_STREAM)
                .await?;
            info!(
                stream = subject::LEGACY_HISTORY_STREAM,
                "deleted the retired history stream: its messages have aged out"
            );
        }
        Ok(())
    }

    /// Messages stored for the channel.
    pub(crate) async fn count(&self, tenant: &TenantId, topic: &Topic) -> Result<u64, BusError> {
        match self.existing(tenant).await? {
            Some(store) => store.count(&subject::room(tenant, topic)).await,
            None => Ok(0),
        }
    }

    /// Messages stored for every channel of a tenant.
    pub(crate) async fn count_tenant(&self, tenant: &TenantId) -> Result<u64, BusError> {
        match self.existing(tenant).await? {
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
        match self.existing(tenant).await? {
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
        let Some(store) = self.existing(tenant).await? else {
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
        let mut stored: Vec<Stored> = before_until.filter_map(Stored::read).collect();
        if since.is_some() {
            stored.truncate(limit);
        } else if stored.len() > limit {
            stored.drain(..stored.len() - limit);
        }
        Ok(stored)
    }

    /// Removes the channel's messages (when it is deleted).
    pub(crate) async fn purge(&self, tenant: &TenantId, topic: &Topic) -> Result<u64, BusError> {
        match self.existing(tenant).await? {
            Some(store) => store.purge(&subject::room(tenant, topic)).await,
            None => Ok(0),
        }
    }
}

impl Streams {
    fn cached(&self, tenant: &TenantId) -> Option<HistoryStore> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    fn remember(&self, tenant: &TenantId, store: HistoryStore) -> HistoryStore {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= OPEN_STREAMS {
            open.clear();
        }
        open.insert(tenant.clone(), store.clone());
        store
    }

    /// Counts `bytes` stored in the channel, and once this replica has stored a quarter of
    /// the channel's bound there since the last check, checks it: the channel keeps its
    /// newest messages that fit.
    fn stored(
        &self,
        store: &HistoryStore,
        tenant: &TenantId,
        topic: &Topic,
        room: &str,
        bytes: u64,
    ) {
        let max = self.config.max_bytes_per_channel;
        if max == 0 {
            return;
        }
        let due = {
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (tenant.clone(), topic.clone());
            if written.len() >= WRITTEN_CHANNELS && !written.contains_key(&key) {
                written.clear();
            }
            let since = written.entry(key).or_default();
            *since = since.saturating_add(bytes);
            let due = *since >= (max / 4).max(1);
            if due {
                *since = 0;
            }
            due
        };
        if due {
            let (store, trimmed, room) = (store.clone(), self.trimmed.clone(), room.to_owned());
            self.tasks.spawn(async move {
                match store.keep_newest_within(&room, max).await {
                    Ok(removed) => {
                        trimmed.inc_by(removed);
                    }
                    Err(e) => warn!(error = %e, subject = %room, "cannot bound a channel's history in bytes; tried again after its next quarter"),
                }
            });
        }
    }

    /// The tenant's stream if it has one, its configuration made ours on first sight.
    async fn existing(&self, tenant: &TenantId) -> Result<Option<HistoryStore>, BusError> {
        if let Some(store) = self.cached(tenant) {
            return Ok(Some(store));
        }
        if self
            .bus
            .open_history(&subject::history_stream(tenant))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let store = self.bus.history(self.stream_config(tenant).await?).await?;
        Ok(Some(self.remember(tenant, store)))
    }

    /// The tenant's stream, made if it has none yet and the budget has room.
    async fn made(&self, tenant: &TenantId) -> Result<HistoryStore, StoreError> {
        if let Some(store) = self.existing(tenant).await? {
            return Ok(store);
        }
        let _making = self.making.lock().await;
        if let Some(store) = self.cached(tenant) {
            return Ok(store);
        }
        if let Some(max) = self.config.max_tenants() {
            let kept = self
                .bus
                .history_names(subject::HISTORY_STREAM_PREFIX)
                .await?
                .len();
            if kept >= max {
                return Err(StoreError::NoRoom(kept));
            }
        }
        let store = self.bus.history(self.stream_config(tenant).await?).await?;
        info!(%tenant, stream = store.name(), "made a tenant's history stream");
        Ok(self.remember(tenant, store))
    }

    /// Makes the stream of every tenant with messages in the retired stream, so that
    /// each copies its messages from it at once (not at the tenant's next publish).
    /// Idempotent: every replica does it at start while the retired stream is there.
    async fn adopt(&self, legacy: &HistoryStore) -> Result<(), BusError> {
        let mut tenants: Vec<TenantId> = legacy
            .subjects(subject::ROOM_ALL)
            .await?
            .iter()
            .filter_map(|(room, _)| subject::parse_room(room).map(|(tenant, _)| tenant))
            .collect();
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            match self.made(&tenant).await {
                Ok(_) => {}
                Err(StoreError::NoRoom(kept)) => warn!(
                    %tenant,
                    kept,
                    "no room in the history for this tenant's stream: its messages in the retired stream are not copied"
                ),
                Err(StoreError::Bus(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// The tenant's stream as the settings say, copying the tenant's messages from the
    /// retired stream of every tenant while that is there.
    async fn stream_config(&self, tenant: &TenantId) -> Result<arqon_bus::HistoryConfig, BusError> {
        let config = &self.config;
        let legacy = self
            .bus
            .open_history(subject::LEGACY_HISTORY_STREAM)
            .await?
            .is_some();
        Ok(arqon_bus::HistoryConfig {
            max_msgs_per_subject: i64::from(config.max_per_channel),
            max_age: Duration::from_secs(config.max_age_seconds),
            max_bytes: i64::try_from(config.max_bytes_per_tenant).unwrap_or(i64::MAX),
            storage: self.bus.durable_storage(),
            sources: if legacy {
                vec![HistorySource {
                    stream: subject::LEGACY_HISTORY_STREAM.to_owned(),
                    filter: subject::tenant_rooms(tenant),
                }]
            } else {
                Vec::new()
            },
            ..arqon_bus::HistoryConfig::new(
                subject::history_stream(tenant),
                vec![subject::tenant_rooms(tenant)],
            )
        })
    }
}

/// Whether the stream of every tenant from before ADR 018 captures nothing any more.
fn is_retired(legacy: &HistoryStore) -> bool {
    legacy.config().subjects == [subject::RETIRED_HISTORY_SUBJECT]
}

/// Stops the stream of every tenant from before ADR 018 (`ARQON_HISTORY`, capturing
/// `arqon.room.>`) from capturing, so that the tenants' streams can: its messages stay,
/// for the tenants' streams to copy, until they age out. The retired stream, while it is
/// there.
async fn retire_legacy(bus: &Bus) -> Result<Option<HistoryStore>, BusError> {
    let Some(legacy) = bus.open_history(subject::LEGACY_HISTORY_STREAM).await? else {
        return Ok(None);
    };
    if is_retired(&legacy) {
        return Ok(Some(legacy));
    }
    bus.history(arqon_bus::HistoryConfig {
        subjects: vec![subject::RETIRED_HISTORY_SUBJECT.to_owned()],
        ..legacy.config().clone()
    })
    .await?;
    warn!(
        stream = subject::LEGACY_HISTORY_STREAM,
        "retired the history stream of every tenant: each tenant's history is now a stream of its own, which copies the tenant's messages from it (ADR 018)"
    );
    Ok(Some(legacy))
}
