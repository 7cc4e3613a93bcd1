//! Counters a service exports as metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one slow-consumer warning per this interval (the counter counts every drop).
const SLOW_CONSUMER_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Bus counters, shared by every clone of a [`crate::Bus`]. Monotonic; read them with the
/// getters and export them as Prometheus counters.
#[derive(Debug)]
pub struct BusStats {
    slow_consumer_drops: AtomicU64,
    publish_errors: AtomicU64,
    disconnects: AtomicU64,
    created: Instant,
    /// Milliseconds after `created` of the last slow-consumer warning, plus one (0: never).
    last_slow_log_ms: AtomicU64,
}

impl Default for BusStats {
    fn default() -> Self {
        BusStats {
            slow_consumer_drops: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            created: Instant::now(),
            last_slow_log_ms: AtomicU64::new(0),
        }
    }
}

impl BusStats {
    /// Messages dropped because a subscription's buffer was full (the subscriber did not
    /// keep up). NATS: counted from the client's slow-consumer events, which async-nats
    /// reports through a bounded queue, so a burst may be undercounted; embedded: exact.
    pub fn slow_consumer_drops(&self) -> u64 {
        self.slow_consumer_drops.load(Ordering::Relaxed)
    }

    /// Publishes (core or history append) that failed after validation.
    pub fn publish_errors(&self) -> u64 {
        self.publish_errors.load(Ordering::Relaxed)
    }

    /// Times the NATS connection was lost (embedded: always 0).
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    pub(crate) fn record_publish_error(&self) {
        self.publish_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one dropped message and warns, at most once per interval, so a stuck
    /// subscriber cannot flood the logs.
    pub(crate) fn record_slow_consumer(&self, subject: &str) {
        let total = self.slow_consumer_drops.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last_slow_log_ms.load(Ordering::Relaxed);
        let interval = u64::try_from(SLOW_CONSUMER_LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now_ms.saturating_sub(last) >= interval)
            && self
                .last_slow_log_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                subject,
                dropped_total = total,
                "slow consumer: subscription buffer full, message dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_drop() {
        let stats = BusStats::default();
        for _ in 0..1000 {
            stats.record_slow_consumer("a.b");
        }
        stats.record_publish_error();
        stats.record_disconnect();
        assert_eq!(stats.slow_consumer_drops(), 1000);
        assert_eq!(stats.publish_errors(), 1);
        assert_eq!(stats.disconnects(), 1);
        assert_ne!(stats.last_slow_log_ms.load(Ordering::Relaxed), 0);
    }
}
