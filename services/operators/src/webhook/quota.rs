//! Each tenant's share of the webhook queue: at most `max_queued_per_tenant` deliveries
//! and `max_queued_bytes_per_tenant` bytes of them, so one tenant whose endpoints are
//! slow or dead cannot fill the queue every tenant shares.
//!
//! The count is the queue's own (its per-subject counts over the tenant's delivery
//! subjects, `arqon.webhook.queue.<tenant>.<rule_id>`): it holds with any number of
//! operators replicas and survives any of them dying. A replica asks for it at most once
//! per [`CACHE_FOR`] per tenant (fan-outs that find it being read wait for that read) and
//! adds the deliveries it queued itself since that read began, those still being queued
//! when it began included, so its own fan-outs, concurrent ones too, never take more than
//! the share between them. What it does not see is what the other replicas queued for
//! the tenant since the read began: the share may be overshot by that, at most a second's
//! worth of their fan-outs (docs/operators-webhook.md#bounds). Deliveries that finished
//! meanwhile still count until the next read, so a full tenant gets room back up to a
//! second late. JetStream counts messages per subject but not bytes, so the byte bound is
//! checked as the tenant's queued deliveries taken to be as large as the one being queued
//! (exact when a tenant's messages are alike in size).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

use arqon_bus::BusError;
use arqon_protocol::{TenantId, subject};

use super::settings::WebhookSettings;

/// At most one warning about dropped deliveries per replica this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long a tenant's count is used before the queue is asked again.
const CACHE_FOR: Duration = Duration::from_secs(1);
/// Above this many tenants, those whose count is out of date and that no fan-out holds
/// are forgotten (at most once per [`CACHE_FOR`]).
const PRUNE_ABOVE: usize = 1024;
/// Above this many, every tenant no fan-out holds is forgotten: the table stays within
/// this plus the replica's fan-outs in progress (`ARQONBUS_WEBHOOK_CONCURRENCY`).
const MAX_TENANTS: usize = 4096;

/// The per-tenant bound, each tenant's count as this replica knows it, and the warnings
/// about what the bound dropped.
pub(crate) struct TenantQuota {
    max_jobs: u64,
    max_bytes: u64,
    cache_for: Duration,
    tenants: Mutex<Tenants>,
    warned: Mutex<Warned>,
}

#[derive(Default)]
struct Warned {
    last: Option<Instant>,
    /// Deliveries dropped since the last warning, which did not warn themselves.
    unreported: u64,
}

#[derive(Default)]
struct Tenants {
    counts: HashMap<TenantId, Arc<Count>>,
    pruned_at: Option<Instant>,
}

/// One tenant's queued deliveries, as this replica knows them.
#[derive(Default)]
struct Count {
    /// Held while the queue is asked, so concurrent fan-outs share one request.
    reading: tokio::sync::Mutex<()>,
    state: Mutex<CountState>,
}

#[derive(Debug, Default)]
struct CountState {
    /// The queue's count and when it was asked for; `None` before the first answer.
    read: Option<(u64, Instant)>,
    /// Deliveries this replica took a place for that the read may not include: taken
    /// since it began, or still being queued when it began.
    unread: u64,
    /// Places taken whose delivery is still being queued.
    in_flight: u64,
    /// Places ever taken (to tell those taken during a read).
    taken: u64,
}

impl CountState {
    fn fresh(&self, cache_for: Duration) -> Option<u64> {
        self.read
            .filter(|(_, at)| at.elapsed() < cache_for)
            .map(|(count, _)| count.saturating_add(self.unread))
    }
}

/// A tenant's share as one fan-out sees it: [`Share::take`] a place per delivery.
pub(crate) struct Share<'a> {
    quota: &'a TenantQuota,
    count: Arc<Count>,
}

/// A place taken for one delivery; dropping it says the delivery was queued (or will
/// not be). A failed one stays counted until the next read: on the safe side.
pub(crate) struct Place {
    count: Arc<Count>,
}

impl TenantQuota {
    pub(crate) fn new(settings: &WebhookSettings) -> Self {
        Self::with_cache(settings, CACHE_FOR)
    }

