//! The store's reads and writes on its bucket, and the sweep of expired values.
//!
//! Writes are compare-and-set on the key's revision, even without `expected_revision`:
//! that is what keeps a sweep from deleting a value written after it looked. A sweep
//! first *claims* an expired value (a compare-and-set to a sweeping mark) and then
//! deletes it at the claim's revision; a writer that read the expired value fails its
//! own compare-and-set and reads again, and a writer that reads the mark waits for the
//! delete. A mark older than [`ABANDONED`] belongs to a sweep that died (or stalled)
//! between the two steps, and anyone may take it over; a stalled sweep that resumes then
//! deletes nothing.
//!
//! A value with a TTL has one expiry marker (`keys.rs`), whose time is at or before the
//! value's expiry once every write has finished: a writer only ever moves the marker
//! earlier, before its value lands and again after; the sweep, looking at a marker that
//! came due, deletes the value if it expired, moves the marker to the live value's
//! expiry, or removes the marker if the value has none. The sweep changes a marker only
//! at the revision it read, so it never undoes a writer's move.
//!
//! A new key takes one of its tenant's places first, and a removed one gives it back
//! (`places.rs`); the periodic sweep also corrects the counters of the places.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use arqon_bus::{BusError, KvEntry, KvStore};
use arqon_protocol::{ErrorCode, UserFacingError};

use super::keys::{self, Namespace};
use super::places::{self, Places, Reserved};
use super::record::{self, Record};
use crate::error::{ApiError, bus_failure, conflict, validation};

/// How long a write waits for a sweep (or for other writers of the same key) before
/// giving up with `CONFLICT`.
const WRITE_PATIENCE: Duration = Duration::from_secs(2);
/// Pause between two attempts of a write.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// A sweeping mark this old was left by a sweep that stopped between claiming a value
/// and deleting it (every bus call is bounded well below this).
const ABANDONED: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A write, checked.
#[derive(Debug)]
pub(crate) struct Write<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a RawValue,
    pub(crate) expected_revision: Option<u64>,
    pub(crate) ttl: Option<Duration>,
}

/// What a write did.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) updated: bool,
    pub(crate) revision: u64,
    pub(crate) expires_at_ms: Option<i64>,
}

/// A value found.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) value: Box<RawValue>,
    pub(crate) revision: u64,
    pub(crate) expires_at_ms: Option<i64>,
}

/// The store's bucket.
#[derive(Debug, Clone)]
pub(crate) struct Data {
    pub(crate) kv: KvStore,
    /// The key limit, as each tenant's counter of its keys.
    pub(crate) places: Places,
}

/// What a write does next, given what the key holds.
#[derive(Clone, Copy)]
enum Step {
    Create,
    Replace { revision: u64, updated: bool },
    Wait,
}

