//! Each tenant's places: one counter per tenant (`c.<tenant>`, decimal text), so the
//! key limit costs a new key one read and one compare-and-set, not a listing of the
//! tenant's keys.
//!
//! The counter counts the tenant's value keys in the bucket, whatever they hold (a live
//! value, an expired one the sweep has not deleted yet, a sweep's claim), and it is never
//! below that number:
//! - a write that creates a value key first *reserves* a place (a compare-and-set that
//!   refuses to pass the limit) and gives it back if the bus refused the create (the key
//!   was created by someone else first, or the value is too large);
//! - whatever removes a value key (`op.store.delete`, the sweep) removes it with
//!   `delete_expecting` at the revision it read, so exactly one removal succeeds, and that
//!   one gives the place back *after* the removal.
//!
//! So writers on any number of replicas never hold more keys than the limit. Rewriting a
//! key, even an expired one, keeps its place.
//!
//! What can go wrong leaves the counter too high, never too low: a process that stops
//! between a reservation and its create, or between a removal and the place given back,
//! and a bus failure that leaves unknown whether a create or a delete happened. The sweep
//! task corrects that ([`Places::reconcile`]): a counter that is at the limit and was at
//! the same revision a whole [`RECONCILE_EVERY`] ago is set to a real count of the
//! tenant's value keys, by a compare-and-set at that revision. A reservation changes the
//! revision, and so does every removal *before* it removes (a touch), so a count never
//! misses a create in progress or a key whose place is still to be given back, unless
//! that step stalled for longer than [`RECONCILE_EVERY`] (every bus call is bounded well
//! below it).
//!
//! A tenant without a counter (a bucket from before it) gets one from a real count, once,
//! by whoever needs it first; it is created only if nobody created it meanwhile. A removal
//! that found no counter gives nothing back: a count made after it is right, one made
//! before it is one too high until the next reconcile.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, warn};

use arqon_bus::{BusError, KvStore};
use arqon_protocol::TenantId;

use super::keys;

/// How long a counter must stay unchanged (at the limit) before a sweep recounts it, and
/// how often the sweep looks.
pub(crate) const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// How long one change of a counter keeps trying against other writers.
const PATIENCE: Duration = Duration::from_secs(2);

/// A counter as read: its count and the revision that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter {
    pub(crate) count: u64,
    pub(crate) revision: u64,
}

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// A place is taken for the new key.
    Taken,
    /// The tenant holds `count` keys, as many as it may (or more).
    Full { count: u64 },
}

/// The counters of the store's bucket, for a limit of keys per tenant.
#[derive(Debug, Clone)]
pub(crate) struct Places {
    kv: KvStore,
    limit: u64,
}

