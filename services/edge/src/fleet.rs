//! The fleet-wide connection quota of a tenant (`ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT`).
//!
//! Each edge publishes its own open connections per tenant in
//! [`subject::FLEET_CONNECTIONS_BUCKET`] (`<tenant>.<edge_id>` = the count): written in the
//! background when a count changed (at most once a second), rewritten every
//! [`subject::FLEET_CONNECTIONS_REFRESH`], deleted at zero and on a clean stop; the keys of
//! an edge killed without a goodbye age out. An upgrade adds the other edges' counts, read
//! at most once a second per tenant, to this edge's own (which is exact). So the cap is
//! approximate: a burst spread over several edges may overshoot it by what the others
//! admitted within that second. When the counts cannot be read in time, the upgrade is
//! admitted on the per-edge quota alone (and counted): a bus blip must not lock every
//! tenant out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use arqon_bus::{KvEntry, KvStore};
use arqon_protocol::{EdgeId, TenantId, subject};

use crate::Shared;

/// How long the other edges' counts of a tenant are used before being read again.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// The shortest time between two passes of writes.
const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);
/// How long an upgrade waits for the other edges' counts (then for its turn to read them).
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one pass of writes (or the goodbye) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Writes in flight at once.
const WRITERS: usize = 16;
/// How often a failing bus is logged about, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Cached counts of tenants not seen for this long are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(10);

/// What the fleet-wide quota says about one more connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admit,
    Refuse,
    /// The other edges' counts are unknown: admitted on the per-edge quota alone.
    Unchecked,
}

/// The other edges' connections of one tenant, as last read.
#[derive(Debug, Default)]
struct Others {
    /// `None`: the read failed.
    count: Option<u64>,
    read_at: Option<Instant>,
}

pub(crate) struct FleetQuota {
    cap: u32,
    store: KvStore,
    edge_id: EdgeId,
    /// One slot per tenant; its lock makes concurrent upgrades share one read.
    others: Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<Others>>>>,
    /// A count of this edge changed.
    changed: Notify,
    warned_at: Mutex<Option<Instant>>,
}

impl FleetQuota {
    /// `None` when the cap is off (0).
    pub(crate) fn new(cap: u32, store: KvStore, edge_id: EdgeId) -> Option<Self> {
        (cap > 0).then(|| Self {
            cap,
            store,
            edge_id,
            others: Mutex::default(),
            changed: Notify::new(),
            warned_at: Mutex::default(),
        })
    }

    /// Whether `tenant` may hold `own` connections on this edge (the new one included).
    pub(crate) async fn check(&self, tenant: &TenantId, own: u32) -> Verdict {
        if own > self.cap {
            return Verdict::Refuse;
        }
        match self.others(tenant).await {
            Some(others) if others + u64::from(own) > u64::from(self.cap) => Verdict::Refuse,
            Some(_) => Verdict::Admit,
            None => Verdict::Unchecked,
        }
    }

    /// Tells the writer a count of this edge changed.
    pub(crate) fn count_changed(&self) {
        self.changed.notify_one();
    }

    fn own_key(&self, tenant: &TenantId) -> String {
        format!("{tenant}.{}", self.edge_id.as_str())
    }

    /// The other edges' connections of `tenant`, at most [`CACHE_FOR`] old; `None` when
    /// they could not be read in time.
    async fn others(&self, tenant: &TenantId) -> Option<u64> {
        let slot = Arc::clone(
            self.others
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(tenant.clone())
                .or_default(),
        );
        let Ok(mut cached) = tokio::time::timeout(READ_TIMEOUT, slot.lock()).await else {
            self.warn("another upgrade is still reading the counts");
            return None;
        };
        if cached.read_at.is_some_and(|at| at.elapsed() < CACHE_FOR) {
            return cached.count;
        }
        let filter = format!("{tenant}.*");
        let read = tokio::time::timeout(READ_TIMEOUT, self.store.entries_matching(&filter)).await;
        cached.count = match read {
            Ok(Ok(entries)) => Some(self.sum_others(tenant, &entries)),
            Ok(Err(e)) => {
                self.warn(&e.to_string());
                None
            }
            Err(_) => {
                self.warn("the bus did not answer in time");
                None
            }
        };
        // A failure is remembered too, so a bus outage costs one attempt per tenant per
        // second, not one per upgrade.
        cached.read_at = Some(Instant::now());
        cached.count
    }

