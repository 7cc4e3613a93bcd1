//! Each tenant's share of the webhook queue: at most `max_queued_per_tenant` deliveries
//! and `max_queued_bytes_per_tenant` bytes of them, so one tenant whose endpoints are
//! slow or dead cannot fill the queue every tenant shares.
//!
//! The count is the queue's own (its per-subject counts over the tenant's delivery
//! subjects, `arqon.webhook.queue.<tenant>.<rule_id>`), read at each fan-out: it holds
//! with any number of operators replicas and survives any of them dying, at the price of
//! one bus request per message fanned out. JetStream counts messages per subject but not
//! bytes, so the byte bound is checked as the tenant's queued deliveries taken to be as
//! large as the one being queued (exact when a tenant's messages are alike in size).
//! Fan-outs that run at the same moment read the same count, so a tenant can overshoot
//! its bound by the deliveries of the fan-outs in progress at once.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

use arqon_protocol::{TenantId, subject};

use super::settings::WebhookSettings;

/// At most one warning about dropped deliveries per replica this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The per-tenant bound, and the warnings about what it dropped.
pub(crate) struct TenantQuota {
    max_jobs: u64,
    max_bytes: u64,
    warned: Mutex<Warned>,
}

#[derive(Default)]
struct Warned {
    last: Option<Instant>,
    /// Deliveries dropped since the last warning, which did not warn themselves.
    unreported: u64,
}

impl TenantQuota {
    pub(crate) fn new(settings: &WebhookSettings) -> Self {
        Self {
            max_jobs: settings.max_queued_per_tenant,
            max_bytes: settings.max_queued_bytes_per_tenant,
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

#[cfg(test)]
mod tests {
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
}
