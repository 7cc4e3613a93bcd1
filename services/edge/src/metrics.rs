//! The edge's metrics. Labels are closed enums: no client ids, rooms or tenants.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use arqon_telemetry::metrics::TracedLatency;

use crate::auth::Reason;

arqon_telemetry::label_values! {
    /// What happened to an upgrade request.
    pub(crate) enum Upgrade {
        Accepted => "accepted",
        Unauthorized => "unauthorized",
        OverCapacity => "over_capacity",
        Draining => "draining",
        NotWebSocket => "not_websocket",
        TenantQuota => "tenant_quota",
    }
}

arqon_telemetry::label_values! {
    /// A quota that refused something.
    pub(crate) enum Quota {
        ConnectionsPerTenant => "connections_per_tenant",
        FleetConnectionsPerTenant => "fleet_connections_per_tenant",
        ChannelsPerConnection => "channels_per_connection",
    }
}

arqon_telemetry::label_values! {
    /// Which bound cut a presence reply's list first.
    pub(crate) enum PresenceCut {
        Count => "count",
        Bytes => "bytes",
    }
}

arqon_telemetry::label_values! {
    /// Where the edge published an envelope: the policy stage, or straight to the
    /// dispatcher because the live policy does not apply to it.
    pub(crate) enum Route {
        Policy => "policy",
        Dispatcher => "dispatcher",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    to: Route,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PresenceCutLabel {
    by: PresenceCut,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabel {
    quota: Quota,
}

arqon_telemetry::label_values! {
    /// Why a connection ended.
    pub(crate) enum Disconnect {
        ByClient => "client",
        Shutdown => "shutdown",
        TooSlow => "too_slow",
        RateLimited => "rate_limited",
        TooBig => "message_too_big",
        PingTimeout => "ping_timeout",
        TokenExpired => "token_expired",
        Internal => "internal_error",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Upgrade,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Reason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClosedLabel {
    reason: Disconnect,
}

/// Counters, gauges and histograms of one edge.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    pub(crate) connections: Gauge,
    pub(crate) rooms: Gauge,
    upgrades: Family<OutcomeLabel, Counter>,
    auth_failures: Family<ReasonLabel, Counter>,
    closed: Family<ClosedLabel, Counter>,
    pub(crate) frames_in: Counter,
    pub(crate) bytes_in: Counter,
    pub(crate) frames_out: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) queue_drops: Counter,
    pub(crate) rate_limited: Counter,
    pub(crate) tenant_rate_limited: Counter,
    pub(crate) invalid_frames: Counter,
    pub(crate) publish_errors: Counter,
    pub(crate) pipeline_timeouts: Counter,
    pub(crate) window_full: Counter,
    pub(crate) late_answers: Counter,
    pub(crate) pipeline_latency: TracedLatency,
    pub(crate) delivery_latency: TracedLatency,
    pub(crate) fanout_deliveries: Counter,
    quota_refusals: Family<QuotaLabel, Counter>,
    pub(crate) fleet_quota_unchecked: Counter,
    pub(crate) fleet_count_write_errors: Counter,
    presence_truncated: Family<PresenceCutLabel, Counter>,
    routed: Family<RouteLabel, Counter>,
    pub(crate) casil_version: Gauge,
    pub(crate) console: crate::console::ConsoleMetrics,
}

impl EdgeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            connections: Gauge::default(),
            rooms: Gauge::default(),
            upgrades: Family::default(),
            auth_failures: Family::default(),
            closed: Family::default(),
            frames_in: Counter::default(),
            bytes_in: Counter::default(),
            frames_out: Counter::default(),
            bytes_out: Counter::default(),
            queue_drops: Counter::default(),
            rate_limited: Counter::default(),
            tenant_rate_limited: Counter::default(),
            invalid_frames: Counter::default(),
            publish_errors: Counter::default(),
            pipeline_timeouts: Counter::default(),
            window_full: Counter::default(),
            late_answers: Counter::default(),
            pipeline_latency: arqon_telemetry::metrics::traced_latency_histogram(),
            delivery_latency: arqon_telemetry::metrics::traced_latency_histogram(),
            fanout_deliveries: Counter::default(),
            quota_refusals: Family::default(),
            fleet_quota_unchecked: Counter::default(),
            fleet_count_write_errors: Counter::default(),
            presence_truncated: Family::default(),
            routed: Family::default(),
            casil_version: Gauge::default(),
            console: crate::console::ConsoleMetrics::register(registry),
        };
        let r = registry;
        r.register(
            "arqonbus_edge_connections",
            "Open WebSocket connections",
            metrics.connections.clone(),
        );
        r.register(
            "arqonbus_edge_rooms",
            "Rooms with local members (one bus subscription each)",
            metrics.rooms.clone(),
        );
        r.register(
            "arqonbus_edge_quota_refusals",
            "Upgrades and joins refused by a quota (ARQONBUS_MAX_CONNECTIONS_PER_TENANT, ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT, ARQONBUS_MAX_CHANNELS_PER_CONNECTION)",
            metrics.quota_refusals.clone(),
        );
        r.register(
            "arqonbus_edge_fleet_quota_unchecked",
            "Upgrades admitted on this edge's quota alone because the other edges' counts could not be read in time (ARQONBUS_MAX_FLEET_CONNECTIONS_PER_TENANT)",
            metrics.fleet_quota_unchecked.clone(),
        );
        r.register(
            "arqonbus_edge_fleet_count_write_errors",
            "Writes of this edge's per-tenant connection counts the bus did not take (retried; the fleet-wide quota undercounts meanwhile)",
            metrics.fleet_count_write_errors.clone(),
        );
        r.register(
            "arqonbus_edge_presence_truncated",
            "Presence replies whose member, channel or connection list was cut, by the bound that cut it first: count (the dispatcher's ask or ARQONBUS_PRESENCE_MAX_MEMBERS) or bytes (ARQONBUS_PRESENCE_MAX_REPLY_BYTES); the counts stay whole",
            metrics.presence_truncated.clone(),
        );
        r.register(
            "arqonbus_edge_upgrades",
            "Upgrade requests by outcome",
            metrics.upgrades.clone(),
        );
        r.register(
            "arqonbus_edge_auth_failures",
            "Refused tokens by reason",
            metrics.auth_failures.clone(),
        );
        r.register(
            "arqonbus_edge_disconnects",
            "Closed connections by reason",
            metrics.closed.clone(),
        );
        r.register(
            "arqonbus_edge_frames_in",
            "Text frames received from clients",
            metrics.frames_in.clone(),
        );
        r.register(
            "arqonbus_edge_bytes_in",
            "Bytes of text frames received from clients",
            metrics.bytes_in.clone(),
        );
        r.register(
            "arqonbus_edge_frames_out",
            "Frames written to clients",
            metrics.frames_out.clone(),
        );
        r.register(
            "arqonbus_edge_bytes_out",
            "Bytes of frames written to clients",
            metrics.bytes_out.clone(),
        );
        r.register(
            "arqonbus_edge_queue_drops",
            "Frames dropped because a client's outbound queue was full (the client is then disconnected)",
            metrics.queue_drops.clone(),
        );
        r.register(
            "arqonbus_edge_rate_limited",
            "Envelopes refused with RATE_LIMITED",
            metrics.rate_limited.clone(),
        );
        r.register(
            "arqonbus_edge_tenant_rate_limited",
            "Frames refused with RATE_LIMITED because their tenant was over its byte rate on this edge (ARQONBUS_RATE_LIMIT_TENANT_BYTES_PER_SECOND); also in arqonbus_edge_rate_limited",
            metrics.tenant_rate_limited.clone(),
        );
        r.register(
            "arqonbus_edge_invalid_frames",
            "Frames answered with VALIDATION_ERROR at the edge",
            metrics.invalid_frames.clone(),
        );
        r.register(
            "arqonbus_edge_publish_errors",
            "Envelopes the bus did not accept (the client got UNAVAILABLE)",
            metrics.publish_errors.clone(),
        );
        r.register(
            "arqonbus_edge_pipeline_timeouts",
            "Envelopes the pipeline did not answer in time (the client got TIMEOUT)",
            metrics.pipeline_timeouts.clone(),
        );
        r.register(
            "arqonbus_edge_window_full",
            "Envelopes that filled their connection's window (ARQONBUS_PIPELINE_WINDOW): the edge read nothing more from it until an answer came",
            metrics.window_full.clone(),
        );
        r.register(
            "arqonbus_edge_late_answers",
            "Answers to envelopes that had already been answered TIMEOUT; what they would have published was not",
            metrics.late_answers.clone(),
        );
        r.register(
            "arqonbus_edge_pipeline_latency_seconds",
            "From publishing an envelope to the pipeline until its answer reached the edge (receive to acknowledgement); exemplars name traced ones",
            metrics.pipeline_latency.clone(),
        );
        r.register(
            "arqonbus_edge_delivery_latency_seconds",
            "From the sender's edge receiving a message to this edge fanning it out to its members (receive to delivery; edges' clocks must agree); exemplars name traced ones",
            metrics.delivery_latency.clone(),
        );
        r.register(
            "arqonbus_edge_envelopes_routed",
            "Envelopes the edge sent into the pipeline (a failed publish included), by where: the policy stage, or straight to the dispatcher because the live CASIL policy does not apply to them (ARQONBUS_POLICY_BYPASS)",
            metrics.routed.clone(),
        );
        r.register(
            "arqonbus_edge_casil_version",
            "The CASIL policy version by which this edge lets envelopes skip the policy stage; 0 while it sends every envelope through the stage",
            metrics.casil_version.clone(),
        );
        r.register(
            "arqonbus_edge_fanout_deliveries",
            "Room frames queued to local members",
            metrics.fanout_deliveries.clone(),
        );
        metrics
    }

    pub(crate) fn upgrade(&self, outcome: Upgrade) {
        self.upgrades.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub(crate) fn quota_refused(&self, quota: Quota) {
        self.quota_refusals
            .get_or_create(&QuotaLabel { quota })
            .inc();
    }

    pub(crate) fn presence_truncated(&self, by: PresenceCut) {
        self.presence_truncated
            .get_or_create(&PresenceCutLabel { by })
            .inc();
    }

    pub(crate) fn auth_failure(&self, reason: Reason) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn routed(&self, to: Route) {
        self.routed.get_or_create(&RouteLabel { to }).inc();
    }

    pub(crate) fn closed(&self, reason: Disconnect) {
        self.closed.get_or_create(&ClosedLabel { reason }).inc();
    }
}
