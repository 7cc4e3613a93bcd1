//! Delivery: takes jobs from the webhook queue (one durable consumer shared by every
//! replica, so each job goes to one replica at a time), fans messages out into one
//! delivery per matching rule, and attempts deliveries.
//!
//! Bounds: a replica holds at most `concurrency` jobs at once (it takes a job only when
//! it has a free slot), and makes at most `concurrency_per_rule` POSTs at once to one
//! rule; a delivery whose rule has every slot busy goes back to the queue for a while
//! instead of waiting in a slot, so a slow or dead endpoint cannot take the slots other
//! rules need. Nothing here is on the path of live delivery to WebSocket clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, warn};

use arqon_bus::{Bus, BusError, Bytes, Headers, Job, WorkQueue};
use arqon_protocol::{ObjectWriter, TenantId, subject};
use arqon_telemetry::traces;

use super::backoff;
use super::job::{self, Delivery, Message};
use super::metrics::{Dropped, Outcome, WebhookMetrics};
use super::outcomes::Outcomes;
use super::post::{Attempt, Poster};
use super::quota::TenantQuota;
use super::rule::{Rule, is_rule_id};
use super::rules::Rules;
use super::settings::WebhookSettings;
use super::signature;

/// Pause after the queue failed before asking it again.
const QUEUE_RETRY: Duration = Duration::from_secs(1);
/// Per-rule slot tables beyond this many are pruned of idle rules.
const PRUNE_ABOVE: usize = 1024;

/// One replica's delivery work.
pub(crate) struct Worker {
    pub(crate) bus: Bus,
    pub(crate) rules: Rules,
    /// For queueing deliveries and retries.
    pub(crate) queue: WorkQueue,
    pub(crate) poster: Poster,
    pub(crate) settings: WebhookSettings,
    pub(crate) metrics: WebhookMetrics,
    /// Each rule's outcomes, counted for the console and `op.webhook.outcomes`.
    pub(crate) outcomes: Outcomes,
    pub(crate) rule_slots: RuleSlots,
    pub(crate) quota: TenantQuota,
    pub(crate) shutdown: CancellationToken,
}

/// The POST slots of each rule on this replica, and how long each rule has been
/// saturated (every slot busy when a delivery came).
pub(crate) struct RuleSlots {
    per_rule: usize,
    rules: Mutex<HashMap<String, RuleState>>,
}

struct RuleState {
    slots: Arc<Semaphore>,
    /// The first deferral of the current run of deferrals.
    saturated_since: Option<Instant>,
    /// The latest deferral: a rule with none for [`SATURATION_GAP`] is no longer
    /// saturated.
    last_deferral: Instant,
}

/// A rule whose deliveries found a free slot for this long is no longer saturated.
const SATURATION_GAP: Duration = Duration::from_secs(1);
/// The longest a delivery is put back for a saturated rule.
const MAX_DEFERRAL: Duration = Duration::from_secs(60);

impl RuleSlots {
    pub(crate) fn new(per_rule: usize) -> Self {
        Self {
            per_rule,
            rules: Mutex::new(HashMap::new()),
        }
    }

    /// A slot of `rule_id` if one is free; otherwise how long the rule has been saturated.
    fn try_take(&self, rule_id: &str) -> Result<OwnedSemaphorePermit, Duration> {
        let now = Instant::now();
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        if rules.len() > PRUNE_ABOVE {
            let per_rule = self.per_rule;
            rules.retain(|_, r| r.slots.available_permits() < per_rule);
        }
        let rule = rules
            .entry(rule_id.to_owned())
            .or_insert_with(|| RuleState {
                slots: Arc::new(Semaphore::new(self.per_rule)),
                saturated_since: None,
                last_deferral: now,
            });
        if let Ok(slot) = Arc::clone(&rule.slots).try_acquire_owned() {
            return Ok(slot);
        }
        let since = match rule.saturated_since {
            Some(since) if now.duration_since(rule.last_deferral) < SATURATION_GAP => since,
            _ => now,
        };
        rule.saturated_since = Some(since);
        rule.last_deferral = now;
        Err(now.duration_since(since))
    }
}

