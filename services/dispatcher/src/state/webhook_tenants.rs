//! The tenants that have webhook rules, followed from the rules bucket (`arqon_webhooks`,
//! keys `<tenant>.<rule_id>`, written by the operators service), so routing a message
//! costs one map look-up to decide whether it also goes to the webhook queue.
//!
//! The set may lag the bucket by a moment (a watch). The replica that answered a
//! registration adds the rule at once ([`WebhookTenants::noted`]), so its own next
//! message is queued; other replicas see it when their watch does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use arqon_bus::{Bus, BusError, KvEvent};
use arqon_proto::layout;
use arqon_protocol::TenantId;

/// Rule ids by tenant.
type Tenants = HashMap<String, HashSet<String>>;

#[derive(Clone)]
pub(crate) struct WebhookTenants {
    tenants: Arc<RwLock<Tenants>>,
}

impl WebhookTenants {
    /// Opens the rules bucket (with the operators service's settings) and follows it
    /// until `shutdown`.
    pub(crate) async fn open(
        bus: &Bus,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, BusError> {
        let kv = bus.key_value(layout::webhooks(bus)).await?;
        let tenants = Self {
            tenants: Arc::default(),
        };
        let following = tenants.clone();
        tasks.spawn(async move {
            kv.follow("webhook rules", shutdown.cancelled(), |event| {
                following.apply(&event);
            })
            .await;
        });
        Ok(tenants)
    }

    /// Whether `tenant` has rules.
    pub(crate) fn has_rules(&self, tenant: &TenantId) -> bool {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        tenants.contains_key(tenant.as_str())
    }

    /// The tenants with rules.
    pub(crate) fn tenants(&self) -> Vec<String> {
        let tenants = self.tenants.read().unwrap_or_else(PoisonError::into_inner);
        tenants.keys().cloned().collect()
    }

    /// A rule this replica saw registered.
    pub(crate) fn noted(&self, tenant: &TenantId, rule_id: &str) {
        self.add(tenant.as_str(), rule_id);
    }

    fn apply(&self, event: &KvEvent) {
        let Some((tenant, rule_id)) = layout::split_tenant_key(&event.key) else {
            return;
        };
        if event.value.is_some() {
            self.add(tenant, rule_id);
            return;
        }
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(rules) = tenants.get_mut(tenant) {
            rules.remove(rule_id);
            if rules.is_empty() {
                tenants.remove(tenant);
            }
        }
    }

    fn add(&self, tenant: &str, rule_id: &str) {
        let mut tenants = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant.to_owned())
            .or_default()
            .insert(rule_id.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arqon_bus::{Bytes, EmbeddedOptions};
    use std::time::Duration;

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not in time: {what}");
    }

    #[tokio::test]
    async fn follows_the_rules_bucket() {
        let bus = Bus::embedded(EmbeddedOptions::default());
        let kv = bus.key_value(layout::webhooks(&bus)).await.unwrap();
        kv.put("t-a.wh_000000000001", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let tasks = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let tenants = WebhookTenants::open(&bus, &tasks, shutdown.clone())
            .await
            .unwrap();
        let (a, b) = (
            TenantId::parse("t-a").unwrap(),
            TenantId::parse("t-b").unwrap(),
        );
        eventually("existing rules are read", || tenants.has_rules(&a)).await;
        assert!(!tenants.has_rules(&b));
        tenants.noted(&b, "wh_000000000002");
        assert!(tenants.has_rules(&b), "a noted rule counts at once");
        kv.put("t-a.wh_000000000003", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        kv.delete("t-a.wh_000000000001").await.unwrap();
        kv.delete("t-b.wh_000000000002").await.unwrap();
        eventually("the last rule of t-b is gone", || !tenants.has_rules(&b)).await;
        assert!(tenants.has_rules(&a), "t-a still has a rule");
        kv.delete("t-a.wh_000000000003").await.unwrap();
        eventually("the last rule of t-a is gone", || !tenants.has_rules(&a)).await;
        shutdown.cancel();
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .unwrap();
    }
}