fn parse(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn text(count: u64) -> Bytes {
    Bytes::from(count.to_string())
}

/// A short random pause between two attempts on a contended counter.
async fn back_off(attempt: u32) {
    let ms = rand::random_range(0..=u64::from(attempt.min(10)));
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl Places {
    pub(crate) fn new(kv: KvStore, limit: usize) -> Self {
        Self {
            kv,
            limit: u64::try_from(limit).unwrap_or(u64::MAX),
        }
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The counter, if the tenant has a readable one.
    async fn read(&self, tenant: &TenantId) -> Result<Option<Counter>, BusError> {
        let entry = self.kv.get(&keys::counter_key(tenant)).await?;
        Ok(entry.and_then(|entry| {
            Some(Counter {
                count: parse(&entry.value)?,
                revision: entry.revision,
            })
        }))
    }

    /// The counter; a tenant without one (or with an unreadable one) is counted, and the
    /// count written only where nobody wrote a counter since.
    pub(crate) async fn counter(&self, tenant: &TenantId) -> Result<Counter, BusError> {
        let key = keys::counter_key(tenant);
        let deadline = Instant::now() + PATIENCE;
        for attempt in 0.. {
            let current = self.kv.get(&key).await?;
            if let Some(entry) = &current
                && let Some(count) = parse(&entry.value)
            {
                return Ok(Counter {
                    count,
                    revision: entry.revision,
                });
            }
            let count = self.count(tenant).await?;
            let written = match &current {
                Some(entry) => self.kv.update(&key, text(count), entry.revision).await,
                None => self.kv.create(&key, text(count)).await,
            };
            match written {
                Ok(revision) => {
                    debug!(%tenant, count, "a store key counter was initialised from a count");
                    return Ok(Counter { count, revision });
                }
                Err(BusError::AlreadyExists | BusError::WrongRevision)
                    if Instant::now() < deadline =>
                {
                    back_off(attempt).await;
                }
                Err(BusError::AlreadyExists | BusError::WrongRevision) => break,
                Err(e) => return Err(e),
            }
        }
        Err(BusError::Timeout)
    }

    /// The tenant's value keys in the bucket, counted.
    async fn count(&self, tenant: &TenantId) -> Result<u64, BusError> {
        let keys = self.kv.keys_matching(&keys::tenant_values(tenant)).await?;
        Ok(keys.len() as u64)
    }

    /// Takes a place for a new key of `tenant`, unless it holds as many as it may.
    pub(crate) async fn reserve(&self, tenant: &TenantId) -> Result<Reserved, BusError> {
        let key = keys::counter_key(tenant);
        let deadline = Instant::now() + PATIENCE;
        for attempt in 0.. {
            let Counter { count, revision } = self.counter(tenant).await?;
            if count >= self.limit {
                return Ok(Reserved::Full { count });
            }
            match self.kv.update(&key, text(count + 1), revision).await {
                Ok(_) => return Ok(Reserved::Taken),
                Err(BusError::WrongRevision) if Instant::now() < deadline => {
                    back_off(attempt).await;
                }
                Err(BusError::WrongRevision) => break,
                Err(e) => return Err(e),
            }
        }
        Err(BusError::Timeout)
    }

    /// Gives back the place a reservation took for a key that was not created.
    pub(crate) async fn unreserve(&self, tenant: &TenantId) {
        self.give_back(tenant, None).await;
    }

    /// To call just before removing one of `tenant`'s value keys: changes the counter's
    /// revision (so that no reconcile counts the tenant while the place is still to be
    /// given back) and returns it, for [`Places::removed`]. `None`: the tenant has no
    /// counter yet, and the removal gives nothing back.
    pub(crate) async fn removing(&self, tenant: &TenantId) -> Result<Option<Counter>, BusError> {
        let key = keys::counter_key(tenant);
        let deadline = Instant::now() + PATIENCE;
        for attempt in 0.. {
            let Some(Counter { count, revision }) = self.read(tenant).await? else {
                return Ok(None);
            };
            match self.kv.update(&key, text(count), revision).await {
                Ok(revision) => return Ok(Some(Counter { count, revision })),
                Err(BusError::WrongRevision) if Instant::now() < deadline => {
                    back_off(attempt).await;
                }
                Err(BusError::WrongRevision) => break,
                Err(e) => return Err(e),
            }
        }
        Err(BusError::Timeout)
    }

    /// Gives back the place of a value key that was removed, after [`Places::removing`]
    /// returned `touched`.
    pub(crate) async fn removed(&self, tenant: &TenantId, touched: Option<Counter>) {
        if touched.is_some() {
            self.give_back(tenant, touched).await;
        }
    }

    /// Takes one off the counter (not below 0), first at `guess` if given. A failure
    /// leaves the counter too high, which a reconcile corrects: it is logged, not returned.
    async fn give_back(&self, tenant: &TenantId, mut guess: Option<Counter>) {
        let key = keys::counter_key(tenant);
        let deadline = Instant::now() + PATIENCE;
        let mut attempt = 0;
        let error = loop {
            let current = match guess.take() {
                Some(counter) => Ok(Some(counter)),
                None => self.read(tenant).await,
            };
            let Counter { count, revision } = match current {
                Ok(Some(counter)) => counter,
                // Nothing to give back to: a count made from now on is right.
                Ok(None) => return,
                Err(e) => break e,
            };
            match self
                .kv
                .update(&key, text(count.saturating_sub(1)), revision)
                .await
            {
                Ok(_) => return,
                Err(BusError::WrongRevision) if Instant::now() < deadline => {
                    back_off(attempt).await;
                    attempt += 1;
                }
                Err(BusError::WrongRevision) => break BusError::Timeout,
                Err(e) => break e,
            }
        };
        warn!(%tenant, %error, "a store key's place was not given back; the counter is corrected once it is at the limit");
    }

    /// One reconcile pass, [`RECONCILE_EVERY`] after the previous one, which left what it
    /// read in `seen`: each counter at the limit that is still at the revision `seen`
    /// holds is set to a real count (at that revision). Returns how many it corrected.
    pub(crate) async fn reconcile(
        &self,
        seen: &mut HashMap<String, Counter>,
    ) -> Result<usize, BusError> {
        let mut corrected = 0;
        let mut now = HashMap::new();
        for entry in self.kv.entries_matching(keys::ALL_COUNTERS).await? {
            let (Some(tenant), Some(count)) =
                (keys::tenant_of_counter(&entry.key), parse(&entry.value))
            else {
                continue;
            };
            let counter = Counter {
                count,
                revision: entry.revision,
            };
            if count >= self.limit && seen.get(&entry.key) == Some(&counter) {
                let counted = self.count(&tenant).await?;
                if counted != count {
                    match self
                        .kv
                        .update(&entry.key, text(counted), counter.revision)
                        .await
                    {
                        Ok(_) => {
                            corrected += 1;
                            warn!(%tenant, counter = count, keys = counted, "corrected a tenant's store key counter");
                        }
                        Err(BusError::WrongRevision) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            now.insert(entry.key, counter);
        }
        *seen = now;
        Ok(corrected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_bus::{Bus, KvConfig};

    async fn places(limit: usize) -> Places {
        let bus = Bus::embedded(Default::default());
        let kv = bus.key_value(KvConfig::new("places_test")).await.unwrap();
        Places::new(kv, limit)
    }

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    async fn count(places: &Places, name: &str) -> u64 {
        places.read(&tenant(name)).await.unwrap().unwrap().count
    }

    #[tokio::test]
    async fn places_are_taken_up_to_the_limit_and_given_back() {
        let places = places(2).await;
        let t = tenant("t-a");
        assert_eq!(places.reserve(&t).await.unwrap(), Reserved::Taken);
        assert_eq!(places.reserve(&t).await.unwrap(), Reserved::Taken);
        assert_eq!(
            places.reserve(&t).await.unwrap(),
            Reserved::Full { count: 2 }
        );
        // Another tenant has its own.
        assert_eq!(
            places.reserve(&tenant("t-b")).await.unwrap(),
            Reserved::Taken
        );
        places.unreserve(&t).await;
        assert_eq!(count(&places, "t-a").await, 1);
        let touched = places.removing(&t).await.unwrap();
        assert_eq!(touched.map(|c| c.count), Some(1));
        places.removed(&t, touched).await;
        assert_eq!(count(&places, "t-a").await, 0);
        // Never below 0.
        places.unreserve(&t).await;
        assert_eq!(count(&places, "t-a").await, 0);
    }

    #[tokio::test]
    async fn a_tenant_without_a_counter_is_counted_once() {
        let places = places(3).await;
        let t = tenant("t-a");
        for key in ["d.t-a.=.a", "d.t-a.cache.b", "x.t-a.=.a", "d.t-ab.=.c"] {
            places.kv.put(key, Bytes::from_static(b"{}")).await.unwrap();
        }
        // A removal before any counter gives nothing back.
        assert_eq!(places.removing(&t).await.unwrap(), None);
        places.removed(&t, None).await;
        assert_eq!(places.read(&t).await.unwrap(), None);
        assert_eq!(places.reserve(&t).await.unwrap(), Reserved::Taken);
        assert_eq!(count(&places, "t-a").await, 3, "two values and this one");
        // From now on the counter is read, not the keys.
        places
            .kv
            .put("d.t-a.=.z", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert_eq!(
            places.reserve(&t).await.unwrap(),
            Reserved::Full { count: 3 }
        );
        // An unreadable counter is counted again.
        places
            .kv
            .put(&keys::counter_key(&t), Bytes::from_static(b"lots"))
            .await
            .unwrap();
        assert_eq!(places.counter(&t).await.unwrap().count, 3);
    }

    #[tokio::test]
    async fn a_counter_left_high_at_the_limit_is_corrected_once_it_stays_unchanged() {
        let places = places(2).await;
        let t = tenant("t-a");
        // Two places taken, one key created: a replica stopped after its reservation.
        places.reserve(&t).await.unwrap();
        places.reserve(&t).await.unwrap();
        places
            .kv
            .put("d.t-a.=.a", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        // Another tenant below its limit is left alone whatever it holds.
        places.reserve(&tenant("t-b")).await.unwrap();

        let mut seen = HashMap::new();
        assert_eq!(places.reconcile(&mut seen).await.unwrap(), 0, "first look");
        // A change in between (here the touch of a removal that then did not happen)
        // makes it wait another pass.
        places.removing(&t).await.unwrap();
        assert_eq!(places.reconcile(&mut seen).await.unwrap(), 0);
        assert_eq!(count(&places, "t-a").await, 2);
        // Nothing changes for a whole pass.
        assert_eq!(places.reconcile(&mut seen).await.unwrap(), 1);
        assert_eq!(count(&places, "t-a").await, 1);
        assert_eq!(count(&places, "t-b").await, 1);
        assert_eq!(places.reconcile(&mut seen).await.unwrap(), 0);
        assert_eq!(places.reserve(&t).await.unwrap(), Reserved::Taken);
    }
}
