//! What each rule's deliveries came to (delivered, retried, failed, dead-lettered, the
//! last error and when), for the console and `op.webhook.outcomes`.
//!
//! Kept in the `arqon_webhook_outcomes` bucket, key `<tenant>.<rule_id>`, so the figures
//! are the fleet's, not a replica's, and outlive any replica (on NATS the bucket is on
//! file storage; on the embedded bus it lives as long as the process). Writing the
//! bucket on every attempt would double the bus traffic of a busy rule, so each replica
//! counts in memory and adds what it counted every `flush` interval, one
//! compare-and-set per rule that had deliveries: a replica killed with `kill -9` loses at
//! most one interval of its counts; one that stops adds them before it goes.
//!
//! Bounded: a replica holds the counts of at most `max_rules` rules between two flushes;
//! an outcome of one more rule is not counted per rule (the replica's metrics still count
//! it) and `arqonbus_webhook_outcomes_unrecorded{reason="too_many_rules"}` says so.
//! A rule's figures go with the rule (`Rules::delete`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use arqon_bus::{BusError, KvStore};
use arqon_proto::layout;
use arqon_proto::operators::v1 as pb;
use arqon_protocol::{TenantId, Timestamp};

use super::metrics::{Outcome, Unrecorded, WebhookMetrics};
use super::rule::Rule;
use super::rules::Rules;

/// The longest error text kept for a rule.
const MAX_ERROR_CHARS: usize = 512;
/// Compare-and-set attempts of one rule's figures in one flush before its counts wait
/// for the next one.
const WRITE_ATTEMPTS: usize = 4;

/// One rule's figures: stored as JSON, and what a replica counted since its last flush.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Figures {
    #[serde(default)]
    pub(crate) delivered: u64,
    #[serde(default)]
    pub(crate) retried: u64,
    #[serde(default)]
    pub(crate) failed: u64,
    #[serde(default)]
    pub(crate) dead_lettered: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
    /// RFC 3339 in UTC with the same precision everywhere, so the later of two sorts
    /// last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_error_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_delivered_at: Option<String>,
}

impl Figures {
    /// Counts one outcome at `at`; `false` for one that is not a delivery's (the rule
    /// was gone).
    fn count(&mut self, outcome: Outcome, error: Option<&str>, at: String) -> bool {
        match outcome {
            Outcome::Success => {
                self.delivered += 1;
                self.last_delivered_at = Some(at);
                return true;
            }
            Outcome::Retry => self.retried += 1,
            Outcome::PermanentFailure => self.failed += 1,
            Outcome::DeadLetter => self.dead_lettered += 1,
            Outcome::Discarded => return false,
        }
        if let Some(error) = error {
            self.last_error = Some(error.chars().take(MAX_ERROR_CHARS).collect());
            self.last_error_at = Some(at);
        }
        true
    }

    /// Adds `other`'s counts; the later of each "last" wins.
    fn add(&mut self, other: &Figures) {
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
        if other.last_error_at > self.last_error_at {
            self.last_error.clone_from(&other.last_error);
            self.last_error_at.clone_from(&other.last_error_at);
        }
        if other.last_delivered_at > self.last_delivered_at {
            self.last_delivered_at.clone_from(&other.last_delivered_at);
        }
    }

    fn encode(&self) -> Bytes {
        // Plain data: serializing it cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// A stored value; one that cannot be read counts as none (it is then replaced).
    fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub(crate) fn to_pb(&self, rule: &Rule) -> pb::WebhookRuleOutcomes {
        pb::WebhookRuleOutcomes {
            rule_id: rule.rule_id.clone(),
            url: rule.url.clone(),
            delivered: self.delivered,
            retried: self.retried,
            failed: self.failed,
            dead_lettered: self.dead_lettered,
            last_error: self.last_error.clone(),
            last_error_at: self.last_error_at.clone(),
            last_delivered_at: self.last_delivered_at.clone(),
        }
    }
}

/// This replica's counts not yet added to the bucket, by `<tenant>.<rule_id>`.
#[derive(Clone)]
pub(crate) struct Outcomes {
    kv: KvStore,
    pending: Arc<Mutex<HashMap<String, Figures>>>,
    max_rules: usize,
    metrics: WebhookMetrics,
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes")
            .field("max_rules", &self.max_rules)
            .finish_non_exhaustive()
    }
}