impl Data {
    pub(crate) async fn set(&self, ns: &Namespace, write: Write<'_>) -> Result<Written, ApiError> {
        let failed = |e: &BusError| bus_failure("write the store value", e);
        let expires_at_ms = write.ttl.map(|ttl| now_ms().saturating_add(millis(ttl)));
        let record = record::value(write.value, expires_at_ms);
        let marker = ns.expiry_key(write.key);
        if let Some(at) = expires_at_ms {
            // The marker first: a value with a TTL is never unknown to the sweep.
            arm(&self.kv, &marker, at).await.map_err(|e| failed(&e))?;
        }
        let written = self.write(ns, &write, record, expires_at_ms).await;
        let settled = match (&written, expires_at_ms) {
            // Again once the value is there: a sweep that looked in between may have
            // moved the marker to the value this one replaced.
            (Ok(_), Some(at)) => arm(&self.kv, &marker, at).await,
            (Ok(_), None) => Ok(()),
            // A refused write leaves the marker as the key's current value needs it.
            // After a bus failure the write may have landed: the marker stays.
            (Err(refusal), _) if refusal.code() == ErrorCode::Unavailable => Ok(()),
            (Err(_), _) => match self.kv.get(&marker).await {
                Ok(Some(entry)) => tend(self, &entry, false).await.map(drop),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };
        if let Err(error) = settled {
            // The marker is at or before the value's expiry already, or a later write or
            // sweep puts it right.
            debug!(%error, marker, "the expiry marker was not tended after a write");
        }
        written
    }

    /// Writes `record` (compare-and-set, retried) once the marker is in place.
    async fn write(
        &self,
        ns: &Namespace,
        write: &Write<'_>,
        record: Bytes,
        expires_at_ms: Option<i64>,
    ) -> Result<Written, ApiError> {
        let failed = |e: &BusError| bus_failure("write the store value", e);
        let value_key = ns.value_key(write.key);
        let deadline = Instant::now() + WRITE_PATIENCE;
        loop {
            let current = self.kv.get(&value_key).await.map_err(|e| failed(&e))?;
            let now = now_ms();
            let read = current
                .as_ref()
                .map(|entry| (entry.revision, Record::read(&entry.value, now)));
            if let Some(expected) = write.expected_revision {
                let actual = match &read {
                    Some((revision, Some(record))) if record.is_live() => *revision,
                    _ => 0,
                };
                if actual != expected {
                    return Err(stale(write.key, expected, actual));
                }
            }
            let step = match read {
                None => Step::Create,
                Some((revision, Some(Record::Live { .. }))) => Step::Replace {
                    revision,
                    updated: true,
                },
                Some((_, Some(Record::Sweeping { since_ms })))
                    if now.saturating_sub(since_ms) < millis(ABANDONED) =>
                {
                    Step::Wait
                }
                // Expired, abandoned by its sweep, or unreadable: absent to readers.
                Some((revision, _)) => Step::Replace {
                    revision,
                    updated: false,
                },
            };
            let attempt = match step {
                Step::Wait => Err(BusError::WrongRevision),
                // Created meanwhile: an update now (or a conflict), as after a failed create.
                Step::Create if !self.take_place(ns, &value_key).await? => {
                    Err(BusError::AlreadyExists)
                }
                Step::Create => {
                    let created = self.kv.create(&value_key, record.clone()).await;
                    if let Err(
                        BusError::AlreadyExists
                        | BusError::WrongRevision
                        | BusError::PayloadTooLarge { .. }
                        | BusError::InvalidKey(_),
                    ) = created
                    {
                        // Not created. After any other failure it may have been: the
                        // place stays taken, at worst until a reconcile (`places.rs`).
                        self.places.unreserve(ns.tenant()).await;
                    }
                    created
                }
                // An expired value (or an abandoned claim) holds its place already.
                Step::Replace { revision, .. } => {
                    self.kv.update(&value_key, record.clone(), revision).await
                }
            };
            match attempt {
                Ok(revision) => {
                    return Ok(Written {
                        updated: matches!(step, Step::Replace { updated: true, .. }),
                        revision,
                        expires_at_ms,
                    });
                }
                Err(BusError::WrongRevision | BusError::AlreadyExists) => {
                    // Someone wrote first: with an expected revision that is a conflict
                    // (unless a sweep is finishing), otherwise read again.
                    if write.expected_revision.is_some() && !matches!(step, Step::Wait) {
                        return Err(conflict(format!(
                            "Store key '{}' changed while it was written; read it again",
                            write.key
                        )));
                    }
                    if Instant::now() >= deadline {
                        return Err(conflict(format!(
                            "Store key '{}' is busy (other writers, or its expiry being swept); try again",
                            write.key
                        )));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(failed(&e)),
            }
        }
    }

    /// Takes one of the tenant's places for the new key `value_key`; refuses it beyond the
    /// limit. Values that expired but were not swept yet do not count: at the limit, the
    /// tenant's are swept first. False: the key was created by someone else meanwhile.
    async fn take_place(&self, ns: &Namespace, value_key: &str) -> Result<bool, ApiError> {
        let failed = |e: &BusError| bus_failure("write the store value", e);
        let tenant = ns.tenant();
        if self.places.reserve(tenant).await.map_err(|e| failed(&e))? == Reserved::Taken {
            return Ok(true);
        }
        sweep(self, &keys::tenant_expiries(tenant))
            .await
            .map_err(|e| failed(&e))?;
        let count = match self.places.reserve(tenant).await.map_err(|e| failed(&e))? {
            Reserved::Taken => return Ok(true),
            Reserved::Full { count } => count,
        };
        if self
            .kv
            .get(value_key)
            .await
            .map_err(|e| failed(&e))?
            .is_some()
        {
            return Ok(false);
        }
        Err(validation(format!(
            "Store key limit reached: tenant '{tenant}' has {count} keys, the limit is {}",
            self.places.limit()
        )))
    }

    /// The value of `key`, if it has one that has not expired.
    pub(crate) async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Found>, BusError> {
        let value_key = ns.value_key(key);
        let Some(entry) = self.kv.get(&value_key).await? else {
            return Ok(None);
        };
        Ok(match Record::read(&entry.value, now_ms()) {
            Some(Record::Live {
                value,
                expires_at_ms,
            }) => Some(Found {
                value,
                revision: entry.revision,
                expires_at_ms,
            }),
            Some(_) => None,
            None => {
                warn!(
                    key = value_key,
                    "unreadable store record; it reads as absent"
                );
                None
            }
        })
    }

    /// Deletes `key`'s value, and its expiry marker; whether it had a value.
    pub(crate) async fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, BusError> {
        // The marker as it was before the value went: a writer that moves it after this
        // read keeps it.
        let marker = self.kv.get(&ns.expiry_key(key)).await?;
        let found = self.remove(ns, key).await?;
        if let Some(marker) = marker {
            tend(self, &marker, false).await?;
        }
        Ok(found)
    }

    /// Removes `key`'s value if it has one, at the revision read (so that only one of two
    /// deletes gives its place back), and gives its place back; whether it had a value.
    async fn remove(&self, ns: &Namespace, key: &str) -> Result<bool, BusError> {
        let value_key = ns.value_key(key);
        let deadline = Instant::now() + WRITE_PATIENCE;
        loop {
            let Some(entry) = self.kv.get(&value_key).await? else {
                return Ok(false);
            };
            if !Record::read(&entry.value, now_ms()).is_some_and(|record| record.is_live()) {
                // Expired: the sweep removes it (and gives its place back).
                return Ok(false);
            }
            let touched = self.places.removing(ns.tenant()).await?;
            match self.kv.delete_expecting(&value_key, entry.revision).await {
                Ok(()) => {
                    self.places.removed(ns.tenant(), touched).await;
                    return Ok(true);
                }
                // Written or deleted meanwhile: read again.
                Err(BusError::WrongRevision) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(BusError::WrongRevision) => return Err(BusError::Timeout),
                Err(e) => return Err(e),
            }
        }
    }

    /// The keys of `ns` that have a value, sorted.
    pub(crate) async fn list(&self, ns: &Namespace) -> Result<Vec<String>, BusError> {
        let now = now_ms();
        // Values whose expiry has passed, from their markers, read before the values: a
        // sweep deletes an expired value before its marker, so a value still there when
        // the values are read had its marker there when the markers were.
        let due: HashSet<String> = self
            .kv
            .entries_matching(&ns.expiries())
            .await?
            .iter()
            .filter(|marker| keys::parse_expiry_value(&marker.value).is_none_or(|at| at <= now))
            .filter_map(|marker| keys::value_of_expiry(&marker.key))
            .collect();
        let values = self.kv.keys_matching(&ns.values()).await?;
        let mut keys = Vec::with_capacity(values.len());
        for value_key in values {
            if due.contains(&value_key) {
                let live = self
                    .kv
                    .get(&value_key)
                    .await?
                    .and_then(|entry| Record::read(&entry.value, now))
                    .is_some_and(|record| record.is_live());
                if !live {
                    continue;
                }
            }
            if let Some(key) = keys::key_of_value(&value_key) {
                keys.push(key);
            }
        }
        keys.sort_unstable();
        Ok(keys)
    }
}

/// The refusal of a compare-and-set that expected `expected` and found `actual` (0: no
/// value).
fn stale(key: &str, expected: u64, actual: u64) -> ApiError {
    conflict(match (expected, actual) {
        (0, actual) => format!("Store key '{key}' already has a value (revision {actual})"),
        (expected, 0) => {
            format!("Store key '{key}' has no value (expected revision {expected})")
        }
        (expected, actual) => {
            format!("Store key '{key}' is at revision {actual}, not {expected}")
        }
    })
}

/// Deletes the values whose expiry markers (`markers`, a key filter) have come due, and
/// moves or removes those markers; returns how many values it deleted.
pub(crate) async fn sweep(data: &Data, markers: &str) -> Result<usize, BusError> {
    let kv = &data.kv;
    let mut removed = 0;
    for marker in kv.entries_matching(markers).await? {
        if let Some((value_key, at)) = keys::parse_legacy_expiry(&marker.key) {
            // The earlier layout's marker becomes the one marker of its key.
            if let Some(expiry) = keys::expiry_of_value(&value_key) {
                arm(kv, &expiry, at).await?;
            }
            kv.delete(&marker.key).await?;
            continue;
        }
        let due = keys::parse_expiry_value(&marker.value).is_none_or(|at| at <= now_ms());
        if due {
            removed += usize::from(tend(data, &marker, true).await?);
        }
    }
    Ok(removed)
}

/// Moves the expiry marker at `marker` to at most `at`: creates it, or makes it earlier.
async fn arm(kv: &KvStore, marker: &str, at: i64) -> Result<(), BusError> {
    let deadline = Instant::now() + WRITE_PATIENCE;
    loop {
        let current = kv.get(marker).await?;
        let attempt = match &current {
            Some(entry) if keys::parse_expiry_value(&entry.value).is_some_and(|t| t <= at) => {
                return Ok(());
            }
            Some(entry) => kv
                .update(marker, keys::expiry_value(at), entry.revision)
                .await
                .map(drop),
            None => kv.create(marker, keys::expiry_value(at)).await.map(drop),
        };
        match attempt {
            Err(BusError::WrongRevision | BusError::AlreadyExists) if Instant::now() < deadline => {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(BusError::WrongRevision | BusError::AlreadyExists) => {
                return Err(BusError::Timeout);
            }
            other => return other,
        }
    }
}

/// Puts the expiry marker `marker` (as read) right for its key's value: deletes the value
/// if it expired (only when `sweeping`), then moves the marker to the live value's
/// expiry or removes it when the value has none. Changes the marker only at the revision
/// read, so a writer's move since wins. Whether it deleted the value.
async fn tend(data: &Data, marker: &KvEntry, sweeping: bool) -> Result<bool, BusError> {
    let kv = &data.kv;
    let Some(value_key) = keys::value_of_expiry(&marker.key) else {
        return Ok(false);
    };
    let now = now_ms();
    let current = kv.get(&value_key).await?;
    let read = current
        .as_ref()
        .map(|entry| (entry.revision, Record::read(&entry.value, now)));
    let mut removed = false;
    let keep_at = match read {
        Some((revision, Some(Record::Expired { .. }))) if sweeping => {
            removed = claim_and_delete(data, &value_key, revision).await?;
            if !removed {
                // A writer won; its own moves keep the marker right.
                return Ok(false);
            }
            None
        }
        Some((revision, Some(Record::Sweeping { since_ms }))) => {
            if !sweeping || now.saturating_sub(since_ms) < millis(ABANDONED) {
                // Another sweep is deleting it and tends the marker after, or the claim
                // was abandoned and the next sweep takes it over through this marker.
                return Ok(false);
            }
            removed = claim_and_delete(data, &value_key, revision).await?;
            if !removed {
                return Ok(false);
            }
            None
        }
        Some((_, Some(Record::Live { expires_at_ms, .. }))) => expires_at_ms,
        Some((_, Some(Record::Expired { expires_at_ms }))) => Some(expires_at_ms),
        // Absent or unreadable: nothing to mark.
        None | Some((_, None)) => None,
    };
    let moved = match keep_at {
        Some(at) if keys::parse_expiry_value(&marker.value) == Some(at) => Ok(()),
        Some(at) => kv
            .update(&marker.key, keys::expiry_value(at), marker.revision)
            .await
            .map(drop),
        None => kv.delete_expecting(&marker.key, marker.revision).await,
    };
    match moved {
        Ok(()) | Err(BusError::WrongRevision) => Ok(removed),
        Err(e) => Err(e),
    }
}

/// Claims the value at `revision` for deletion, then deletes it (at the claim's revision,
/// so a sweep that resumes after its claim was taken over deletes nothing) and gives its
/// place back; false if it changed first (a writer won, and its value stays).
async fn claim_and_delete(data: &Data, value_key: &str, revision: u64) -> Result<bool, BusError> {
    let kv = &data.kv;
    let claimed = match kv
        .update(value_key, record::sweeping(now_ms()), revision)
        .await
    {
        Ok(claimed) => claimed,
        Err(BusError::WrongRevision) => return Ok(false),
        Err(e) => return Err(e),
    };
    let tenant = keys::tenant_of_value(value_key);
    let touched = match &tenant {
        Some(tenant) => data.places.removing(tenant).await?,
        None => None,
    };
    match kv.delete_expecting(value_key, claimed).await {
        Ok(()) => {
            if let Some(tenant) = &tenant {
                data.places.removed(tenant, touched).await;
            }
            Ok(true)
        }
        Err(BusError::WrongRevision) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sweeps every `every`, and reconciles the counters of places every
/// [`places::RECONCILE_EVERY`], for as long as it runs.
pub(crate) async fn sweep_periodically(data: Data, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut seen = HashMap::new();
    let mut next_reconcile = Instant::now() + places::RECONCILE_EVERY;
    loop {
        ticks.tick().await;
        if Instant::now() >= next_reconcile {
            next_reconcile = Instant::now() + places::RECONCILE_EVERY;
            // After a failure `seen` holds what an earlier pass read: older still.
            if let Err(error) = data.places.reconcile(&mut seen).await {
                debug!(%error, "the store key counters were not reconciled; retrying next period");
            }
        }
        match sweep(&data, keys::ALL_EXPIRIES).await {
            Ok(removed) => {
                if failing {
                    info!("expired store values are swept again");
                }
                failing = false;
                if removed > 0 {
                    debug!(removed, "expired store values swept");
                }
            }
            Err(error) => {
                if !failing {
                    warn!(%error, "cannot sweep expired store values; retrying every period");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_bus::{Bus, KvConfig};
    use arqon_protocol::TenantId;

    async fn data(max_keys_per_tenant: usize) -> Data {
        let bus = Bus::embedded(Default::default());
        let kv = bus.key_value(KvConfig::new("store_test")).await.unwrap();
        Data {
            places: Places::new(kv.clone(), max_keys_per_tenant),
            kv,
        }
    }

    /// The values and markers in the bucket (not the counters).
    async fn left(data: &Data) -> Vec<String> {
        let keys = data.kv.keys().await.unwrap();
        keys.into_iter().filter(|k| !k.starts_with("c.")).collect()
    }

    /// The places t-a's counter says it holds.
    async fn held(data: &Data) -> Option<u64> {
        let counter = data.kv.get("c.t-a").await.unwrap()?;
        std::str::from_utf8(&counter.value).ok()?.parse().ok()
    }

    fn root() -> Namespace {
        Namespace::root(TenantId::parse("t-a").unwrap())
    }

    fn json(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    async fn set(
        data: &Data,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<Written, ApiError> {
        let value = json(value);
        let write = Write {
            key,
            value: &value,
            expected_revision: None,
            ttl,
        };
        data.set(&root(), write).await
    }

    /// Waits (bounded) until `key` reads as absent.
    async fn until_expired(data: &Data, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while data.get(&root(), key).await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "{key} did not expire");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn expired_values_read_as_absent_before_any_sweep() {
        let data = data(10).await;
        set(&data, "short", "1", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        let long = set(&data, "long", "2", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert!(long.expires_at_ms.is_some());
        until_expired(&data, "short").await;
        assert_eq!(data.list(&root()).await.unwrap(), ["long"]);
        assert!(!data.delete(&root(), "short").await.unwrap());
        // Writing it again is a new value, not an update.
        assert!(!set(&data, "short", "3", None).await.unwrap().updated);
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 0);
        assert_eq!(
            data.get(&root(), "short")
                .await
                .unwrap()
                .unwrap()
                .value
                .get(),
            "3"
        );
        assert_eq!(
            data.kv.keys_matching("x.>").await.unwrap().len(),
            1,
            "the long one's marker"
        );
    }

    #[tokio::test]
    async fn a_sweep_deletes_expired_values_and_their_markers() {
        let data = data(10).await;
        set(&data, "k", "1", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        until_expired(&data, "k").await;
        assert_eq!(held(&data).await, Some(1));
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 1);
        assert!(left(&data).await.is_empty());
        assert_eq!(held(&data).await, Some(0), "the sweep gives the place back");
    }

    #[tokio::test]
    async fn a_sweep_never_deletes_a_value_written_after_it_looked() {
        let data = data(10).await;
        set(&data, "k", "1", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        until_expired(&data, "k").await;
        let value_key = root().value_key("k");
        let seen = data.kv.get(&value_key).await.unwrap().unwrap();
        // A writer gets in between the sweep's read and its claim.
        set(&data, "k", "2", None).await.unwrap();
        assert!(
            !claim_and_delete(&data, &value_key, seen.revision)
                .await
                .unwrap()
        );
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 0);
        assert_eq!(
            data.get(&root(), "k").await.unwrap().unwrap().value.get(),
            "2"
        );
    }

    #[tokio::test]
    async fn a_writer_waits_for_a_sweep_to_finish() {
        let data = data(10).await;
        let value_key = root().value_key("k");
        data.kv
            .put(&value_key, record::sweeping(now_ms()))
            .await
            .unwrap();
        let writer = tokio::spawn({
            let data = data.clone();
            async move { set(&data, "k", "1", None).await }
        });
        tokio::time::sleep(RETRY_PAUSE * 3).await;
        assert!(
            !writer.is_finished(),
            "the writer waits while the value is claimed"
        );
        data.kv.delete(&value_key).await.unwrap();
        let written = writer.await.unwrap().unwrap();
        assert!(!written.updated);
        assert_eq!(
            data.get(&root(), "k").await.unwrap().unwrap().value.get(),
            "1"
        );
    }

    #[tokio::test]
    async fn an_abandoned_claim_is_taken_over() {
        let data = data(10).await;
        let value_key = root().value_key("k");
        let long_ago = now_ms() - millis(ABANDONED) - 1;
        data.kv
            .put(&value_key, record::sweeping(long_ago))
            .await
            .unwrap();
        assert!(data.get(&root(), "k").await.unwrap().is_none());
        assert!(!set(&data, "k", "1", None).await.unwrap().updated);
        // And by a sweep, through the marker the dead sweep left.
        data.kv
            .put(&value_key, record::sweeping(long_ago))
            .await
            .unwrap();
        let marker = root().expiry_key("k");
        data.kv.put(&marker, keys::expiry_value(1)).await.unwrap();
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 1);
        assert!(left(&data).await.is_empty());
    }

    /// The markers in the bucket, with their times.
    async fn markers(data: &Data) -> Vec<(String, Option<i64>)> {
        let entries = data.kv.entries_matching(keys::ALL_EXPIRIES).await.unwrap();
        entries
            .into_iter()
            .map(|e| (e.key, keys::parse_expiry_value(&e.value)))
            .collect()
    }

    #[tokio::test]
    async fn a_key_has_one_marker_however_often_it_is_written_and_none_once_deleted() {
        let data = data(10).await;
        let mut last = None;
        for _ in 0..50 {
            last = set(&data, "k", "1", Some(Duration::from_secs(3600)))
                .await
                .unwrap()
                .expires_at_ms;
        }
        let first = markers(&data).await;
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].1 <= last, "at or before the value's expiry");
        // A shorter TTL moves it earlier.
        let short = set(&data, "k", "2", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            markers(&data).await,
            [(root().expiry_key("k"), short.expires_at_ms)]
        );
        assert!(data.delete(&root(), "k").await.unwrap());
        assert!(left(&data).await.is_empty(), "nothing is left");
        assert_eq!(
            held(&data).await,
            Some(0),
            "the delete gives the place back"
        );
        // Rewritten without a TTL: the next sweep removes the marker.
        set(&data, "k", "3", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        set(&data, "k", "4", None).await.unwrap();
        data.kv
            .put(&root().expiry_key("k"), keys::expiry_value(0))
            .await
            .unwrap();
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 0);
        assert_eq!(markers(&data).await, []);
        assert_eq!(
            data.get(&root(), "k").await.unwrap().unwrap().value.get(),
            "4"
        );
    }

    #[tokio::test]
    async fn a_due_marker_of_a_live_value_moves_to_its_expiry() {
        let data = data(10).await;
        let written = set(&data, "k", "1", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        // As a sweep that read the marker of the value this one replaced would leave it.
        data.kv
            .put(&root().expiry_key("k"), keys::expiry_value(1))
            .await
            .unwrap();
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 0);
        assert_eq!(
            markers(&data).await,
            [(root().expiry_key("k"), written.expires_at_ms)]
        );
        assert!(data.get(&root(), "k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn markers_of_the_earlier_layout_are_moved_and_swept() {
        let data = data(10).await;
        set(&data, "k", "1", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        until_expired(&data, "k").await;
        let at = data
            .kv
            .get(&root().expiry_key("k"))
            .await
            .unwrap()
            .and_then(|e| keys::parse_expiry_value(&e.value))
            .unwrap();
        data.kv.delete(&root().expiry_key("k")).await.unwrap();
        let legacy = format!("{}.{at}_0000002a", root().expiry_key("k"));
        data.kv
            .put(&legacy, Bytes::from_static(b"1"))
            .await
            .unwrap();
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 0);
        assert_eq!(markers(&data).await, [(root().expiry_key("k"), Some(at))]);
        assert_eq!(sweep(&data, keys::ALL_EXPIRIES).await.unwrap(), 1);
        assert!(left(&data).await.is_empty());
        assert_eq!(held(&data).await, Some(0));
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_marker() {
        let data = data(10).await;
        set(&data, "k", "1", None).await.unwrap();
        let value = json("2");
        let write = Write {
            key: "k",
            value: &value,
            expected_revision: Some(0),
            ttl: Some(Duration::from_secs(3600)),
        };
        assert!(data.set(&root(), write).await.is_err());
        assert!(
            data.kv
                .keys_matching(keys::ALL_EXPIRIES)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            data.get(&root(), "k").await.unwrap().unwrap().value.get(),
            "1"
        );
    }

    #[tokio::test]
    async fn compare_and_set_and_the_key_limit() {
        let data = data(2).await;
        let value = json("1");
        let write = |expected_revision| Write {
            key: "k",
            value: &value,
            expected_revision,
            ttl: None,
        };
        let first = data.set(&root(), write(Some(0))).await.unwrap();
        let refused = data.set(&root(), write(Some(0))).await.unwrap_err();
        assert!(matches!(refused, ApiError::Conflict(_)), "{refused:?}");
        assert!(
            refused.to_string().contains("already has a value"),
            "{refused:?}"
        );
        let second = data
            .set(&root(), write(Some(first.revision)))
            .await
            .unwrap();
        assert!(second.updated);
        let refused = data
            .set(&root(), write(Some(first.revision)))
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains(&format!("is at revision {}", second.revision))
        );

        set(&data, "short", "1", Some(Duration::from_millis(1)))
            .await
            .unwrap();
        let refused = set(&data, "third", "1", None).await;
        // Either the short one has expired (and is swept to make room), or it still counts.
        if let Err(refused) = refused {
            assert!(
                refused.to_string().starts_with("Store key limit reached"),
                "{refused:?}"
            );
            until_expired(&data, "short").await;
            set(&data, "third", "1", None).await.unwrap();
        }
        let refused = set(&data, "fourth", "1", None).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Store key limit reached: tenant 't-a' has 2 keys, the limit is 2"
        );
        // Updating a key at the limit is no new key.
        assert!(set(&data, "k", "2", None).await.unwrap().updated);
    }
}