/// How often a replica samples the queue's depth for its metrics.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Samples the queue's depth into the metrics until `shutdown` (a failed sample keeps
/// the last value; the queue errors say why).
pub(crate) fn sample_depth(
    queue: WorkQueue,
    metrics: WebhookMetrics,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let mut every = tokio::time::interval(DEPTH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = every.tick() => match queue.depth().await {
                    Ok(depth) => metrics.queue_depth(depth),
                    Err(error) => {
                        metrics.queue_error();
                        debug!(%error, "cannot sample the webhook queue's depth");
                    }
                },
            }
        }
    });
}

/// Takes jobs until `shutdown`; each runs as its own tracked task, holding one of the
/// replica's `concurrency` slots.
pub(crate) fn run(worker: Arc<Worker>, mut queue: WorkQueue, tasks: &TaskTracker) {
    let jobs = tasks.clone();
    tasks.spawn(async move {
        let slots = Arc::new(Semaphore::new(worker.settings.concurrency as usize));
        let shutdown = worker.shutdown.clone();
        let mut failing = false;
        loop {
            let slot = tokio::select! {
                () = shutdown.cancelled() => break,
                slot = Arc::clone(&slots).acquire_owned() => slot,
            };
            let Ok(slot) = slot else { break };
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = queue.next() => next,
            };
            match next {
                None => {}
                Some(Ok(job)) => {
                    failing = false;
                    let worker = Arc::clone(&worker);
                    jobs.spawn(async move {
                        worker.handle(job).await;
                        drop(slot);
                    });
                }
                Some(Err(error)) => {
                    worker.metrics.queue_error();
                    if !failing {
                        warn!(%error, "cannot take webhook jobs from the queue; retrying");
                        failing = true;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(QUEUE_RETRY) => {}
                    }
                }
            }
        }
    });
}

impl Worker {
    async fn handle(&self, job: Job) {
        match subject::parse_webhook_queue(&job.subject) {
            Some((tenant, None)) => {
                let span = traces::continue_span(
                    |key| job.headers.get(key),
                    || {
                        tracing::debug_span!(
                            "webhook.fanout",
                            messaging.system = "arqonbus",
                            arqonbus.tenant = %tenant,
                            arqonbus.webhook.rules = tracing::field::Empty,
                        )
                    },
                );
                self.fan_out(&tenant, job).instrument(span).await;
            }
            Some((tenant, Some(rule_id))) if is_rule_id(rule_id) => {
                let rule_id = rule_id.to_owned();
                let span = traces::continue_span(
                    |key| job.headers.get(key),
                    || {
                        tracing::debug_span!(
                            "webhook.attempt",
                            otel.kind = "client",
                            arqonbus.tenant = %tenant,
                            arqonbus.webhook.rule_id = %rule_id,
                            arqonbus.webhook.attempt = tracing::field::Empty,
                            arqonbus.webhook.outcome = tracing::field::Empty,
                            http.request.method = "POST",
                            http.response.status_code = tracing::field::Empty,
                        )
                    },
                );
                self.deliver(&tenant, &rule_id, job).instrument(span).await;
            }
            _ => {
                warn!(subject = %job.subject, "a webhook job on an unknown subject; dropped");
                self.metrics.dropped(Dropped::Unreadable, 1);
                self.settle("drop", job.term()).await;
            }
        }
    }