    fn with_cache(settings: &WebhookSettings, cache_for: Duration) -> Self {
        Self {
            max_jobs: settings.max_queued_per_tenant,
            max_bytes: settings.max_queued_bytes_per_tenant,
            cache_for,
            tenants: Mutex::default(),
            warned: Mutex::default(),
        }
    }

    /// The filter of `tenant`'s deliveries in the queue ([`subject::webhook_delivery`]
    /// for every rule), without its messages waiting for fan-out.
    pub(crate) fn deliveries_of(tenant: &TenantId) -> String {
        format!("{}.*", subject::webhook_queue(tenant))
    }

    /// Whether one more delivery of `size` bytes fits, with `queued` deliveries of the
    /// tenant already in the queue.
    pub(crate) fn admits(&self, queued: u64, size: usize) -> bool {
        let after = queued.saturating_add(1);
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        after <= self.max_jobs && after.saturating_mul(size) <= self.max_bytes
    }

    /// `tenant`'s share for one fan-out, with a count at most [`CACHE_FOR`] old: asked
    /// for with `count` (the queue's count of [`TenantQuota::deliveries_of`]) when the
    /// one known is older, or when none is.
    pub(crate) async fn share<F, Fut>(
        &self,
        tenant: &TenantId,
        count: F,
    ) -> Result<Share<'_>, BusError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, BusError>>,
    {
        let entry = self.count_of(tenant);
        let share = Share {
            quota: self,
            count: Arc::clone(&entry),
        };
        if entry.state().fresh(self.cache_for).is_some() {
            return Ok(share);
        }
        let _reading = entry.reading.lock().await;
        // Another fan-out may have read it while this one waited.
        let (taken, in_flight) = {
            let state = entry.state();
            if state.fresh(self.cache_for).is_some() {
                return Ok(share);
            }
            (state.taken, state.in_flight)
        };
        let asked = Instant::now();
        let queued = count().await?;
        let mut state = entry.state();
        // The answer may miss what was being queued when the question went out, and
        // what was taken since: both stay added (those that made it are counted twice
        // until the next read, on the safe side).
        state.unread = in_flight.saturating_add(state.taken - taken);
        state.read = Some((queued, asked));
        Ok(share)
    }

    fn count_of(&self, tenant: &TenantId) -> Arc<Count> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = tenants.counts.get(tenant) {
            return Arc::clone(count);
        }
        self.prune(&mut tenants);
        Arc::clone(tenants.counts.entry(tenant.clone()).or_default())
    }

    /// Forgets tenants no fan-out holds (only this table holds their count, and nothing
    /// is being queued against it): first those out of date, which a fan-out would read
    /// again anyway; past [`MAX_TENANTS`] all of them.
    fn prune(&self, tenants: &mut Tenants) {
        let len = tenants.counts.len();
        let due = tenants
            .pruned_at
            .is_none_or(|at| at.elapsed() >= self.cache_for);
        if len >= PRUNE_ABOVE && due {
            let cache_for = self.cache_for;
            tenants.counts.retain(|_, count| {
                Arc::strong_count(count) > 1 || count.state().fresh(cache_for).is_some()
            });
            tenants.pruned_at = Some(Instant::now());
        }
        if tenants.counts.len() >= MAX_TENANTS {
            tenants
                .counts
                .retain(|_, count| Arc::strong_count(count) > 1);
        }
    }

    /// Logs `dropped` deliveries of `tenant` at warn, at most once per [`WARN_EVERY`]
    /// (the warning counts those dropped meanwhile, whatever their tenant).
    pub(crate) fn report(&self, tenant: &TenantId, dropped: u64) {
        let now = Instant::now();
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        warned.unreported = warned.unreported.saturating_add(dropped);
        if warned
            .last
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return;
        }
        let since_last = std::mem::take(&mut warned.unreported);
        warned.last = Some(now);
        drop(warned);
        warn!(
            %tenant,
            dropped,
            since_last,
            max_queued = self.max_jobs,
            max_queued_bytes = self.max_bytes,
            "a tenant's webhook deliveries fill its share of the queue; new ones are dropped (more such warnings are held back for {WARN_EVERY:?})"
        );
    }
}

