//! The channel registry: every channel of every tenant, with who created it and when.
//! A room exists while it has a channel.
//!
//! Each tenant also has one counter key (`<tenant>.channel_count`), so the quota check of
//! a creation reads one key instead of listing the tenant's channels. A creation reserves
//! a place with a compare-and-set on the counter before it writes the channel, and gives
//! the place back if the channel was there already; a deletion gives it back after. So the
//! quota holds across replicas; a replica that dies between the two writes leaves the
//! counter one too high, which the expiry sweep corrects (`Registry::reconcile`).

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use arqon_bus::{Bus, BusError, KvStore};
use arqon_proto::layout;
use arqon_protocol::{ErrorCode, RoomName, TenantId, Timestamp, Topic, UserFacingError, subject};

/// Longest channel `description`, in bytes (`create_channel` refuses a longer one), so a
/// page of `list_channels` holds many channels.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Attempts of one compare-and-set before it is given up as contended.
const CAS_ATTEMPTS: u32 = 32;

/// What the registry keeps about a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChannelRecord {
    pub(crate) description: String,
    /// The client that created it (explicitly, or by joining first).
    pub(crate) created_by: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// Created by a first join or publish rather than `create_channel`: it expires once
    /// it has no members and no history (`ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) implicit: bool,
    /// When the expiry sweep first found it empty (Unix milliseconds). A join clears it
    /// with a compare-and-set, so a sweep that would remove it fails its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) empty_since_ms: Option<u64>,
}

/// A record with the revision that wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) record: ChannelRecord,
    pub(crate) revision: u64,
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