    /// One delivery job per rule the message matches, as far as the tenant's share of the
    /// queue allows (the rest are dropped and counted); the message job is done once all
    /// are queued or dropped (a repeated fan-out, after a replica died midway, queues each
    /// once).
    async fn fan_out(&self, tenant: &TenantId, job: Job) {
        let message = match Message::decode(job.payload.clone()) {
            Ok(message) => message,
            Err(error) => {
                warn!(%tenant, %error, "a queued message cannot be delivered to webhooks; dropped");
                self.metrics.dropped(Dropped::Unreadable, 1);
                self.settle("drop", job.term()).await;
                return;
            }
        };
        let rules = match self
            .rules
            .matching(tenant, &message.room, &message.channel)
            .await
        {
            Ok(rules) => rules,
            Err(error) => return self.queue_failed("read the rules", &error, job).await,
        };
        tracing::Span::current().record("arqonbus.webhook.rules", rules.len());
        if rules.is_empty() {
            self.settle("acknowledge", job.ack()).await;
            return;
        }
        let filter = TenantQuota::deliveries_of(tenant);
        let share = match self.quota.share(tenant, || self.queue.count(&filter)).await {
            Ok(share) => share,
            Err(error) => {
                return self
                    .queue_failed("count the tenant's deliveries", &error, job)
                    .await;
            }
        };
        let mut dropped = 0u64;
        for rule in rules {
            let delivery = Delivery {
                rule_id: rule.rule_id.clone(),
                delivery_id: format!("{}-{}", job.sequence, rule.rule_id),
                failures: 0,
                not_before_ms: None,
                sender: message.sender.clone(),
                envelope: message.envelope.clone(),
            };
            let subject = subject::webhook_delivery(tenant, &rule.rule_id);
            let payload = delivery.encode();
            let Some(place) = share.take(subject.len() + payload.len()) else {
                dropped += 1;
                continue;
            };
            // Each delivery's attempts continue the message's trace.
            let pushed = self
                .queue
                .push_with_headers(
                    &subject,
                    Headers::current_trace_context(),
                    payload,
                    Some(&delivery.job_id()),
                )
                .await;
            drop(place);
            if let Err(error) = pushed {
                return self.queue_failed("queue a delivery", &error, job).await;
            }
        }
        if dropped > 0 {
            self.metrics.dropped(Dropped::TenantFull, dropped);
            self.quota.report(tenant, dropped);
        }
        self.settle("acknowledge", job.ack()).await;
    }

    async fn deliver(&self, tenant: &TenantId, rule_id: &str, job: Job) {
        let delivery = match Delivery::decode(&job.payload) {
            Ok(delivery) => delivery,
            Err(error) => {
                warn!(%tenant, rule_id, %error, "an unreadable webhook delivery; dropped");
                self.metrics.dropped(Dropped::Unreadable, 1);
                self.settle("drop", job.term()).await;
                return;
            }
        };
        if let Some(wait) = delivery.wait_left() {
            // Not due yet: a clock far ahead on another replica cannot hold it longer
            // than the longest backoff.
            let wait = wait.min(self.settings.backoff_max());
            self.settle("postpone", job.nak(wait)).await;
            return;
        }
        let rule = match self.rules.current(tenant, rule_id).await {
            Ok(Some(rule)) => rule,
            Ok(None) => {
                self.metrics.delivered(Outcome::Discarded);
                self.settle("drop", job.ack()).await;
                return;
            }
            Err(error) => return self.queue_failed("read the rule", &error, job).await,
        };
        let _rule_slot = match self.rule_slots.try_take(rule_id) {
            Ok(slot) => slot,
            Err(saturated_for) => {
                self.metrics.deferred();
                let delay = defer_delay(rule.timeout_seconds, saturated_for);
                self.settle("postpone", job.nak(delay)).await;
                return;
            }
        };
        let attempt = delivery.failures + 1;
        let span = tracing::Span::current();
        span.record("arqonbus.webhook.attempt", attempt);
        let body = signature::body(&delivery.sender, &delivery.envelope)
            .as_bytes()
            .to_vec();
        let started = Instant::now();
        let outcome = tokio::select! {
            () = self.shutdown.cancelled() => {
                // Another replica takes it at once; this attempt did not count.
                self.settle("hand back", job.nak(Duration::ZERO)).await;
                return;
            }
            outcome = self.poster.post(&rule, body, &delivery.delivery_id, attempt) => outcome,
        };
        self.metrics.attempt_took(started.elapsed().as_secs_f64());
        if let Attempt::Failed { error, .. } = &outcome {
            traces::set_error(&span, error.clone());
        }
        match outcome {
            Attempt::Delivered => {
                span.record("arqonbus.webhook.outcome", "success");
                self.counted(tenant, rule_id, Outcome::Success, None);
                debug!(%tenant, rule_id, attempt, "webhook delivered");
                self.settle("acknowledge", job.ack()).await;
            }
            Attempt::Failed { error, retry: true } if attempt < self.settings.max_attempts => {
                span.record("arqonbus.webhook.outcome", "retry");
                self.retry(tenant, delivery, attempt, &error, job).await;
            }
            Attempt::Failed { error, retry } => {
                span.record(
                    "arqonbus.webhook.outcome",
                    if retry {
                        "dead_letter"
                    } else {
                        "permanent_failure"
                    },
                );
                let given_up = GivenUp {
                    attempts: attempt,
                    error,
                    outcome: if retry {
                        Outcome::DeadLetter
                    } else {
                        Outcome::PermanentFailure
                    },
                };
                self.dead_letter(tenant, &rule, &delivery, given_up, job)
                    .await;
            }
        }
    }

