//! The `ARQONBUS_WEBHOOK_*` settings: delivery attempts and their backoff, concurrency,
//! the SSRF guard, rule limits, and the queue's bounds (in all, and per tenant).

use std::time::Duration;

const MAX_ATTEMPTS: u32 = 5;
const BACKOFF_BASE_MS: u64 = 200;
const BACKOFF_MAX_MS: u64 = 30_000;
const CONCURRENCY: u32 = 64;
const CONCURRENCY_PER_RULE: u32 = 4;
const MAX_TIMEOUT_SECONDS: f64 = 30.0;
const MAX_RULES_PER_TENANT: u32 = 100;
const QUEUE_MAX_AGE_SECONDS: u64 = 86_400;
const QUEUE_MAX_JOBS: u64 = 1_000_000;
const QUEUE_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// A tenant's share of the queue: a tenth of its jobs and a sixteenth of its bytes, so at
/// least ten tenants at their bound (sixteen by bytes) fit in the shared queue at once,
/// while one tenant still has room for a backlog of 100,000 deliveries.
const MAX_QUEUED_PER_TENANT: u64 = QUEUE_MAX_JOBS / 10;
const MAX_QUEUED_BYTES_PER_TENANT: u64 = QUEUE_MAX_BYTES / 16;
const SWEEP_SECONDS: u64 = 30;
const OUTCOMES_FLUSH_MS: u64 = 2_000;
const OUTCOMES_MAX_RULES: u32 = 10_000;