impl UserFacingError for LookupError {
    fn code(&self) -> ErrorCode {
        match self {
            LookupError::RoomNotFound(_) => ErrorCode::RoomNotFound,
            LookupError::ChannelNotFound(_) => ErrorCode::ChannelNotFound,
            LookupError::Bus(e) => e.code(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            LookupError::Bus(e) => e.client_message(),
            not_found => not_found.to_string(),
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

/// How a channel comes into being.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `create_channel`: it stays until deleted.
    Explicit,
    /// A first join (or a gRPC publish): it expires once empty.
    Implicit,
}

/// The counter key of a tenant: two tokens, so no channel filter (`<tenant>.*.*`)
/// matches it.
fn count_key(tenant: &TenantId) -> String {
    format!("{tenant}.channel_count")
}

/// Unix milliseconds now, for the sweep's marks.
pub(crate) fn unix_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default()
}

/// A random pause between two attempts of a contended compare-and-set, up to twice as
/// long after each failed one (at most 64 ms): on a loaded machine a round trip to the
/// bucket takes longer than a fixed short pause, and contenders kept colliding until
/// their attempts ran out (eight clients creating 800 channels at once, a loaded run).
async fn back_off(attempt: u32) {
    let ms = rand::random_range(0..=1u64 << attempt.min(6));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[derive(Clone)]
pub(crate) struct Registry {
    kv: KvStore,
    /// Channels one tenant may have.
    max_per_tenant: usize,
}

impl Registry {
    pub(crate) async fn open(bus: &Bus, max_per_tenant: usize) -> Result<Self, BusError> {
        Ok(Self {
            kv: bus.key_value(layout::channels(bus)).await?,
            max_per_tenant,
        })
    }

    pub(crate) async fn get(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Option<ChannelRecord>, BusError> {
        Ok(self.entry(tenant, topic).await?.map(|e| e.record))
    }

    pub(crate) async fn entry(
        &self,
        tenant: &TenantId,
        topic: &Topic,
    ) -> Result<Option<Entry>, BusError> {
        self.entry_at(&subject::channel_key(tenant, topic)).await
    }

    async fn entry_at(&self, key: &str) -> Result<Option<Entry>, BusError> {
        let entry = self.kv.get(key).await?;
        Ok(entry.and_then(|e| {
            let record = serde_json::from_slice(&e.value).ok()?;
            Some(Entry {
                record,
                revision: e.revision,
            })
        }))
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
        origin: Origin,
    ) -> Result<Created, BusError> {
        if self.get(tenant, topic).await?.is_some() {
            return Ok(Created::Exists);
        }
        if !self.reserve(tenant).await? {
            return Ok(Created::OverQuota {
                limit: self.max_per_tenant,
            });
        }
        let record = ChannelRecord {
            description: description.to_owned(),
            created_by: created_by.to_owned(),
            created_at: Timestamp::now().to_rfc3339(),
            implicit: origin == Origin::Implicit,
            empty_since_ms: None,
        };
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let created = self
            .kv
            .create(&subject::channel_key(tenant, topic), Bytes::from(value))
            .await;
        match created {
            Ok(_) => Ok(Created::New(record)),
            Err(e) => {
                self.release(tenant).await?;
                match e {
                    BusError::AlreadyExists => Ok(Created::Exists),
                    e => Err(e),
                }
            }
        }
    }

    /// Makes sure the channel exists for a member about to use it: creates it (an
    /// implicit one) when it is not there, and takes back a pending expiry (the mark of
    /// the sweep) with a compare-and-set, so a sweep that read the channel as empty
    /// cannot remove it afterwards.
    pub(crate) async fn claim(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        created_by: &str,
    ) -> Result<Created, BusError> {
        let key = subject::channel_key(tenant, topic);
        for attempt in 0..CAS_ATTEMPTS {
            match self.entry_at(&key).await? {
                Some(Entry { record, .. }) if record.empty_since_ms.is_none() => {
                    return Ok(Created::Exists);
                }
                Some(Entry {
                    mut record,
                    revision,
                }) => {
                    record.empty_since_ms = None;
                    match self.write(&key, &record, revision).await {
                        Ok(()) => return Ok(Created::Exists),
                        Err(BusError::WrongRevision) => back_off(attempt).await,
                        Err(e) => return Err(e),
                    }
                }
                None => match self
                    .create(tenant, topic, created_by, "", Origin::Implicit)
                    .await?
                {
                    // Created by someone else meanwhile: it may carry a mark again.
                    Created::Exists => {}
                    done => return Ok(done),
                },
            }
        }
        Err(BusError::WrongRevision)
    }

    /// Writes `record` if the key is still at `revision`.
    async fn write(
        &self,
        key: &str,
        record: &ChannelRecord,
        revision: u64,
    ) -> Result<(), BusError> {
        let value = serde_json::to_vec(record).unwrap_or_default();
        self.kv
            .update(key, Bytes::from(value), revision)
            .await
            .map(|_| ())
    }

    /// Records (or with `None` takes back) when the sweep found the channel empty, if
    /// nobody changed it since `entry` was read.
    pub(crate) async fn mark_empty(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        entry: &Entry,
        since_ms: Option<u64>,
    ) -> Result<(), BusError> {
        let record = ChannelRecord {
            empty_since_ms: since_ms,
            ..entry.record.clone()
        };
        self.write(
            &subject::channel_key(tenant, topic),
            &record,
            entry.revision,
        )
        .await
    }

    /// Removes an expired channel if nobody changed it since `entry` was read (a join
    /// in between took the mark back); `BusError::WrongRevision` otherwise.
    pub(crate) async fn expire(
        &self,
        tenant: &TenantId,
        topic: &Topic,
        entry: &Entry,
    ) -> Result<(), BusError> {
        self.kv
            .delete_expecting(&subject::channel_key(tenant, topic), entry.revision)
            .await?;
        self.release(tenant).await
    }

    /// Removes the channel; only the deletion that removed it gives its place back.
    pub(crate) async fn delete(&self, tenant: &TenantId, topic: &Topic) -> Result<(), BusError> {
        let key = subject::channel_key(tenant, topic);
        let Some(entry) = self.kv.get(&key).await? else {
            return Ok(());
        };
        match self.kv.delete_expecting(&key, entry.revision).await {
            Ok(()) => self.release(tenant).await,
            // Changed meanwhile (deleted, expired or rejoined): the key is gone either way.
            Err(BusError::WrongRevision) => self.kv.delete(&key).await,
            Err(e) => Err(e),
        }
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

    /// The tenants with channels, by name: those whose counter is above zero (one key
    /// per tenant, so this reads in proportion to the tenants, not to their channels).
    pub(crate) async fn tenants(&self) -> Result<Vec<String>, BusError> {
        let counters = self.kv.entries_matching("*.channel_count").await?;
        Ok(counters
            .into_iter()
            .filter(|entry| {
                std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .is_some_and(|count| count > 0)
            })
            .filter_map(|entry| {
                let (tenant, _) = entry.key.split_once('.')?;
                Some(tenant.to_owned())
            })
            .collect())
    }

    /// Every channel of every tenant with its record, and every tenant's counter, for
    /// the expiry sweep.
    pub(crate) async fn scan(&self) -> Result<Scan, BusError> {
        let mut scan = Scan::default();
        // One read of the bucket (on NATS one consumer), not a read per key.
        for entry in self.kv.entries_matching(">").await? {
            let Some(tenant) = entry
                .key
                .split_once('.')
                .and_then(|(t, _)| TenantId::parse(t).ok())
            else {
                continue;
            };
            if entry.key == count_key(&tenant) {
                let count = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok());
                if let Some(count) = count {
                    let revision = entry.revision;
                    scan.counters.insert(tenant, Counter { count, revision });
                }
            } else if let Some(topic) = subject::parse_channel_key(&tenant, &entry.key)
                && let Ok(record) = serde_json::from_slice(&entry.value)
            {
                let revision = entry.revision;
                scan.channels
                    .push((tenant, topic, Entry { record, revision }));
            }
        }
        Ok(scan)
    }

    /// The channels of `tenant` whose keys match `filter`.
    async fn matching(&self, tenant: &TenantId, filter: &str) -> Result<Vec<Topic>, BusError> {
        let keys = self.kv.keys_matching(filter).await?;
        Ok(keys
            .iter()
            .filter_map(|k| subject::parse_channel_key(tenant, k))
            .collect())
    }

    /// The tenant's counter and its revision; the first use counts the channels once.
    async fn count(&self, tenant: &TenantId) -> Result<(u64, u64), BusError> {
        let key = count_key(tenant);
        for attempt in 0..CAS_ATTEMPTS {
            let current = self.kv.get(&key).await?;
            let parsed = current.as_ref().and_then(|entry| {
                let text = std::str::from_utf8(&entry.value).ok()?;
                Some((text.parse::<u64>().ok()?, entry.revision))
            });
            if let Some(parsed) = parsed {
                return Ok(parsed);
            }
            // Absent (a bucket from before the counter) or unreadable: count, and write
            // the count only where nobody wrote a counter since.
            let n = self.all(tenant).await?.len() as u64;
            let value = Bytes::from(n.to_string());
            let written = match &current {
                Some(entry) => self.kv.update(&key, value, entry.revision).await,
                None => self.kv.create(&key, value).await,
            };
            match written {
                Ok(revision) => return Ok((n, revision)),
                Err(BusError::AlreadyExists | BusError::WrongRevision) => back_off(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(BusError::WrongRevision)
    }

    /// Adds `delta` to the counter (not below 0) unless that would pass `ceiling`;
    /// whether it did.
    async fn add(&self, tenant: &TenantId, delta: i64, ceiling: u64) -> Result<bool, BusError> {
        let key = count_key(tenant);
        for attempt in 0..CAS_ATTEMPTS {
            let (count, revision) = self.count(tenant).await?;
            let next = count.saturating_add_signed(delta);
            if delta > 0 && next > ceiling {
                return Ok(false);
            }
            match self
                .kv
                .update(&key, Bytes::from(next.to_string()), revision)
                .await
            {
                Ok(_) => return Ok(true),
                Err(BusError::WrongRevision) => back_off(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(BusError::WrongRevision)
    }

    /// Takes one place of the tenant's quota; false when none is left.
    async fn reserve(&self, tenant: &TenantId) -> Result<bool, BusError> {
        self.add(tenant, 1, self.max_per_tenant as u64).await
    }

    /// Gives one place back.
    async fn release(&self, tenant: &TenantId) -> Result<(), BusError> {
        self.add(tenant, -1, u64::MAX).await.map(|_| ())
    }

    /// Sets the counter to `channels` (what a sweep counted) if it is still at
    /// `revision`. The sweep calls it only when no creation or deletion touched the
    /// counter for a whole sweep interval: a difference then is what a replica that
    /// died between its two writes left behind.
    pub(crate) async fn reconcile(
        &self,
        tenant: &TenantId,
        channels: u64,
        revision: u64,
    ) -> Result<(), BusError> {
        self.kv
            .update(
                &count_key(tenant),
                Bytes::from(channels.to_string()),
                revision,
            )
            .await
            .map(|_| ())
    }
}

/// A tenant's channel counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) count: u64,
    pub(crate) revision: u64,
}

/// The whole registry as one sweep read it.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) channels: Vec<(TenantId, Topic, Entry)>,
    pub(crate) counters: std::collections::BTreeMap<TenantId, Counter>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_bus::EmbeddedOptions;

    fn topic(channel: &str) -> Topic {
        Topic::parse("lab", channel).unwrap()
    }

    async fn registry(max: usize) -> (Bus, Registry) {
        let bus = Bus::embedded(EmbeddedOptions::default());
        let registry = Registry::open(&bus, max).await.unwrap();
        (bus, registry)
    }

    fn tenant() -> TenantId {
        TenantId::parse("t-a").unwrap()
    }

    #[tokio::test]
    async fn the_quota_counter_holds_and_frees_places() {
        let (_bus, registry) = registry(2).await;
        let t = tenant();
        for name in ["a", "b"] {
            let created = registry
                .create(&t, &topic(name), "c", "", Origin::Explicit)
                .await
                .unwrap();
            assert!(matches!(created, Created::New(_)), "{created:?}");
        }
        // An existing channel is not refused, nor counted twice.
        let again = registry.claim(&t, &topic("a"), "c").await.unwrap();
        assert!(matches!(again, Created::Exists), "{again:?}");
        let refused = registry.claim(&t, &topic("c"), "c").await.unwrap();
        assert!(
            matches!(refused, Created::OverQuota { limit: 2 }),
            "{refused:?}"
        );
        registry.delete(&t, &topic("a")).await.unwrap();
        registry.delete(&t, &topic("a")).await.unwrap();
        assert_eq!(registry.count(&t).await.unwrap().0, 1);
        let created = registry.claim(&t, &topic("c"), "c").await.unwrap();
        assert!(matches!(created, Created::New(r) if r.implicit));
        // Another tenant has its own places.
        let other = TenantId::parse("t-b").unwrap();
        let created = registry.claim(&other, &topic("a"), "c").await.unwrap();
        assert!(matches!(created, Created::New(_)));
        // The counter is no channel.
        assert_eq!(registry.all(&t).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_bucket_without_a_counter_is_counted_once() {
        let (bus, registry) = registry(2).await;
        let t = tenant();
        let kv = bus.key_value(layout::channels(&bus)).await.unwrap();
        let old = br#"{"description":"","created_by":"c","created_at":"2026-01-01T00:00:00Z"}"#;
        kv.put(
            &subject::channel_key(&t, &topic("old")),
            Bytes::from_static(old),
        )
        .await
        .unwrap();
        let record = registry.get(&t, &topic("old")).await.unwrap().unwrap();
        assert!(!record.implicit, "a record from before stays");
        assert!(matches!(
            registry.claim(&t, &topic("a"), "c").await.unwrap(),
            Created::New(_)
        ));
        assert!(matches!(
            registry.claim(&t, &topic("b"), "c").await.unwrap(),
            Created::OverQuota { .. }
        ));
    }

    #[tokio::test]
    async fn a_join_takes_back_a_pending_expiry() {
        let (_bus, registry) = registry(10).await;
        let t = tenant();
        registry.claim(&t, &topic("a"), "c").await.unwrap();
        let read = registry.entry(&t, &topic("a")).await.unwrap().unwrap();
        registry
            .mark_empty(&t, &topic("a"), &read, Some(unix_ms()))
            .await
            .unwrap();
        let marked = registry.entry(&t, &topic("a")).await.unwrap().unwrap();
        assert!(marked.record.empty_since_ms.is_some());
        // A stale read cannot mark or remove.
        assert!(matches!(
            registry.expire(&t, &topic("a"), &read).await,
            Err(BusError::WrongRevision)
        ));
        // A join between the sweep's read and its removal wins.
        registry.claim(&t, &topic("a"), "c").await.unwrap();
        assert!(matches!(
            registry.expire(&t, &topic("a"), &marked).await,
            Err(BusError::WrongRevision)
        ));
        let kept = registry.entry(&t, &topic("a")).await.unwrap().unwrap();
        assert_eq!(kept.record.empty_since_ms, None);
        // Without a join the removal goes through and frees the place.
        registry
            .mark_empty(&t, &topic("a"), &kept, Some(unix_ms()))
            .await
            .unwrap();
        let marked = registry.entry(&t, &topic("a")).await.unwrap().unwrap();
        registry.expire(&t, &topic("a"), &marked).await.unwrap();
        assert!(registry.get(&t, &topic("a")).await.unwrap().is_none());
        assert_eq!(registry.count(&t).await.unwrap().0, 0);
        // A join after the removal makes it again.
        assert!(matches!(
            registry.claim(&t, &topic("a"), "c").await.unwrap(),
            Created::New(_)
        ));
    }

    #[tokio::test]
    async fn a_scan_reads_every_channel_and_counter() {
        let (_bus, registry) = registry(10).await;
        let (a, b) = (tenant(), TenantId::parse("t-b").unwrap());
        registry.claim(&a, &topic("x"), "c").await.unwrap();
        registry
            .create(&a, &topic("y"), "c", "d", Origin::Explicit)
            .await
            .unwrap();
        registry.claim(&b, &topic("x"), "c").await.unwrap();
        let scan = registry.scan().await.unwrap();
        let found: Vec<(String, String, bool)> = scan
            .channels
            .iter()
            .map(|(t, topic, e)| (t.to_string(), topic.to_string(), e.record.implicit))
            .collect();
        assert_eq!(
            found,
            [
                ("t-a".into(), "lab:x".into(), true),
                ("t-a".into(), "lab:y".into(), false),
                ("t-b".into(), "lab:x".into(), true),
            ]
        );
        assert_eq!(scan.counters.get(&a).map(|c| c.count), Some(2));
        assert_eq!(scan.counters.get(&b).map(|c| c.count), Some(1));
        // A counter left too high is set to what was counted, at its revision only.
        let counter = scan.counters[&a];
        registry.reconcile(&a, 5, counter.revision).await.unwrap();
        assert!(matches!(
            registry.reconcile(&a, 2, counter.revision).await,
            Err(BusError::WrongRevision)
        ));
        assert_eq!(registry.count(&a).await.unwrap().0, 5);
    }
}