impl Outcomes {
    pub(crate) fn new(kv: KvStore, max_rules: usize, metrics: WebhookMetrics) -> Self {
        Self {
            kv,
            pending: Arc::default(),
            max_rules,
            metrics,
        }
    }

    /// Counts one outcome of a delivery to `rule_id` of `tenant`.
    pub(crate) fn record(
        &self,
        tenant: &TenantId,
        rule_id: &str,
        outcome: Outcome,
        error: Option<&str>,
    ) {
        let key = layout::tenant_key(tenant, rule_id);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.contains_key(&key) && pending.len() >= self.max_rules {
            self.metrics.unrecorded(Unrecorded::TooManyRules);
            return;
        }
        let at = Timestamp::now().to_rfc3339();
        pending.entry(key).or_default().count(outcome, error, at);
    }

    /// The stored figures of `tenant`'s rules, by rule id (in one read of the bucket).
    pub(crate) async fn read(
        &self,
        tenant: &TenantId,
    ) -> Result<HashMap<String, Figures>, BusError> {
        let entries = self
            .kv
            .entries_matching(&layout::tenant_keys(tenant))
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let (_, rule_id) = layout::split_tenant_key(&entry.key)?;
                Some((rule_id.to_owned(), Figures::decode(&entry.value)))
            })
            .collect())
    }

    /// Adds what was counted to the bucket every `every`, and once more at `shutdown`.
    pub(crate) fn flush_every(
        &self,
        every: Duration,
        rules: Rules,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) {
        let outcomes = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => outcomes.flush(&rules).await,
                }
            }
            outcomes.flush(&rules).await;
        });
    }

    /// Adds each rule's counts to its stored figures (compare-and-set, so replicas
    /// flushing at once add up). Counts that could not be written wait for the next
    /// flush; those of a rule removed meanwhile are dropped.
    pub(crate) async fn flush(&self, rules: &Rules) {
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (key, counted) in taken {
            let Some((tenant, rule_id)) = layout::split_tenant_key(&key) else {
                continue;
            };
            match self.add(rules, tenant, rule_id, &key, &counted).await {
                Ok(()) => {}
                Err(error) => {
                    debug!(%error, key, "cannot add a webhook rule's delivery outcomes; kept for the next flush");
                    self.put_back(key, counted);
                }
            }
        }
    }

    async fn add(
        &self,
        rules: &Rules,
        tenant: &str,
        rule_id: &str,
        key: &str,
        counted: &Figures,
    ) -> Result<(), BusError> {
        let Ok(tenant) = TenantId::parse(tenant) else {
            return Ok(());
        };
        for _ in 0..WRITE_ATTEMPTS {
            // A rule removed since: its figures went with it and are not written again.
            if rules.current(&tenant, rule_id).await?.is_none() {
                return Ok(());
            }
            let (mut figures, revision) = match self.kv.get(key).await? {
                Some(entry) => (Figures::decode(&entry.value), entry.revision),
                None => (Figures::default(), 0),
            };
            figures.add(counted);
            match self.kv.update(key, figures.encode(), revision).await {
                Ok(_) => return Ok(()),
                Err(BusError::WrongRevision) => {}
                Err(error) => return Err(error),
            }
        }
        Err(BusError::WrongRevision)
    }

    /// Keeps counts that could not be written for the next flush, within the bound.
    fn put_back(&self, key: String, counted: Figures) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(newer) = pending.get_mut(&key) {
            newer.add(&counted);
        } else if pending.len() < self.max_rules {
            pending.insert(key, counted);
        } else {
            warn!(
                key,
                "a webhook rule's delivery outcomes are dropped: too many rules wait for a flush"
            );
            self.metrics.unrecorded(Unrecorded::TooManyRules);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> String {
        format!("2026-12-04T10:00:{second:02}.000Z")
    }

    #[test]
    fn outcomes_are_counted_and_added_the_later_last_winning() {
        let mut mine = Figures::default();
        assert!(mine.count(Outcome::Success, None, at(1)));
        assert!(mine.count(Outcome::Retry, Some("HTTP 503"), at(2)));
        assert!(mine.count(Outcome::DeadLetter, Some("HTTP 500"), at(3)));
        assert!(mine.count(Outcome::PermanentFailure, Some("HTTP 404"), at(4)));
        assert!(!mine.count(Outcome::Discarded, None, at(5)));
        assert_eq!(
            (
                mine.delivered,
                mine.retried,
                mine.dead_lettered,
                mine.failed
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(mine.last_error.as_deref(), Some("HTTP 404"));

        let mut stored = Figures {
            delivered: 10,
            last_error: Some("older".into()),
            last_error_at: Some(at(0)),
            last_delivered_at: Some(at(9)),
            ..Figures::default()
        };
        stored.add(&mine);
        assert_eq!(stored.delivered, 11);
        assert_eq!(stored.last_error.as_deref(), Some("HTTP 404"));
        assert_eq!(stored.last_error_at, Some(at(4)));
        // Another replica's later success stays.
        assert_eq!(stored.last_delivered_at, Some(at(9)));
        assert_eq!(Figures::decode(&stored.encode()), stored);
        assert_eq!(Figures::decode(b"garbage"), Figures::default());
    }

    #[test]
    fn a_long_error_is_cut() {
        let mut figures = Figures::default();
        figures.count(Outcome::Retry, Some(&"x".repeat(2000)), at(1));
        assert_eq!(figures.last_error.unwrap().chars().count(), MAX_ERROR_CHARS);
    }

    #[tokio::test]
    async fn a_replica_counts_at_most_max_rules_between_flushes_and_flushes_add_up() {
        let bus = arqon_bus::Bus::embedded(Default::default());
        let rules = Rules::open(&bus).await.unwrap();
        let metrics = WebhookMetrics::default();
        let tenant = TenantId::parse("acme").unwrap();
        let mut rule = Rule {
            rule_id: "wh_000000000001".into(),
            tenant: "acme".into(),
            owner_client_id: "arq_client_x".into(),
            url: "https://example.com/hook".into(),
            room: None,
            channel: None,
            timeout_seconds: 1.0,
            headers: Default::default(),
            persistent: true,
            secret: "s".into(),
            created_at: "2026-12-04T10:00:00Z".into(),
        };
        rules.create(&rule).await.unwrap();
        rule.rule_id = "wh_000000000002".into();
        rules.create(&rule).await.unwrap();

        let first = Outcomes::new(rules.outcomes_bucket(), 1, metrics.clone());
        let second = Outcomes::new(rules.outcomes_bucket(), 1, metrics.clone());
        first.record(&tenant, "wh_000000000001", Outcome::Success, None);
        first.record(&tenant, "wh_000000000001", Outcome::Retry, Some("HTTP 503"));
        // Beyond the bound: not counted per rule.
        first.record(&tenant, "wh_000000000002", Outcome::Success, None);
        assert_eq!(metrics.unrecorded_count(Unrecorded::TooManyRules), 1);
        second.record(&tenant, "wh_000000000001", Outcome::Success, None);
        first.flush(&rules).await;
        second.flush(&rules).await;
        let stored = first.read(&tenant).await.unwrap();
        let figures = &stored["wh_000000000001"];
        assert_eq!((figures.delivered, figures.retried), (2, 1));
        assert_eq!(figures.last_error.as_deref(), Some("HTTP 503"));
        assert!(!stored.contains_key("wh_000000000002"));

        // A removed rule's figures go with it and are not written again.
        rules.delete("acme", "wh_000000000001").await.unwrap();
        first.record(&tenant, "wh_000000000001", Outcome::Success, None);
        first.flush(&rules).await;
        assert!(first.read(&tenant).await.unwrap().is_empty());
    }
}
