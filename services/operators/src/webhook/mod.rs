//! `op.webhook`: rules that POST a tenant's room messages to a URL, at least once.
//!
//! - **Rules** (`rule.rs`, `rules.rs`) live in the `arqon_webhooks` bucket, key
//!   `<tenant>.<rule_id>`; a rule only ever sees its own tenant's messages. Every replica
//!   follows the bucket. Rules that are not `persistent` end with their owner's
//!   connection (`cleanup.rs`).
//! - **Queue**: the dispatcher follows the same bucket and, after publishing a `message`
//!   of a tenant that has rules to its room, publishes the same `RoomDelivery` to
//!   `arqon.webhook.queue.<tenant>` (the cron scheduler does the same for its firings),
//!   without waiting for anything. The `ARQON_WEBHOOK_QUEUE` work queue keeps those jobs
//!   until an operators replica acknowledges them; all replicas share its one consumer.
//! - **Delivery** (`worker.rs`): a replica fans a message out into one delivery job per
//!   matching rule (`arqon.webhook.queue.<tenant>.<rule_id>`), then POSTs each
//!   (`post.rs`, signed by `signature.rs`). A failure worth retrying queues the next
//!   attempt as a new job carrying the failure count and its backoff (`backoff.rs`), so
//!   progress survives any replica dying; after the last attempt, or a permanent
//!   failure, the delivery becomes a dead letter on `arqon.webhook.dead.<tenant>`.
//! - **Outcomes** (`outcomes.rs`): what each rule's deliveries came to, counted by each
//!   replica and added into the `arqon_webhook_outcomes` bucket every flush interval.
//! - **Fairness** (`quota.rs`): a tenant holds at most its share of the queue's
//!   deliveries; beyond it, its new ones are dropped and counted, not other tenants'.
//! - **SSRF guard** (`ssrf.rs`): internal targets are refused at registration and can
//!   never be connected to at delivery.
//!
//! The design and its trade-offs are in `docs/operators-webhook.md`.

mod api;
mod backoff;
mod cleanup;
mod job;
mod metrics;
mod outcomes;
mod post;
mod quota;
mod rule;
mod rules;
mod settings;
mod signature;
mod ssrf;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arqon_bus::{Bus, WorkQueue, WorkQueueConfig};
use arqon_protocol::subject;

use crate::{OperatorsError, Shared};

pub use metrics::WebhookMetrics;
pub use settings::WebhookSettings;

/// Room beyond the longest POST for settling a job, before the queue hands it to another
/// replica.
const ACK_MARGIN: Duration = Duration::from_secs(30);

/// The `Webhooks` API (`api.rs`).
#[derive(Debug, Clone)]
pub struct WebhookApi {
    rules: rules::Rules,
    /// The delivery queue, for its depth (`QueueDepth`).
    queue: WorkQueue,
    /// Each rule's delivery outcomes (`Outcomes`).
    outcomes: outcomes::Outcomes,
    settings: Arc<WebhookSettings>,
}

/// The webhook queue's settings (every replica opens it with the same ones).
fn queue_config(bus: &Bus, settings: &WebhookSettings) -> WorkQueueConfig {
    WorkQueueConfig {
        max_age: settings.queue_max_age(),
        max_jobs: i64::try_from(settings.queue_max_jobs).unwrap_or(i64::MAX),
        max_bytes: i64::try_from(settings.queue_max_bytes).unwrap_or(i64::MAX),
        ack_wait: settings.max_timeout() + ACK_MARGIN,
        // Attempts are counted in the jobs themselves (a deferral is not an attempt);
        // jobs that are never settled go with `max_age`.
        max_deliver: -1,
        storage: bus.durable_storage(),
        ..WorkQueueConfig::new(
            subject::WEBHOOK_QUEUE_STREAM,
            vec![subject::WEBHOOK_QUEUE_ALL.to_owned()],
            subject::WEBHOOK_QUEUE_CONSUMER,
        )
    }
}

/// Opens the rules and the queue, and starts following the rules, delivering, and
/// removing the rules of owners that left; all until `shutdown`.
pub(crate) async fn start(
    shared: &Shared,
    settings: &WebhookSettings,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<WebhookApi, OperatorsError> {
    settings.check().map_err(OperatorsError::Settings)?;
    let rules = rules::Rules::open(&shared.bus).await?;
    rules.follow(tasks, shutdown.clone());
    let queue = shared
        .bus
        .work_queue(queue_config(&shared.bus, settings))
        .await?;
    let poster = post::Poster::new(
        settings.allow_private_targets,
        settings.concurrency_per_rule as usize,
    )
    .map_err(OperatorsError::Settings)?;
    let outcomes = outcomes::Outcomes::new(
        rules.outcomes_bucket(),
        settings.outcomes_max_rules as usize,
        shared.metrics.webhook.clone(),
    );
    outcomes.flush_every(
        settings.outcomes_flush(),
        rules.clone(),
        tasks,
        shutdown.clone(),
    );
    let worker = Arc::new(worker::Worker {
        bus: shared.bus.clone(),
        rules: rules.clone(),
        queue: queue.clone(),
        poster,
        settings: settings.clone(),
        metrics: shared.metrics.webhook.clone(),
        outcomes: outcomes.clone(),
        rule_slots: worker::RuleSlots::new(settings.concurrency_per_rule as usize),
        quota: quota::TenantQuota::new(settings),
        shutdown: shutdown.clone(),
    });
    worker::sample_depth(
        queue.clone(),
        shared.metrics.webhook.clone(),
        tasks,
        shutdown.clone(),
    );
    worker::run(worker, queue.clone(), tasks);
    cleanup::start(
        rules.clone(),
        shared.owners.clone(),
        settings.sweep_interval(),
        tasks,
        shutdown,
    );
    Ok(WebhookApi {
        rules,
        queue,
        outcomes,
        settings: Arc::new(settings.clone()),
    })
}
