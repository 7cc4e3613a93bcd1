//! The console's metrics, registered with the edge's. Labels are closed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

arqon_telemetry::label_values! {
    /// What became of a login check or a feed.
    pub(crate) enum Outcome {
        Accepted => "accepted",
        Refused => "refused",
    }
}

arqon_telemetry::label_values! {
    /// What became of an event a feed received.
    pub(crate) enum Forwarded {
        Sent => "sent",
        Dropped => "dropped",
    }
}

arqon_telemetry::label_values! {
    /// Why a feed was refused.
    pub(crate) enum FeedRefusal {
        Unauthorized => "unauthorized",
        Forbidden => "forbidden",
        UnknownFeed => "unknown_feed",
        Full => "full",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardedLabel {
    outcome: Forwarded,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: FeedRefusal,
}

/// Counters and gauges of the console.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsoleMetrics {
    sessions: Family<OutcomeLabel, Counter>,
    pub(crate) feeds: Gauge,
    feed_events: Family<ForwardedLabel, Counter>,
    feed_refusals: Family<ReasonLabel, Counter>,
}

impl ConsoleMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "arqonbus_edge_console_sessions",
            "Console login checks (POST /console/api/session) by outcome",
            metrics.sessions.clone(),
        );
        registry.register(
            "arqonbus_edge_console_feeds",
            "Console feeds open on this edge (ARQONBUS_CONSOLE_MAX_FEEDS)",
            metrics.feeds.clone(),
        );
        registry.register(
            "arqonbus_edge_console_feed_events",
            "Events console feeds received: sent, or dropped over ARQONBUS_CONSOLE_FEED_EVENTS_PER_SECOND",
            metrics.feed_events.clone(),
        );
        registry.register(
            "arqonbus_edge_console_feed_refusals",
            "Console feeds refused: unauthorized (no valid credentials), forbidden (not an admin), unknown_feed, full (ARQONBUS_CONSOLE_MAX_FEEDS)",
            metrics.feed_refusals.clone(),
        );
        metrics
    }

    pub(crate) fn session(&self, accepted: bool) {
        let outcome = if accepted {
            Outcome::Accepted
        } else {
            Outcome::Refused
        };
        self.sessions.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    pub(crate) fn forwarded(&self, outcome: Forwarded) {
        self.feed_events
            .get_or_create(&ForwardedLabel { outcome })
            .inc();
    }

    pub(crate) fn refused(&self, reason: FeedRefusal) {
        self.feed_refusals
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
