//! The webhook operator's metrics. The one label (`outcome`) is a closed set: no URLs,
//! rules or tenants.

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

    pub(crate) fn queue_error(&self) {
        self.queue_errors.inc();
    }
}
