//! The cron scheduler's metrics. The one label (`outcome`) is a closed set.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What a replica that found a claimed but unconfirmed firing did with it:
/// `already_delivered` (the history holds it), `published` (it did not: published now),
/// `dropped` (no way to tell: not published, to never publish twice).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RecoveryLabels {
    pub(crate) outcome: &'static str,
}

/// Counters and gauges of one operators replica's cron scheduler.
#[derive(Debug, Clone, Default)]
pub struct CronMetrics {
    pub(crate) leader: Gauge,
    pub(crate) jobs: Gauge,
    pub(crate) firings: Counter,
    pub(crate) late: Counter,
    pub(crate) missed: Counter,
    pub(crate) recoveries: Family<RecoveryLabels, Counter>,
    pub(crate) publish_errors: Counter,
    pub(crate) blocked: Counter,
}

impl CronMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry;
        r.register(
            "arqonbus_cron_leader",
            "1 on the replica that holds the cron lease and fires the jobs, 0 elsewhere",
            metrics.leader.clone(),
        );
        r.register(
            "arqonbus_cron_jobs",
            "Cron jobs stored (every tenant), as this replica sees the bucket",
            metrics.jobs.clone(),
        );
        r.register(
            "arqonbus_cron_firings",
            "Cron messages published by this replica",
            metrics.firings.clone(),
        );
        r.register(
            "arqonbus_cron_late_firings",
            "Cron firings published more than a second after they were due",
            metrics.late.clone(),
        );
        r.register(
            "arqonbus_cron_missed_firings",
            "Cron firings never published: times of a cron expression that passed while no replica could fire (one firing stands for them), and claimed firings that could not be confirmed",
            metrics.missed.clone(),
        );
        r.register(
            "arqonbus_cron_recoveries",
            "Claimed but unconfirmed firings found after a replica died or failed mid-firing, by outcome",
            metrics.recoveries.clone(),
        );
        r.register(
            "arqonbus_cron_publish_errors",
            "Cron messages the bus did not accept (retried through recovery)",
            metrics.publish_errors.clone(),
        );
        r.register(
            "arqonbus_cron_blocked_firings",
            "Cron firings CASIL blocked (not published; the iteration counts as done)",
            metrics.blocked.clone(),
        );
        metrics
    }

    pub(crate) fn recovered(&self, outcome: &'static str) {
        self.recoveries
            .get_or_create(&RecoveryLabels { outcome })
            .inc();
    }
}