    /// Queues the next attempt (with the failure counted and its backoff), then lets this
    /// one go.
    async fn retry(
        &self,
        tenant: &TenantId,
        delivery: Delivery,
        attempt: u32,
        error: &str,
        job: Job,
    ) {
        let wait = backoff::delay(
            attempt,
            self.settings.backoff_base(),
            self.settings.backoff_max(),
        );
        let next = Delivery {
            failures: attempt,
            not_before_ms: Some(job::now_ms() + u64::try_from(wait.as_millis()).unwrap_or(0)),
            ..delivery
        };
        debug!(rule_id = %next.rule_id, attempt, error, ?wait, "webhook attempt failed; retrying");
        // The next attempt stays in the message's trace, beside this one.
        match self
            .queue
            .push_with_headers(
                &job.subject,
                job.headers.clone(),
                next.encode(),
                Some(&next.job_id()),
            )
            .await
        {
            Ok(_) => {
                self.counted(tenant, &next.rule_id, Outcome::Retry, Some(error));
                self.settle("acknowledge", job.ack()).await;
            }
            // The failure is not recorded: the same attempt comes back after the wait.
            Err(queue_error) => {
                self.metrics.queue_error();
                warn!(error = %queue_error, "cannot queue a webhook retry; retrying the same attempt later");
                self.settle("postpone", job.nak(wait)).await;
            }
        }
    }

    /// Publishes the delivery as a dead letter on the tenant's dead-letter subject.
    async fn dead_letter(
        &self,
        tenant: &TenantId,
        rule: &Rule,
        delivery: &Delivery,
        given_up: GivenUp,
        job: Job,
    ) {
        let letter = dead_letter(rule, delivery, &given_up);
        match self
            .bus
            .publish(subject::webhook_dead(tenant), letter)
            .await
        {
            Ok(()) => {
                self.counted(
                    tenant,
                    &rule.rule_id,
                    given_up.outcome,
                    Some(&given_up.error),
                );
                info!(%tenant, rule_id = %rule.rule_id, attempts = given_up.attempts, error = %given_up.error, "webhook delivery given up: dead letter published");
                self.settle("acknowledge", job.ack()).await;
            }
            Err(publish_error) => {
                self.metrics.queue_error();
                warn!(error = %publish_error, "cannot publish a webhook dead letter; the last attempt is repeated later");
                self.settle("postpone", job.nak(self.settings.backoff_base()))
                    .await;
            }
        }
    }

    /// Counts a delivery's outcome in the replica's metrics and in its rule's figures.
    fn counted(&self, tenant: &TenantId, rule_id: &str, outcome: Outcome, error: Option<&str>) {
        self.metrics.delivered(outcome);
        self.outcomes.record(tenant, rule_id, outcome, error);
    }

    async fn queue_failed(&self, verb: &str, error: &BusError, job: Job) {
        self.metrics.queue_error();
        warn!(%error, "cannot {verb} for a webhook job; it is handed out again");
        self.settle("postpone", job.nak(self.settings.backoff_base()))
            .await;
    }

    /// Settles a job; a failure only means the job comes back after the ack wait.
    async fn settle(&self, verb: &str, settled: impl Future<Output = Result<(), BusError>>) {
        if let Err(error) = settled.await {
            self.metrics.queue_error();
            debug!(%error, verb, "a webhook job was not settled; it is handed out again");
        }
    }
}

/// A dead letter: `{"rule_id","url","delivery_id","attempts","last_error","body"}`, the
/// body as the last attempt posted it.
fn dead_letter(rule: &Rule, delivery: &Delivery, given_up: &GivenUp) -> Bytes {
    let body = signature::body(&delivery.sender, &delivery.envelope);
    let mut letter = ObjectWriter::with_capacity(256 + body.as_str().len());
    letter
        .text("rule_id", &rule.rule_id)
        .text("url", &rule.url)
        .text("delivery_id", &delivery.delivery_id)
        .field("attempts", &given_up.attempts)
        .text("last_error", &given_up.error)
        .object("body", &body);
    Bytes::from(letter.finish())
}

