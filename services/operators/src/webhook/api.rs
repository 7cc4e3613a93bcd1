//! The `Webhooks` gRPC API: register, list and unregister rules; the queue's depth; each
//! rule's delivery outcomes.

use tracing::info;

use arqon_proto::operators::v1 as pb;

use arqon_protocol::subject;

use super::WebhookApi;
use super::quota::TenantQuota;
use super::rule::{Rule, invalid, is_rule_id};
use super::ssrf;
use crate::caller::Caller;
use crate::error::{ApiError, bus_failure, forbidden, grpc_api, not_found};

grpc_api!(WebhookApi: pb::webhooks_server::Webhooks {
    register(RegisterWebhookRequest) -> WebhookRule,
    list(ListWebhooksRequest) -> ListWebhooksResponse,
    unregister(UnregisterWebhookRequest) -> UnregisterWebhookResponse,
    queue_depth(WebhookQueueDepthRequest) -> WebhookQueueDepth,
    outcomes(WebhookOutcomesRequest) -> WebhookOutcomesResponse,
});

impl WebhookApi {
    /// A new rule of the caller's tenant, owned by the caller. The answer is the only
    /// place its secret is shown.
    async fn register(
        &self,
        mut request: pb::RegisterWebhookRequest,
    ) -> Result<pb::WebhookRule, ApiError> {
        let caller = Caller::try_from(request.caller.take())?;
        let (rule, url) = Rule::from_request(&caller, request, self.settings.max_timeout_seconds)?;
        if !self.settings.allow_private_targets {
            ssrf::check_target(&url).await.map_err(invalid)?;
        }
        let verb = "register the webhook rule";
        let existing = self
            .rules
            .ids(&caller.tenant)
            .await
            .map_err(|e| bus_failure(verb, &e))?;
        let limit = self.settings.max_rules_per_tenant;
        if existing.len() >= limit as usize {
            return Err(invalid(format!(
                "Webhook rule limit reached ({limit} per tenant)"
            )));
        }
        self.rules
            .create(&rule)
            .await
            .map_err(|e| bus_failure(verb, &e))?;
        info!(rule_id = %rule.rule_id, tenant = %rule.tenant, persistent = rule.persistent, "webhook rule registered");
        Ok(rule.to_pb(true))
    }

    /// The caller's own rules; an admin's: every rule of its tenant.
    async fn list(
        &self,
        request: pb::ListWebhooksRequest,
    ) -> Result<pb::ListWebhooksResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let rules = self.listed(&caller).await?;
        let rules = rules.iter().map(|rule| rule.to_pb(false)).collect();
        Ok(pb::ListWebhooksResponse { rules })
    }

    /// The rules `caller` may see: its own; an admin's: every rule of its tenant.
    async fn listed(&self, caller: &Caller) -> Result<Vec<Rule>, ApiError> {
        let rules = self
            .rules
            .list(&caller.tenant)
            .await
            .map_err(|e| bus_failure("list the webhook rules", &e))?;
        Ok(rules
            .into_iter()
            .filter(|rule| caller.may_manage(&caller.tenant, &rule.owner_client_id))
            .collect())
    }

    /// The delivery outcomes of the rules `list` gives the caller, in its order.
    async fn outcomes(
        &self,
        request: pb::WebhookOutcomesRequest,
    ) -> Result<pb::WebhookOutcomesResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let listed = self.listed(&caller).await?;
        let mut stored = self
            .outcomes
            .read(&caller.tenant)
            .await
            .map_err(|e| bus_failure("read the webhook outcomes", &e))?;
        let rules = listed
            .iter()
            .map(|rule| stored.remove(&rule.rule_id).unwrap_or_default().to_pb(rule))
            .collect();
        Ok(pb::WebhookOutcomesResponse { rules })
    }

    /// Removes a rule of the caller's tenant: its owner's, or any for an admin.
    async fn unregister(
        &self,
        request: pb::UnregisterWebhookRequest,
    ) -> Result<pb::UnregisterWebhookResponse, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let rule_id = request.rule_id.trim();
        if rule_id.is_empty() {
            return Err(invalid("'rule_id' is required"));
        }
        let missing = || not_found(format!("Webhook rule '{rule_id}' not found"));
        // Anything else cannot name a rule (nor a key of the bucket).
        if !is_rule_id(rule_id) {
            return Err(missing());
        }
        let verb = "remove the webhook rule";
        let rule = self
            .rules
            .get(&caller.tenant, rule_id)
            .await
            .map_err(|e| bus_failure(verb, &e))?
            .ok_or_else(missing)?;
        if !caller.may_manage(&caller.tenant, &rule.owner_client_id) {
            return Err(forbidden(
                "Cannot remove webhook rule owned by another client",
            ));
        }
        self.rules
            .delete(&rule.tenant, &rule.rule_id)
            .await
            .map_err(|e| bus_failure(verb, &e))?;
        info!(rule_id, tenant = %caller.tenant, "webhook rule removed");
        Ok(pb::UnregisterWebhookResponse {
            rule_id: rule.rule_id,
        })
    }

    /// The caller's tenant's jobs in the queue (its messages waiting for fan-out and its
    /// deliveries); the whole queue's for the system authority.
    async fn queue_depth(
        &self,
        request: pb::WebhookQueueDepthRequest,
    ) -> Result<pb::WebhookQueueDepth, ApiError> {
        let caller = Caller::try_from(request.caller)?;
        let verb = "read the webhook queue";
        let failed = |e: arqon_bus::BusError| bus_failure(verb, &e);
        let waiting = self
            .queue
            .count(&subject::webhook_queue(&caller.tenant))
            .await
            .map_err(failed)?;
        let deliveries = self
            .queue
            .count(&TenantQuota::deliveries_of(&caller.tenant))
            .await
            .map_err(failed)?;
        let mut depth = pb::WebhookQueueDepth {
            tenant_jobs: waiting.saturating_add(deliveries),
            jobs: None,
            bytes: None,
        };
        if caller.system {
            let all = self.queue.depth().await.map_err(failed)?;
            depth.jobs = Some(all.jobs);
            depth.bytes = Some(all.bytes);
        }
        Ok(depth)
    }
}
