//! The policy stage's metrics. Labels are closed sets (decisions, reasons, outcomes).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A CASIL decision and its reason (`Decision::as_str`, `Reason::as_str`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    pub(crate) decision: &'static str,
    pub(crate) reason: &'static str,
}

/// What became of a stored policy version here: `applied`, `invalid`, `unreadable`; or
/// of a reload's wait for the edges: `confirmed`, `timeout`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub(crate) outcome: &'static str,
}

/// What became of one look at the `CasilPolicy` resource: `applied`, `unchanged`,
/// `invalid`, `unavailable`, `deleted`, `absent`, `watch_error`, `status_error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SyncLabels {
    pub(crate) outcome: &'static str,
}

/// Counters, gauges and histograms of one policy replica.
#[derive(Debug, Clone)]
pub struct PolicyMetrics {
    pub(crate) forwarded: Counter,
    pub(crate) rejected: Counter,
    pub(crate) publish_errors: Counter,
    pub(crate) decisions: Family<DecisionLabels, Counter>,
    pub(crate) inspection: Histogram,
    pub(crate) version: Gauge,
    pub(crate) reloads: Family<ReloadLabels, Counter>,
    pub(crate) propagation: Histogram,
    pub(crate) edge_waits: Family<ReloadLabels, Counter>,
    pub(crate) kubernetes_syncs: Family<SyncLabels, Counter>,
    pub(crate) kubernetes_leader: Gauge,
}

impl Default for PolicyMetrics {
    fn default() -> Self {
        Self {
            forwarded: Counter::default(),
            rejected: Counter::default(),
            publish_errors: Counter::default(),
            decisions: Family::default(),
            inspection: arqon_telemetry::metrics::latency_histogram(),
            version: Gauge::default(),
            reloads: Family::default(),
            propagation: arqon_telemetry::metrics::latency_histogram(),
            edge_waits: Family::default(),
            kubernetes_syncs: Family::default(),
            kubernetes_leader: Gauge::default(),
        }
    }
}

impl PolicyMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry;
        r.register(
            "arqonbus_policy_forwarded",
            "Envelopes forwarded to the dispatcher",
            metrics.forwarded.clone(),
        );
        r.register(
            "arqonbus_policy_rejected",
            "Internal messages dropped as undecodable or with a tenant that does not match their subject",
            metrics.rejected.clone(),
        );
        r.register(
            "arqonbus_policy_publish_errors",
            "Forwards, answers and events the bus did not accept",
            metrics.publish_errors.clone(),
        );
        r.register(
            "arqonbus_policy_decisions",
            "CASIL decisions, by decision and reason",
            metrics.decisions.clone(),
        );
        r.register(
            "arqonbus_policy_inspection_seconds",
            "Time to inspect one envelope with CASIL",
            metrics.inspection.clone(),
        );
        r.register(
            "arqonbus_policy_version",
            "The CASIL policy version this replica applies",
            metrics.version.clone(),
        );
        r.register(
            "arqonbus_policy_reloads",
            "Stored policy versions seen by this replica, by outcome",
            metrics.reloads.clone(),
        );
        r.register(
            "arqonbus_policy_reload_propagation_seconds",
            "From a reload being stored to this replica applying it",
            metrics.propagation.clone(),
        );
        r.register(
            "arqonbus_policy_reload_edge_waits",
            "Reloads this replica stored, by whether every live edge that lets envelopes skip the policy stage applied the version before the answer (confirmed) or the wait ran out (timeout)",
            metrics.edge_waits.clone(),
        );
        r.register(
            "arqonbus_policy_kubernetes_syncs",
            "Looks at the CasilPolicy resource (ARQONBUS_POLICY_SOURCE=kubernetes), by outcome",
            metrics.kubernetes_syncs.clone(),
        );
        r.register(
            "arqonbus_policy_kubernetes_leader",
            "1 on the policy replica that follows the CasilPolicy resource, 0 elsewhere",
            metrics.kubernetes_leader.clone(),
        );
        metrics
    }
}
