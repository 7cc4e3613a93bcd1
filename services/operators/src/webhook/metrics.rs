//! The webhook operator's metrics. The labels (`outcome`, `reason`) are closed sets: no
//! URLs, rules or tenants.

use arqon_bus::Depth;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What one delivery attempt (or a delivery that could not be attempted) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The endpoint answered 2xx.
    Success,
    /// It failed in a way worth retrying; another attempt is queued.
    Retry,
    /// It failed and no attempt is left: a dead letter.
    DeadLetter,
    /// The endpoint refused it for good (a 4xx other than 408 and 429, a redirect, a
    /// target the SSRF guard refuses): a dead letter without retries.
    PermanentFailure,
    /// The rule was removed before the delivery: nothing was sent.
    Discarded,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Retry => "retry",
            Outcome::DeadLetter => "dead_letter",
            Outcome::PermanentFailure => "permanent_failure",
            Outcome::Discarded => "discarded",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Why deliveries were dropped without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Their tenant already had `max_queued_per_tenant` deliveries (or bytes) queued.
    TenantFull,
    /// A job that cannot be read (or is on a subject no job is queued on).
    Unreadable,
}

impl Dropped {
    fn label(self) -> &'static str {
        match self {
            Dropped::TenantFull => "tenant_full",
            Dropped::Unreadable => "unreadable",
        }
    }
}

/// Why an outcome was not counted for its rule (`outcomes.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrecorded {
    /// The replica already held `ARQONBUS_WEBHOOK_OUTCOMES_MAX_RULES` rules' counts
    /// waiting for a flush.
    TooManyRules,
}

impl Unrecorded {
    fn label(self) -> &'static str {
        match self {
            Unrecorded::TooManyRules => "too_many_rules",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Counters and histograms of one operators replica's webhook deliveries.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    deliveries: Family<OutcomeLabels, Counter>,
    latency: Histogram,
    retries: Counter,
    dead_letters: Counter,
    deferred: Counter,
    queue_errors: Counter,
    queue_jobs: Gauge,
    queue_bytes: Gauge,
    dropped: Family<ReasonLabels, Counter>,
    unrecorded: Family<ReasonLabels, Counter>,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self {
            deliveries: Family::default(),
            // 5 ms to about 20 s.
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
            retries: Counter::default(),
            dead_letters: Counter::default(),
            deferred: Counter::default(),
            queue_errors: Counter::default(),
            queue_jobs: Gauge::default(),
            queue_bytes: Gauge::default(),
            dropped: Family::default(),
            unrecorded: Family::default(),
        }
    }
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry;
        r.register(
            "arqonbus_webhook_deliveries",
            "Webhook delivery attempts by outcome (success, retry, dead_letter, permanent_failure, discarded)",
            metrics.deliveries.clone(),
        );
        r.register(
            "arqonbus_webhook_delivery_duration_seconds",
            "Time from sending a webhook POST to its answer (or failure), every attempt",
            metrics.latency.clone(),
        );
        r.register(
            "arqonbus_webhook_retries",
            "Webhook deliveries queued again after a failed attempt",
            metrics.retries.clone(),
        );
        r.register(
            "arqonbus_webhook_dead_letters",
            "Webhook deliveries given up on and published as dead letters",
            metrics.dead_letters.clone(),
        );
        r.register(
            "arqonbus_webhook_deferred",
            "Webhook deliveries put back because their rule had every slot of this replica busy",
            metrics.deferred.clone(),
        );
        r.register(
            "arqonbus_webhook_queue_errors",
            "Webhook queue operations the bus did not accept (the job is handed out again)",
            metrics.queue_errors.clone(),
        );
        r.register(
            "arqonbus_webhook_queue_jobs",
            "Messages and deliveries in the webhook queue (ARQON_WEBHOOK_QUEUE), sampled; new ones are dropped once it reaches ARQONBUS_WEBHOOK_QUEUE_MAX_JOBS",
            metrics.queue_jobs.clone(),
        );
        r.register(
            "arqonbus_webhook_queue_bytes",
            "Bytes in the webhook queue, sampled; new messages are dropped once it reaches ARQONBUS_WEBHOOK_QUEUE_MAX_BYTES",
            metrics.queue_bytes.clone(),
        );
        r.register(
            "arqonbus_webhook_dropped",
            "Webhook deliveries dropped without an attempt, by reason (tenant_full: the tenant had ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT deliveries or ..._BYTES_PER_TENANT bytes queued; unreadable)",
            metrics.dropped.clone(),
        );
        r.register(
            "arqonbus_webhook_outcomes_unrecorded",
            "Webhook delivery outcomes not counted for their rule (the replica's other metrics count them), by reason (too_many_rules: ARQONBUS_WEBHOOK_OUTCOMES_MAX_RULES rules' counts already waited for a flush)",
            metrics.unrecorded.clone(),
        );
        // Present from the start, so an alert on a rate sees the first drop.
        for reason in [Dropped::TenantFull, Dropped::Unreadable] {
            drop(metrics.dropped.get_or_create(&ReasonLabels {
                reason: reason.label(),
            }));
        }
        drop(metrics.unrecorded.get_or_create(&ReasonLabels {
            reason: Unrecorded::TooManyRules.label(),
        }));
        metrics
    }

    pub(crate) fn queue_depth(&self, depth: Depth) {
        self.queue_jobs
            .set(i64::try_from(depth.jobs).unwrap_or(i64::MAX));
        self.queue_bytes
            .set(i64::try_from(depth.bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn delivered(&self, outcome: Outcome) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.label(),
            })
            .inc();
        match outcome {
            Outcome::Retry => {
                self.retries.inc();
            }
            Outcome::DeadLetter | Outcome::PermanentFailure => {
                self.dead_letters.inc();
            }
            Outcome::Success | Outcome::Discarded => {}
        }
    }

    pub(crate) fn attempt_took(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    pub(crate) fn deferred(&self) {
        self.deferred.inc();
    }

    pub(crate) fn dropped(&self, reason: Dropped, deliveries: u64) {
        self.dropped
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc_by(deliveries);
    }

    pub(crate) fn unrecorded(&self, reason: Unrecorded) {
        self.unrecorded
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    #[cfg(test)]
    pub(crate) fn unrecorded_count(&self, reason: Unrecorded) -> u64 {
        self.unrecorded
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .get()
    }

    pub(crate) fn queue_error(&self) {
        self.queue_errors.inc();
    }
}