/// A delivery that will not be attempted again.
struct GivenUp {
    attempts: u32,
    error: String,
    outcome: Outcome,
}

/// How long a delivery whose rule is busy waits before it is handed out again: about one
/// attempt's timeout (when the busy slots are likely free), or, when the rule has been
/// saturated for longer, about that long (at most [`MAX_DEFERRAL`]), with jitter. A rule
/// that cannot keep up thus costs a few hand-outs of each waiting delivery, not one per
/// timeout for as long as its backlog lasts.
fn defer_delay(timeout_seconds: f64, saturated_for: Duration) -> Duration {
    let timeout = Duration::from_secs_f64(timeout_seconds).max(Duration::from_millis(100));
    let base = timeout.max(saturated_for).min(MAX_DEFERRAL);
    base + base.mul_f64(rand::rng().random_range(0.0..=0.5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_protocol::JsonObject;
    use serde::Serialize;
    use serde_json::value::RawValue;

    #[test]
    fn dead_letters_are_the_bytes_serde_wrote() {
        /// The dead letter as it was written before `ObjectWriter`.
        #[derive(Serialize)]
        struct DeadLetter<'a> {
            rule_id: &'a str,
            url: &'a str,
            delivery_id: &'a str,
            attempts: u32,
            last_error: &'a str,
            body: &'a RawValue,
        }
        let rule = Rule {
            rule_id: "wh_0123456789ab".into(),
            tenant: "acme".into(),
            owner_client_id: "arq_client_x".into(),
            url: "https://example.com/hook?a=1&b=\"2\"".into(),
            room: None,
            channel: None,
            timeout_seconds: 1.0,
            headers: Default::default(),
            persistent: false,
            secret: "s".into(),
            created_at: "2026-02-18T12:00:00Z".into(),
        };
        let delivery = Delivery {
            rule_id: rule.rule_id.clone(),
            delivery_id: "7-wh_0123456789ab".into(),
            failures: 4,
            not_before_ms: None,
            sender: "arq_client_x".into(),
            envelope: JsonObject::parse(r#"{"id":"arq_1_1_abcdef", "payload":{"b":1}}"#).unwrap(),
        };
        let given_up = GivenUp {
            attempts: 5,
            error: "HTTP 500: \"boom\"\n".into(),
            outcome: Outcome::DeadLetter,
        };
        let body = signature::body(&delivery.sender, &delivery.envelope);
        let before = serde_json::to_vec(&DeadLetter {
            rule_id: &rule.rule_id,
            url: &rule.url,
            delivery_id: &delivery.delivery_id,
            attempts: given_up.attempts,
            last_error: &given_up.error,
            body: &RawValue::from_string(body.as_str().to_owned()).unwrap(),
        })
        .unwrap();
        assert_eq!(dead_letter(&rule, &delivery, &given_up), before);
    }

    #[test]
    fn a_rule_stays_saturated_while_deliveries_keep_finding_it_busy() {
        let slots = RuleSlots::new(1);
        let held = slots.try_take("wh_a").unwrap();
        assert_eq!(slots.try_take("wh_a").unwrap_err(), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(50));
        let saturated = slots.try_take("wh_a").unwrap_err();
        assert!(saturated >= Duration::from_millis(50), "{saturated:?}");
        // Another rule has slots of its own.
        assert!(slots.try_take("wh_b").is_ok());
        // A gap without deferrals ends the saturation.
        drop(held);
        std::thread::sleep(SATURATION_GAP);
        let _held = slots.try_take("wh_a").unwrap();
        assert_eq!(slots.try_take("wh_a").unwrap_err(), Duration::ZERO);
    }

    #[test]
    fn deferrals_grow_with_the_saturation_up_to_a_bound() {
        let within = |delay: Duration, base: Duration| {
            assert!(
                delay >= base && delay <= base.mul_f64(1.5),
                "{delay:?} for {base:?}"
            );
        };
        for _ in 0..100 {
            within(defer_delay(2.0, Duration::ZERO), Duration::from_secs(2));
            within(
                defer_delay(0.01, Duration::ZERO),
                Duration::from_millis(100),
            );
            within(
                defer_delay(2.0, Duration::from_secs(10)),
                Duration::from_secs(10),
            );
            within(defer_delay(2.0, Duration::from_secs(600)), MAX_DEFERRAL);
        }
    }
}