impl Count {
    fn state(&self) -> std::sync::MutexGuard<'_, CountState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Share<'_> {
    /// A place for one more delivery of `size` bytes, if the tenant's queued deliveries
    /// (the count read plus those this replica took a place for since) leave room.
    pub(crate) fn take(&self, size: usize) -> Option<Place> {
        let mut state = self.count.state();
        // A fan-out that outlives the window goes on from the count it had: the next
        // fan-out reads again.
        let queued = state
            .read
            .map_or(0, |(count, _)| count)
            .saturating_add(state.unread);
        if !self.quota.admits(queued, size) {
            return None;
        }
        state.unread += 1;
        state.in_flight += 1;
        state.taken += 1;
        Some(Place {
            count: Arc::clone(&self.count),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.count.state();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn quota(max_jobs: u64, max_bytes: u64) -> TenantQuota {
        TenantQuota::new(&WebhookSettings {
            max_queued_per_tenant: max_jobs,
            max_queued_bytes_per_tenant: max_bytes,
            ..WebhookSettings::default()
        })
    }

    #[test]
    fn a_tenant_is_full_at_its_jobs_or_its_bytes() {
        let quota = quota(3, 3000);
        assert!(quota.admits(0, 100));
        assert!(quota.admits(2, 100));
        assert!(!quota.admits(3, 100), "the fourth job");
        assert!(quota.admits(1, 1500), "two of 1500 bytes");
        assert!(!quota.admits(2, 1500), "three of 1500 bytes");
        assert!(!quota.admits(0, 3001), "one larger than the bound");
        assert!(!quota.admits(u64::MAX, 1));
        assert!(!quota.admits(1, usize::MAX));
    }

    #[test]
    fn the_filter_covers_the_tenants_deliveries_only() {
        let tenant = TenantId::parse("t-a").unwrap();
        assert_eq!(
            TenantQuota::deliveries_of(&tenant),
            format!("{}.*", subject::webhook_queue(&tenant))
        );
        assert_eq!(
            subject::webhook_delivery(&tenant, "wh_0123456789ab"),
            "arqon.webhook.queue.t-a.wh_0123456789ab",
            "one token after the message's subject"
        );
    }

    #[test]
    fn warnings_are_held_back_and_count_what_they_held_back() {
        let quota = quota(1, 1024);
        let tenant = TenantId::parse("t-a").unwrap();
        quota.report(&tenant, 2);
        quota.report(&tenant, 3);
        quota.report(&tenant, 4);
        let warned = quota.warned.lock().unwrap();
        assert!(warned.last.is_some());
        assert_eq!(warned.unreported, 7, "held back since the first warning");
    }

    /// A queue whose count is `queued` and that counts the requests.
    struct Queue {
        queued: std::sync::atomic::AtomicU64,
        requests: AtomicUsize,
    }

    impl Queue {
        fn new(queued: u64) -> Self {
            Self {
                queued: queued.into(),
                requests: AtomicUsize::new(0),
            }
        }

        async fn count(&self) -> Result<u64, BusError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(self.queued.load(Ordering::SeqCst))
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    /// One fan-out of `deliveries` deliveries of 100 bytes, as `Worker::fan_out` does
    /// it; how many got a place.
    async fn fan_out(
        quota: &TenantQuota,
        tenant: &TenantId,
        queue: &Queue,
        deliveries: usize,
    ) -> usize {
        let share = quota.share(tenant, || queue.count()).await.unwrap();
        (0..deliveries)
            .filter(|_| share.take(100).is_some())
            .count()
    }

    #[tokio::test]
    async fn fan_outs_within_the_window_ask_the_queue_once_and_keep_to_the_share() {
        let quota = quota(10, 1_000_000);
        let tenant = TenantId::parse("t-a").unwrap();
        let queue = Queue::new(3);
        for _ in 0..5 {
            assert_eq!(fan_out(&quota, &tenant, &queue, 1).await, 1);
        }
        assert_eq!(queue.requests(), 1, "five fan-outs, one count");
        // 3 counted + 5 queued here: two more fit, whatever the queue now says.
        queue.queued.store(0, Ordering::SeqCst);
        assert_eq!(fan_out(&quota, &tenant, &queue, 3).await, 2);
        assert_eq!(fan_out(&quota, &tenant, &queue, 1).await, 0, "full");
        assert_eq!(queue.requests(), 1);
        // Another tenant has a count (and a share) of its own.
        let other = TenantId::parse("t-b").unwrap();
        assert_eq!(fan_out(&quota, &other, &queue, 4).await, 4);
        assert_eq!(queue.requests(), 2);
    }

    #[tokio::test]
    async fn concurrent_fan_outs_share_one_count() {
        let quota = quota(10, 1_000_000);
        let tenant = TenantId::parse("t-a").unwrap();
        let queue = Queue::new(7);
        let (a, b, c, d) = tokio::join!(
            fan_out(&quota, &tenant, &queue, 1),
            fan_out(&quota, &tenant, &queue, 1),
            fan_out(&quota, &tenant, &queue, 1),
            fan_out(&quota, &tenant, &queue, 1),
        );
        assert_eq!(queue.requests(), 1);
        assert_eq!(a + b + c + d, 3, "7 queued: three more fit between them");
    }

    #[tokio::test]
    async fn the_queue_is_asked_again_after_the_window() {
        let window = Duration::from_millis(50);
        let quota = TenantQuota::with_cache(
            &WebhookSettings {
                max_queued_per_tenant: 4,
                ..WebhookSettings::default()
            },
            window,
        );
        let tenant = TenantId::parse("t-a").unwrap();
        let queue = Queue::new(2);
        assert_eq!(fan_out(&quota, &tenant, &queue, 1).await, 1);
        // A delivery still being queued when the count is asked again stays counted.
        let share = quota.share(&tenant, || queue.count()).await.unwrap();
        let being_queued = share.take(100).unwrap();
        drop(share);
        queue.queued.store(1, Ordering::SeqCst);
        std::thread::sleep(window);
        assert_eq!(
            fan_out(&quota, &tenant, &queue, 4).await,
            2,
            "1 counted + 1 being queued"
        );
        assert_eq!(queue.requests(), 2);
        drop(being_queued);
        std::thread::sleep(window);
        assert_eq!(
            fan_out(&quota, &tenant, &queue, 4).await,
            3,
            "1 counted, none being queued"
        );
        assert_eq!(queue.requests(), 3);
    }

    #[tokio::test]
    async fn a_failed_count_is_not_kept() {
        let quota = quota(10, 1_000_000);
        let tenant = TenantId::parse("t-a").unwrap();
        let failed = quota
            .share(&tenant, || async { Err(BusError::Timeout) })
            .await;
        assert!(failed.is_err());
        let queue = Queue::new(0);
        assert_eq!(fan_out(&quota, &tenant, &queue, 1).await, 1);
        assert_eq!(queue.requests(), 1);
    }

    #[tokio::test]
    async fn tenants_are_forgotten_but_not_while_a_fan_out_holds_them() {
        let quota = quota(10, 1_000_000);
        let queue = Queue::new(0);
        let held_tenant = TenantId::parse("t-held").unwrap();
        let held = quota.share(&held_tenant, || queue.count()).await.unwrap();
        let _place = held.take(100).unwrap();
        for i in 0..MAX_TENANTS * 2 {
            let tenant = TenantId::parse(&format!("t-{i}")).unwrap();
            assert_eq!(fan_out(&quota, &tenant, &queue, 1).await, 1);
            let len = quota.tenants.lock().unwrap().counts.len();
            assert!(len <= MAX_TENANTS, "{len} tenants at {i}");
        }
        assert!(
            quota
                .tenants
                .lock()
                .unwrap()
                .counts
                .contains_key(&held_tenant)
        );
        // Its count goes on: one of ten taken.
        assert_eq!((0..10).filter(|_| held.take(100).is_some()).count(), 9);
    }
}