    fn sum_others(&self, tenant: &TenantId, entries: &[KvEntry]) -> u64 {
        let own = self.own_key(tenant);
        entries
            .iter()
            .filter(|entry| entry.key != own)
            .map(|entry| match parse_count(&entry.value) {
                Some(count) => count,
                None => {
                    debug!(key = %entry.key, "unreadable connection count");
                    0
                }
            })
            .sum()
    }

    fn warn(&self, error: &str) {
        let mut warned_at = self
            .warned_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned_at = Some(Instant::now());
            warn!(
                error,
                "cannot read the other edges' connection counts: admitting on this edge's quota alone"
            );
        }
    }

    /// Forgets cached counts nobody asked for lately.
    fn forget_idle(&self) {
        self.others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, slot| match slot.try_lock() {
                Ok(cached) => cached.read_at.is_some_and(|at| at.elapsed() < FORGET_AFTER),
                Err(_) => true,
            });
    }

    /// Writes (`Some`) or deletes (`None`) this edge's count of `tenant`.
    async fn write(&self, tenant: &TenantId, count: Option<u32>) -> Result<(), String> {
        let key = self.own_key(tenant);
        let written = match count {
            Some(count) => self
                .store
                .put(&key, Bytes::from(count.to_string()))
                .await
                .map(|_| ()),
            None => self.store.delete(&key).await,
        };
        written.map_err(|e| e.to_string())
    }
}

fn parse_count(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Keeps this edge's counts in the bucket until `stop`, then deletes them.
pub(crate) async fn publish_counts(shared: Arc<Shared>, stop: CancellationToken) {
    let Some(fleet) = shared.fleet.as_ref() else {
        return;
    };
    // What the bucket holds of this edge, and when it was written.
    let mut published: HashMap<TenantId, (u32, Instant)> = HashMap::new();
    loop {
        let now = Instant::now();
        let counts = shared.tenant_counts();
        let mut writes: Vec<(TenantId, Option<u32>)> = counts
            .iter()
            .filter(|(tenant, count)| {
                published.get(*tenant).is_none_or(|(written, at)| {
                    written != *count
                        || now.duration_since(*at) >= subject::FLEET_CONNECTIONS_REFRESH
                })
            })
            .map(|(tenant, count)| (tenant.clone(), Some(*count)))
            .collect();
        writes.extend(
            published
                .keys()
                .filter(|tenant| !counts.contains_key(*tenant))
                .map(|tenant| (tenant.clone(), None)),
        );
        let done = write_all(fleet, &shared, writes).await;
        for (tenant, count) in done {
            match count {
                Some(count) => published.insert(tenant, (count, now)),
                None => published.remove(&tenant),
            };
        }
        fleet.forget_idle();
        let next_refresh = published
            .values()
            .map(|(_, at)| *at + subject::FLEET_CONNECTIONS_REFRESH)
            .min()
            .unwrap_or(now + subject::FLEET_CONNECTIONS_REFRESH);
        tokio::select! {
            () = stop.cancelled() => break,
            () = fleet.changed.notified() => {}
            () = tokio::time::sleep_until(next_refresh) => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(MIN_WRITE_INTERVAL) => {}
        }
    }
    let goodbye = published.into_keys().map(|tenant| (tenant, None)).collect();
    write_all(fleet, &shared, goodbye).await;
}

/// Applies `writes` ([`WRITERS`] at once, within [`WRITE_TIMEOUT`]); returns those done.
async fn write_all(
    fleet: &FleetQuota,
    shared: &Shared,
    writes: Vec<(TenantId, Option<u32>)>,
) -> Vec<(TenantId, Option<u32>)> {
    let done = Mutex::new(Vec::with_capacity(writes.len()));
    let attempts =
        futures_util::stream::iter(writes).for_each_concurrent(WRITERS, |(tenant, count)| {
            let done = &done;
            async move {
                match fleet.write(&tenant, count).await {
                    Ok(()) => done
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((tenant, count)),
                    Err(e) => {
                        shared.metrics.fleet_count_write_errors.inc();
                        debug!(error = %e, %tenant, "cannot write this edge's connection count");
                    }
                }
            }
        });
    if tokio::time::timeout(WRITE_TIMEOUT, attempts).await.is_err() {
        shared.metrics.fleet_count_write_errors.inc();
        warn!("the bus did not take this edge's connection counts in time; trying again");
    }
    done.into_inner().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_decimal_and_anything_else_is_unreadable() {
        assert_eq!(parse_count(b"42"), Some(42));
        assert_eq!(parse_count(b"-1"), None);
        assert_eq!(parse_count(b"\xff"), None);
        assert_eq!(parse_count(b""), None);
    }
}
