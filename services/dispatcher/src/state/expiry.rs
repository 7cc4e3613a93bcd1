//! The expiry of implicit channels (made by a first join or a gRPC publish) that stay
//! empty: no member on any edge and nothing in the history for
//! `ARQONBUS_EMPTY_CHANNEL_TTL_SECONDS`. Channels made by `create_channel` stay.
//!
//! One replica sweeps at a time (the holder of a lease), but safety does not rest on the
//! lease: every step is a compare-and-set on the channel's registry revision. A sweep that
//! finds a channel empty marks it (`empty_since_ms`); a later sweep, at least the TTL
//! after, that still finds it empty removes it only if its revision is still the marked
//! one. A join takes the mark back with a compare-and-set of its own
//! (`Registry::claim`), so a join that races the removal either wins (the removal fails)
//! or finds the channel gone and creates it again: a member never stays in a channel the
//! registry forgot. Members are counted only when every live edge answered.
//!
//! The same sweep corrects the tenants' channel counters (`Registry::reconcile`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use arqon_bus::BusError;
use arqon_bus::lease::{self, Leadership};
use arqon_protocol::{RoomName, TenantId, Topic};

use super::registry::{Counter, Entry, unix_ms};
use crate::Context;

/// How long the sweep lease lasts: a replica that stops is replaced within it.
pub(crate) const LEASE: Duration = Duration::from_secs(10);

/// How often the sweep runs: a quarter of the TTL, between 250 ms and a minute (every
/// minute when channels never expire: the counters are still corrected). An empty
/// channel is removed between the TTL and the TTL plus two intervals after it emptied.
pub(crate) fn interval(ttl: Duration) -> Duration {
    if ttl.is_zero() {
        return Duration::from_secs(60);
    }
    (ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(60))
}

/// Sweeps every `interval(ttl)` while this replica holds the lease, until `shutdown`.
pub(crate) async fn run(
    context: Arc<Context>,
    ttl: Duration,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    let every = interval(ttl);
    let mut previous = BTreeMap::new();
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if lease::current(&leadership).is_none() {
            // Another replica sweeps; its counters are not ours to compare with.
            previous.clear();
            continue;
        }
        let swept = tokio::select! {
            () = shutdown.cancelled() => return,
            swept = sweep(&context, ttl, &mut previous) => swept,
        };
        match swept {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                warn!(%error, "the channel expiry sweep failed; it retries every interval");
            }
            Err(_) => {}
        }
    }
}

/// One pass over the registry.
async fn sweep(
    context: &Context,
    ttl: Duration,
    previous: &mut BTreeMap<TenantId, Counter>,
) -> Result<(), BusError> {
    context.history.drop_retired().await?;
    let registry = &context.registry;
    let scan = registry.scan().await?;
    let mut channels: BTreeMap<&TenantId, u64> = BTreeMap::new();
    for (tenant, _, _) in &scan.channels {
        *channels.entry(tenant).or_default() += 1;
    }
    for (tenant, counter) in &scan.counters {
        let counted = channels.get(tenant).copied().unwrap_or(0);
        if counter.count != counted && previous.get(tenant) == Some(counter) {
            match registry.reconcile(tenant, counted, counter.revision).await {
                Ok(()) => warn!(
                    %tenant,
                    counter = counter.count,
                    channels = counted,
                    "corrected a tenant's channel counter"
                ),
                Err(BusError::WrongRevision) => {}
                Err(e) => return Err(e),
            }
        }
    }
    previous.clone_from(&scan.counters);
    if ttl.is_zero() {
        return Ok(());
    }
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    // Implicit channels without history, by room: one presence query per room.
    let mut candidates: BTreeMap<(&TenantId, RoomName), Vec<(&Topic, &Entry)>> = BTreeMap::new();
    for (tenant, topic, entry) in &scan.channels {
        if !entry.record.implicit {
            continue;
        }
        if context.history.count(tenant, topic).await? > 0 {
            if entry.record.empty_since_ms.is_some() {
                unmark(context, tenant, topic, entry).await?;
            }
            continue;
        }
        candidates
            .entry((tenant, topic.room.clone()))
            .or_default()
            .push((topic, entry));
    }
    for ((tenant, room), found) in candidates {
        let Some(counts) = context.presence.complete_counts(tenant, &room).await? else {
            debug!(%tenant, %room, "not every edge answered; the room's channels wait");
            continue;
        };
        let now = unix_ms();
        for (topic, entry) in found {
            let members = counts.get(&topic.channel).copied().unwrap_or(0);
            let outcome = match (members, entry.record.empty_since_ms) {
                (0, None) => registry.mark_empty(tenant, topic, entry, Some(now)).await,
                (0, Some(since)) if now.saturating_sub(since) >= ttl_ms => {
                    let expired = registry.expire(tenant, topic, entry).await;
                    if expired.is_ok() {
                        context.metrics.channels_expired.inc();
                        debug!(%tenant, %topic, "an empty channel expired");
                    }
                    expired
                }
                (0, Some(_)) | (_, None) => Ok(()),
                (_, Some(_)) => registry.mark_empty(tenant, topic, entry, None).await,
            };
            match outcome {
                // Changed since the scan (joined, deleted): the next sweep looks again.
                Ok(()) | Err(BusError::WrongRevision) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

async fn unmark(
    context: &Context,
    tenant: &TenantId,
    topic: &Topic,
    entry: &Entry,
) -> Result<(), BusError> {
    match context
        .registry
        .mark_empty(tenant, topic, entry, None)
        .await
    {
        Ok(()) | Err(BusError::WrongRevision) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_the_ttl_within_bounds() {
        assert_eq!(interval(Duration::ZERO), Duration::from_secs(60));
        assert_eq!(interval(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(
            interval(Duration::from_millis(100)),
            Duration::from_millis(250)
        );
        assert_eq!(interval(Duration::from_secs(40)), Duration::from_secs(10));
        assert_eq!(interval(Duration::from_secs(300)), Duration::from_secs(60));
    }
}
