//! The rules bucket (`arqon_webhooks`, keys `<tenant>.<rule_id>`), and this replica's
//! copy of it, followed through a watch so deliveries need no read per message.
//!
//! The copy may lag the bucket by a moment. Where that matters it falls back to the
//! bucket: a message for a tenant with no rules in the copy (the dispatcher only queues
//! messages of tenants it saw rules for) and a delivery whose rule is not in the copy are
//! checked against the bucket itself. Calls (register, list, unregister) always read the
//! bucket.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use arqon_bus::{Bus, BusError, KvEvent, KvStore};
use arqon_proto::layout;
use arqon_protocol::TenantId;

use super::rule::Rule;

/// Rules by tenant, then by id.
type Local = HashMap<String, HashMap<String, Arc<Rule>>>;

/// The rules bucket and the local copy.
#[derive(Clone)]
pub(crate) struct Rules {
    kv: KvStore,
    /// Each rule's delivery outcomes (`outcomes.rs`), which go with the rule.
    outcomes: KvStore,
    copy: Arc<RwLock<Local>>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules").finish_non_exhaustive()
    }
}

impl Rules {
    pub(crate) async fn open(bus: &Bus) -> Result<Self, BusError> {
        Ok(Self {
            kv: bus.key_value(layout::webhooks(bus)).await?,
            outcomes: bus.key_value(layout::webhook_outcomes(bus)).await?,
            copy: Arc::default(),
        })
    }

    /// Follows the bucket into the copy until `shutdown`.
    pub(crate) fn follow(&self, tasks: &TaskTracker, shutdown: CancellationToken) {
        let rules = self.clone();
        tasks.spawn(async move {
            let kv = rules.kv.clone();
            kv.follow("webhook rules", shutdown.cancelled(), |event| {
                rules.apply(event);
            })
            .await;
        });
    }

    fn apply(&self, event: KvEvent) {
        let Some((tenant, rule_id)) = layout::split_tenant_key(&event.key) else {
            return;
        };
        let mut copy = self.copy.write().unwrap_or_else(PoisonError::into_inner);
        match event
            .value
            .map(|value| serde_json::from_slice::<Rule>(&value))
        {
            Some(Ok(rule)) => {
                copy.entry(tenant.to_owned())
                    .or_default()
                    .insert(rule_id.to_owned(), Arc::new(rule));
            }
            Some(Err(error)) => debug!(key = %event.key, %error, "unreadable webhook rule"),
            None => {
                if let Some(rules) = copy.get_mut(tenant) {
                    rules.remove(rule_id);
                    if rules.is_empty() {
                        copy.remove(tenant);
                    }
                }
            }
        }
    }

    /// Stores a new rule.
    pub(crate) async fn create(&self, rule: &Rule) -> Result<(), BusError> {
        let value = serde_json::to_vec(rule).map_err(|e| BusError::Backend(e.to_string()))?;
        self.kv.create(&rule.key(), Bytes::from(value)).await?;
        Ok(())
    }

    /// A rule as the bucket has it now.
    pub(crate) async fn get(
        &self,
        tenant: &TenantId,
        rule_id: &str,
    ) -> Result<Option<Rule>, BusError> {
        let entry = self.kv.get(&layout::tenant_key(tenant, rule_id)).await?;
        Ok(entry.and_then(|entry| serde_json::from_slice(&entry.value).ok()))
    }

    /// The ids of `tenant`'s rules, from the bucket.
    pub(crate) async fn ids(&self, tenant: &TenantId) -> Result<Vec<String>, BusError> {
        let keys = self.kv.keys_matching(&layout::tenant_keys(tenant)).await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| layout::split_tenant_key(&key).map(|(_, id)| id.to_owned()))
            .collect())
    }

    /// Every rule of `tenant`, from the bucket, oldest first.
    pub(crate) async fn list(&self, tenant: &TenantId) -> Result<Vec<Rule>, BusError> {
        let mut rules = Vec::new();
        for id in self.ids(tenant).await? {
            // A rule removed between the listing and the read is simply not listed.
            if let Some(rule) = self.get(tenant, &id).await? {
                rules.push(rule);
            }
        }
        rules.sort_by(|a, b| (&a.created_at, &a.rule_id).cmp(&(&b.created_at, &b.rule_id)));
        Ok(rules)
    }

    /// Removes a rule, then its delivery outcomes (a failure there leaves figures no
    /// listing shows: outcomes are read for the rules that exist, and ids are not reused).
    pub(crate) async fn delete(&self, tenant: &str, rule_id: &str) -> Result<(), BusError> {
        let key = layout::tenant_key(tenant, rule_id);
        self.kv.delete(&key).await?;
        if let Err(error) = self.outcomes.delete(&key).await {
            debug!(%error, key, "cannot remove a removed webhook rule's delivery outcomes");
        }
        Ok(())
    }

    /// The bucket of the rules' delivery outcomes.
    pub(crate) fn outcomes_bucket(&self) -> KvStore {
        self.outcomes.clone()
    }

    /// The rules of `tenant` a message to `room:channel` matches.
    pub(crate) async fn matching(
        &self,
        tenant: &TenantId,
        room: &str,
        channel: &str,
    ) -> Result<Vec<Arc<Rule>>, BusError> {
        let cached: Option<Vec<Arc<Rule>>> = {
            let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
            copy.get(tenant.as_str())
                .map(|rules| rules.values().cloned().collect())
        };
        let rules = match cached {
            Some(rules) => rules,
            None => self.list(tenant).await?.into_iter().map(Arc::new).collect(),
        };
        Ok(rules
            .into_iter()
            .filter(|rule| rule.matches(room, channel))
            .collect())
    }

    /// The rule `rule_id` of `tenant` as it is now (from the copy, else the bucket).
    pub(crate) async fn current(
        &self,
        tenant: &TenantId,
        rule_id: &str,
    ) -> Result<Option<Arc<Rule>>, BusError> {
        let cached = {
            let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
            copy.get(tenant.as_str())
                .and_then(|rules| rules.get(rule_id))
                .cloned()
        };
        match cached {
            Some(rule) => Ok(Some(rule)),
            None => Ok(self.get(tenant, rule_id).await?.map(Arc::new)),
        }
    }

    /// The rules in the copy that end with their owner's connection, and `pick` keeps.
    pub(crate) fn not_persistent(&self, pick: impl Fn(&Rule) -> bool) -> Vec<Arc<Rule>> {
        let copy = self.copy.read().unwrap_or_else(PoisonError::into_inner);
        copy.values()
            .flat_map(HashMap::values)
            .filter(|rule| !rule.persistent && pick(rule))
            .cloned()
            .collect()
    }
}