/// How webhook rules are delivered and bounded.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookSettings {
    /// POSTs per delivery (one message to one rule) before it becomes a dead letter.
    #[arg(
        id = "webhook_max_attempts",
        long = "webhook-max-attempts",
        env = "ARQONBUS_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = MAX_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=100),
    )]
    pub max_attempts: u32,

    /// The wait before the first retry; each further retry waits twice as long (with
    /// jitter), up to `--webhook-backoff-max-ms`.
    #[arg(
        id = "webhook_backoff_base_ms",
        long = "webhook-backoff-base-ms",
        env = "ARQONBUS_WEBHOOK_BACKOFF_BASE_MS",
        default_value_t = BACKOFF_BASE_MS,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000),
    )]
    pub backoff_base_ms: u64,

    /// The longest wait between two attempts.
    #[arg(
        id = "webhook_backoff_max_ms",
        long = "webhook-backoff-max-ms",
        env = "ARQONBUS_WEBHOOK_BACKOFF_MAX_MS",
        default_value_t = BACKOFF_MAX_MS,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000),
    )]
    pub backoff_max_ms: u64,

    /// POSTs one replica makes at once, all rules together.
    #[arg(
        id = "webhook_concurrency",
        long = "webhook-concurrency",
        env = "ARQONBUS_WEBHOOK_CONCURRENCY",
        default_value_t = CONCURRENCY,
        value_parser = clap::value_parser!(u32).range(1..=4096),
    )]
    pub concurrency: u32,

    /// POSTs one replica makes at once to one rule, so a slow or dead endpoint cannot
    /// take every slot.
    #[arg(
        id = "webhook_concurrency_per_rule",
        long = "webhook-concurrency-per-rule",
        env = "ARQONBUS_WEBHOOK_CONCURRENCY_PER_RULE",
        default_value_t = CONCURRENCY_PER_RULE,
        value_parser = clap::value_parser!(u32).range(1..=4096),
    )]
    pub concurrency_per_rule: u32,

    /// The largest `timeout_seconds` a rule may ask for.
    #[arg(
        id = "webhook_max_timeout_seconds",
        long = "webhook-max-timeout-seconds",
        env = "ARQONBUS_WEBHOOK_MAX_TIMEOUT_SECONDS",
        default_value_t = MAX_TIMEOUT_SECONDS,
        value_parser = timeout_seconds,
    )]
    pub max_timeout_seconds: f64,

    /// Allow URLs whose host is, or resolves to, a loopback, private, link-local,
    /// unspecified, CGNAT or unique-local address (refused by default: SSRF guard).
    #[arg(
        id = "webhook_allow_private_targets",
        long = "webhook-allow-private-targets",
        env = "ARQONBUS_WEBHOOK_ALLOW_PRIVATE_TARGETS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub allow_private_targets: bool,

    /// Most rules one tenant may have.
    #[arg(
        id = "webhook_max_rules_per_tenant",
        long = "webhook-max-rules-per-tenant",
        env = "ARQONBUS_WEBHOOK_MAX_RULES_PER_TENANT",
        default_value_t = MAX_RULES_PER_TENANT,
        value_parser = clap::value_parser!(u32).range(1..=100_000),
    )]
    pub max_rules_per_tenant: u32,

    /// Deliveries not done within this long are dropped from the queue.
    #[arg(
        id = "webhook_queue_max_age_seconds",
        long = "webhook-queue-max-age-seconds",
        env = "ARQONBUS_WEBHOOK_QUEUE_MAX_AGE_SECONDS",
        default_value_t = QUEUE_MAX_AGE_SECONDS,
        value_parser = clap::value_parser!(u64).range(60..),
    )]
    pub queue_max_age_seconds: u64,

    /// Messages and deliveries the queue holds at most; when full, new ones are dropped.
    #[arg(
        id = "webhook_queue_max_jobs",
        long = "webhook-queue-max-jobs",
        env = "ARQONBUS_WEBHOOK_QUEUE_MAX_JOBS",
        default_value_t = QUEUE_MAX_JOBS,
        value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64),
    )]
    pub queue_max_jobs: u64,

    /// Bytes the queue holds at most; when full, new messages are dropped.
    #[arg(
        id = "webhook_queue_max_bytes",
        long = "webhook-queue-max-bytes",
        env = "ARQONBUS_WEBHOOK_QUEUE_MAX_BYTES",
        default_value_t = QUEUE_MAX_BYTES,
        value_parser = clap::value_parser!(u64).range(1024..=i64::MAX as u64),
    )]
    pub queue_max_bytes: u64,

    /// Deliveries of one tenant the queue holds at most (queued, in flight, or waiting
    /// for a retry); beyond it that tenant's new deliveries are dropped and counted,
    /// while other tenants' are still queued.
    #[arg(
        id = "webhook_max_queued_per_tenant",
        long = "webhook-max-queued-per-tenant",
        env = "ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT",
        default_value_t = MAX_QUEUED_PER_TENANT,
        value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64),
    )]
    pub max_queued_per_tenant: u64,

    /// Bytes of one tenant's deliveries the queue holds at most (checked as the tenant's
    /// queued deliveries, each as large as the one being queued); beyond it that
    /// tenant's new deliveries are dropped and counted.
    #[arg(
        id = "webhook_max_queued_bytes_per_tenant",
        long = "webhook-max-queued-bytes-per-tenant",
        env = "ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT",
        default_value_t = MAX_QUEUED_BYTES_PER_TENANT,
        value_parser = clap::value_parser!(u64).range(1024..=i64::MAX as u64),
    )]
    pub max_queued_bytes_per_tenant: u64,

    /// How often rules that are not `persistent` are checked against the live edges (an
    /// owner whose edge died sent no disconnect notice).
    #[arg(
        id = "webhook_sweep_seconds",
        long = "webhook-sweep-seconds",
        env = "ARQONBUS_WEBHOOK_SWEEP_SECONDS",
        default_value_t = SWEEP_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
    )]
    pub sweep_seconds: u64,

    /// How often a replica adds the delivery outcomes it counted to each rule's figures
    /// (`op.webhook.outcomes`): one write per rule with deliveries in the interval; a
    /// replica killed outright loses at most this long of its counts.
    #[arg(
        id = "webhook_outcomes_flush_ms",
        long = "webhook-outcomes-flush-ms",
        env = "ARQONBUS_WEBHOOK_OUTCOMES_FLUSH_MS",
        default_value_t = OUTCOMES_FLUSH_MS,
        value_parser = clap::value_parser!(u64).range(100..=600_000),
    )]
    pub outcomes_flush_ms: u64,

    /// Rules whose outcomes one replica counts between two flushes; outcomes of further
    /// rules are not counted per rule (`arqonbus_webhook_outcomes_unrecorded`).
    #[arg(
        id = "webhook_outcomes_max_rules",
        long = "webhook-outcomes-max-rules",
        env = "ARQONBUS_WEBHOOK_OUTCOMES_MAX_RULES",
        default_value_t = OUTCOMES_MAX_RULES,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
    )]
    pub outcomes_max_rules: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        arqon_service::settings::defaults()
    }
}

impl WebhookSettings {
    /// Settings that contradict each other.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.backoff_base_ms > self.backoff_max_ms {
            return Err(format!(
                "ARQONBUS_WEBHOOK_BACKOFF_BASE_MS ({}) must not exceed ARQONBUS_WEBHOOK_BACKOFF_MAX_MS ({})",
                self.backoff_base_ms, self.backoff_max_ms
            ));
        }
        if self.concurrency_per_rule > self.concurrency {
            return Err(format!(
                "ARQONBUS_WEBHOOK_CONCURRENCY_PER_RULE ({}) must not exceed ARQONBUS_WEBHOOK_CONCURRENCY ({})",
                self.concurrency_per_rule, self.concurrency
            ));
        }
        if self.max_queued_per_tenant > self.queue_max_jobs {
            return Err(format!(
                "ARQONBUS_WEBHOOK_MAX_QUEUED_PER_TENANT ({}) must not exceed ARQONBUS_WEBHOOK_QUEUE_MAX_JOBS ({})",
                self.max_queued_per_tenant, self.queue_max_jobs
            ));
        }
        if self.max_queued_bytes_per_tenant > self.queue_max_bytes {
            return Err(format!(
                "ARQONBUS_WEBHOOK_MAX_QUEUED_BYTES_PER_TENANT ({}) must not exceed ARQONBUS_WEBHOOK_QUEUE_MAX_BYTES ({})",
                self.max_queued_bytes_per_tenant, self.queue_max_bytes
            ));
        }
        Ok(())
    }

    pub(crate) fn backoff_base(&self) -> Duration {
        Duration::from_millis(self.backoff_base_ms)
    }

    pub(crate) fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    pub(crate) fn max_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.max_timeout_seconds)
    }

    pub(crate) fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_seconds)
    }

    pub(crate) fn outcomes_flush(&self) -> Duration {
        Duration::from_millis(self.outcomes_flush_ms)
    }

    pub(crate) fn queue_max_age(&self) -> Duration {
        Duration::from_secs(self.queue_max_age_seconds)
    }
}

fn timeout_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if seconds.is_finite() && (0.1..=300.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("must be from 0.1 to 300 seconds".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        webhook: WebhookSettings,
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let parsed = Cli::parse_from(["test"]).webhook;
        let default = WebhookSettings::default();
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
        assert!(default.check().is_ok());
        let bad = WebhookSettings {
            backoff_base_ms: 10,
            backoff_max_ms: 5,
            ..WebhookSettings::default()
        };
        assert!(bad.check().is_err());
        let bad = WebhookSettings {
            concurrency_per_rule: 8,
            concurrency: 4,
            ..WebhookSettings::default()
        };
        assert!(bad.check().is_err());
        let bad = WebhookSettings {
            max_queued_per_tenant: 11,
            queue_max_jobs: 10,
            ..WebhookSettings::default()
        };
        assert!(bad.check().is_err());
        let bad = WebhookSettings {
            max_queued_bytes_per_tenant: 4096,
            queue_max_bytes: 2048,
            ..WebhookSettings::default()
        };
        assert!(bad.check().is_err());
        // Several tenants at their bound fit in the shared queue.
        assert!(default.max_queued_per_tenant * 10 <= default.queue_max_jobs);
        assert!(default.max_queued_bytes_per_tenant * 16 <= default.queue_max_bytes);
    }
}
